"""CKKS error bounds, and the flooding noise that hides the error when a decryption is released.

Why flooding
------------
A CKKS decryption is approximate: it returns the message plus an error term that depends
on the secret key. Li and Micciancio (EUROCRYPT 2021, "On the security of homomorphic
encryption on approximate numbers") show that whoever sees such a decryption together
with the ciphertext can recover the secret key by linear algebra. Their countermeasure,
studied further by Li, Micciancio, Schultz and Sorrell (CRYPTO 2022, "Securing approximate
homomorphic encryption using differential privacy"), is to add ("flood") noise much larger
than the error before anyone who is not a key holder sees the result.

The bound we use
----------------
Let ``y = decode(m + E)`` be what a key holder decrypts, in float64, and ``y0 = decode(m)``
what a simulator that knows the message but no secret-dependent error would compute. The
key holder releases ``y + z`` with ``z ~ N(0, sigma^2 I)``. For two Gaussians with the same
covariance the Kullback-Leibler divergence is ``||y - y0||^2 / (2 sigma^2)``; over ``R``
releases under one key set (adaptively chosen) the chain rule adds them, and Pinsker's
inequality turns the sum into a statistical distance::

    SD <= sqrt(KL / 2) <= sqrt(R) * B / (2 sigma)    where ||y - y0||_2 <= B.

We choose ``sigma = sqrt(R) * B / (2 * 2^-s * (1 - 2^-11))`` with ``s = 30`` by default;
the remaining ``2^-s * 2^-11`` of the budget covers the (union-bounded) probability that
an error exceeds its high-probability bound. Any key-recovery attack therefore succeeds
against the flooded releases with at most 2^-s more probability than against a simulator
that saw no decryption error at all: ``s`` bits of statistical security. LMSS22 show that
a Renyi-divergence argument allows less noise for search problems such as key recovery;
we keep the more conservative statistical-distance bound.

``B`` has two parts, both derived below: the decryption error itself, in the slot domain,
and twice the float64 rounding of SEAL's decoder (the released numbers are doubles, and
their rounding depends on the exact error). Neither the encoder's rounding of the message
nor its floating-point error is counted: they are functions of the message, which the
simulator knows.

Distributions (SEAL 4, which TenSEAL 0.3 builds on)
---------------------------------------------------
* Error polynomials: centred binomial with 21 coin pairs (variance 10.5, |e| <= 21), or
  SEAL's clipped normal with sigma 3.2. Both are sub-Gaussian with variance proxy at most
  :data:`ERROR_PROXY` = 10.5 (a coin pair ``b - b'`` has moment generating function
  ``cosh(t/2)^2 <= exp(t^2/4)``; a symmetrically clipped normal has a smaller moment
  generating function than the normal).
* Secret key and public-key-encryption mask ``u``: uniform ternary, proxy 2/3 (its moment
  generating function ``(1 + 2 cosh t) / 3 <= exp(t^2/3)``, term by term).

Norms
-----
* For ``m`` independent coordinates with proxy ``v``,
  ``P(||X||^2 >= m v (1 + d)) <= exp(-(m/2)(d - ln(1 + d)))`` (Chernoff with
  ``E exp(l X^2) <= (1 - 2 l v)^(-1/2)``): :func:`norm_tail_factor`.
* Slot domain: decoding maps a coefficient vector ``c`` to the ``N/2`` slot values
  ``c(zeta_k) / Delta``; by Parseval for the canonical embedding,
  ``sum_k |c(zeta_k)|^2 = (N/2) ||c||^2``, so the real parts of the slots have
  ``||Re decode(c)||_2 <= sqrt(N/2) ||c||_2 / Delta``.
* A product ``a * b`` in ``Z[X]/(X^N + 1)`` has ``||a * b||_2 <= lambda(a) ||b||_2`` with
  ``lambda(a) = max_k |a(zeta_k)|`` (multiplication by ``a`` is a normal matrix with those
  eigenvalues). :func:`embedding_norm_bound` bounds ``lambda`` for a random ``a``.
* Float64 decoding: converting coefficients to doubles costs a relative ``u = 2^-53``,
  and a radix-2 FFT of length ``n`` has relative L2 error at most
  ``log2(n) * eta / (1 - log2(n) * eta)`` with ``eta ~ 6.7 u`` (Higham, Accuracy and
  Stability of Numerical Algorithms, Thm 24.2). :func:`decode_rounding_bound` uses
  ``(8 log2(N/2) + 4) u`` times the norm of all decoded slots, which covers both.

Every bound here holds except with probability ``2^-fail_bits`` per random event; the
callers choose ``fail_bits`` with :func:`tail_bits`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from accord.protect.ckks import CkksParams
    from accord.secure_random import SecureGenerator

__all__ = [
    "DEFAULT_SECURITY_BITS",
    "ERROR_PROXY",
    "HE_STANDARD_MAX_MODULUS_BITS",
    "TERNARY_PROXY",
    "UNIT_ROUNDOFF",
    "FloodedRelease",
    "FloodingPlan",
    "aggregate_error_bound",
    "aggregate_flooding",
    "decode_rounding_bound",
    "embedding_norm_bound",
    "flood",
    "flooding_sigma",
    "fresh_symmetric_sum_bound",
    "norm_tail_factor",
    "public_key_linear_bound",
    "tail_bits",
]

HE_STANDARD_MAX_MODULUS_BITS = {
    1024: 27,
    2048: 54,
    4096: 109,
    8192: 218,
    16384: 438,
    32768: 881,
}
"""Largest total coefficient modulus (bits) for 128-bit classical security with a ternary
secret: Homomorphic Encryption Security Standard (Albrecht et al., 2018), Table 1. SEAL
enforces the same table."""

ERROR_PROXY = 10.5
"""Sub-Gaussian variance proxy of SEAL's error coefficients (see the module docstring)."""

TERNARY_PROXY = 2.0 / 3.0
"""Sub-Gaussian variance proxy of a uniform ternary coefficient."""

UNIT_ROUNDOFF = 2.0**-53
"""float64 unit roundoff."""

DEFAULT_SECURITY_BITS = 30
"""Statistical security of a flooded release against key recovery (the issue's floor)."""


def norm_tail_factor(m: int, fail_bits: float) -> float:
    """``1 + d`` such that ``||X||^2 <= m * v * (1 + d)`` except with probability
    ``2^-fail_bits``, for ``m`` independent sub-Gaussian coordinates of proxy ``v``."""
    if m < 1 or fail_bits <= 0:
        raise ValueError("m must be >= 1 and fail_bits > 0")
    target = 2.0 * fail_bits * math.log(2.0) / m

    def excess(d: float) -> float:
        return d - math.log1p(d)

    high = 1.0
    while excess(high) < target:
        high *= 2.0
    low = 0.0
    for _ in range(200):
        mid = (low + high) / 2.0
        if excess(mid) < target:
            low = mid
        else:
            high = mid
    return 1.0 + high


def embedding_norm_bound(n: int, proxy: float, fail_bits: float) -> float:
    """A bound on ``max_k |a(zeta_k)|`` for ``a`` with ``n`` independent coefficients of
    sub-Gaussian proxy ``proxy``, except with probability ``2^-fail_bits``.

    The real and imaginary parts of ``a(zeta_k)`` are sums of independent terms with proxy
    ``proxy * n / 2`` (the squared cosines over one period sum to ``n / 2``), so
    ``P(|a(zeta_k)| >= t) <= 4 exp(-t^2 / (2 proxy n))``; a union bound over the ``n / 2``
    distinct values of ``k`` gives ``t^2 = 2 proxy n (ln(2n) + fail_bits ln 2)``.
    """
    return math.sqrt(2.0 * proxy * n * (math.log(2.0 * n) + fail_bits * math.log(2.0)))


def decode_rounding_bound(n: int, slot_norm: float) -> float:
    """Bound on the L2 float64 error of SEAL's decoder when all ``n / 2`` decoded slots
    have L2 norm at most ``slot_norm`` (see the module docstring)."""
    return (8.0 * math.log2(n / 2) + 4.0) * UNIT_ROUNDOFF * slot_norm


def tail_bits(security_bits: float, releases: int, events_per_release: int) -> float:
    """``fail_bits`` for each high-probability bound, so that all of them together fail
    with probability at most ``2^-security_bits * 2^-11``."""
    return security_bits + 11.0 + math.log2(max(1, releases) * max(1, events_per_release))


def flooding_sigma(shift_bound: float, releases: int = 1, security_bits: float = 30) -> float:
    """The flooding standard deviation: ``sqrt(R) * B / (2 * 2^-s * (1 - 2^-11))``.

    ``shift_bound`` is ``B``, the L2 bound on the secret-dependent part of one release;
    ``releases`` is ``R``, the number of flooded releases under one key set.
    """
    if shift_bound < 0 or not math.isfinite(shift_bound):
        raise ValueError("shift_bound must be finite and non-negative")
    if releases < 1:
        raise ValueError("releases must be >= 1")
    budget = math.pow(2.0, -security_bits) * (1.0 - 2.0**-11)
    return math.sqrt(releases) * shift_bound / (2.0 * budget)


def fresh_symmetric_sum_bound(
    n: int, scale: float, parties: int, chunks: int, fail_bits: float
) -> float:
    """L2 bound (slot domain, real parts) on the error of a sum of ``parties`` fresh
    symmetric-key encryptions, over ``chunks`` ciphertexts of degree ``n``.

    A symmetric encryption ``(-a s + e + m, a)`` decrypts to ``m + e``: the error of the
    sum is ``E = sum_p e_p``, whose ``chunks * n`` coefficients are independent with proxy
    ``parties * ERROR_PROXY``. Its norm is bounded by :func:`norm_tail_factor` and mapped
    to the slots by Parseval: ``sqrt(n/2) ||E||_2 / scale``.
    """
    m = chunks * n
    coef = math.sqrt(m * parties * ERROR_PROXY * norm_tail_factor(m, fail_bits))
    return math.sqrt(n / 2.0) * coef / scale


def public_key_linear_bound(
    n: int,
    scale: float,
    weights_l2: float,
    features: int,
    chunks: int,
    fail_bits: float,
) -> float:
    """L2 bound (slot domain, real parts) on the error of ``sum_j w_j ct_j + ct0``, where
    each ``ct_j`` is a fresh public-key encryption at scale ``scale``, the weights are
    encoded at the same scale (``weights_l2`` is ``||w||_2`` of the real weights) and
    ``ct0`` is the evaluator's own fresh public-key encryption at the product scale, over
    ``chunks`` ciphertext groups.

    A public-key encryption decrypts to ``m + u e + e1 + e2 s`` (``u`` ternary, fresh;
    ``e`` the public key's error; ``s`` the secret key). With ``a_j = scale * w_j`` and
    ``a_0 = 1`` the weighted error is ``(sum a_j u_j) e + sum a_j e1_j + (sum a_j e2_j) s``,
    whose three random vectors have independent coordinates with proxies ``||a||^2``
    times 2/3, 10.5 and 10.5. Hence ``||G||_2 <= ||a||_2 sqrt(n tau) (sqrt(10.5) (1 + lambda_s) +
    sqrt(2/3) lambda_e)`` with ``tau`` from :func:`norm_tail_factor` and ``lambda`` from
    :func:`embedding_norm_bound`, plus the message-encoding rounding, which the evaluator
    does not know: ``sum_j |a_j| sqrt(n) / 2 <= ||a||_2 sqrt(features * n) / 2``.
    Mapped to the slots at the product scale ``scale^2``.
    """
    tau = norm_tail_factor(n, fail_bits)
    lambda_s = embedding_norm_bound(n, TERNARY_PROXY, fail_bits)
    lambda_e = embedding_norm_bound(n, ERROR_PROXY, fail_bits)
    a_norm = math.sqrt((scale * weights_l2) ** 2 + 1.0)
    noise = (
        a_norm
        * math.sqrt(n * tau)
        * (math.sqrt(ERROR_PROXY) * (1.0 + lambda_s) + math.sqrt(TERNARY_PROXY) * lambda_e)
    )
    rounding = a_norm * math.sqrt(features * n) / 2.0
    per_chunk = math.sqrt(n / 2.0) * (noise + rounding) / (scale * scale)
    return math.sqrt(chunks) * per_chunk


# --- aggregation: error bounds and flooding plans ---------------------------------------


def _symmetric_only(params: CkksParams) -> None:
    if params.encryption != "symmetric":
        raise ValueError(f"aggregation bounds assume a symmetric preset, not {params.name!r}")


def aggregate_error_bound(
    params: CkksParams, *, parties: int, length: int, party_norm_bound: float
) -> float:
    """L2 bound on ``decrypt_sum(...) - exact sum`` when each of ``parties`` vectors of
    ``length`` values has L2 norm at most ``party_norm_bound``: the encryption error
    (except with probability 2^-40), the encoder's rounding (at most 1/2 per coefficient
    and party) and float64 encoding and decoding."""
    _symmetric_only(params)
    n, chunks = params.poly_modulus_degree, math.ceil(length / params.slots)
    noise = fresh_symmetric_sum_bound(n, params.scale, parties, chunks, 40)
    rounding = math.sqrt(n / 2) * parties * math.sqrt(chunks * n) / 2 / params.scale
    encode_fp = parties * decode_rounding_bound(n, party_norm_bound)
    decode_fp = decode_rounding_bound(n, parties * party_norm_bound + noise + rounding)
    return noise + rounding + encode_fp + decode_fp


@dataclass(frozen=True)
class FloodingPlan:
    """The flooding of one release: ``sigma`` per value, from ``shift_bound`` (the L2 bound
    on its secret-dependent part: ``error_bound`` from CKKS plus ``rounding_bound`` from
    float64 decoding), for ``releases`` releases at ``security_bits``."""

    sigma: float
    shift_bound: float
    error_bound: float
    rounding_bound: float
    security_bits: float
    releases: int


def aggregate_flooding(
    params: CkksParams,
    *,
    parties: int,
    length: int,
    value_norm_bound: float,
    releases: int = 1,
    security_bits: float = DEFAULT_SECURITY_BITS,
) -> FloodingPlan:
    """The flooding for a decrypted sum of ``parties`` fresh encryptions, of ``length``
    values whose L2 norm is at most ``value_norm_bound``, released ``releases`` times per
    key set to someone who is not a key holder (the module docstring derives each term)."""
    _symmetric_only(params)
    if parties < 1 or length < 1 or releases < 1 or not value_norm_bound >= 0:
        raise ValueError("parties, length and releases must be >= 1, the norm bound >= 0")
    n, chunks = params.poly_modulus_degree, math.ceil(length / params.slots)
    fail = tail_bits(security_bits, releases, 1)
    error = fresh_symmetric_sum_bound(n, params.scale, parties, chunks, fail)
    rounding = 2.0 * decode_rounding_bound(n, value_norm_bound + error)
    shift = error + rounding
    sigma = flooding_sigma(shift, releases, security_bits)
    return FloodingPlan(sigma, shift, error, rounding, security_bits, releases)


def flood(
    values: npt.ArrayLike, sigma: float, generator: SecureGenerator
) -> npt.NDArray[np.float64]:
    """``values`` plus independent N(0, sigma^2) noise from the secure generator."""
    x = np.asarray(values, dtype=np.float64)
    return x + generator.normal(x.size, sigma).reshape(x.shape)


@dataclass(frozen=True)
class FloodedRelease:
    """Flooded values, safe to release to someone who is not a key holder, and their plan."""

    values: npt.NDArray[np.float64]
    plan: FloodingPlan
