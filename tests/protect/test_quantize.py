"""Fixed-point encoding: exact ring sizes, the n/scale error bound, no wrap-around, unbiasedness."""

from __future__ import annotations

import numpy as np
import pytest

from accord.errors import InputError
from accord.protect.quantize import (
    choose_ring_bits,
    dequantize_sum,
    packed_bytes,
    quantization_error_bound,
    quantize,
    ring_mask,
    word_dtype,
)
from accord.secure_random import SecureGenerator


@pytest.mark.parametrize(
    ("clip", "scale", "n", "bits"),
    [
        (1.0, 2.0**16, 100, 24),  # bound 100 * 65537 = 6_553_700 < 2**23
        (0.5, 1000.0, 3, 12),  # bound 3 * 501 = 1503 < 2**11
        (1.0, 2.0, 1, 3),  # bound 3 = 2**2 - 1: fits exactly
        (1.0, 3.0, 1, 4),  # bound 4 = 2**2: one more bit
        (1.0, 2.0**20, 1000, 31),
    ],
)
def test_choose_ring_bits_is_the_smallest_ring_without_wraparound(
    clip: float, scale: float, n: int, bits: int
) -> None:
    assert choose_ring_bits(clip, scale, n) == bits
    bound = n * (int(np.floor(clip * scale)) + 1)
    assert bound <= 2 ** (bits - 1) - 1 < 2 * bound + 1


def test_choose_ring_bits_refuses_rings_beyond_62_bits() -> None:
    with pytest.raises(InputError, match="lower the scale"):
        choose_ring_bits(1.0, 2.0**60, 100)
    with pytest.raises(InputError):
        choose_ring_bits(1.0, 2.0**16, 100, max_ring_bits=20)


def test_word_dtype_and_packed_bytes() -> None:
    assert word_dtype(24) == np.uint32 and word_dtype(32) == np.uint32
    assert word_dtype(33) == np.uint64
    assert packed_bytes(1000, 24) == 3000
    assert packed_bytes(3, 5) == 2  # 15 bits
    assert packed_bytes(1_000_000, 21) == 2_625_000
    assert quantization_error_bound(100, 2.0**16) == 100 / 65536


def test_extreme_inputs_at_the_clip_bound_never_wrap() -> None:
    """n parties all at +c (and all at -c) give the largest sums; the lift is still right."""
    clip, scale, n, length = 1.0, 2.0**10, 50, 64
    bits = choose_ring_bits(clip, scale, n)
    for sign in (+1.0, -1.0):
        total = np.zeros(length, dtype=np.uint64)
        for _ in range(n):
            update = np.full(length, sign * 5.0, dtype=np.float32)  # clipped to ±1
            total += quantize(update, clip, scale, bits, SecureGenerator.fresh())
        decoded = dequantize_sum(total & np.uint64(ring_mask(bits)), scale, bits)
        assert np.all(np.abs(decoded - sign * n * clip) < n / scale)


def test_sum_of_random_updates_is_within_n_over_scale() -> None:
    rng = np.random.default_rng(1)  # test data only
    clip, scale, n, length = 0.5, 2.0**12, 20, 5000
    bits = choose_ring_bits(clip, scale, n)
    updates = [rng.normal(0, 0.3, length).astype(np.float32) for _ in range(n)]
    total = np.zeros(length, dtype=word_dtype(bits))
    for u in updates:
        total += quantize(u, clip, scale, bits, SecureGenerator.fresh())
    decoded = dequantize_sum(total & total.dtype.type(ring_mask(bits)), scale, bits)
    expected = np.sum([np.clip(u.astype(np.float64), -clip, clip) for u in updates], axis=0)
    assert np.max(np.abs(decoded - expected)) < quantization_error_bound(n, scale)


def test_stochastic_rounding_is_unbiased_and_uses_the_secure_generator() -> None:
    x = np.full(200_000, 0.3, dtype=np.float32)
    q = quantize(x, 1.0, 1.0, 8, SecureGenerator(bytes(32)))
    values = dequantize_sum(q, 1.0, 8)
    assert set(np.unique(values)) == {0.0, 1.0}
    # float32(0.3) rounds up with probability 0.3; sd of the mean is about 0.001.
    assert abs(values.mean() - float(np.float32(0.3))) < 0.006
    # Same generator key and counter: the same coins (nothing from NumPy's generator).
    again = quantize(x, 1.0, 1.0, 8, SecureGenerator(bytes(32)))
    assert np.array_equal(q, again)


def test_negative_values_map_to_the_top_of_the_ring() -> None:
    q = quantize(
        np.array([-2.0, -1.0, 0.0, 1.0], dtype=np.float32), 1.0, 4.0, 8, SecureGenerator.fresh()
    )
    assert q.tolist() == [252, 252, 0, 4]  # -4 mod 256 = 252; -2.0 is clipped to -1.0
    assert dequantize_sum(q, 4.0, 8).tolist() == [-1.0, -1.0, 0.0, 1.0]


def test_non_finite_updates_are_refused() -> None:
    with pytest.raises(InputError, match="non-finite"):
        quantize(np.array([0.0, np.nan]), 1.0, 10.0, 16, SecureGenerator.fresh())
    with pytest.raises(InputError):
        quantize(np.array([np.inf]), 1.0, 10.0, 16, SecureGenerator.fresh())
