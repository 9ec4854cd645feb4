"""DP-FedAvg's mechanism: clipping, the noisy mean's scale, adaptive clipping, the events."""

from __future__ import annotations

import math

import pytest
import torch
from dp_accounting import GaussianDpEvent, PoissonSampledDpEvent

from accord.errors import JobFileError
from accord.job import Job
from accord.privacy.accounting import dpsgd_event, epsilon
from accord.privacy.client_dp import (
    ClientDpAggregator,
    ClientDpSettings,
    ClippedUpdate,
    CoordinatorNoise,
    client_dp_settings,
    clip_update,
)
from accord.secure_random import SecureGenerator

TEST_KEY = bytes(range(32))  # a fixed key, for tests only: the draws are then repeatable


def settings(**changes: object) -> ClientDpSettings:
    values: dict[str, object] = {
        "noise_multiplier": 1.0, "clip_norm": 1.0, "sample_rate": 1.0, "rounds": 10,
        "delta": 1e-5, "expected_parties": 100.0, "adaptive": False, "target_quantile": 0.5,
        "clip_learning_rate": 0.2, "clipped_count_stddev": 0.0,
    }  # fmt: skip
    values.update(changes)
    return ClientDpSettings(**values)  # type: ignore[arg-type]


def job_with(privacy: dict[str, object], sampling: dict[str, object] | None = None) -> Job:
    return Job.model_validate({
        "job": {"name": "t", "rounds": 20},
        "data": {
            "source": "sklearn", "name": "digits", "partition": {"kind": "iid", "parties": 50}
        },
        "model": {"kind": "logreg"},
        "sampling": sampling or {"mode": "poisson", "rate": 0.2},
        "privacy": privacy,
    })  # fmt: skip


@pytest.mark.parametrize("scale", [0.01, 0.5, 1.0, 3.0, 1e4])
def test_clipping_bounds_the_norm_and_keeps_small_updates(scale: float) -> None:
    delta = torch.randn(1000, generator=torch.Generator().manual_seed(1))
    delta = delta / torch.linalg.vector_norm(delta) * scale
    clipped, within = clip_update(delta, 1.0)
    assert float(torch.linalg.vector_norm(clipped)) <= 1.0
    assert within == (scale <= 1.0)
    if within:
        assert torch.equal(clipped, delta)
    else:  # same direction
        assert float(torch.nn.functional.cosine_similarity(clipped, delta, dim=0)) > 1 - 1e-6


def test_the_noisy_mean_is_the_clipped_sum_over_m_plus_noise_of_the_stated_scale() -> None:
    s = settings(expected_parties=4.0, noise_multiplier=2.0, clip_norm=0.5)
    aggregator = ClientDpAggregator(s, CoordinatorNoise(SecureGenerator(TEST_KEY)))
    dim = 200_000
    ones = torch.ones(dim) / math.sqrt(dim)  # norm 1: clipped to 0.5
    updates = [ClippedUpdate(ones * 0.1, True), ClippedUpdate(ones, False)]
    mean = aggregator.noisy_mean(updates, torch.zeros(dim))
    exact = (ones * 0.1 + ones * 0.5) / 4.0
    residual = (mean - exact).double()
    std = 2.0 * 0.5 / 4.0
    # The sample standard deviation of 200,000 normals is within 1% of the truth with
    # overwhelming probability (its relative error is about 0.16% per sigma).
    assert float(residual.std()) == pytest.approx(std, rel=0.01)
    assert abs(float(residual.mean())) < 6 * std / math.sqrt(dim)


def test_adaptive_clipping_moves_the_norm_toward_the_quantile() -> None:
    s = settings(adaptive=True, noise_multiplier=0.5, clipped_count_stddev=5.0)
    # Andrew et al., Theorem 1: the update noise leaves room for the count's noise.
    assert s.update_noise_multiplier == pytest.approx((0.5**-2 - 10.0**-2) ** -0.5)
    aggregator = ClientDpAggregator(s, CoordinatorNoise(SecureGenerator(TEST_KEY)))
    small = [ClippedUpdate(torch.full((10,), 0.01), True) for _ in range(100)]
    aggregator.noisy_mean(small, torch.zeros(10))
    # All 100 updates within the norm: the fraction is about 1 (noise 5/100 = 0.05), so
    # the norm shrinks by about exp(-0.2 * 0.5); six standard deviations either side:
    assert math.exp(-0.2 * 0.8) < aggregator.clip_norm < math.exp(-0.2 * 0.2)
    shrunk = aggregator.clip_norm
    big = [ClippedUpdate(torch.full((10,), 100.0), False) for _ in range(100)]
    aggregator.noisy_mean(big, torch.zeros(10))
    assert aggregator.clip_norm > shrunk  # none within: it grows again
    state = aggregator.state_dict()
    fresh = ClientDpAggregator(s, CoordinatorNoise(SecureGenerator.fresh()))
    fresh.load_state_dict(state)
    assert fresh.clip_norm == aggregator.clip_norm


def test_each_node_charges_the_record_level_event_with_half_the_noise_multiplier() -> None:
    s = client_dp_settings(job_with({"mode": "dpfedavg", "noise_multiplier": 1.2}), 50)
    assert s.sample_rate == 0.2 and s.expected_parties == pytest.approx(10.0)
    assert s.record_event() == PoissonSampledDpEvent(0.2, GaussianDpEvent(0.6))
    assert s.party_event(20) == dpsgd_event(1.2, 0.2, 20)


def test_a_target_epsilon_calibrates_the_record_level_charge() -> None:
    job = job_with({"mode": "dpfedavg", "target_epsilon": 3.0})
    s = client_dp_settings(job, 50)
    charged = epsilon(dpsgd_event(s.noise_multiplier / 2, 0.2, 20), 1e-5)
    assert charged <= 3.0
    assert charged == pytest.approx(3.0, rel=0.01)


def test_settings_the_mechanism_cannot_honour_are_refused() -> None:
    with pytest.raises(ValueError, match="Poisson client sampling"):
        job_with({"mode": "dpfedavg", "noise_multiplier": 1.0}, {"mode": "count", "count": 5})
    adaptive = {"mode": "dpfedavg", "noise_multiplier": 1.0, "adaptive_clipping": True}
    # Default sigma_b = 10 expected parties / 20 = 0.5, not above z / 2 = 0.5.
    with pytest.raises(JobFileError, match=r"clipped_count_stddev = 0\.5 must exceed"):
        client_dp_settings(job_with(adaptive), 50)
    assert client_dp_settings(job_with({**adaptive, "clipped_count_stddev": 2.0}), 50).adaptive
    with pytest.raises(ValueError, match="adaptive_clipping needs"):
        job_with({"mode": "dpsgd", "noise_multiplier": 1.0, "adaptive_clipping": True})
    with pytest.raises(ValueError, match="target_quantile needs"):
        job_with({"mode": "dpfedavg", "noise_multiplier": 1.0, "target_quantile": 0.3})
