"""End-to-end encrypted, authenticated envelopes for shares relayed by the coordinator.

Bonawitz et al. 2017, §4 (round 1, ShareKeys): party u encrypts the shares it gives v
under a key agreed from u's and v's advertised "c" keys, so the coordinator that relays
them learns nothing and cannot alter them unnoticed.

Construction: X25519(sender's c key, recipient's c public key) -> HKDF-SHA256 with ``info``
binding job, round, sender, recipient and both public keys -> a ChaCha20-Poly1305 key.
The 96-bit nonce is drawn from the sender's :class:`SecureGenerator`. The associated data
binds sender, recipient, job and round, so an envelope moved to another recipient, another
sender, another job or another round fails authentication: :class:`EnvelopeError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from accord.errors import EnvelopeError
from accord.protect.encoding import encode
from accord.secure_random import SecureGenerator

__all__ = ["NONCE_BYTES", "Envelope", "open_envelope", "raw_public", "seal"]

NONCE_BYTES = 12


@dataclass(frozen=True, slots=True)
class Envelope:
    """Ciphertext from ``sender`` to ``recipient``; only the recipient can open it."""

    job_id: str
    round: int
    sender: str
    recipient: str
    nonce: bytes
    ciphertext: bytes

    @property
    def nbytes(self) -> int:
        return len(self.nonce) + len(self.ciphertext)


def raw_public(key: X25519PublicKey) -> bytes:
    """The 32 raw bytes of an X25519 public key."""
    return key.public_bytes_raw()


def seal(
    plaintext: bytes,
    *,
    job_id: str,
    round_: int,
    sender: str,
    recipient: str,
    sender_key: X25519PrivateKey,
    recipient_public: X25519PublicKey,
    rng: SecureGenerator,
) -> Envelope:
    """Encrypt and authenticate ``plaintext`` for ``recipient``."""
    key = _envelope_key(
        sender_key, recipient_public, job_id, round_, sender, recipient, sender_is_self=True
    )
    nonce = rng.random_bytes(NONCE_BYTES)
    aad = encode("envelope", job_id, round_, sender, recipient)
    ciphertext = ChaCha20Poly1305(key).encrypt(nonce, plaintext, aad)
    return Envelope(job_id, round_, sender, recipient, nonce, ciphertext)


def open_envelope(
    envelope: Envelope,
    *,
    job_id: str,
    round_: int,
    sender: str,
    recipient: str,
    recipient_key: X25519PrivateKey,
    sender_public: X25519PublicKey,
) -> bytes:
    """The plaintext, if ``envelope`` is authentic and from ``sender`` to ``recipient`` for
    this job and round; :class:`EnvelopeError` otherwise."""
    stated = (envelope.job_id, envelope.round, envelope.sender, envelope.recipient)
    if stated != (job_id, round_, sender, recipient):
        raise EnvelopeError(
            f"an envelope states (job {envelope.job_id!r}, round {envelope.round}, "
            f"{envelope.sender!r} -> {envelope.recipient!r}) but was expected from "
            f"{sender!r} to {recipient!r} in job {job_id!r}, round {round_}"
        )
    if len(envelope.nonce) != NONCE_BYTES:
        raise EnvelopeError(f"an envelope from {sender!r} has a malformed nonce")
    key = _envelope_key(
        recipient_key, sender_public, job_id, round_, sender, recipient, sender_is_self=False
    )
    # The associated data is rebuilt from what the recipient expects, not from the envelope.
    aad = encode("envelope", job_id, round_, sender, recipient)
    try:
        return ChaCha20Poly1305(key).decrypt(envelope.nonce, envelope.ciphertext, aad)
    except InvalidTag:
        raise EnvelopeError(
            f"the envelope from {sender!r} to {recipient!r} failed authentication: it was "
            "altered, or made with other keys"
        ) from None


def _envelope_key(
    own_key: X25519PrivateKey,
    peer_public: X25519PublicKey,
    job_id: str,
    round_: int,
    sender: str,
    recipient: str,
    *,
    sender_is_self: bool,
) -> bytes:
    own_public = raw_public(own_key.public_key())
    peer = raw_public(peer_public)
    sender_public, recipient_public = (own_public, peer) if sender_is_self else (peer, own_public)
    shared = own_key.exchange(peer_public)
    kdf = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=encode(
            "kdf/envelope", job_id, round_, sender, recipient, sender_public, recipient_public
        ),
    )
    return kdf.derive(shared)
