"""Distributed DP with Skellam noise: every party noises its own quantized update.

The Skellam mechanism of Agarwal, Kairouz and Liu 2021 ("The Skellam Mechanism for
Differentially Private Federated Learning", NeurIPS 2021, arXiv:2110.04995). Under secure
aggregation each party adds integer noise to its quantized update *before masking*, so
that the coordinator learns only the sum of updates plus the sum of noises: no one, the
coordinator included, has to be trusted to add noise.

Noise
-----
``Sk(mu)``, the symmetric Skellam distribution of variance ``mu`` (the paper's
``Sk_{0,mu}``, with P(X = k) = e^-mu I_k(mu)), is ``P1 - P2`` with ``P1, P2 ~ Poisson(mu/2)``
independent. The sum of independent ``Sk(mu_i)`` is ``Sk(sum mu_i)``: that is why Skellam
is chosen over the distributed discrete Gaussian. Poisson variates come from the node's
:class:`~accord.secure_random.SecureGenerator` only: inversion by sequential search for
``lambda < 10``, PTRS (Hörmann 1993, "The transformed rejection method for generating
Poisson random variables", the algorithm NumPy also uses) above. The acceptance test
evaluates log P(k) as ``x - k log1p(x/lambda) - log(2 pi k)/2 - c(k)`` with ``x = k -
lambda`` and ``c`` the Stirling remainder of log k!, which keeps it accurate to about 1e-9
for the very large ``lambda`` (up to 2**52) that a fine fixed-point scale needs; the
sampler is exact up to that float64 rounding in the rejection test.

Who must be honest: calibration for t survivors minus c colluders
----------------------------------------------------------------
Secure aggregation unmasks a sum only when at least ``t = sampling.min_parties`` parties
survive the round. Up to ``c = privacy.colluding_parties`` of them may collude with the
coordinator and subtract their own noise. The sum then still carries the noise of at least
``h = t - c`` honest parties, ``Sk(h mu)``; ``h`` is lowered to the secure-aggregation floor
when a coordinator that lies about dropouts could isolate a sum of fewer honest inputs
(:func:`isolated_sum_floor`). Each party adds ``Sk(mu)`` with ``mu`` chosen so that
``Sk(h mu)`` meets the target (:func:`calibrate_total_variance`, then divided by ``h``).

Sensitivity (in quantized units, scale ``s = 2**scale_bits``)
--------------------------------------------------------------
Each node clips its float update to L2 norm ``S - sqrt(d)/s`` (``accord.fl.node``) and
rounds stochastically; every coordinate moves by less than one step, so the rounded
integer vector has norm ``< s S`` *deterministically* (the naive bound
``||x||_2 + sqrt(d)/s`` that the paper tightens with conditional randomized rounding; no
delta is spent on the rounding). Accord's adjacency is one *record* added or removed,
which can move the clipped update anywhere in the ball: record-level ``Delta_2 = 2 s S``
(party-level, a whole party removed: ``s S``). For an integer vector ``v``,
``||v||_1 <= ||v||_2**2`` and ``||v||_1 <= sqrt(d) ||v||_2``, so ``Delta_1 =
min(Delta_2**2, sqrt(d) Delta_2)`` (the first needs no ``d``; both are the paper's).
No random rotation is applied: the analysis does not need one, and the per-coordinate clip
``protection.clip_range`` plus the noise's tail bound keep the sum from wrapping.

Privacy (RDP, then zCDP)
------------------------
Agarwal, Kairouz and Liu 2021, Theorem 3.5 (the multi-dimensional Skellam mechanism):
for integer ``alpha > 1`` the mechanism with noise ``Sk(mu)`` is ``(alpha, eps(alpha))``-RDP
with::

    eps(alpha) <= alpha Delta_2**2 / (2 mu)
                  + min(((2 alpha - 1) Delta_2**2 + 6 Delta_1) / (4 mu**2),
                        3 Delta_1 / (2 mu))

The first term is the Gaussian's; the rest is the price of discreteness. The theorem is
stated for integer orders; at a fractional order ``alpha`` we use ``eps(ceil(alpha))``
(Rényi divergence does not decrease with the order), which is what makes the bound at
orders just above an integer, e.g. 1.1, drive ``rho``. The round is recorded as
``ZCDpEvent(rho)`` with ``rho`` the smallest value such that ``rho * alpha`` bounds the RDP
bound at every order of :data:`~accord.privacy.accounting.RDP_ORDERS`: the RDP accountant
composes it there and converts to (epsilon, delta) exactly as for any other event.

Wrap-around
-----------
The ring must hold the deterministic bound on the clipped, quantized sum *plus* the noise
of up to ``n`` parties, ``Sk(n mu)``. :func:`noise_tail_bound` gives ``a`` with
``P(max_i |N_i| >= a) <= 1e-9`` over all ``d`` coordinates, from the Chernoff bound of the
Skellam distribution, ``P(N >= a) <= exp(M (sqrt(1 + y**2) - 1) - a asinh(y))`` with
``y = a / M`` and ``M = n mu`` (its moment generating function is ``exp(M (cosh t - 1))``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from accord.errors import JobFileError

if TYPE_CHECKING:
    from dp_accounting import DpEvent

    from accord.job import Job
    from accord.secure_random import SecureGenerator

WRAP_PROBABILITY = 1e-9
"""The largest probability that a round's noisy sum wraps around the ring."""

_PTRS_MIN_LAMBDA = 10.0
_MAX_LAMBDA = 2.0**52  # k must stay an exact float64 integer
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


# -- sampling ------------------------------------------------------------------------------


def poisson(rng: SecureGenerator, lam: float, n: int) -> npt.NDArray[np.int64]:
    """``n`` independent Poisson(``lam``) variates, from ``rng`` only."""
    lam = float(lam)
    if not (math.isfinite(lam) and 0.0 <= lam <= _MAX_LAMBDA):
        raise ValueError(f"lambda must be in [0, 2**52], got {lam!r}")
    if n == 0 or lam == 0.0:
        return np.zeros(n, dtype=np.int64)
    if lam < _PTRS_MIN_LAMBDA:
        return _poisson_inversion(rng, lam, n)
    return _poisson_ptrs(rng, lam, n)


def skellam(rng: SecureGenerator, variance: float, n: int) -> npt.NDArray[np.int64]:
    """``n`` independent symmetric Skellam variates of variance ``variance``:
    Poisson(variance/2) - Poisson(variance/2)."""
    return poisson(rng, variance / 2, n) - poisson(rng, variance / 2, n)


def _poisson_inversion(rng: SecureGenerator, lam: float, n: int) -> npt.NDArray[np.int64]:
    """Sequential search of the CDF (lambda < 10: at most a few dozen steps)."""
    u = rng.uniform(n)
    k = np.zeros(n, dtype=np.int64)
    p = math.exp(-lam)
    cdf = p
    active = u > cdf
    step = 0
    while bool(active.any()):
        step += 1
        p *= lam / step
        cdf += p
        k[active] += 1
        active &= u > cdf
        if p < 1e-300 and step > lam:
            # u beyond the float64 CDF (probability about 2**-52): a rounding artefact.
            break
    return k


def _log_pmf(k: npt.NDArray[np.float64], lam: float) -> npt.NDArray[np.float64]:
    """log P(K = k) for Poisson(lam), k >= 0, accurate for very large lam (module doc)."""
    out = np.empty_like(k)
    small = k < 10
    if bool(small.any()):
        ks = k[small]
        out[small] = -lam + ks * math.log(lam) - np.array([math.lgamma(v + 1) for v in ks])
    big = ~small
    if bool(big.any()):
        kb = k[big]
        x = kb - lam
        inv = 1.0 / kb
        inv2 = inv * inv
        stirling = inv * (1 / 12 - inv2 * (1 / 360 - inv2 / 1260))
        out[big] = x - kb * np.log1p(x / lam) - 0.5 * np.log(kb) - _HALF_LOG_2PI - stirling
    return out


def _poisson_ptrs(rng: SecureGenerator, lam: float, n: int) -> npt.NDArray[np.int64]:
    """Hörmann's PTRS, vectorised: draw for every missing variate, keep the accepted."""
    slam = math.sqrt(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    log_inv_alpha = math.log(1.1239 + 1.1328 / (b - 3.4))
    vr = 0.9277 - 3.6224 / (b - 2)
    out = np.empty(n, dtype=np.int64)
    missing = np.arange(n)
    while missing.size:
        m = missing.size
        draws = rng.uniform(2 * m)
        u = draws[:m] - 0.5
        v = draws[m:]
        us = 0.5 - np.abs(u)
        k = np.floor((2 * a / us + b) * u + lam + 0.43)
        accept = (us >= 0.07) & (v <= vr)
        hard = ~accept & (k >= 0) & ~((us < 0.013) & (v > us))
        if bool(hard.any()):
            kh = k[hard]
            lhs = np.log(v[hard]) + log_inv_alpha - np.log(a / (us[hard] * us[hard]) + b)
            accept[hard] = lhs <= _log_pmf(kh, lam)
        out[missing[accept]] = k[accept].astype(np.int64)
        missing = missing[~accept]
    return out


# -- privacy analysis ----------------------------------------------------------------------


def skellam_rdp(alpha: int, l2: float, l1: float, variance: float) -> float:
    """Agarwal, Kairouz and Liu 2021, Theorem 3.5: the RDP at integer order ``alpha`` of
    the Skellam mechanism of variance ``variance`` for sensitivities ``l2``, ``l1``."""
    if alpha < 2 or int(alpha) != alpha:
        raise ValueError(f"the theorem holds for integer orders alpha > 1, got {alpha}")
    mu = float(variance)
    gaussian = alpha * l2**2 / (2 * mu)
    return gaussian + min(((2 * alpha - 1) * l2**2 + 6 * l1) / (4 * mu**2), 3 * l1 / (2 * mu))


def l1_sensitivity(l2: float, dimension: int | None = None) -> float:
    """Delta_1 of an integer vector of L2 norm ``l2``: min(l2**2, sqrt(d) l2)."""
    bound = l2**2
    if dimension is not None:
        bound = min(bound, math.sqrt(dimension) * l2)
    return bound


def skellam_rho(l2: float, variance: float, dimension: int | None = None) -> float:
    """The smallest rho with rho * alpha >= the RDP bound at every accountant order (at a
    fractional order, the bound at the next integer order)."""
    from accord.privacy.accounting import RDP_ORDERS

    l1 = l1_sensitivity(l2, dimension)
    return max(
        skellam_rdp(max(2, math.ceil(alpha)), l2, l1, variance) / alpha for alpha in RDP_ORDERS
    )


def zcdp_epsilon(rho: float, rounds: int, delta: float) -> float:
    """Epsilon at ``delta`` of ``rounds`` rounds of ZCDpEvent(rho), by the RDP accountant."""
    from dp_accounting import SelfComposedDpEvent, ZCDpEvent

    from accord.privacy.accounting import epsilon

    return epsilon(SelfComposedDpEvent(ZCDpEvent(rho), rounds), delta, "rdp")


def calibrate_total_variance(
    target_epsilon: float, delta: float, rounds: int, l2: float, dimension: int | None = None
) -> float:
    """The smallest total Skellam variance (to 0.1%) whose ``rounds`` rounds meet
    ``target_epsilon`` at ``delta``: bisection on log variance (epsilon falls with it)."""

    def eps(variance: float) -> float:
        return zcdp_epsilon(skellam_rho(l2, variance, dimension), rounds, delta)

    low = high = l2**2
    while eps(high) > target_epsilon:
        high *= 4
    while eps(low) <= target_epsilon:
        low /= 4
    while high / low > 1.001:
        mid = math.sqrt(low * high)
        if eps(mid) <= target_epsilon:
            high = mid
        else:
            low = mid
    return high


def noise_tail_bound(
    total_variance: float, dimension: int, probability: float = WRAP_PROBABILITY
) -> int:
    """An integer ``a`` with P(some coordinate of Sk(total_variance)**d has |N| >= a) <=
    ``probability`` (Chernoff bound, module doc, union over 2 d tails)."""
    m = float(total_variance)
    if m <= 0:
        return 0
    budget = math.log(probability / (2 * max(dimension, 1)))

    def log_tail(a: float) -> float:
        y = a / m
        return m * (math.sqrt(1 + y * y) - 1) - a * math.asinh(y)

    high = max(1.0, math.sqrt(m))
    while log_tail(high) > budget:
        high *= 2
    low = 0.0
    while high - low > max(1.0, 1e-9 * high):
        mid = (low + high) / 2
        if log_tail(mid) > budget:
            low = mid
        else:
            high = mid
    return math.ceil(high)


# -- the job's settings --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SkellamSettings:
    """Distributed Skellam noise as every side derives it from the job."""

    party_variance: float
    """mu: the variance each party adds, per coordinate, in quantized units."""
    honest_parties: int
    """t - c: the parties whose noise the sum always carries."""
    scale: float
    clip_norm: float
    rho: float
    """Record-level zCDP of one round (Delta_2 = 2 s S)."""
    party_rho: float
    """Party-level zCDP of one round (Delta_2 = s S)."""

    @property
    def honest_variance(self) -> float:
        return self.honest_parties * self.party_variance

    @property
    def noise_multiplier(self) -> float:
        """The honest noise's std over the clip norm, in float units (comparable to z)."""
        return math.sqrt(self.honest_variance) / self.scale / self.clip_norm

    def record_event(self) -> DpEvent:
        from dp_accounting import ZCDpEvent

        return ZCDpEvent(self.rho)


def isolated_sum_floor(job: Job, roster_size: int) -> int:
    """The fewest honest inputs in any sum a coordinator that lies about dropouts can get
    unmasked, over every round size from ``min_parties`` to the roster: ``t - t1 + 1`` in
    a sparse SecAgg+ graph, ``t - A`` in a complete one (``accord.protect.graph``)."""
    from accord.errors import SecAggParameterError, SecAggTooFewError
    from accord.protect.graph_params import choose_graph_params

    protection, t = job.protection, job.sampling.min_parties
    floor = roster_size
    for n in range(max(3, t), roster_size + 1):
        try:
            graph = choose_graph_params(
                n, roster_size=roster_size, gamma=protection.max_corrupt_fraction,
                delta=protection.max_dropout_fraction, min_parties=t, strict=False,
            )  # fmt: skip
        except (SecAggParameterError, SecAggTooFewError):
            continue  # no round of this size can run
        if graph.complete:
            floor = min(floor, graph.threshold - graph.corrupt)
        else:
            floor = min(floor, graph.threshold - graph.max_corrupt_neighbours + 1)
    return floor


def skellam_settings(job: Job, roster_size: int) -> SkellamSettings:
    """The job's distributed-noise settings for a roster of ``roster_size`` parties
    (refuses settings that cannot be honoured).

    The honest parties whose noise every unmasked sum carries: ``t - c`` with ``t =
    min_parties`` and ``c = colluding_parties``, and never more than the secure
    aggregation floor of :func:`isolated_sum_floor` (a coordinator that claims live parties
    dropped out can isolate a sum of that many honest inputs)."""
    privacy, protection = job.privacy, job.protection
    t, c = job.sampling.min_parties, privacy.colluding_parties
    if c >= t:
        raise JobFileError(
            f"privacy.colluding_parties = {c} must be below sampling.min_parties = {t}: the "
            "noise of at least one honest survivor must remain in every unmasked sum"
        )
    honest = max(1, min(t - c, isolated_sum_floor(job, roster_size)))
    return _settings(
        privacy.target_epsilon, privacy.noise_multiplier, privacy.delta, job.job.rounds,
        privacy.clip_norm, protection.scale, honest,
    )  # fmt: skip


@functools.lru_cache(maxsize=32)
def _settings(
    target_epsilon: float | None,
    noise_multiplier: float | None,
    delta: float,
    rounds: int,
    clip_norm: float,
    scale: float,
    honest: int,
) -> SkellamSettings:
    record_l2 = 2 * scale * clip_norm
    if noise_multiplier is not None:
        # z as in DP-FedAvg: the honest parties' noise has std z S (party level).
        total = (noise_multiplier * clip_norm * scale) ** 2
    else:
        assert target_epsilon is not None
        total = calibrate_total_variance(target_epsilon, delta, rounds, record_l2)
    party_variance = total / honest
    if party_variance / 2 > _MAX_LAMBDA:
        raise JobFileError(
            "privacy: the distributed noise is too large for the fixed-point scale; lower "
            "protection.scale_bits"
        )
    return SkellamSettings(
        party_variance=party_variance,
        honest_parties=honest,
        scale=scale,
        clip_norm=clip_norm,
        rho=skellam_rho(record_l2, total),
        party_rho=skellam_rho(record_l2 / 2, total),
    )
