"""Shamir secret sharing of 32-byte secrets over GF(2^521 - 1).

Shamir 1979; used by Bonawitz et al. 2017 (§3, "Secret sharing") for each party's
self-mask seed b_u and mask-key secret s_u^SK. The field must be larger than the secret
space (2^256) so that every secret is a field element: p = 2^521 - 1 is a Mersenne prime.

Share x-coordinates are the holder's roster index + 1 (never 0, where the secret lies).
A random polynomial f of degree t - 1 with f(0) = secret gives share (x, f(x)); any t
shares determine f(0) by Lagrange interpolation at 0, and any t - 1 shares are
independent of the secret (perfect secrecy). The t - 1 random coefficients come from the
party's :class:`SecureGenerator`, uniform in [0, p) by rejection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from accord.errors import SecAggTamperError, SecAggTooFewError
from accord.secure_random import SecureGenerator

__all__ = ["PRIME", "SECRET_BYTES", "SHARE_BYTES", "Share", "reconstruct", "split"]

PRIME = 2**521 - 1
"""The field modulus, a Mersenne prime larger than 2^256."""

SECRET_BYTES = 32
SHARE_BYTES = 66
"""Bytes of one field element (521 bits round up to 66 bytes)."""

_ELEMENT_BITS = 521


@dataclass(frozen=True, slots=True)
class Share:
    """One point (x, f(x)) of the sharing polynomial."""

    x: int
    y: int

    def y_bytes(self) -> bytes:
        """``y`` as 66 big-endian bytes (``x`` is implied by the holder)."""
        return self.y.to_bytes(SHARE_BYTES, "big")

    @classmethod
    def from_bytes(cls, x: int, data: bytes) -> Share:
        """The share of holder ``x`` from its 66-byte ``y``; refuses a value outside the field."""
        if len(data) != SHARE_BYTES:
            raise SecAggTamperError(f"a share must be {SHARE_BYTES} bytes, got {len(data)}")
        y = int.from_bytes(data, "big")
        if y >= PRIME:
            raise SecAggTamperError("a share's value is not a field element")
        return cls(x, y)


def split(
    secret: bytes, xs: Sequence[int], threshold: int, rng: SecureGenerator
) -> dict[int, Share]:
    """Shares of ``secret`` for holders at ``xs`` (distinct, in [1, p)), any ``threshold`` of
    which reconstruct it. Returns ``{x: share}``."""
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"secrets must be {SECRET_BYTES} bytes")
    if not 1 <= threshold <= len(xs):
        raise ValueError(f"threshold must be in [1, {len(xs)}], got {threshold}")
    if len(set(xs)) != len(xs) or any(not 0 < x < PRIME for x in xs):
        raise ValueError("share x-coordinates must be distinct and in [1, p)")
    coefficients = [int.from_bytes(secret, "big"), *_field_elements(threshold - 1, rng)]
    shares: dict[int, Share] = {}
    for x in xs:
        # Horner's rule from the highest coefficient down.
        y = 0
        for c in reversed(coefficients):
            y = (y * x + c) % PRIME
        shares[x] = Share(x, y)
    return shares


def reconstruct(shares: Sequence[Share], threshold: int) -> bytes:
    """The secret from at least ``threshold`` shares with distinct x (Lagrange at 0).

    Fewer than ``threshold`` distinct shares: :class:`SecAggTooFewError` (they carry no
    information about the secret, so nothing can be returned). Two shares with the same x
    but different y, or a result that is not a 32-byte secret: :class:`SecAggTamperError`.
    """
    by_x: dict[int, int] = {}
    for share in shares:
        if not 0 < share.x < PRIME or not 0 <= share.y < PRIME:
            raise SecAggTamperError("a share lies outside the field")
        if by_x.setdefault(share.x, share.y) != share.y:
            raise SecAggTamperError(f"two different shares for holder x={share.x}")
    if len(by_x) < threshold:
        raise SecAggTooFewError(
            f"{len(by_x)} shares cannot reconstruct a secret shared with threshold {threshold}"
        )
    # Any `threshold` of them determine the polynomial; use the lowest x for determinism.
    xs = tuple(sorted(by_x)[:threshold])
    weights = _lagrange_at_zero(xs)
    value = sum(w * by_x[x] for w, x in zip(weights, xs, strict=True)) % PRIME
    if value >> (8 * SECRET_BYTES):
        # Honest shares always interpolate to a 256-bit secret.
        raise SecAggTamperError("the shares do not interpolate to a 32-byte secret")
    return value.to_bytes(SECRET_BYTES, "big")


@lru_cache(maxsize=256)
def _lagrange_at_zero(xs: tuple[int, ...]) -> tuple[int, ...]:
    """Lagrange basis polynomials at 0: l_i(0) = prod_{j != i} x_j / (x_j - x_i) mod p.

    Cached: in one round the coordinator usually interpolates many secrets over the same
    set of holders.
    """
    weights = []
    for i, xi in enumerate(xs):
        numerator, denominator = 1, 1
        for j, xj in enumerate(xs):
            if i != j:
                numerator = numerator * xj % PRIME
                denominator = denominator * (xj - xi) % PRIME
        weights.append(numerator * pow(denominator, -1, PRIME) % PRIME)
    return tuple(weights)


def _field_elements(count: int, rng: SecureGenerator) -> list[int]:
    """``count`` elements uniform in [0, p): 521 random bits, rejecting the single value p.

    (Reducing a wider random integer modulo p would be biased; rejection is exact.)
    """
    out: list[int] = []
    while len(out) < count:
        need = count - len(out)
        data = rng.random_bytes(need * SHARE_BYTES)
        for i in range(need):
            chunk = data[i * SHARE_BYTES : (i + 1) * SHARE_BYTES]
            value = int.from_bytes(chunk, "big") & ((1 << _ELEMENT_BITS) - 1)
            if value < PRIME:
                out.append(value)
    return out
