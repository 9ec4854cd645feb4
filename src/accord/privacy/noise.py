"""Noise for DP statistics, from OpenDP's samplers, and intervals from its public law.

OpenDP's samplers bring their own secure source and sample exactly (integers, or floats
without the floating-point attack on naive Laplace noise, Mironov 2012). The intervals use
only the noise's public distribution, never the data.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

NoiseKind = Literal["laplace", "discrete_laplace"]


@dataclass(frozen=True)
class Noise:
    """The public description of a released component's noise."""

    kind: NoiseKind
    scale: float


# --- OpenDP noise --------------------------------------------------------------------------


def _opendp() -> Any:
    import opendp.prelude as dp

    dp.enable_features("contrib")
    return dp


def discrete_laplace_noise(values: Sequence[int], scale: float) -> NDArray[np.int64]:
    """``values`` plus OpenDP's discrete Laplace noise of ``scale`` (exact integer sampler)."""
    dp = _opendp()
    meas = dp.m.make_laplace(
        dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int), float(scale)
    )
    return np.asarray(meas([int(v) for v in values]), dtype=np.int64)


def laplace_noise(values: Sequence[float], scale: float) -> NDArray[np.float64]:
    """``values`` plus OpenDP's Laplace noise of ``scale`` (sampled exactly on a fine grid)."""
    dp = _opendp()
    meas = dp.m.make_laplace(
        dp.vector_domain(dp.atom_domain(T=float, nan=False)),
        dp.l1_distance(T=float),
        float(scale),
    )
    return np.asarray(meas([float(v) for v in values]), dtype=np.float64)


# --- tail bounds (noise distribution only) -------------------------------------------------


def _discrete_tail(scale: float, alpha: float) -> float:
    """Smallest integer t with P(|K| > t) <= alpha for one discrete Laplace of ``scale``."""
    r = math.exp(-1.0 / scale)
    if r == 0.0:  # a scale so small that the noise is 0 in double precision
        return 0.0
    # P(|K| > t) = 2 r^(t+1) / (1 + r)
    t = math.log(alpha * (1 + r) / 2) / math.log(r) - 1
    return float(max(0, math.ceil(t - 1e-12)))


def _log_mgf(kind: NoiseKind, scale: float, lam: NDArray[np.float64]) -> NDArray[np.float64]:
    if kind == "laplace":
        out: NDArray[np.float64] = -np.log1p(-((scale * lam) ** 2))
        return out
    r = math.exp(-1.0 / scale)
    return np.asarray(
        2 * math.log1p(-r) - np.log1p(-r * np.exp(lam)) - np.log1p(-r * np.exp(-lam)),
        dtype=np.float64,
    )


@functools.lru_cache(maxsize=256)
def _iid_sum_halfwidth(noise: Noise, k: int, alpha: float) -> float:
    """t with P(|sum of k iid copies of noise| > t) <= alpha, from the exact distribution.

    Laplace: the sum of k Laplace(b) is b (G1 - G2) with G1, G2 iid Gamma(k, 1); its tail
    is integrated numerically (error far below 1e-9, added as slack). Discrete Laplace: the
    probability mass function convolved k times on a support truncated where each copy's
    remaining mass is below 1e-13 (k times that mass is added to the tail).
    """
    from scipy import integrate, optimize, stats  # type: ignore[import-untyped]

    if noise.kind == "laplace":
        gamma = stats.gamma(k)

        def tail(t: float) -> float:  # P(|S| > t) = 2 P(G1 - G2 > t / b)
            x = t / noise.scale
            value, _ = integrate.quad(lambda g: gamma.sf(x + g) * gamma.pdf(g), 0, np.inf)
            return 2 * float(value) + 1e-9

        high = noise.scale * (k + math.log(2.0 / alpha)) * 4
        while tail(high) > alpha:
            high *= 2
        return float(optimize.brentq(lambda t: tail(t) - alpha, 0.0, high, xtol=1e-9 * high))
    r = math.exp(-1.0 / noise.scale)
    cut = math.ceil(math.log(1e-13 * (1 + r) / 2) / math.log(r))
    support = np.arange(-cut, cut + 1)
    pmf = (1 - r) / (1 + r) * r ** np.abs(support).astype(np.float64)
    total = pmf
    for _ in range(k - 1):
        total = np.convolve(total, pmf)
    slack = k * 2 * r ** (cut + 1) / (1 + r)
    offsets = np.arange(-(total.size // 2), total.size // 2 + 1)
    # P(|S| > t) for t = 0, 1, ...: the mass outside [-t, t].
    inside = (
        np.cumsum(total[offsets >= 0])
        + np.concatenate([[0.0], np.cumsum(total[offsets < 0][::-1])])[: (offsets >= 0).sum()]
    )
    outside = 1.0 - inside + slack + 1e-12
    hits = np.nonzero(outside <= alpha)[0]
    if hits.size == 0:
        return float(total.size)  # cannot happen for alpha > k * 1e-13
    return float(hits[0])


def noise_halfwidth(terms: Sequence[tuple[Noise, float, int]], alpha: float) -> float:
    """t with P(|sum of weight * noise| > t) <= alpha, the noises independent and symmetric.

    ``terms``: (noise, weight, how many independent copies). One copy of weight one gets
    its exact tail; otherwise a Chernoff bound minimised over a grid of lambda.
    """
    active = [(n, abs(w), c) for n, w, c in terms if c > 0 and w != 0]
    if not active:
        return 0.0
    if len(active) == 1 and active[0][2] == 1 and active[0][1] == 1.0:
        noise = active[0][0]
        if noise.kind == "laplace":
            return noise.scale * math.log(1.0 / alpha)
        return _discrete_tail(noise.scale, alpha)
    if len({n for n, _, _ in active}) == 1 and all(w == 1.0 for _, w, _ in active):
        return _iid_sum_halfwidth(active[0][0], sum(c for _, _, c in active), alpha)
    lam_max = min(1.0 / (n.scale * w) for n, w, _ in active)
    lam = lam_max * np.linspace(1e-3, 1 - 1e-3, 2000)
    log_m = np.zeros_like(lam)
    for noise, weight, count in active:
        log_m += count * _log_mgf(noise.kind, noise.scale, weight * lam)
    t = float(np.min((log_m + math.log(2.0 / alpha)) / lam))
    if all(n.kind == "discrete_laplace" and w == 1.0 for n, w, _ in active):
        t = float(math.ceil(t - 1e-9))
    return t
