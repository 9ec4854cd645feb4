"""Mask seeds (HKDF-SHA256) and their expansion into ring vectors (ChaCha20 keystream).

Bonawitz et al. 2017, §4 (Figure 4, round 2): party u sends

    y_u = x_u + PRG(b_u) + sum_{v: u < v} PRG(s_uv) - sum_{v: u > v} PRG(s_uv)   (mod 2^k)

where b_u is u's self-mask seed and s_uv the seed both u and v derive from their X25519
key agreement. SecAgg+ (Bell et al. 2020, §3) keeps the formula but sums over u's
neighbours in the graph only. "u < v" is the order of the parties' roster indices.

Seeds: every PRG seed is 32 bytes from HKDF-SHA256 whose ``info`` binds the job id, the
round, the purpose and the parties, so no two rounds, jobs, purposes or pairs ever share a
keystream, even if a key were reused by mistake.

PRG: the ChaCha20 keystream of ``cryptography`` (OpenSSL) under the seed, nonce zero (each
seed is used for exactly one expansion). The bytes are read as little-endian words with
``np.frombuffer`` and reduced modulo ``2**k`` by a mask. A short seed never goes into
NumPy's generators: their state is small and not designed to be unpredictable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from accord.protect.encoding import digest, encode
from accord.protect.quantize import RingVector, ring_mask, word_dtype

__all__ = [
    "SEED_BYTES",
    "add_masks",
    "derive_seed",
    "expand_mask",
    "pairwise_masks",
    "pairwise_seed",
    "pairwise_sign",
    "self_mask_commitment",
    "self_mask_seed",
]

SEED_BYTES = 32
_ZERO_NONCE = bytes(16)  # 4-byte block counter 0 + 12-byte nonce 0: one use per seed


def derive_seed(secret: bytes, purpose: str, job_id: str, round_: int, *context: str) -> bytes:
    """A 32-byte seed: HKDF-SHA256(secret, info = job, round, purpose, context)."""
    kdf = HKDF(
        algorithm=hashes.SHA256(),
        length=SEED_BYTES,
        salt=None,
        info=encode("kdf/" + purpose, job_id, round_, *context),
    )
    return kdf.derive(secret)


def self_mask_seed(self_mask_secret: bytes, job_id: str, round_: int, party: str) -> bytes:
    """The PRG seed of party's self mask ``PRG(b_u)``."""
    return derive_seed(self_mask_secret, "self-mask", job_id, round_, party)


def self_mask_commitment(job_id: str, round_: int, party: str, secret: bytes) -> bytes:
    """SHA-256 commitment to b_u, advertised so that the coordinator can check the b_u it
    reconstructs (a corrupt party's wrong share is caught, not summed). b_u is 256 random
    bits, so the commitment hides it."""
    return digest("self-mask-commitment", job_id, round_, party, secret)


def pairwise_seed(
    own_key: X25519PrivateKey,
    peer_public: X25519PublicKey,
    job_id: str,
    round_: int,
    lower: str,
    higher: str,
) -> bytes:
    """The PRG seed of the pair's mask ``PRG(s_uv)``: the same on both sides.

    ``lower`` and ``higher`` are the two parties in roster order, so both ends bind the same
    ``info`` whichever of them computes it (and so does the coordinator, from a
    reconstructed key).
    """
    shared = own_key.exchange(peer_public)
    return derive_seed(shared, "pairwise-mask", job_id, round_, lower, higher)


def pairwise_masks(
    own_key: X25519PrivateKey,
    party: str,
    peer_publics: Mapping[str, bytes],
    job_id: str,
    round_: int,
    index: Callable[[str], int],
) -> list[tuple[bytes, int]]:
    """(seed, sign) of every pairwise mask ``party`` adds with the peers in
    ``peer_publics`` (name -> raw X25519 public key), in the order of ``index``.

    Whoever holds ``party``'s key computes the same list: the party when it masks, and the
    coordinator, from a reconstructed key, when it removes a dropped party's masks from its
    peers' inputs (the peer added sign(peer, party) = -sign(party, peer), which is exactly
    the sign listed here).
    """
    masks = []
    for peer in sorted(peer_publics, key=index):
        lower, higher = sorted((party, peer), key=index)
        public = X25519PublicKey.from_public_bytes(peer_publics[peer])
        seed = pairwise_seed(own_key, public, job_id, round_, lower, higher)
        masks.append((seed, pairwise_sign(index(party), index(peer))))
    return masks


def pairwise_sign(own_index: int, peer_index: int) -> int:
    """+1 when the party has the lower roster index, -1 when the higher (Bonawitz §4)."""
    if own_index == peer_index:
        raise ValueError("a party has no pairwise mask with itself")
    return 1 if own_index < peer_index else -1


def expand_mask(seed: bytes, length: int, ring_bits: int) -> RingVector:
    """``length`` uniform words modulo ``2**k`` from ChaCha20(seed), as a writable array.

    Words are 4 bytes for rings of at most 32 bits and 8 bytes otherwise; a uniform word
    reduced by a power-of-two mask is uniform modulo ``2**k``.
    """
    dtype = word_dtype(ring_bits)
    words = _keystream_words(seed, length, dtype, _KeystreamBuffer(length * dtype.itemsize))
    words &= dtype.type(ring_mask(ring_bits))
    return words


def add_masks(values: RingVector, masks: Sequence[tuple[bytes, int]], ring_bits: int) -> RingVector:
    """``values + sum(sign * PRG(seed))`` modulo ``2**k``, for ``(seed, sign)`` in ``masks``.

    Adds the raw keystream words and reduces once at the end: the words wrap modulo 2**32
    or 2**64, both multiples of 2**k, so one final mask gives the same result as reducing
    every mask first. Memory stays at the result plus one keystream, whatever the number
    of masks.
    """
    dtype = word_dtype(ring_bits)
    total = np.array(values, dtype=dtype, copy=True)
    # One buffer for every mask: the keystream is written into it, not allocated per mask.
    buffer = _KeystreamBuffer(total.size * dtype.itemsize)
    for seed, sign in masks:
        words = _keystream_words(seed, total.size, dtype, buffer)
        if sign > 0:
            total += words
        elif sign < 0:
            total -= words
        else:
            raise ValueError("a mask's sign must be +1 or -1")
    total &= dtype.type(ring_mask(ring_bits))
    return total


class _KeystreamBuffer:
    """Zeros to encrypt and a writable output for ``nbytes`` of keystream, reused."""

    def __init__(self, nbytes: int) -> None:
        if nbytes < 0:
            raise ValueError("length must be non-negative")
        self.zeros = bytes(nbytes)
        # update_into wants room for one more block than it writes.
        self.out = bytearray(nbytes + 64)
        self.nbytes = nbytes


def _keystream_words(
    seed: bytes, length: int, dtype: np.dtype[np.unsignedinteger], buffer: _KeystreamBuffer
) -> npt.NDArray[np.unsignedinteger]:
    """The first ``length`` little-endian words of ChaCha20(seed), written into ``buffer``
    (so valid until the buffer's next use)."""
    if len(seed) != SEED_BYTES:
        raise ValueError(f"a mask seed must be {SEED_BYTES} bytes")
    if length * dtype.itemsize != buffer.nbytes:
        raise ValueError("the keystream buffer does not match the length")
    encryptor = Cipher(algorithms.ChaCha20(seed, _ZERO_NONCE), mode=None).encryptor()
    # Encrypting zeros yields the raw keystream.
    encryptor.update_into(buffer.zeros, buffer.out)
    words: npt.NDArray[np.unsignedinteger] = np.frombuffer(
        buffer.out, dtype=dtype.newbyteorder("<"), count=length
    )
    return words
