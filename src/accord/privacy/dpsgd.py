"""Sample-level DP-SGD on a :class:`FlatModel` (Abadi et al. 2016).

Each step:

1. **Poisson sampling.** Every row joins the batch independently with probability ``q``,
   drawn from the node's :class:`SecureGenerator`. The batch size varies and may be zero;
   an empty batch still adds noise. There is never a fallback to shuffled fixed-size
   batches: the accountant's amplification by sampling assumes exactly this sampling.
2. **Per-sample gradients** of the cross-entropy of each example, with ``torch.func``
   (``vmap`` over ``grad`` of one example's loss, through ``functional_call``). Inside
   ``vmap`` the module sees one example at a time, so no example can influence another's
   gradient. The parameters are views of :class:`FlatModel`'s flat vector; each comes back
   as a ``(rows, numel)`` block in the flat vector's order.
3. **Clipping** each row to norm ``C``: factor ``min(1, C / (norm + 1e-6))``, as Opacus.
   The norm of a row sums the blocks' squared norms; the clipped sum is one
   matrix-vector product per block, written straight into its slice of ``model.grad``
   (the blocks are never concatenated: that copy would cost more than the clipping).
4. **Noise** ``N(0, (sigma C)^2)`` on every coordinate of the sum, from the node's secure
   generator (never torch's generator, which anyone who reads the job seed could replay).
5. **Normalisation** by the *expected* batch size ``q n`` (not the realised one, which
   depends on the data and is not private), as Opacus does with Poisson sampling.

Momentum and weight decay act on the privatised gradient only: post-processing, which
costs no privacy. The batch is processed in chunks so that peak memory is bounded by
``chunk_size * num_params`` floats, whatever ``q n`` is. :func:`train_dpsgd` asks glibc to
keep freed memory for reuse (:func:`retain_heap`): without it, page faults on the
per-sample matrices took a third of a step.

This module does not charge the privacy budget: the node charges the whole round's
``PoissonSampledDpEvent(q, GaussianDpEvent(sigma))`` composed ``steps`` times at its release
gate, once, before training starts.
"""

from __future__ import annotations

import ctypes
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from accord.errors import InputError
from accord.models.flat import FlatModel
from accord.privacy.private_modules import check_private_module
from accord.secure_random import SecureGenerator

__all__ = [
    "CLIP_EPSILON",
    "DEFAULT_CHUNK_SIZE",
    "PER_SAMPLE_MEMORY_BYTES",
    "DpSgdPlan",
    "DpSgdResult",
    "check_private_module",
    "chunk_size_for",
    "clip_factors",
    "clip_per_sample",
    "clipped_gradient_sum",
    "dpsgd_step",
    "gaussian_noise",
    "per_sample_gradients",
    "per_sample_gradients_and_losses",
    "per_sample_norms",
    "poisson_batch",
    "retain_heap",
    "train_dpsgd",
]

CLIP_EPSILON = 1e-6
"""Added to a per-sample norm before dividing, as Opacus does, so a zero gradient is safe."""

DEFAULT_CHUNK_SIZE = 512
"""At most this many rows per per-sample-gradient call (one call for a usual batch)."""

PER_SAMPLE_MEMORY_BYTES = 256 * 2**20
"""Budget for one chunk's per-sample gradient matrix: large models get smaller chunks."""


@dataclass(frozen=True, slots=True)
class DpSgdPlan:
    """What one round of DP-SGD does; ``noise_multiplier`` is sigma (noise std over C).

    ``noise_multiplier = 0`` is accepted (tests, cross-checks) but gives no privacy; the
    job layer decides whether a plan may run.
    """

    noise_multiplier: float
    clip_norm: float
    sample_rate: float
    steps: int
    momentum: float = 0.0
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier >= 0.0):
            raise InputError(
                f"DP-SGD: noise_multiplier must be finite and >= 0, got {self.noise_multiplier}"
            )
        if not (math.isfinite(self.clip_norm) and self.clip_norm > 0.0):
            raise InputError(f"DP-SGD: clip_norm must be finite and > 0, got {self.clip_norm}")
        if not 0.0 < self.sample_rate <= 1.0:
            raise InputError(f"DP-SGD: sample_rate must be in (0, 1], got {self.sample_rate}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise InputError(f"DP-SGD: steps must be an integer >= 0, got {self.steps!r}")
        if not 0.0 <= self.momentum < 1.0:
            raise InputError(f"DP-SGD: momentum must be in [0, 1), got {self.momentum}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0.0):
            raise InputError(f"DP-SGD: weight_decay must be >= 0, got {self.weight_decay}")


@dataclass(frozen=True, slots=True)
class DpSgdResult:
    """Mean per-example training loss over every sampled row, steps run, mean batch size.

    All three are data-derived: they leave the node only through the release gate.
    """

    mean_loss: float
    steps: int
    mean_batch_size: float


# --- per-sample gradients ----------------------------------------------------------------


def _loss_of_one(
    module: nn.Module,
) -> Callable[[dict[str, torch.Tensor], torch.Tensor, torch.Tensor], torch.Tensor]:
    """The cross-entropy of one example as a function of the named parameters."""

    def loss(params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = functional_call(module, params, (x.unsqueeze(0),))
        return F.cross_entropy(logits, y.unsqueeze(0))

    return loss


def _per_sample_blocks(
    model: FlatModel, x: torch.Tensor, y: torch.Tensor
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per-example gradients as one ``(rows, numel)`` block per parameter, in FlatModel's
    order (the flat vector's layout), and the per-example losses ``(rows,)``."""
    # Views of the flat buffer, detached from any autograd graph the caller may hold.
    views = torch.split(model.flat.detach(), [math.prod(s) for s in model.shapes])
    params = {n: v.view(s) for n, v, s in zip(model.names, views, model.shapes, strict=True)}
    # randomness="different": dropout draws a fresh mask per example, as it would in a
    # batch. That randomness is torch's generator; it is not privacy-relevant (the privacy
    # comes from the Gaussian noise and the Poisson sampling, both from the secure generator).
    per_example = vmap(
        grad_and_value(_loss_of_one(model.module)),
        in_dims=(None, 0, 0),
        randomness="different",
    )
    grads, losses = per_example(params, x, y)
    rows = int(x.shape[0])
    return [grads[n].reshape(rows, -1) for n in model.names], losses


def per_sample_gradients_and_losses(
    model: FlatModel, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients ``(batch, num_params)`` in FlatModel's order, and losses ``(batch,)``.

    One ``vmap`` call over the whole batch (:func:`clipped_gradient_sum` chunks and never
    builds this matrix). The module's train/eval mode is used as it is.
    """
    blocks, losses = _per_sample_blocks(model, x, y)
    return torch.cat(blocks, dim=1), losses


def per_sample_gradients(model: FlatModel, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example gradients of the cross-entropy, shape ``(batch, num_params)``."""
    return per_sample_gradients_and_losses(model, x, y)[0]


def per_sample_norms(grads: torch.Tensor) -> torch.Tensor:
    """The L2 norm of each row of ``(batch, num_params)`` gradients."""
    norms: torch.Tensor = torch.linalg.vector_norm(grads, dim=1)
    return norms


def clip_factors(norms: torch.Tensor, clip_norm: float) -> torch.Tensor:
    """``min(1, C / (norm + 1e-6))`` per example (Opacus's factor)."""
    factors: torch.Tensor = (clip_norm / (norms + CLIP_EPSILON)).clamp_(max=1.0)
    return factors


def clip_per_sample(grads: torch.Tensor, clip_norm: float) -> torch.Tensor:
    """Each row of ``grads`` scaled to norm at most ``clip_norm`` (a new tensor)."""
    return grads * clip_factors(per_sample_norms(grads), clip_norm).unsqueeze(1)


def chunk_size_for(model: FlatModel) -> int:
    """Rows per chunk: :data:`DEFAULT_CHUNK_SIZE`, fewer when the matrix would pass
    :data:`PER_SAMPLE_MEMORY_BYTES` (float32 gradients of every parameter per row)."""
    return max(1, min(DEFAULT_CHUNK_SIZE, PER_SAMPLE_MEMORY_BYTES // (4 * model.size)))


def clipped_gradient_sum(
    model: FlatModel,
    x: torch.Tensor,
    y: torch.Tensor,
    clip_norm: float,
    *,
    out: torch.Tensor,
    chunk_size: int | None = None,
) -> float:
    """Add the sum of the clipped per-example gradients of (x, y) to ``out``.

    The rows are processed in near-equal chunks of at most ``chunk_size`` (default:
    :func:`chunk_size_for`). Returns the sum of the per-example losses (0.0 for an empty
    batch).
    """
    rows = int(x.shape[0])
    if rows == 0:
        return 0.0
    if chunk_size is None:
        chunk_size = chunk_size_for(model)
    if chunk_size < 1:
        raise InputError(f"DP-SGD: chunk_size must be >= 1, got {chunk_size}")
    chunks = -(-rows // chunk_size)
    step = -(-rows // chunks)
    loss_sum = torch.zeros((), dtype=torch.float64)
    for start in range(0, rows, step):
        blocks, losses = _per_sample_blocks(model, x[start : start + step], y[start : start + step])
        squares = torch.stack([torch.linalg.vector_norm(b, dim=1) for b in blocks]).square_()
        factors = clip_factors(squares.sum(0).sqrt_(), clip_norm)
        offset = 0
        for block in blocks:
            width = block.shape[1]
            out[offset : offset + width].addmv_(block.t(), factors)
            offset += width
        loss_sum += losses.sum(dtype=torch.float64)
    return float(loss_sum)


# --- the privacy mechanism: sampling and noise -------------------------------------------


def poisson_batch(generator: SecureGenerator, n: int, sample_rate: float) -> torch.Tensor:
    """Indices (int64, ascending) of a Poisson sample: each row kept with probability q."""
    mask = generator.bernoulli(n, sample_rate)
    return torch.from_numpy(np.flatnonzero(mask))


def gaussian_noise(generator: SecureGenerator, size: int, std: float) -> torch.Tensor:
    """``size`` draws of N(0, std^2), float32, from the secure generator (one counter)."""
    return generator.normal_tensor((size,), std)


def dpsgd_step(
    model: FlatModel,
    x: torch.Tensor,
    y: torch.Tensor,
    plan: DpSgdPlan,
    lr: float,
    generator: SecureGenerator,
    *,
    expected_batch_size: float,
    velocity: torch.Tensor | None = None,
    chunk_size: int | None = None,
) -> float:
    """One DP-SGD step on the already sampled batch (x, y); returns its summed loss.

    ``model.grad`` receives the privatised gradient (clipped sum plus noise, over
    ``expected_batch_size``); weight decay and momentum (``velocity``) then act on it.
    """
    grad, flat = model.grad, model.flat
    grad.zero_()
    with torch.no_grad():
        loss_sum = clipped_gradient_sum(
            model, x, y, plan.clip_norm, out=grad, chunk_size=chunk_size
        )
        if plan.noise_multiplier > 0.0:
            std = plan.noise_multiplier * plan.clip_norm
            grad.add_(gaussian_noise(generator, grad.numel(), std))
        grad.div_(expected_batch_size)
        # Post-processing of the private gradient from here on.
        if plan.weight_decay:
            grad.add_(flat, alpha=plan.weight_decay)
        update = grad
        if velocity is not None:
            velocity.mul_(plan.momentum).add_(grad)
            update = velocity
        flat.add_(update, alpha=-lr)
    return loss_sum


# --- memory -------------------------------------------------------------------------------

_M_TOP_PAD = -2  # glibc's mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 * 2**20  # the most glibc's own dynamic threshold grows to (64-bit)
_MIN_HEAP_PAD = 64 * 2**20
_heap_pad = 0


def retain_heap(pad_bytes: int) -> bool:
    """Ask glibc to keep freed memory for reuse: allocations up to 32 MiB come from the
    heap (M_MMAP_THRESHOLD) and ``pad_bytes`` stay mapped at its top (M_TOP_PAD).

    A DP-SGD step allocates and frees tens of MB of per-sample gradients. By default glibc
    maps much of it fresh and hands it back to the kernel at every step, then page-faults it
    in again: on the Tramer-Boneh CNN (2 threads) 6,000 to 13,000 faults and 30-40% of the
    step. With both settings a step takes none. Process-wide, raised only, never lowered;
    a no-op (False) where the C library is not glibc.
    """
    global _heap_pad
    pad = min(int(pad_bytes), 2**30)
    if pad <= _heap_pad:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - present in glibc only
        mallopt = libc.mallopt
        done = bool(mallopt(ctypes.c_int(_M_MMAP_THRESHOLD), ctypes.c_int(_MMAP_THRESHOLD)))
        done = done and bool(mallopt(ctypes.c_int(_M_TOP_PAD), ctypes.c_int(pad)))
    except (OSError, AttributeError):
        return False
    if done:
        _heap_pad = pad
    return done


def train_dpsgd(
    model: FlatModel,
    x: torch.Tensor,
    y: torch.Tensor,
    plan: DpSgdPlan,
    lr: float,
    generator: SecureGenerator,
    *,
    chunk_size: int | None = None,
) -> DpSgdResult:
    """Run ``plan.steps`` DP-SGD steps on (x, y) in place; the caller charged the budget.

    Every step Poisson-samples rows with ``plan.sample_rate`` from ``generator``, adds noise
    from ``generator``, and divides by the expected batch size ``q n``. Raises the process's
    heap pad (:func:`retain_heap`) to about three per-sample matrices of a batch.
    """
    check_private_module(model.module)
    n = int(x.shape[0])
    if n == 0:
        raise InputError("DP-SGD: the training data has no rows")
    if chunk_size is None:
        chunk_size = chunk_size_for(model)
    if chunk_size < 1:
        raise InputError(f"DP-SGD: chunk_size must be >= 1, got {chunk_size}")
    if int(y.shape[0]) != n:
        raise InputError(f"DP-SGD: {n} rows of features but {int(y.shape[0])} labels")
    expected = plan.sample_rate * n
    rows = min(chunk_size, math.ceil(expected))
    retain_heap(min(PER_SAMPLE_MEMORY_BYTES, max(_MIN_HEAP_PAD, 3 * 4 * rows * model.size)))
    velocity = torch.zeros_like(model.flat) if plan.momentum else None
    if not model.module.training:
        model.module.train()
    loss_total = 0.0
    sampled = 0
    for _ in range(plan.steps):
        index = poisson_batch(generator, n, plan.sample_rate)
        loss_total += dpsgd_step(
            model, x.index_select(0, index), y.index_select(0, index), plan, lr, generator,
            expected_batch_size=expected, velocity=velocity, chunk_size=chunk_size,
        )  # fmt: skip
        sampled += int(index.numel())
    return DpSgdResult(
        mean_loss=loss_total / sampled if sampled else math.nan,
        steps=plan.steps,
        mean_batch_size=sampled / plan.steps if plan.steps else 0.0,
    )
