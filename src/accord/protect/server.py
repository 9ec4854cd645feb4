"""The coordinator's side of one secure-aggregation round: relay, collect, unmask the sum.

The coordinator learns the sum modulo 2^k of the survivors' inputs and nothing else it can
use: envelopes are end-to-end encrypted, masked inputs are uniform without the masks, and
for each party it receives shares of at most one of its two secrets (``node.py``).

Each ``receive_*`` method takes one party's message and raises
:class:`SecAggTamperError` when it is invalid (the caller then treats that party as
dropped: the message is not stored). Each broadcast method closes its stage and raises
:class:`SecAggTooFewError` when too few parties remain, after which the round is over.
:meth:`result` reconstructs every needed secret *before* it sums anything, so a round
that cannot complete returns nothing at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import IntEnum
from functools import partial
from typing import TypeVar

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from accord.errors import SecAggAbortedError, SecAggTamperError, SecAggTooFewError
from accord.protect import shamir
from accord.protect.consistency import check_attestation
from accord.protect.envelope import Envelope, raw_public
from accord.protect.graph import NeighbourGraph
from accord.protect.masks import (
    add_masks,
    pairwise_masks,
    self_mask_commitment,
    self_mask_seed,
)
from accord.protect.messages import (
    Advertisement,
    AdvertisementSet,
    Confirmation,
    ConfirmationSet,
    KeyShares,
    MaskAttestation,
    MaskedInput,
    ShareDelivery,
    SurvivorList,
    SurvivorSignature,
    UnmaskRequest,
    UnmaskResponse,
    survivors_payload,
)
from accord.protect.params import SecAggParams
from accord.protect.quantize import RingVector, ring_mask, word_dtype
from accord.protect.round_setup import (
    AdvertisedRound,
    check_advertisement,
    check_confirmation,
    check_header,
    check_signature,
    verify_advertisement_set,
    verify_confirmations,
)

__all__ = ["SecAggServer"]

T = TypeVar("T")


class _Stage(IntEnum):
    ADVERTISING = 0
    CONFIRMING = 1
    SHARING = 2
    MASKING = 3
    SIGNING = 4
    UNMASKING = 5
    DONE = 6


class SecAggServer:
    """The coordinator's state for one round. ``model_hash``: the hash of the model it sent;
    when given, advertisements carrying another hash are refused."""

    def __init__(
        self,
        params: SecAggParams,
        roster_keys: Mapping[str, Ed25519PublicKey],
        model_hash: bytes | None = None,
    ) -> None:
        self.params = params
        self._roster_keys = dict(roster_keys)
        self._model_hash = model_hash
        self._stage = _Stage.ADVERTISING
        self._ads: dict[str, Advertisement] = {}
        self._advertised: AdvertisedRound | None = None
        self._confirmations: dict[str, Confirmation] = {}
        self._graph: NeighbourGraph | None = None
        self._key_shares: dict[str, KeyShares] = {}
        self._delivered: dict[str, frozenset[str]] = {}  # recipient -> owners delivered
        self._inputs: dict[str, RingVector] = {}
        self._attestations: dict[str, MaskAttestation] = {}
        self._survivors: tuple[str, ...] = ()
        self._signatures: dict[str, SurvivorSignature] = {}
        self._b_shares: dict[str, dict[int, shamir.Share]] = {}
        self._s_shares: dict[str, dict[int, shamir.Share]] = {}
        self._responded: set[str] = set()

    @property
    def graph(self) -> NeighbourGraph | None:
        return self._graph

    @property
    def survivors(self) -> tuple[str, ...]:
        """L: the parties whose inputs the sum covers (after :meth:`survivor_list`)."""
        return self._survivors

    # --- stage 1 ----------------------------------------------------------------------

    def receive_advertisement(self, ad: Advertisement) -> None:
        self._require(_Stage.ADVERTISING, "an advertisement")
        check_advertisement(ad, self.params, self._roster_keys)
        if self._model_hash is not None and ad.model_hash != self._model_hash:
            raise SecAggTamperError(f"{ad.party!r} advertises another global model's hash")
        if ad.party in self._ads:
            raise SecAggTamperError(f"{ad.party!r} advertised twice")
        self._ads[ad.party] = ad

    def advertisement_set(self) -> AdvertisementSet:
        self._require(_Stage.ADVERTISING, "the advertisement set")
        p = self.params
        members = p.in_roster_order(set(self._ads))
        ad_set = AdvertisementSet(p.job_id, p.round, tuple(self._ads[m] for m in members))
        self._advertised = self._close(
            lambda: verify_advertisement_set(ad_set, p, self._roster_keys, None)
        )
        self._stage = _Stage.CONFIRMING
        return ad_set

    # --- stage 2 ----------------------------------------------------------------------

    def receive_confirmation(self, confirmation: Confirmation) -> None:
        self._require(_Stage.CONFIRMING, "a confirmation")
        assert self._advertised is not None
        check_confirmation(confirmation, self.params, self._roster_keys, self._advertised)
        if confirmation.party in self._confirmations:
            raise SecAggTamperError(f"{confirmation.party!r} confirmed twice")
        self._confirmations[confirmation.party] = confirmation

    def confirmation_set(self) -> ConfirmationSet:
        self._require(_Stage.CONFIRMING, "the confirmation set")
        assert self._advertised is not None
        p, advertised = self.params, self._advertised
        ordered = p.in_roster_order(set(self._confirmations))
        conf_set = ConfirmationSet(
            p.job_id, p.round, tuple(self._confirmations[c] for c in ordered)
        )
        self._graph = self._close(
            lambda: verify_confirmations(conf_set, p, self._roster_keys, advertised)
        )
        self._stage = _Stage.SHARING
        return conf_set

    # --- stage 3 ----------------------------------------------------------------------

    def receive_key_shares(self, shares: KeyShares) -> None:
        self._require(_Stage.SHARING, "key shares")
        graph = self._graph
        assert graph is not None
        check_header(
            self.params, shares.job_id, shares.round, f"the key shares of {shares.sender!r}"
        )
        sender = shares.sender
        if sender not in graph.members or sender in self._key_shares:
            raise SecAggTamperError(f"unexpected or repeated key shares from {sender!r}")
        recipients = [e.recipient for e in shares.envelopes]
        if sorted(recipients) != sorted(graph.holders(sender) - {sender}) or any(
            (e.job_id, e.round, e.sender) != (self.params.job_id, self.params.round, sender)
            for e in shares.envelopes
        ):
            raise SecAggTamperError(f"{sender!r} sent envelopes to the wrong parties")
        self._key_shares[sender] = shares

    def share_deliveries(self) -> dict[str, ShareDelivery]:
        """For every party that shared its keys (U2): the envelopes other members of U2
        addressed to it."""
        self._require(_Stage.SHARING, "the share deliveries")
        p, graph = self.params, self._graph
        assert graph is not None
        shared = p.in_roster_order(set(self._key_shares))
        self._close(lambda: self._at_least(len(shared), "parties shared their keys"))
        inbox: dict[str, list[Envelope]] = {party: [] for party in shared}
        for sender in shared:
            for envelope in self._key_shares[sender].envelopes:
                if envelope.recipient in inbox:
                    inbox[envelope.recipient].append(envelope)
        self._delivered = {r: frozenset(e.sender for e in box) for r, box in inbox.items()}
        self._stage = _Stage.MASKING
        return {r: ShareDelivery(p.job_id, p.round, r, tuple(box)) for r, box in inbox.items()}

    # --- stage 4 ----------------------------------------------------------------------

    def receive_masked_input(self, masked: MaskedInput) -> None:
        self._require(_Stage.MASKING, "a masked input")
        p = self.params
        check_header(p, masked.job_id, masked.round, f"the masked input of {masked.sender!r}")
        if masked.sender not in self._delivered or masked.sender in self._inputs:
            raise SecAggTamperError(f"unexpected or repeated masked input from {masked.sender!r}")
        values = np.asarray(masked.values)
        if values.shape != (p.vector_length,) or values.dtype != word_dtype(p.ring_bits):
            raise SecAggTamperError(f"the masked input of {masked.sender!r} is malformed")
        if values.size and int(values.max()) > ring_mask(p.ring_bits):
            raise SecAggTamperError(f"the masked input of {masked.sender!r} leaves the ring")
        assert self._advertised is not None
        masked_with = check_attestation(
            masked.attestation, masked.sender, p, self._roster_keys, self._advertised.set_digest
        )
        if set(masked_with) != self._delivered[masked.sender]:
            raise SecAggTamperError(
                f"{masked.sender!r} attests masks with other parties than it was delivered"
            )
        self._inputs[masked.sender] = values
        self._attestations[masked.sender] = masked.attestation

    def survivor_list(self) -> SurvivorList:
        """L: the parties whose masked inputs arrived; each is asked to sign it."""
        self._require(_Stage.MASKING, "the survivor list")
        p = self.params
        self._survivors = p.in_roster_order(set(self._inputs))
        self._close(lambda: self._at_least(len(self._survivors), "masked inputs arrived"))
        self._stage = _Stage.SIGNING
        return SurvivorList(p.job_id, p.round, self._survivors)

    # --- stage 5 ----------------------------------------------------------------------

    def receive_survivor_signature(self, signature: SurvivorSignature) -> None:
        self._require(_Stage.SIGNING, "a survivor signature")
        p, advertised = self.params, self._advertised
        assert advertised is not None
        who = f"the survivor signature of {signature.party!r}"
        check_header(p, signature.job_id, signature.round, who)
        if signature.party not in self._survivors or signature.party in self._signatures:
            raise SecAggTamperError(f"unexpected or repeated {who}")
        payload = survivors_payload(
            p.job_id, p.round, signature.party, advertised.set_digest, self._survivors
        )
        check_signature(self._roster_keys[signature.party], signature.signature, payload, who)
        self._signatures[signature.party] = signature

    def unmask_request(self) -> UnmaskRequest:
        self._require(_Stage.SIGNING, "the unmask request")
        p = self.params
        signers = p.in_roster_order(set(self._signatures))
        self._close(lambda: self._at_least(len(signers), "parties signed the survivor list"))
        self._stage = _Stage.UNMASKING
        return UnmaskRequest(
            p.job_id,
            p.round,
            self._survivors,
            tuple(self._signatures[s] for s in signers),
            tuple(self._attestations[s] for s in self._survivors),
        )

    # --- stage 6 ----------------------------------------------------------------------

    def receive_unmask_response(self, response: UnmaskResponse) -> None:
        self._require(_Stage.UNMASKING, "an unmask response")
        p, graph = self.params, self._graph
        assert graph is not None
        sender = response.sender
        check_header(p, response.job_id, response.round, f"the unmask response of {sender!r}")
        if sender not in self._survivors or sender in self._responded:
            raise SecAggTamperError(f"unexpected or repeated unmask response from {sender!r}")
        held = self._delivered[sender] | ({sender} if graph.complete else set())
        survived = set(self._survivors)
        x = p.share_x(sender)
        b_new: dict[str, shamir.Share] = {}
        s_new: dict[str, shamir.Share] = {}
        for owner, data in response.self_mask_shares:
            if owner not in held or owner not in survived or owner in b_new:
                raise SecAggTamperError(f"{sender!r} revealed a self-mask share of {owner!r}")
            b_new[owner] = shamir.Share.from_bytes(x, data)
        for owner, data in response.key_shares:
            if owner not in held or owner in survived or owner in s_new:
                raise SecAggTamperError(f"{sender!r} revealed a key share of {owner!r}")
            s_new[owner] = shamir.Share.from_bytes(x, data)
        self._responded.add(sender)
        for owner, share in b_new.items():
            self._b_shares.setdefault(owner, {})[x] = share
        for owner, share in s_new.items():
            self._s_shares.setdefault(owner, {})[x] = share

    def result(self) -> RingVector:
        """The sum modulo 2^k of the survivors' inputs (word dtype of the ring).

        Reconstructs every survivor's b and every needed dropped party's s first; if any
        has fewer than t shares (or the shares do not match the commitments), raises and
        returns nothing.
        """
        self._require(_Stage.UNMASKING, "the result")
        p, graph, advertised = self.params, self._graph, self._advertised
        assert graph is not None and advertised is not None
        ads = advertised.advertisements
        masks: list[tuple[bytes, int]] = []
        for u in self._survivors:
            secret = self._close(partial(self._reconstruct, self._b_shares, u, "self-mask"))
            expected = self_mask_commitment(p.job_id, p.round, u, secret)
            if expected != ads[u].self_mask_commitment:
                self._stage = _Stage.DONE
                raise SecAggTamperError(
                    f"the shares of {u!r}'s self mask do not match its commitment"
                )
            masks.append((self_mask_seed(secret, p.job_id, p.round, u), -1))
        survived = set(self._survivors)
        for v in p.in_roster_order(set(self._delivered) - survived):
            masked_with_v = [u for u in self._survivors if v in self._delivered[u]]
            if not masked_with_v:
                continue
            secret = self._close(partial(self._reconstruct, self._s_shares, v, "mask-key"))
            key = X25519PrivateKey.from_private_bytes(secret)
            if raw_public(key.public_key()) != ads[v].s_public:
                self._stage = _Stage.DONE
                raise SecAggTamperError(f"the shares of {v!r}'s mask key do not match its key")
            # v's masks from v's side carry sign(v, u) = -sign(u, v): adding them removes
            # what each survivor u added.
            peers = {u: ads[u].s_public for u in masked_with_v}
            masks += pairwise_masks(key, v, peers, p.job_id, p.round, p.index)
        total = np.zeros(p.vector_length, dtype=word_dtype(p.ring_bits))
        for u in self._survivors:
            total += self._inputs[u]
        self._stage = _Stage.DONE
        return add_masks(total, masks, p.ring_bits)

    # --- helpers ----------------------------------------------------------------------

    def _reconstruct(
        self, store: dict[str, dict[int, shamir.Share]], owner: str, what: str
    ) -> bytes:
        assert self._graph is not None
        shares = list(store.get(owner, {}).values())
        if len(shares) < self._graph.threshold:
            raise SecAggTooFewError(
                f"{len(shares)} shares of {owner!r}'s {what} secret arrived; "
                f"{self._graph.threshold} are needed to unmask the sum"
            )
        return shamir.reconstruct(shares, self._graph.threshold)

    def _at_least(self, count: int, what: str) -> None:
        assert self._advertised is not None
        needed = self._advertised.graph_params.min_signatures
        if count < needed:
            raise SecAggTooFewError(f"only {count} {what}; the round needs {needed}")

    def _require(self, stage: _Stage, what: str) -> None:
        if self._stage != stage:
            raise SecAggAbortedError(
                f"{what} does not belong to the round's current stage ({self._stage.name.lower()})"
            )

    def _close(self, step: Callable[[], T]) -> T:
        """Run a stage-closing step; if it fails the round is over."""
        try:
            return step()
        except SecAggAbortedError:
            self._stage = _Stage.DONE
            raise
