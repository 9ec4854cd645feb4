"""The secure generator: keystream layout, draw statistics, crash-safe counter in a node home."""

from __future__ import annotations

import math
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from accord.errors import AccordError
from accord.node_secrets import NodeGeneratorStore, open_node_generator
from accord.secure_random import RESERVE_STEP, SecureGenerator

KEY = bytes(range(32))


def _draw_all(gen: SecureGenerator) -> list[bytes]:
    """One value of every kind, as bytes, to compare streams."""
    return [
        gen.random_bytes(40),
        gen.uniform(5).tobytes(),
        gen.normal(7, std=2.0).tobytes(),
        gen.normal_tensor((2, 3), std=0.5).numpy().tobytes(),
        gen.bernoulli(50, 0.5).tobytes(),
        gen.integers(9, 1000).tobytes(),
        gen.permutation(20).tobytes(),
    ]


# --- keystream layout -------------------------------------------------------------------


def test_counter_zero_with_zero_key_is_rfc8439_test_vector() -> None:
    # RFC 8439 A.1 test vector #1: all-zero key and nonce, block counter 0.
    expected = bytes.fromhex(
        "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7"
        "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586"
    )
    assert SecureGenerator(bytes(32)).random_bytes(64) == expected


def test_call_counter_fills_the_96_bit_nonce_little_endian() -> None:
    # RFC 8439 2.4.2 encrypts with nonce 00000000 0000004a 00000000 from block counter 1;
    # our call counter 0x4a << 56 is that nonce, and our block 1 is its first block.
    plaintext = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip"
    ciphertext = bytes.fromhex(
        "6e2e359a2568f98041ba0728dd0d6981e97e7aec1d4360c20a27afccfd9fae0b"
        "f91b65c5524733ab8f593dabcd62b3571639d624e65152ab8f530c359f0861d8"
    )
    stream = SecureGenerator(KEY, counter=0x4A << 56).random_bytes(128)[64:]
    assert bytes(a ^ b for a, b in zip(stream, plaintext[:64], strict=True)) == ciphertext


def test_each_call_uses_the_next_counter_from_block_zero() -> None:
    gen = SecureGenerator(KEY, counter=7)
    first = gen.random_bytes(32)
    assert gen.counter == 8
    nonce = bytes(4) + (7).to_bytes(12, "little")
    direct = Cipher(algorithms.ChaCha20(KEY, nonce), mode=None).encryptor().update(bytes(32))
    assert first == direct
    assert gen.random_bytes(32) != first


def test_reproducible_from_key_and_counter() -> None:
    assert _draw_all(SecureGenerator(KEY, 42)) == _draw_all(SecureGenerator(KEY, 42))


def test_different_counters_and_keys_give_different_streams() -> None:
    base = _draw_all(SecureGenerator(KEY, 0))
    other_counter = _draw_all(SecureGenerator(KEY, 1))
    other_key = _draw_all(SecureGenerator(bytes(32), 0))
    for a, b, c in zip(base, other_counter, other_key, strict=True):
        assert a != b
        assert a != c


def test_fresh_generators_differ_and_repr_hides_key() -> None:
    a, b = SecureGenerator.fresh(), SecureGenerator.fresh()
    assert a.random_bytes(32) != b.random_bytes(32)
    assert KEY.hex() not in repr(SecureGenerator(KEY)) and "counter=0" in repr(SecureGenerator(KEY))


@pytest.mark.parametrize(
    ("key", "counter"),
    [(b"short", 0), (KEY, -1), (KEY, 2**96), (KEY, True)],
)
def test_bad_construction_is_refused(key: bytes, counter: int) -> None:
    with pytest.raises(ValueError):
        SecureGenerator(key, counter)


def test_bad_arguments_are_refused() -> None:
    gen = SecureGenerator(KEY)
    with pytest.raises(ValueError):
        gen.uniform(-1)
    with pytest.raises(ValueError):
        gen.bernoulli(3, 1.5)
    with pytest.raises(ValueError):
        gen.integers(3, 0)
    with pytest.raises(ValueError):
        gen.integers(3, 2**63 + 1)
    with pytest.raises(ValueError):
        gen.normal(3, std=-1.0)
    with pytest.raises(ValueError):
        gen.normal(3, std=math.nan)


# --- draws ------------------------------------------------------------------------------


def test_uniform_is_in_open_interval_with_mean_one_half() -> None:
    u = SecureGenerator(KEY).uniform(200_000)
    assert u.dtype == np.float64 and u.shape == (200_000,)
    assert u.min() > 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.005  # ~7 standard errors
    assert abs(u.var() - 1 / 12) < 0.002


class _ExtremeWords:
    """A stand-in keystream whose words are the extremes 0 and 2**64 - 1."""

    def words(self, n: int) -> np.ndarray:
        return np.array([0, 2**64 - 1] * n, dtype=np.uint64)[:n]


def test_uniform_never_reaches_zero_or_one_even_at_extreme_words() -> None:
    u = SecureGenerator._uniform_from(_ExtremeWords(), 2)  # type: ignore[arg-type]
    assert 0.0 < u[0] < 1e-15
    assert 1.0 - 1e-15 < u[1] < 1.0
    assert np.isfinite(np.log(u)).all() and np.isfinite(np.log1p(-u)).all()


def test_normal_has_mean_zero_std_one_and_gaussian_tails() -> None:
    z = SecureGenerator(KEY).normal(200_001)  # odd: Box–Muller pairs are truncated
    assert z.shape == (200_001,) and z.dtype == np.float64
    assert abs(z.mean()) < 0.015  # ~7 standard errors
    assert abs(z.std() - 1.0) < 0.01
    assert abs(np.mean(np.abs(z) > 1.959964) - 0.05) < 0.004
    scaled = SecureGenerator(KEY, 1).normal(200_000, std=3.0)
    assert abs(scaled.std() - 3.0) < 0.03
    assert not SecureGenerator(KEY).normal(10, std=0.0).any()


def test_normal_tensor_shape_dtype_and_values_come_from_normal() -> None:
    t = SecureGenerator(KEY, 3).normal_tensor((4, 5), std=2.0)
    assert isinstance(t, torch.Tensor) and t.shape == (4, 5) and t.dtype == torch.float32
    expected = SecureGenerator(KEY, 3).normal(20, std=2.0).reshape(4, 5)
    assert torch.equal(t, torch.from_numpy(expected).float())
    t64 = SecureGenerator(KEY).normal_tensor(torch.Size([3]), 1.0, dtype=torch.float64)
    assert t64.dtype == torch.float64
    assert SecureGenerator(KEY).normal_tensor((0, 3), 1.0).shape == (0, 3)


def test_bernoulli_rate_and_edges() -> None:
    gen = SecureGenerator(KEY)
    b = gen.bernoulli(200_000, 0.3)
    assert b.dtype == np.bool_
    assert abs(b.mean() - 0.3) < 0.007
    assert not gen.bernoulli(1000, 0.0).any()
    assert gen.bernoulli(1000, 1.0).all()


def test_integers_range_and_uniform_counts() -> None:
    gen = SecureGenerator(KEY)
    x = gen.integers(140_000, 7)
    assert x.dtype == np.int64 and x.min() == 0 and x.max() == 6
    counts = np.bincount(x, minlength=7)
    expected = 20_000
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 40  # 6 degrees of freedom; p ≈ 1e-6
    assert not gen.integers(100, 1).any()
    big = gen.integers(1000, 2**63)
    assert big.min() >= 0
    assert gen.integers(0, 5).shape == (0,)


def test_integers_are_unbiased_where_modulo_would_not_be() -> None:
    # high = 3 * 2**61: a plain `word % high` lands below 2**61 with probability 3/8;
    # rejection sampling gives the fair 1/3.
    high = 3 * 2**61
    x = SecureGenerator(KEY).integers(100_000, high)
    assert x.min() >= 0 and x.max() < high
    assert abs(float(np.mean(x < 2**61)) - 1 / 3) < 0.01


def test_permutation_is_a_permutation_and_uniform() -> None:
    gen = SecureGenerator(KEY)
    p = gen.permutation(1000)
    assert p.dtype == np.int64
    assert np.array_equal(np.sort(p), np.arange(1000))
    assert gen.permutation(0).shape == (0,) and gen.permutation(1).tolist() == [0]
    counts: dict[tuple[int, ...], int] = {}
    for _ in range(6000):
        key = tuple(gen.permutation(3).tolist())
        counts[key] = counts.get(key, 0) + 1
    assert len(counts) == 6
    assert all(abs(c - 1000) < 150 for c in counts.values())


# --- reservation ahead of use -------------------------------------------------------------


def test_reserve_is_called_before_a_counter_at_the_mark_is_used() -> None:
    seen: list[tuple[int, int]] = []
    gen: SecureGenerator

    def reserve(new_mark: int) -> None:
        # Called with the counter about to be used not yet advanced.
        seen.append((gen.counter, new_mark))

    gen = SecureGenerator(KEY, counter=5, reserve=reserve)
    assert seen == []
    gen.uniform(1)
    assert seen == [(5, 5 + RESERVE_STEP)]
    for _ in range(RESERVE_STEP - 1):
        gen.random_bytes(1)
    assert len(seen) == 1 and gen.counter == 5 + RESERVE_STEP
    gen.random_bytes(1)
    assert seen[-1] == (5 + RESERVE_STEP, 5 + 2 * RESERVE_STEP)
    assert all(mark > used for used, mark in seen)


def test_failed_reserve_uses_no_keystream() -> None:
    def reserve(new_mark: int) -> None:
        raise OSError("disk full")

    gen = SecureGenerator(KEY, counter=3, reserve=reserve)
    with pytest.raises(OSError):
        gen.random_bytes(8)
    assert gen.counter == 3


# --- the generator in a node home ---------------------------------------------------------


def test_node_home_files_and_modes(tmp_path: Path) -> None:
    gen = open_node_generator(tmp_path)
    store = NodeGeneratorStore(tmp_path)
    assert stat.S_IMODE(store.key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.secrets_dir.stat().st_mode) == 0o700
    assert len(store.key_path.read_bytes()) == 32
    assert store.counter_path.read_text() == "0\n"
    gen.random_bytes(1)
    assert store.counter_path.read_text() == f"{RESERVE_STEP}\n"
    assert not list(store.state_dir.glob("*.tmp"))


def test_reopened_generator_never_repeats_a_previous_draw(tmp_path: Path) -> None:
    first = open_node_generator(tmp_path)
    previous = {first.random_bytes(32) for _ in range(10)}
    used = first.counter
    # A crash: the process dies without saying goodbye, and the node opens its home again.
    second = open_node_generator(tmp_path)
    assert second.counter >= used
    for _ in range(RESERVE_STEP + 10):  # across the next reservation too
        assert second.random_bytes(32) not in previous
    third = open_node_generator(tmp_path)
    assert third.counter >= second.counter
    assert third.random_bytes(32) not in previous


def test_same_key_across_reopen(tmp_path: Path) -> None:
    first = open_node_generator(tmp_path)
    first.random_bytes(1)
    second = open_node_generator(tmp_path)
    key = NodeGeneratorStore(tmp_path).key_path.read_bytes()
    assert second.random_bytes(64) == SecureGenerator(key, second.counter - 1).random_bytes(64)


def test_two_processes_on_one_home_are_refused(tmp_path: Path) -> None:
    first = open_node_generator(tmp_path)
    first.random_bytes(1)  # reserves [0, RESERVE_STEP)
    second = open_node_generator(tmp_path)
    second.random_bytes(1)  # reserves [RESERVE_STEP, 2 * RESERVE_STEP)
    for _ in range(RESERVE_STEP - 1):
        first.random_bytes(1)  # still inside its own reservation
    with pytest.raises(AccordError, match="another process"):
        first.random_bytes(1)  # would step into the second's counters


def test_key_without_counter_is_refused(tmp_path: Path) -> None:
    open_node_generator(tmp_path).random_bytes(1)
    NodeGeneratorStore(tmp_path).counter_path.unlink()
    with pytest.raises(AccordError, match=r"generator\.counter is missing"):
        open_node_generator(tmp_path)


def test_readable_key_and_damaged_counter_are_refused(tmp_path: Path) -> None:
    open_node_generator(tmp_path)
    store = NodeGeneratorStore(tmp_path)
    store.key_path.chmod(0o644)
    with pytest.raises(AccordError, match="chmod 600"):
        open_node_generator(tmp_path)
    store.key_path.chmod(0o600)
    store.counter_path.write_text("twelve\n")
    with pytest.raises(AccordError, match="does not hold a counter"):
        open_node_generator(tmp_path)
