"""The typed messages of one secure-aggregation round, in protocol order.

Node -> coordinator: :class:`Advertisement`, :class:`Confirmation`, :class:`KeyShares`,
:class:`MaskedInput`, :class:`SurvivorSignature`, :class:`UnmaskResponse`.
Coordinator -> node: :class:`AdvertisementSet`, :class:`ConfirmationSet`,
:class:`ShareDelivery`, :class:`SurvivorList`, :class:`UnmaskRequest`.

Every message names its job and round; every node-made message names its sender. What a
party signs is given by the ``*_payload`` functions (canonical encodings, ``encoding.py``).
``nbytes`` counts the bytes a transport would carry (fields, not framing).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from accord.errors import SecAggTamperError
from accord.protect.encoding import digest, encode
from accord.protect.envelope import Envelope
from accord.protect.quantize import RingVector, packed_bytes
from accord.protect.shamir import SHARE_BYTES, Share

__all__ = [
    "Advertisement",
    "AdvertisementSet",
    "Confirmation",
    "ConfirmationSet",
    "KeyShares",
    "MaskAttestation",
    "MaskedInput",
    "ShareDelivery",
    "SurvivorList",
    "SurvivorSignature",
    "UnmaskRequest",
    "UnmaskResponse",
    "advertisement_set_digest",
    "share_payload",
    "split_share_payload",
    "survivors_payload",
]


@dataclass(frozen=True, slots=True)
class Advertisement:
    """Stage 1, node -> coordinator: the party's keys and commitments, signed (Ed25519)."""

    job_id: str
    round: int
    party: str
    model_hash: bytes
    """SHA-256 of the global model the party received this round."""
    c_public: bytes
    """X25519 public key for envelopes (raw, 32 bytes)."""
    s_public: bytes
    """X25519 public key for pairwise masks (raw, 32 bytes)."""
    nonce_commitment: bytes
    """SHA-256 commitment to the party's graph nonce (``graph.nonce_commitment``)."""
    self_mask_commitment: bytes
    """SHA-256 commitment to the self-mask seed b_u, so a reconstruction can be checked."""
    signature: bytes

    def payload(self) -> bytes:
        """The bytes the signature covers: every field but the signature."""
        return encode(
            "advertise",
            self.job_id,
            self.round,
            self.party,
            self.model_hash,
            self.c_public,
            self.s_public,
            self.nonce_commitment,
            self.self_mask_commitment,
        )

    @property
    def nbytes(self) -> int:
        return len(self.payload()) + len(self.signature)


@dataclass(frozen=True, slots=True)
class AdvertisementSet:
    """Stage 1, coordinator -> every node: the advertisements of the round (the set U1)."""

    job_id: str
    round: int
    advertisements: tuple[Advertisement, ...]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.advertisements)


def advertisement_set_digest(job_id: str, round_: int, ads: tuple[Advertisement, ...]) -> bytes:
    """d: the digest of U1 (``ads`` in roster order), which every confirmation signs."""
    fields: list[bytes] = []
    for ad in ads:
        fields += [ad.payload(), ad.signature]
    return digest("advertisement-set", job_id, round_, *fields)


@dataclass(frozen=True, slots=True)
class Confirmation:
    """Stage 2, node -> coordinator: "I saw the set with digest d", and the nonce reveal."""

    job_id: str
    round: int
    party: str
    set_digest: bytes
    nonce: bytes
    signature: bytes

    def payload(self) -> bytes:
        return encode("confirm", self.job_id, self.round, self.party, self.set_digest, self.nonce)

    @property
    def nbytes(self) -> int:
        return len(self.payload()) + len(self.signature)


@dataclass(frozen=True, slots=True)
class ConfirmationSet:
    """Stage 2, coordinator -> every node: the confirmations it received."""

    job_id: str
    round: int
    confirmations: tuple[Confirmation, ...]

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for c in self.confirmations)


@dataclass(frozen=True, slots=True)
class KeyShares:
    """Stage 3, node -> coordinator: one envelope per share holder (shares of b_u and s_u)."""

    job_id: str
    round: int
    sender: str
    envelopes: tuple[Envelope, ...]

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self.envelopes)


def share_payload(self_mask_share: Share, key_share: Share) -> bytes:
    """The plaintext of one share envelope: the holder's share of b, then of s (66 bytes each)."""
    return self_mask_share.y_bytes() + key_share.y_bytes()


def split_share_payload(payload: bytes) -> tuple[bytes, bytes]:
    """(share of b, share of s) from an envelope's plaintext."""
    if len(payload) != 2 * SHARE_BYTES:
        raise SecAggTamperError("a share envelope holds a malformed payload")
    return payload[:SHARE_BYTES], payload[SHARE_BYTES:]


@dataclass(frozen=True, slots=True)
class ShareDelivery:
    """Stage 3, coordinator -> one node: the envelopes addressed to it."""

    job_id: str
    round: int
    recipient: str
    envelopes: tuple[Envelope, ...]

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self.envelopes)


@dataclass(frozen=True, slots=True)
class MaskAttestation:
    """Signed by a party with its masked input: the neighbours whose pairwise masks it
    added. A holder reveals its share of the party's b only if it is on this list, so a
    coordinator that withheld the holder's envelope from the party (the party then did
    not mask with it) cannot use that holder to unmask the party."""

    job_id: str
    round: int
    party: str
    set_digest: bytes
    masked_with: tuple[str, ...]
    """In roster order."""
    signature: bytes

    def payload(self) -> bytes:
        return encode(
            "masked-with", self.job_id, self.round, self.party, self.set_digest, *self.masked_with
        )

    @property
    def nbytes(self) -> int:
        return len(self.payload()) + len(self.signature)


@dataclass(frozen=True, slots=True)
class MaskedInput:
    """Stage 4, node -> coordinator: y_u = x_u + PRG(b_u) + sum ±PRG(s_uv) mod 2^k."""

    job_id: str
    round: int
    sender: str
    values: RingVector
    attestation: MaskAttestation

    @property
    def nbytes(self) -> int:
        """Bytes as held in memory (4 or 8 per word), plus the attestation."""
        return int(self.values.nbytes) + self.attestation.nbytes

    def packed_nbytes(self, ring_bits: int) -> int:
        """Bytes with the words packed at ``ring_bits`` bits each, plus the attestation."""
        words = packed_bytes(int(np.asarray(self.values).size), ring_bits)
        return words + self.attestation.nbytes


@dataclass(frozen=True, slots=True)
class SurvivorList:
    """Stage 5, coordinator -> survivors: the parties whose masked inputs it received (L)."""

    job_id: str
    round: int
    survivors: tuple[str, ...]

    @property
    def nbytes(self) -> int:
        return sum(len(p.encode()) for p in self.survivors)


def survivors_payload(
    job_id: str, round_: int, party: str, set_digest: bytes, survivors: tuple[str, ...]
) -> bytes:
    """What a party signs in the consistency check: the list L, for this round's set d.

    The list enters through its digest, so that checking m signatures over one long list
    encodes the list once, not m times.
    """
    return encode("survivors", job_id, round_, party, set_digest, _survivor_list_digest(survivors))


@lru_cache(maxsize=64)
def _survivor_list_digest(survivors: tuple[str, ...]) -> bytes:
    return digest("survivor-list", *survivors)


@dataclass(frozen=True, slots=True)
class SurvivorSignature:
    """Stage 5, node -> coordinator: the party's signature over L."""

    job_id: str
    round: int
    party: str
    signature: bytes

    @property
    def nbytes(self) -> int:
        return len(self.party.encode()) + len(self.signature)


@dataclass(frozen=True, slots=True)
class UnmaskRequest:
    """Stage 6, coordinator -> survivors: L, the signatures it gathered over L, and every
    survivor's mask attestation."""

    job_id: str
    round: int
    survivors: tuple[str, ...]
    signatures: tuple[SurvivorSignature, ...]
    attestations: tuple[MaskAttestation, ...]

    @property
    def nbytes(self) -> int:
        return (
            sum(len(p.encode()) for p in self.survivors)
            + sum(s.nbytes for s in self.signatures)
            + sum(a.nbytes for a in self.attestations)
        )


@dataclass(frozen=True, slots=True)
class UnmaskResponse:
    """Stage 6, node -> coordinator: for each party whose shares it holds, exactly one share:
    of b_v if v is in L, of s_v if v is not."""

    job_id: str
    round: int
    sender: str
    self_mask_shares: tuple[tuple[str, bytes], ...]
    """(owner, 66-byte share of the owner's self-mask seed b)."""
    key_shares: tuple[tuple[str, bytes], ...]
    """(owner, 66-byte share of the owner's mask-key secret s)."""

    @property
    def nbytes(self) -> int:
        pairs = self.self_mask_shares + self.key_shares
        return sum(len(owner.encode()) + len(share) for owner, share in pairs)
