"""Masks (HKDF + ChaCha20), Shamir sharing over GF(2^521 - 1), envelopes, encodings."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from accord.errors import EnvelopeError, SecAggTamperError, SecAggTooFewError
from accord.protect import shamir
from accord.protect.encoding import encode
from accord.protect.envelope import Envelope, open_envelope, seal
from accord.protect.masks import (
    add_masks,
    derive_seed,
    expand_mask,
    pairwise_seed,
    pairwise_sign,
    self_mask_seed,
)
from accord.secure_random import SecureGenerator

# --- masks ------------------------------------------------------------------------------


def test_expand_mask_is_the_chacha20_keystream_read_little_endian() -> None:
    # RFC 8439 A.1 #1: zero key and nonce, block 0, keystream starts 76 b8 e0 ad a0 f1 3d 90.
    words = expand_mask(bytes(32), 2, 32)
    assert words.dtype == np.uint32
    assert words.tolist() == [0xADE0B876, 0x903DF1A0]
    assert expand_mask(bytes(32), 2, 20).tolist() == [0xADE0B876 & 0xFFFFF, 0x903DF1A0 & 0xFFFFF]
    assert expand_mask(bytes(32), 1, 40).tolist() == [0x903DF1A0ADE0B876 & (2**40 - 1)]
    seed = os.urandom(32)
    raw = Cipher(algorithms.ChaCha20(seed, bytes(16)), None).encryptor().update(bytes(4000))
    assert np.array_equal(expand_mask(seed, 1000, 32), np.frombuffer(raw, "<u4"))


def test_add_masks_equals_the_sum_of_reduced_masks() -> None:
    seeds = [(os.urandom(32), s) for s in (1, -1, -1, 1, 1)]
    values = np.arange(500, dtype=np.uint32)
    expected = values.astype(np.int64)
    for seed, sign in seeds:
        expected += sign * expand_mask(seed, 500, 21).astype(np.int64)
    assert np.array_equal(add_masks(values, seeds, 21), expected % 2**21)


def test_seeds_bind_job_round_purpose_and_pair() -> None:
    secret = os.urandom(32)
    base = derive_seed(secret, "self-mask", "job", 0, "p1")
    assert base == self_mask_seed(secret, "job", 0, "p1")
    others = [
        derive_seed(secret, "self-mask", "job", 1, "p1"),
        derive_seed(secret, "self-mask", "job2", 0, "p1"),
        derive_seed(secret, "self-mask", "job", 0, "p2"),
        derive_seed(secret, "pairwise-mask", "job", 0, "p1"),
    ]
    assert len({base, *others}) == 5


def test_pairwise_seeds_agree_and_masks_cancel() -> None:
    """Bonawitz et al. §4: u adds PRG(s_uv), v subtracts it (u has the lower index)."""
    a, b = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    seed_ab = pairwise_seed(a, b.public_key(), "job", 3, "p1", "p2")
    assert seed_ab == pairwise_seed(b, a.public_key(), "job", 3, "p1", "p2")
    assert pairwise_sign(1, 2) == 1 and pairwise_sign(2, 1) == -1
    x_a, x_b = np.full(100, 7, np.uint32), np.full(100, 9, np.uint32)
    y_a = add_masks(x_a, [(seed_ab, pairwise_sign(1, 2))], 16)
    y_b = add_masks(x_b, [(seed_ab, pairwise_sign(2, 1))], 16)
    assert not np.array_equal(y_a, x_a)
    assert np.array_equal((y_a + y_b) & np.uint32(0xFFFF), np.full(100, 16, np.uint32))


# --- Shamir -----------------------------------------------------------------------------


def test_any_t_of_n_shares_reconstruct_the_secret() -> None:
    secret = os.urandom(32)
    shares = shamir.split(secret, [1, 2, 3, 5, 8, 13], 3, SecureGenerator.fresh())
    for subset in itertools.combinations(shares.values(), 3):
        assert shamir.reconstruct(list(subset), 3) == secret
    assert shamir.reconstruct(list(shares.values()), 3) == secret


def test_fewer_than_t_shares_are_refused() -> None:
    shares = shamir.split(os.urandom(32), [1, 2, 3, 4], 3, SecureGenerator.fresh())
    with pytest.raises(SecAggTooFewError, match="2 shares"):
        shamir.reconstruct([shares[1], shares[2]], 3)
    # A repeated share does not count twice.
    with pytest.raises(SecAggTooFewError):
        shamir.reconstruct([shares[1], shares[1], shares[2]], 3)


def test_conflicting_or_out_of_field_shares_are_refused() -> None:
    shares = shamir.split(os.urandom(32), [1, 2, 3], 2, SecureGenerator.fresh())
    forged = shamir.Share(1, (shares[1].y + 1) % shamir.PRIME)
    with pytest.raises(SecAggTamperError, match="two different shares"):
        shamir.reconstruct([shares[1], forged, shares[2]], 2)
    with pytest.raises(SecAggTamperError):
        shamir.Share.from_bytes(1, (2**521 - 1).to_bytes(66, "big"))
    # A random wrong share interpolates to a value that is (almost surely) not a 32-byte
    # secret; small changes are caught by the commitments instead (see test_attacks).
    garbage = shamir.Share(1, int.from_bytes(os.urandom(65), "big"))
    with pytest.raises(SecAggTamperError, match="32-byte"):
        shamir.reconstruct([garbage, shares[2]], 2)


def test_share_coefficients_come_from_the_secure_generator() -> None:
    secret = os.urandom(32)
    first = shamir.split(secret, [1, 2, 3], 2, SecureGenerator(bytes(32)))
    second = shamir.split(secret, [1, 2, 3], 2, SecureGenerator(bytes(32)))
    fresh = shamir.split(secret, [1, 2, 3], 2, SecureGenerator.fresh())
    assert first == second and first != fresh
    assert shamir.PRIME == 2**521 - 1 and shamir.PRIME > 2**256


def test_t_minus_one_shares_fit_every_secret() -> None:
    """Perfect secrecy, made concrete: for t = 2, one share y1 is consistent with any secret
    s (the line through (0, s) and (x1, y1)), so it says nothing about the secret."""
    share = shamir.split(os.urandom(32), [4, 9], 2, SecureGenerator.fresh())[4]
    for candidate in (bytes(32), b"\xff" * 32):
        s = int.from_bytes(candidate, "big")
        slope = (share.y - s) * pow(4, -1, shamir.PRIME) % shamir.PRIME
        second = shamir.Share(7, (s + 7 * slope) % shamir.PRIME)
        assert shamir.reconstruct([share, second], 2) == candidate


# --- envelopes ---------------------------------------------------------------------------


def _sealed(plaintext: bytes = b"shares") -> tuple[Envelope, X25519PrivateKey, X25519PrivateKey]:
    alice, bob = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    envelope = seal(
        plaintext,
        job_id="job",
        round_=2,
        sender="alice",
        recipient="bob",
        sender_key=alice,
        recipient_public=bob.public_key(),
        rng=SecureGenerator.fresh(),
    )
    return envelope, alice, bob


def _open(
    envelope: Envelope, bob: X25519PrivateKey, alice_public: object, **changes: object
) -> bytes:
    kwargs: dict[str, object] = {
        "job_id": "job",
        "round_": 2,
        "sender": "alice",
        "recipient": "bob",
        "recipient_key": bob,
        "sender_public": alice_public,
    }
    kwargs.update(changes)
    return open_envelope(envelope, **kwargs)  # type: ignore[arg-type]


def test_envelope_round_trip_and_ciphertext_hides_plaintext() -> None:
    plaintext = os.urandom(132)
    envelope, alice, bob = _sealed(plaintext)
    assert plaintext not in envelope.ciphertext
    assert len(envelope.ciphertext) == 132 + 16 and envelope.nbytes == 12 + 148
    assert _open(envelope, bob, alice.public_key()) == plaintext


@pytest.mark.parametrize(
    "changes",
    [
        {"sender": "carol"},
        {"recipient": "carol"},
        {"job_id": "other-job"},
        {"round_": 3},
    ],
)
def test_envelope_refuses_another_sender_recipient_job_or_round(changes: dict[str, object]) -> None:
    envelope, alice, bob = _sealed()
    with pytest.raises(EnvelopeError):
        _open(envelope, bob, alice.public_key(), **changes)


def test_relabelled_or_altered_envelopes_fail_authentication() -> None:
    envelope, alice, bob = _sealed()
    relabelled = Envelope("job", 3, "alice", "bob", envelope.nonce, envelope.ciphertext)
    with pytest.raises(EnvelopeError, match="failed authentication"):
        _open(relabelled, bob, alice.public_key(), round_=3)
    flipped = bytes([envelope.ciphertext[0] ^ 1]) + envelope.ciphertext[1:]
    altered = Envelope("job", 2, "alice", "bob", envelope.nonce, flipped)
    with pytest.raises(EnvelopeError, match="failed authentication"):
        _open(altered, bob, alice.public_key())


def test_only_the_recipient_key_opens_an_envelope() -> None:
    envelope, alice, _bob = _sealed()
    eavesdropper = X25519PrivateKey.generate()
    with pytest.raises(EnvelopeError):
        _open(envelope, eavesdropper, alice.public_key())
    with pytest.raises(EnvelopeError):  # the coordinator substituting its own sender key
        _open(envelope, _bob, eavesdropper.public_key())


def test_encoding_is_typed_and_length_prefixed() -> None:
    assert encode("x", "ab", "c") != encode("x", "a", "bc")
    assert encode("x", b"1") != encode("x", "1") != encode("x", 1)
    assert encode("x", "a") != encode("y", "a")
    with pytest.raises(TypeError):
        encode("x", True)
