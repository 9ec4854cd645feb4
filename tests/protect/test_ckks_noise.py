"""The CKKS error bounds and the flooding formula, checked against their definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from accord.protect import ckks_noise as cn
from accord.protect.ckks import AGGREGATION, AGGREGATION_FLOODED, PRESETS, SCORING, CkksParams


def test_presets_meet_the_he_standard_for_128_bits() -> None:
    for params in PRESETS.values():
        limit = cn.HE_STANDARD_MAX_MODULUS_BITS[params.poly_modulus_degree]
        assert params.total_modulus_bits <= limit
    assert (AGGREGATION.poly_modulus_degree, AGGREGATION.coeff_mod_bit_sizes) == (8192, (60, 40))
    assert AGGREGATION_FLOODED.coeff_mod_bit_sizes == (60, 40, 60)
    assert SCORING.total_modulus_bits == 240
    assert AGGREGATION.max_abs_value == 2.0**18


def test_params_below_128_bits_are_refused() -> None:
    with pytest.raises(ValueError, match="128-bit"):
        CkksParams("weak", 4096, (60, 60), 40, "symmetric")
    with pytest.raises(ValueError, match="ring degree"):
        CkksParams("odd", 3000, (60, 40), 40, "symmetric")


@pytest.mark.parametrize(("m", "bits"), [(8192, 41.0), (2**20, 41.0), (100, 60.0)])
def test_norm_tail_factor_solves_the_chernoff_bound(m: int, bits: float) -> None:
    factor = cn.norm_tail_factor(m, bits)
    d = factor - 1.0
    # exp(-(m/2)(d - ln(1+d))) = 2^-bits
    assert (m / 2) * (d - math.log1p(d)) == pytest.approx(bits * math.log(2), rel=1e-9)


def test_norm_tail_factor_holds_empirically() -> None:
    # Centred binomial(21) coordinates: proxy 10.5; 200 draws of ||X||^2 never exceed it.
    rng = np.random.default_rng(0)
    m = 4096
    factor = cn.norm_tail_factor(m, 20)
    coins = rng.integers(0, 2, size=(200, m, 21)) - rng.integers(0, 2, size=(200, m, 21))
    sq = (coins.sum(axis=2) ** 2).sum(axis=1)
    assert np.all(sq <= m * cn.ERROR_PROXY * factor)


def test_embedding_norm_bound_holds_for_ternary_polynomials() -> None:
    rng = np.random.default_rng(1)
    n = 1024
    bound = cn.embedding_norm_bound(n, cn.TERNARY_PROXY, 20)
    twist = np.exp(1j * np.pi * np.arange(n) / n)  # zeta^i; the FFT then gives a(zeta^(2k+1))
    for _ in range(50):
        a = rng.integers(-1, 2, size=n)
        values = np.fft.fft(a * twist)
        assert np.max(np.abs(values)) <= bound
        # Parseval for the canonical embedding, used for every slot-domain bound.
        assert np.sum(np.abs(values) ** 2) == pytest.approx(n * np.sum(a**2))


def test_flooding_sigma_gives_the_stated_statistical_distance() -> None:
    shift = 3.7e-9
    sigma = cn.flooding_sigma(shift, releases=1, security_bits=30)
    # Exact distance of two Gaussians shifted by ||shift||: 2 Phi(B / (2 sigma)) - 1.
    exact = 2 * norm.cdf(shift / (2 * sigma)) - 1
    assert exact <= 2.0**-30
    # Pinsker over R releases: sqrt(R) B / (2 sigma) <= 2^-30 (1 - 2^-11).
    sigma_100 = cn.flooding_sigma(shift, releases=100, security_bits=30)
    assert sigma_100 == pytest.approx(10 * sigma)
    assert math.sqrt(100) * shift / (2 * sigma_100) <= 2.0**-30
    assert sigma == pytest.approx(shift * 2.0**29 / (1 - 2.0**-11))


def test_flooding_sigma_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        cn.flooding_sigma(-1.0)
    with pytest.raises(ValueError):
        cn.flooding_sigma(1.0, releases=0)


def test_symmetric_sum_bound_scales_as_derived() -> None:
    one = cn.fresh_symmetric_sum_bound(8192, 2.0**40, 1, 1, 40)
    hundred = cn.fresh_symmetric_sum_bound(8192, 2.0**40, 100, 1, 40)
    assert hundred == pytest.approx(10 * one)
    expected = math.sqrt(4096) * math.sqrt(8192 * 10.5 * cn.norm_tail_factor(8192, 40)) / 2**40
    assert one == pytest.approx(expected)
