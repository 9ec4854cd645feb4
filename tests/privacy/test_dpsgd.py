"""Sample-level DP-SGD: per-sample gradients, clipping, Poisson sampling, noise, refusals."""

from __future__ import annotations

import copy
import math
import platform
import sys
import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from accord.data.bundled import load_bundled
from accord.errors import InputError
from accord.models.builtin import build_builtin_model
from accord.models.flat import FlatModel
from accord.privacy.dpsgd import (
    DpSgdPlan,
    check_private_module,
    clip_per_sample,
    clipped_gradient_sum,
    dpsgd_step,
    gaussian_noise,
    per_sample_gradients,
    per_sample_norms,
    poisson_batch,
    retain_heap,
    train_dpsgd,
)
from accord.secure_random import SecureGenerator

TEST_KEY = bytes(range(32))
"""A fixed key for tests only: a node's key comes from os.urandom and never leaves it."""

FALSE_ALARM = 1e-6
Z_TWO_SIDED = 4.8916  # the normal quantile 1 - 1e-6 / 2


def _critical_chi2(dof: int) -> tuple[float, float]:
    """Two-sided bounds for a chi-square statistic at false-alarm rate 1e-6."""
    try:
        from scipy.stats import chi2
    except ImportError:  # Normal approximation: chi2(k) ~ N(k, 2k) for large k.
        spread = Z_TWO_SIDED * math.sqrt(2.0 * dof)
        return dof - spread, dof + spread
    return float(chi2.ppf(FALSE_ALARM / 2, dof)), float(chi2.isf(FALSE_ALARM / 2, dof))


def _assert_gaussian(noise: torch.Tensor, std: float) -> None:
    """Mean zero and variance std^2, each at false-alarm rate 1e-6."""
    z = noise.double() / std
    m = z.numel()
    assert abs(float(z.mean())) * math.sqrt(m) <= Z_TWO_SIDED
    low, high = _critical_chi2(m)
    statistic = float((z * z).sum())
    assert low <= statistic <= high, (low, statistic, high)


# --- models ---------------------------------------------------------------------------------


class _UserBlock(nn.Module):
    """A user module of standard layers, with its own forward."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(12, 16)
        self.norm = nn.LayerNorm(16)
        self.out = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.gelu(self.norm(self.inp(x))) + 0.5 * self.inp(x))


def _conv1d_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv1d(2, 4, 3, padding=1), nn.GroupNorm(2, 4), nn.ReLU(), nn.AvgPool1d(2),
        nn.Flatten(), nn.Linear(4 * 5, 3),
    )  # fmt: skip


MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], int]] = {
    "logreg": (lambda: build_builtin_model("logreg", (12,), 3), (12,), 3),
    "mlp": (lambda: build_builtin_model("mlp", (12,), 3, hidden=(8, 8)), (12,), 3),
    "cnn": (lambda: build_builtin_model("cnn", (1, 8, 8), 4, channels=(4, 8), groups=2),
            (1, 8, 8), 4),
    "user": (_UserBlock, (12,), 3),
    "conv1d": (_conv1d_model, (2, 10), 3),
}  # fmt: skip


def _setup(kind: str, rows: int = 7, seed: int = 0) -> tuple[FlatModel, torch.Tensor, torch.Tensor]:
    build, shape, classes = MODELS[kind]
    torch.manual_seed(seed)
    model = FlatModel(build())
    x = torch.randn(rows, *shape)
    y = torch.randint(0, classes, (rows,))
    return model, x, y


def _one_at_a_time(model: FlatModel, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    params = [p for p in model.module.parameters() if p.requires_grad]
    rows = []
    for i in range(x.shape[0]):
        loss = F.cross_entropy(model.module(x[i : i + 1]), y[i : i + 1])
        grads = torch.autograd.grad(loss, params)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows)


# --- per-sample gradients and clipping -----------------------------------------------------


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_per_sample_gradients_equal_one_at_a_time(kind: str) -> None:
    model, x, y = _setup(kind)
    batched = per_sample_gradients(model, x, y)
    assert batched.shape == (x.shape[0], model.size)
    torch.testing.assert_close(batched, _one_at_a_time(model, x, y), atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_clipped_norms_are_at_most_c_and_small_ones_are_kept(kind: str) -> None:
    model, x, y = _setup(kind, rows=9)
    grads = per_sample_gradients(model, x, y)
    norms = per_sample_norms(grads)
    clip = float(norms.median())
    clipped = clip_per_sample(grads, clip)
    assert bool((per_sample_norms(clipped) <= clip + 1e-6).all())
    small = norms < clip
    assert bool(small.any()) and bool((~small).any())
    torch.testing.assert_close(clipped[small], grads[small], atol=1e-6, rtol=1e-5)


def test_clipped_sum_is_the_same_in_any_chunking() -> None:
    model, x, y = _setup("cnn", rows=11)
    reference = clip_per_sample(per_sample_gradients(model, x, y), 0.5).sum(0)
    for chunk in (1, 4, 11, 512):
        out = torch.zeros(model.size)
        clipped_gradient_sum(model, x, y, 0.5, out=out, chunk_size=chunk)
        torch.testing.assert_close(out, reference, atol=1e-6, rtol=0)


# --- refusals ------------------------------------------------------------------------------


class _Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.b.weight = self.a.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x))


class _WithBuffer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 2)
        self.register_buffer("seen", torch.zeros(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)


@pytest.mark.parametrize(
    ("module", "names"),
    [
        (nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)), ["'1'", "BatchNorm2d", "GroupNorm"]),
        (nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)), ["BatchNorm1d", "LayerNorm"]),
        (nn.Sequential(nn.InstanceNorm2d(3, track_running_stats=True)), ["track_running_stats"]),
        (_WithBuffer(), ["_WithBuffer", "seen"]),
        (nn.Sequential(nn.Embedding(5, 3, sparse=True)), ["sparse=False"]),
        (nn.Sequential(nn.GRU(4, 4)), ["GRU", "nn.LSTM"]),
        (nn.Sequential(nn.LSTMCell(4, 4)), ["LSTMCell", "nn.LSTM"]),
        (_Tied(), ["'a.weight'", "'b.weight'", "tied"]),
    ],
)
def test_modules_it_cannot_make_private_are_refused(module: nn.Module, names: list[str]) -> None:
    with pytest.raises(InputError) as caught:
        check_private_module(module)
    message = str(caught.value)
    assert "\n" not in message
    for name in names:
        assert name in message


def test_train_dpsgd_refuses_batch_norm_before_training() -> None:
    module = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    model = FlatModel(module)
    before = model.flat.clone()
    plan = DpSgdPlan(noise_multiplier=1.0, clip_norm=1.0, sample_rate=0.5, steps=3)
    with pytest.raises(InputError, match="BatchNorm1d"):
        train_dpsgd(model, torch.randn(8, 4), torch.zeros(8, dtype=torch.long), plan, 0.1,
                    SecureGenerator(TEST_KEY))  # fmt: skip
    assert torch.equal(model.flat, before)


def test_standard_layers_are_accepted() -> None:
    for kind in MODELS:
        check_private_module(MODELS[kind][0]())
    check_private_module(
        nn.Sequential(
            nn.Embedding(10, 4), nn.Flatten(), nn.Dropout(0.1), nn.Linear(8, 4), nn.SiLU(),
            nn.LayerNorm(4), nn.Linear(4, 2),
        )
    )  # fmt: skip
    check_private_module(nn.Sequential(nn.InstanceNorm2d(3, affine=True), nn.AdaptiveAvgPool2d(1)))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"noise_multiplier": -1.0},
        {"noise_multiplier": math.inf},
        {"clip_norm": 0.0},
        {"sample_rate": 0.0},
        {"sample_rate": 1.5},
        {"steps": -1},
        {"momentum": 1.0},
        {"weight_decay": -0.1},
    ],
)
def test_bad_plans_are_input_errors(kwargs: dict[str, float]) -> None:
    settings: dict[str, float] = {
        "noise_multiplier": 1.0, "clip_norm": 1.0, "sample_rate": 0.1, "steps": 1
    }  # fmt: skip
    settings.update(kwargs)
    with pytest.raises(InputError, match="DP-SGD"):
        DpSgdPlan(**settings)  # type: ignore[arg-type]


# --- Poisson sampling ----------------------------------------------------------------------


def test_poisson_batches_have_mean_qn_and_vary() -> None:
    generator = SecureGenerator(TEST_KEY)
    n, q, draws = 1000, 0.05, 400
    batches = [poisson_batch(generator, n, q) for _ in range(draws)]
    sizes = np.array([b.numel() for b in batches])
    # The mean of 400 Binomial(1000, 0.05) has sd 0.34: 2.5 is more than 7 sd.
    assert abs(sizes.mean() - q * n) < 2.5
    assert len(set(sizes.tolist())) > 10
    assert sizes.std() > 3.0  # Binomial sd: 6.9
    assert all(bool((b[1:] > b[:-1]).all()) and int(b.max()) < n for b in batches if b.numel())
    assert len({tuple(b.tolist()) for b in batches}) == draws


def test_an_empty_batch_still_adds_noise() -> None:
    model, x, y = _setup("logreg", rows=5)
    before = model.flat.clone()
    plan = DpSgdPlan(noise_multiplier=1.0, clip_norm=1.0, sample_rate=1e-12, steps=2)
    result = train_dpsgd(model, x, y, plan, 0.1, SecureGenerator(TEST_KEY))
    assert result.steps == 2 and result.mean_batch_size == 0.0 and math.isnan(result.mean_loss)
    assert bool((model.flat != before).all())


# --- the noise -----------------------------------------------------------------------------


def test_noise_has_its_stated_scale() -> None:
    sigma, clip = 1.3, 0.7
    noise = gaussian_noise(SecureGenerator(TEST_KEY, counter=17), 200_000, sigma * clip)
    assert noise.dtype == torch.float32
    _assert_gaussian(noise, sigma * clip)


def test_a_step_with_no_gradient_adds_noise_of_scale_sigma_c() -> None:
    torch.manual_seed(0)
    model = FlatModel(nn.Linear(200, 250))  # 50,250 parameters
    sigma, clip, expected = 0.8, 2.5, 12.5
    plan = DpSgdPlan(noise_multiplier=sigma, clip_norm=clip, sample_rate=0.1, steps=1)
    empty_x, empty_y = torch.zeros(0, 200), torch.zeros(0, dtype=torch.long)
    before = model.flat.clone()
    dpsgd_step(model, empty_x, empty_y, plan, 1.0, SecureGenerator(TEST_KEY),
               expected_batch_size=expected)  # fmt: skip
    # The gradient is noise / (q n); the step moved the parameters by -lr times it.
    _assert_gaussian(model.grad * expected, sigma * clip)
    torch.testing.assert_close(before - model.flat, model.grad, atol=1e-6, rtol=0)


def test_noise_is_fixed_by_key_and_counter() -> None:
    def draw(counter: int) -> torch.Tensor:
        return gaussian_noise(SecureGenerator(TEST_KEY, counter=counter), 1000, 1.0)

    assert torch.equal(draw(5), draw(5))
    assert not torch.equal(draw(5), draw(6))
    assert not torch.equal(draw(5), gaussian_noise(SecureGenerator(bytes(32), 5), 1000, 1.0))


def test_training_is_fixed_by_key_and_counter() -> None:
    def run(counter: int) -> torch.Tensor:
        model, x, y = _setup("mlp", rows=40)
        plan = DpSgdPlan(noise_multiplier=1.0, clip_norm=1.0, sample_rate=0.2, steps=3)
        train_dpsgd(model, x, y, plan, 0.1, SecureGenerator(TEST_KEY, counter=counter))
        return model.flat.clone()

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(100))


# --- whole runs ----------------------------------------------------------------------------


def test_dpsgd_learns_breast_cancer() -> None:
    x_np, y_np = load_bundled("breast_cancer")
    x_np = (x_np - x_np.mean(0)) / x_np.std(0)
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
    torch.manual_seed(0)
    model = FlatModel(build_builtin_model("logreg", (30,), 2))
    plan = DpSgdPlan(noise_multiplier=1.0, clip_norm=1.0, sample_rate=64 / 569, steps=200,
                     momentum=0.5)  # fmt: skip
    result = train_dpsgd(model, x, y, plan, 0.5, SecureGenerator(TEST_KEY))
    assert result.steps == 200
    assert abs(result.mean_batch_size - 64) < 3
    with torch.no_grad():
        accuracy = float((model.module(x).argmax(1) == y).float().mean())
    assert accuracy > 0.85


def test_dropout_draws_a_mask_per_example() -> None:
    torch.manual_seed(0)
    model = FlatModel(nn.Sequential(nn.Linear(6, 32), nn.Dropout(0.5), nn.Linear(32, 2)))
    x = torch.randn(1, 6).expand(16, 6)
    y = torch.zeros(16, dtype=torch.long)
    model.module.train()
    grads = per_sample_gradients(model, x, y)
    assert len({tuple(row.tolist()) for row in grads}) > 1  # same input, different masks
    plan = DpSgdPlan(noise_multiplier=1.0, clip_norm=1.0, sample_rate=0.5, steps=2)
    train_dpsgd(model, x.contiguous(), y, plan, 0.1, SecureGenerator(TEST_KEY))


def test_one_step_equals_opacus_clipped_sum_without_noise() -> None:
    pytest.importorskip("opacus")
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    torch.manual_seed(3)
    module = build_builtin_model("cnn", (1, 8, 8), 4, channels=(4, 8), groups=2)
    reference = copy.deepcopy(module)
    model = FlatModel(module)
    n, q, lr, clip = 64, 0.25, 0.3, 0.05
    x, y = torch.randn(n, 1, 8, 8), torch.randint(0, 4, (n,))
    index = poisson_batch(SecureGenerator(TEST_KEY), n, q)
    assert index.numel() > 0
    # Clipping is active for some examples, so the cross-check covers it.
    assert bool((per_sample_norms(per_sample_gradients(model, x[index], y[index])) > clip).any())
    plan = DpSgdPlan(noise_multiplier=0.0, clip_norm=clip, sample_rate=q, steps=1)
    dpsgd_step(model, x[index], y[index], plan, lr, SecureGenerator(TEST_KEY),
               expected_batch_size=q * n)  # fmt: skip

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapped = GradSampleModule(reference)
        optimizer = DPOptimizer(
            torch.optim.SGD(wrapped.parameters(), lr=lr), noise_multiplier=0.0,
            max_grad_norm=clip, expected_batch_size=int(q * n),
        )  # fmt: skip
        optimizer.zero_grad()
        F.cross_entropy(wrapped(x[index]), y[index]).backward()
        optimizer.step()
    expected = torch.cat([p.detach().reshape(-1) for p in reference.parameters()])
    torch.testing.assert_close(model.flat, expected, atol=1e-5, rtol=0)


def test_retain_heap_is_idempotent_and_harmless() -> None:
    first = retain_heap(64 * 2**20)
    assert retain_heap(1) is first  # a smaller pad never lowers it
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert first
