"""Distributed Skellam noise: the sampler, the privacy analysis, the calibration, the ring."""

from __future__ import annotations

import math

import numpy as np
import pytest

from accord.privacy import skellam as sk
from accord.privacy.accounting import RDP_ORDERS
from accord.secure_random import SecureGenerator

# Two-sided normal quantile for a false alarm of 1e-6 (the key is fixed, so the tests are
# deterministic; the threshold says how unlucky a new key would have to be).
Z_1E6 = 4.8916


def _key(tag: int) -> SecureGenerator:
    return SecureGenerator(bytes([tag]) * 32)


@pytest.mark.parametrize("variance", [0.5, 7.0, 40.0, 3.0e4, 2.0e13])
def test_skellam_has_mean_zero_and_the_stated_variance(variance: float) -> None:
    n = 200_000
    x = sk.skellam(_key(1), variance, n).astype(np.float64)
    # Mean: CLT. Sample variance: Var(s^2) ~ (mu_4 - mu^2) / n with mu_4 = 3 mu^2 + mu
    # (Skellam's fourth cumulant equals its variance).
    assert abs(x.mean()) <= Z_1E6 * math.sqrt(variance / n)
    assert abs(x.var() - variance) <= Z_1E6 * math.sqrt((2 * variance**2 + variance) / n)


@pytest.mark.parametrize("lam", [0.3, 4.0, 10.0, 55.5])
def test_poisson_matches_its_distribution(lam: float) -> None:
    """Chi-square against the exact pmf (inversion below 10, PTRS from 10)."""
    from scipy import stats

    n = 100_000
    k = sk.poisson(_key(2), lam, n)
    top = int(stats.poisson.ppf(1 - 1e-4, lam))
    observed = np.bincount(np.minimum(k, top), minlength=top + 1)
    expected = stats.poisson.pmf(np.arange(top + 1), lam) * n
    expected[-1] = stats.poisson.sf(top - 1, lam) * n
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert stats.chi2.sf(chi2, top) > 1e-6


def test_poisson_is_drawn_from_the_secure_generator_only() -> None:
    a, b = _key(3), _key(3)
    assert np.array_equal(sk.poisson(a, 1e6, 1000), sk.poisson(b, 1e6, 1000))
    assert a.counter == b.counter > 0


def test_the_rdp_bound_is_the_theorem_and_tends_to_the_gaussian() -> None:
    # Agarwal, Kairouz and Liu 2021, Theorem 3.5, by hand at alpha = 2, Delta_2 = 2,
    # Delta_1 = 4, mu = 10: 2*4/20 + min((3*4 + 24) / 400, 12 / 20) = 0.4 + 0.09.
    assert sk.skellam_rdp(2, 2.0, 4.0, 10.0) == pytest.approx(0.49)
    # With mu large the extra term vanishes: alpha Delta^2 / (2 mu), the Gaussian's.
    l2, mu = 2.0 * 2**16, (4.0 * 2**16) ** 2
    for alpha in (2, 10, 64):
        gaussian = alpha * l2**2 / (2 * mu)
        assert sk.skellam_rdp(alpha, l2, l2**2, mu) == pytest.approx(gaussian, rel=1e-6)
    with pytest.raises(ValueError):
        sk.skellam_rdp(1, 1.0, 1.0, 1.0)


def test_rho_bounds_the_rdp_at_every_accountant_order() -> None:
    l2, mu = 100.0, 5e4
    rho = sk.skellam_rho(l2, mu)
    l1 = sk.l1_sensitivity(l2)
    for alpha in RDP_ORDERS:
        assert rho * alpha >= sk.skellam_rdp(max(2, math.ceil(alpha)), l2, l1, mu) * (1 - 1e-12)
    # The smallest such rho: it is attained at some order.
    assert any(
        math.isclose(rho * a, sk.skellam_rdp(max(2, math.ceil(a)), l2, l1, mu)) for a in RDP_ORDERS
    )
    assert sk.l1_sensitivity(l2, dimension=100) == pytest.approx(1000.0)


@pytest.mark.parametrize(("target", "rounds"), [(1.0, 1), (3.0, 10), (8.0, 50)])
def test_calibration_meets_the_target_and_is_tight(target: float, rounds: int) -> None:
    l2 = 2 * 2.0**12
    variance = sk.calibrate_total_variance(target, 1e-5, rounds, l2)
    assert sk.zcdp_epsilon(sk.skellam_rho(l2, variance), rounds, 1e-5) <= target
    assert sk.zcdp_epsilon(sk.skellam_rho(l2, variance / 1.01), rounds, 1e-5) > target


def test_the_tail_bound_holds_the_noise() -> None:
    variance, d = 1e6, 1000
    a = sk.noise_tail_bound(variance, d)
    # Just above the Gaussian's Chernoff bound, sqrt(2 log(2 d / 1e-9)) standard deviations.
    gaussian = math.sqrt(2 * math.log(2 * d / 1e-9)) * math.sqrt(variance)
    assert gaussian <= a < 1.01 * gaussian
    x = sk.skellam(_key(4), variance, 200_000)
    assert int(np.abs(x).max()) < a
    assert sk.noise_tail_bound(0.0, d) == 0


def test_the_ring_leaves_room_for_the_noise() -> None:
    from accord.protect import choose_ring_bits

    plain = choose_ring_bits(1.0, 2.0**16, 5)
    noisy = choose_ring_bits(1.0, 2.0**16, 5, noise_bound=sk.noise_tail_bound(5 * 1e12, 100))
    assert noisy > plain
    assert 2 ** (noisy - 1) > 5 * (2**16 + 1) + sk.noise_tail_bound(5 * 1e12, 100)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"mode": "dpsgd", "noise_multiplier": 1.0}, 'needs privacy.mode = "dpfedavg"'),
        (
            {"mode": "dpfedavg", "noise_multiplier": 1.0, "adaptive_clipping": True},
            "adaptive_clipping",
        ),
    ],
)
def test_noise_placement_parties_is_refused_outside_fixed_clip_dpfedavg(
    fields: dict[str, object], message: str
) -> None:
    from pydantic import ValidationError

    from accord.privacy.config import PrivacyConfig

    with pytest.raises(ValidationError, match=message):
        PrivacyConfig.model_validate({**fields, "noise_placement": "parties"})
    with pytest.raises(ValidationError, match="colluding_parties"):
        PrivacyConfig.model_validate({"mode": "dpfedavg", "noise_multiplier": 1.0,
                                      "colluding_parties": 1})  # fmt: skip
