"""Fixed-point encoding of float updates into the ring Z_{2^k}, and back for their sum.

Masking works in a finite ring (Bonawitz et al. 2017, §3: inputs are vectors in Z_R), so
each party turns its float32 update into integers modulo ``2**k`` before masking, and the
coordinator turns the unmasked *sum* back into floats.

Encoding (one party)
--------------------
1. Clip every coordinate to ``[-c, c]`` (``c`` = ``clip_range``).
2. Scale by ``s`` and round *stochastically*: ``q = floor(x*s) + B`` with
   ``B ~ Bernoulli(x*s - floor(x*s))`` drawn from the party's :class:`SecureGenerator`, so
   ``E[q] = x*s`` (the rounding adds no bias to the average) and ``|q - x*s| < 1``.
3. Reduce modulo ``2**k``.

Decoding (the sum of n parties)
-------------------------------
Lift the sum ``S mod 2**k`` to the centred range ``[-2**(k-1), 2**(k-1))`` (values at or
above ``2**(k-1)`` are negative) and divide by ``s``.

Error bound: each coordinate of each party is off by less than ``1/s`` after clipping, so
each coordinate of the decoded sum of ``n`` parties is within ``n/s`` of the sum of the
clipped inputs (strictly less). Clipping itself changes only coordinates outside
``[-c, c]``.

Wrap-around: after clipping, ``|q| <= floor(c*s) + 1`` for every coordinate, so
``|S| <= n*(floor(c*s) + 1)`` *deterministically*. :func:`choose_ring_bits` picks the
smallest ``k`` with ``n*(floor(c*s) + 1) <= 2**(k-1) - 1``: the centred lift is then always
right, and the probability of wrap-around is 0 (not merely below 1e-9), for any inputs,
as long as every party clips (a party that does not clip can only spoil the sum, which it
could do anyway by sending a wrong update).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from accord.errors import InputError, SecAggParameterError

if TYPE_CHECKING:
    from accord.secure_random import SecureGenerator

__all__ = [
    "MAX_RING_BITS",
    "as_ring_vector",
    "choose_ring_bits",
    "dequantize_sum",
    "packed_bytes",
    "quantization_error_bound",
    "quantize",
    "ring_mask",
    "word_dtype",
]

MAX_RING_BITS = 62
"""Largest ring we use: sums are lifted through int64, and 62 bits leave headroom."""

RingVector = npt.NDArray[np.unsignedinteger]


def word_dtype(ring_bits: int) -> np.dtype[np.unsignedinteger]:
    """uint32 for rings of at most 32 bits (half the keystream and memory), else uint64.

    Unsigned NumPy arithmetic wraps modulo 2**32 or 2**64, and both are multiples of
    ``2**k``, so sums and differences stay right modulo ``2**k`` before the final mask.
    """
    _check_ring_bits(ring_bits)
    return np.dtype(np.uint32) if ring_bits <= 32 else np.dtype(np.uint64)


def ring_mask(ring_bits: int) -> int:
    """``2**k - 1``: AND with it reduces modulo ``2**k``."""
    _check_ring_bits(ring_bits)
    return (1 << ring_bits) - 1


def choose_ring_bits(
    clip_range: float,
    scale: float,
    n_parties: int,
    max_ring_bits: int = MAX_RING_BITS,
    noise_bound: int = 0,
) -> int:
    """The smallest ``k`` for which the sum of ``n_parties`` clipped inputs never wraps.

    The sum of quantized coordinates is bounded by ``n*(floor(c*s) + 1)`` (module
    docstring), so ``k = bound.bit_length() + 1`` gives ``bound <= 2**(k-1) - 1``: the
    probability of wrap-around is exactly 0. With distributed DP noise in the sum,
    ``noise_bound`` is a bound on its largest coordinate that fails with probability at
    most 1e-9 (:func:`accord.privacy.skellam.noise_tail_bound`); it is added to the
    bound, and the probability of wrap-around is then at most 1e-9. Raises
    :class:`InputError` when that needs more than ``max_ring_bits`` bits (lower the scale
    or the clip range).
    """
    _check_positive_finite(clip_range, "clip_range")
    _check_positive_finite(scale, "scale")
    if isinstance(n_parties, bool) or not isinstance(n_parties, int) or n_parties < 1:
        raise ValueError(f"n_parties must be a positive int, got {n_parties!r}")
    per_party = math.floor(float(clip_range) * float(scale)) + 1
    bound = n_parties * per_party + int(noise_bound)
    bits = bound.bit_length() + 1
    if bits > min(max_ring_bits, MAX_RING_BITS):
        raise InputError(
            f"the sum of {n_parties} parties' inputs clipped to ±{clip_range} at scale {scale} "
            f"needs a {bits}-bit ring, more than the {min(max_ring_bits, MAX_RING_BITS)} "
            "allowed: lower the scale or the clip range"
        )
    return bits


def quantization_error_bound(n_parties: int, scale: float) -> float:
    """Per-coordinate bound on |decoded sum - sum of clipped inputs|: ``n/scale`` (strict)."""
    _check_positive_finite(scale, "scale")
    return n_parties / float(scale)


def packed_bytes(length: int, ring_bits: int) -> int:
    """Bytes of ``length`` words packed at ``ring_bits`` bits each: ``ceil(length*k/8)``."""
    _check_ring_bits(ring_bits)
    if length < 0:
        raise ValueError("length must be non-negative")
    return (length * ring_bits + 7) // 8


def quantize(
    values: npt.ArrayLike,
    clip_range: float,
    scale: float,
    ring_bits: int,
    rng: SecureGenerator,
) -> RingVector:
    """Clip, scale and stochastically round ``values`` into ``Z_{2^k}`` (see module doc).

    The rounding coins come from ``rng`` (one draw call), never from NumPy's generator:
    they are part of what hides the input's low bits, and they must not be recomputable
    from a public seed. Raises :class:`InputError` on non-finite values.
    """
    _check_positive_finite(clip_range, "clip_range")
    _check_positive_finite(scale, "scale")
    # The largest |q| must fit the ring on its own, whatever n is.
    choose_ring_bits(clip_range, scale, 1, ring_bits)
    x = np.asarray(values, dtype=np.float64).ravel()
    if not bool(np.all(np.isfinite(x))):
        raise InputError("the update has non-finite values (NaN or inf); it cannot be quantized")
    scaled = np.clip(x, -float(clip_range), float(clip_range)) * float(scale)
    low = np.floor(scaled)
    # Round up with probability equal to the fractional part: E[q] = x*s.
    up = rng.uniform(x.size) < (scaled - low)
    q = low.astype(np.int64) + up.astype(np.int64)
    # Two's complement modulo 2**64, then modulo 2**k: negative q maps to 2**k - |q|.
    words = q.view(np.uint64) & np.uint64(ring_mask(ring_bits))
    return words.astype(word_dtype(ring_bits))


def dequantize_sum(total: RingVector, scale: float, ring_bits: int) -> npt.NDArray[np.float64]:
    """Decode a sum modulo ``2**k``: centred lift to ``[-2**(k-1), 2**(k-1))``, then ``/scale``."""
    _check_positive_finite(scale, "scale")
    words = np.asarray(total).astype(np.uint64) & np.uint64(ring_mask(ring_bits))
    signed = words.astype(np.int64)
    signed[signed >= (1 << (ring_bits - 1))] -= 1 << ring_bits
    result: npt.NDArray[np.float64] = signed.astype(np.float64) / float(scale)
    return result


def as_ring_vector(values: npt.ArrayLike, length: int, ring_bits: int) -> RingVector:
    """``values`` as ring words (the ring's word dtype), refusing anything that is not
    ``length`` integers in ``[0, 2**k)``: :class:`SecAggParameterError` (a caller's bug)."""
    array = np.asarray(values)
    if array.shape != (length,) or array.dtype.kind not in "ui":
        raise SecAggParameterError(
            f"the input must be {length} integers in [0, 2^{ring_bits}), got shape "
            f"{array.shape} and dtype {array.dtype}"
        )
    if array.size and (int(array.min()) < 0 or int(array.max()) > ring_mask(ring_bits)):
        raise SecAggParameterError(f"the input has values outside [0, 2^{ring_bits})")
    return array.astype(word_dtype(ring_bits), copy=False)


def _check_ring_bits(ring_bits: int) -> None:
    if isinstance(ring_bits, bool) or not isinstance(ring_bits, int):
        raise ValueError(f"ring_bits must be an int, got {ring_bits!r}")
    if not 2 <= ring_bits <= MAX_RING_BITS:
        raise ValueError(f"ring_bits must be in [2, {MAX_RING_BITS}], got {ring_bits}")


def _check_positive_finite(value: float, name: str) -> None:
    if not math.isfinite(float(value)) or float(value) <= 0.0:
        raise ValueError(f"{name} must be positive and finite, got {value!r}")
