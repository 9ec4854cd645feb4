"""One party's side of one round (Bonawitz et al. 2017, Fig. 4 and §6; graph of Bell et al.).

Each method takes the coordinator's broadcast and returns the party's next message, in
order. A failed check raises a :class:`SecAggAbortedError` subclass and the node answers
nothing more: what it released before reveals nothing about its input. Its checks, and
the attack each stops:

* advertisements and confirmations: signatures against the roster its *owner* gave it
  (no substituted keys), this job and round, one model hash (no party gets another
  model), one set digest (everyone sees the same U1 and derives the same graph);
* masking: only if at least t of its share holders shared their keys with it, so a
  coordinator withholding envelopes cannot leave it masked by too few parties;
* survivor list: one signature per round, only for a long enough list that names it and
  only neighbours it masked with;
* unmasking: only for the list it signed, carrying m valid signatures; one share per
  party (b if on the list, s if not; it records which and never reveals the other); and
  a survivor's b share only if the survivor's signed mask attestation names this party
  (a coordinator that delivered envelopes one way only cannot use it to unmask w).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from enum import IntEnum
from typing import Any, NoReturn, TypeVar

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from accord.errors import (
    SecAggAbortedError,
    SecAggParameterError,
    SecAggTamperError,
    SecAggTooFewError,
)
from accord.protect import shamir
from accord.protect.consistency import check_survivor_list, check_unmask_request
from accord.protect.envelope import open_envelope, raw_public, seal
from accord.protect.graph import NONCE_BYTES, NeighbourGraph, nonce_commitment
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
    share_payload,
    split_share_payload,
    survivors_payload,
)
from accord.protect.params import SecAggParams
from accord.protect.quantize import as_ring_vector
from accord.protect.round_setup import (
    AdvertisedRound,
    check_header,
    verify_advertisement_set,
    verify_confirmations,
)
from accord.secure_random import SecureGenerator

__all__ = ["SecAggNode"]

T = TypeVar("T")


class _Stage(IntEnum):
    NEW = 0
    ADVERTISED = 1
    CONFIRMED = 2
    SHARED = 3
    MASKED = 4
    SIGNED = 5
    UNMASKED = 6
    ABORTED = 7


class SecAggNode:
    """Party ``party`` in round ``params.round`` of job ``params.job_id``.

    ``identity_key``: the party's Ed25519 signing key. ``roster_keys``: every roster
    party's Ed25519 public key, from the node's owner (never from the coordinator).
    ``model_hash``: SHA-256 of the global model this party received. ``rng``: the node's
    secure generator (nonces, b_u, Shamir coefficients, envelope nonces); the X25519 keys
    come from ``cryptography``'s own generator.
    """

    def __init__(
        self,
        params: SecAggParams,
        party: str,
        identity_key: Ed25519PrivateKey,
        roster_keys: Mapping[str, Ed25519PublicKey],
        model_hash: bytes,
        rng: SecureGenerator,
    ) -> None:
        if party not in params.roster:
            raise SecAggParameterError(f"{party!r} is not on the round's roster")
        if set(roster_keys) != set(params.roster):
            raise SecAggParameterError("the roster keys must cover exactly the roster's parties")
        if identity_key.public_key().public_bytes_raw() != roster_keys[party].public_bytes_raw():
            raise SecAggParameterError(f"the identity key is not {party!r}'s roster key")
        if len(model_hash) != 32:
            raise SecAggParameterError("model_hash must be a SHA-256 digest (32 bytes)")
        self.params = params
        self.party = party
        self._identity = identity_key
        self._roster_keys = dict(roster_keys)
        self._model_hash = model_hash
        self._rng = rng
        self._stage = _Stage.NEW
        self._c_key = X25519PrivateKey.generate()
        self._s_key = X25519PrivateKey.generate()
        self._nonce = b""
        self._self_mask = b""
        self._advertisement: Advertisement | None = None
        self._advertised: AdvertisedRound | None = None
        self._graph: NeighbourGraph | None = None
        self._own_b_share: shamir.Share | None = None
        self._held: dict[str, tuple[bytes, bytes]] = {}  # owner -> (b share, s share)
        self._signed: tuple[str, ...] | None = None
        self._signature: SurvivorSignature | None = None
        self._revealed: dict[str, str] = {}  # owner -> "b" or "s"
        self._response: UnmaskResponse | None = None

    @property
    def graph(self) -> NeighbourGraph | None:
        """The round's graph, once derived (after :meth:`share_keys`)."""
        return self._graph

    # --- stage 1: advertise -----------------------------------------------------------

    def advertise(self) -> Advertisement:
        """Fresh keys and commitments, signed with the party's identity key."""
        self._enter(_Stage.NEW, _Stage.ADVERTISED, "advertise")
        p = self.params
        self._nonce = self._rng.random_bytes(NONCE_BYTES)
        self._self_mask = self._rng.random_bytes(shamir.SECRET_BYTES)
        unsigned = Advertisement(
            p.job_id,
            p.round,
            self.party,
            self._model_hash,
            raw_public(self._c_key.public_key()),
            raw_public(self._s_key.public_key()),
            nonce_commitment(p.job_id, p.round, self.party, self._nonce),
            self_mask_commitment(p.job_id, p.round, self.party, self._self_mask),
            b"",
        )
        ad = replace(unsigned, signature=self._identity.sign(unsigned.payload()))
        self._advertisement = ad
        return ad

    # --- stage 2: confirm the set and reveal the nonce ---------------------------------

    def confirm(self, advertisements: AdvertisementSet) -> Confirmation:
        """Check U1 (signatures, job, round, model hashes) and reveal the nonce for it."""
        self._enter(_Stage.ADVERTISED, _Stage.CONFIRMED, "the advertisement set")
        advertised = self._guard(
            verify_advertisement_set,
            advertisements,
            self.params,
            self._roster_keys,
            self._model_hash,
        )
        if advertised.advertisements.get(self.party) != self._advertisement:
            self._abort(SecAggTamperError("the advertisement set lacks or alters this party's own"))
        self._advertised = advertised
        p = self.params
        unsigned = Confirmation(
            p.job_id, p.round, self.party, advertised.set_digest, self._nonce, b""
        )
        return replace(unsigned, signature=self._identity.sign(unsigned.payload()))

    # --- stage 3: share keys ----------------------------------------------------------

    def share_keys(self, confirmations: ConfirmationSet) -> KeyShares:
        """Derive the graph; send each share holder its shares of b_u and s_u, sealed."""
        self._enter(_Stage.CONFIRMED, _Stage.SHARED, "the confirmation set")
        assert self._advertised is not None
        graph = self._guard(
            verify_confirmations, confirmations, self.params, self._roster_keys, self._advertised
        )
        if self.party not in graph.members:
            self._abort(SecAggTamperError("the confirmation set leaves out this party's own"))
        self._graph = graph
        p = self.params
        holders = p.in_roster_order(graph.holders(self.party))
        xs = [p.share_x(h) for h in holders]
        s_secret = self._s_key.private_bytes_raw()
        b_shares = shamir.split(self._self_mask, xs, graph.threshold, self._rng)
        s_shares = shamir.split(s_secret, xs, graph.threshold, self._rng)
        envelopes = []
        for holder, x in zip(holders, xs, strict=True):
            if holder == self.party:
                self._own_b_share = b_shares[x]  # complete graph: keep our own share
                continue
            ad = self._advertised.advertisements[holder]
            envelopes.append(
                seal(
                    share_payload(b_shares[x], s_shares[x]),
                    job_id=p.job_id,
                    round_=p.round,
                    sender=self.party,
                    recipient=holder,
                    sender_key=self._c_key,
                    recipient_public=X25519PublicKey.from_public_bytes(ad.c_public),
                    rng=self._rng,
                )
            )
        return KeyShares(p.job_id, p.round, self.party, tuple(envelopes))

    # --- stage 4: masked input --------------------------------------------------------

    def masked_input(
        self, delivery: ShareDelivery, values: npt.NDArray[np.unsignedinteger]
    ) -> MaskedInput:
        """Open the shares sent to this party; send y_u = x_u + PRG(b_u) + sum ±PRG(s_uv).

        ``values``: the quantized input, words in [0, 2^k) (``quantize.quantize``). The
        pairwise masks cover exactly the neighbours whose shares arrived.
        """
        # A caller's mistake (SecAggParameterError): raise before changing stage.
        x = as_ring_vector(values, self.params.vector_length, self.params.ring_bits)
        self._enter(_Stage.SHARED, _Stage.MASKED, "the share delivery")
        assert self._advertised is not None and self._graph is not None
        p, graph = self.params, self._graph
        self._guard_header(delivery.job_id, delivery.round, "the share delivery")
        if delivery.recipient != self.party:
            self._abort(SecAggTamperError(f"a share delivery for {delivery.recipient!r} arrived"))
        my_x = p.share_x(self.party)
        for envelope in delivery.envelopes:
            owner = envelope.sender
            if owner not in graph.neighbours(self.party) or owner in self._held:
                self._abort(SecAggTamperError(f"an unexpected share envelope from {owner!r}"))
            payload = self._guard(
                open_envelope,
                envelope,
                job_id=p.job_id,
                round_=p.round,
                sender=owner,
                recipient=self.party,
                recipient_key=self._c_key,
                sender_public=X25519PublicKey.from_public_bytes(
                    self._advertised.advertisements[owner].c_public
                ),
            )
            b_part, s_part = self._guard(split_share_payload, payload)
            self._guard(shamir.Share.from_bytes, my_x, b_part)
            self._guard(shamir.Share.from_bytes, my_x, s_part)
            self._held[owner] = (b_part, s_part)
        # Holders that shared with us (ourselves too when complete) must reach t.
        sharing = len(self._held) + (1 if graph.complete else 0)
        if sharing < graph.threshold:
            self._abort(
                SecAggTooFewError(
                    f"only {sharing} of this party's share holders shared their keys; masking "
                    f"needs {graph.threshold}"
                )
            )
        ads = self._advertised.advertisements
        pairwise = pairwise_masks(
            self._s_key,
            self.party,
            {v: ads[v].s_public for v in self._held},
            p.job_id,
            p.round,
            p.index,
        )
        self_seed = self_mask_seed(self._self_mask, p.job_id, p.round, self.party)
        y = add_masks(x, [(self_seed, 1), *pairwise], p.ring_bits)
        unsigned = MaskAttestation(
            p.job_id,
            p.round,
            self.party,
            self._advertised.set_digest,
            p.in_roster_order(set(self._held)),
            b"",
        )
        attestation = replace(unsigned, signature=self._identity.sign(unsigned.payload()))
        return MaskedInput(p.job_id, p.round, self.party, y, attestation)

    # --- stage 5: consistency check ---------------------------------------------------

    def sign_survivors(self, survivors: SurvivorList) -> SurvivorSignature:
        """Sign the survivor list L, once per round, if it is consistent with what we did."""
        if self._stage == _Stage.SIGNED:
            if survivors.survivors != self._signed:
                self._abort(SecAggTamperError("this party already signed another survivor list"))
            assert self._signature is not None
            return self._signature  # the same list again: the same (deterministic) signature
        self._enter(_Stage.MASKED, _Stage.SIGNED, "the survivor list")
        assert self._graph is not None and self._advertised is not None
        p, graph = self.params, self._graph
        self._guard(check_survivor_list, survivors, p, graph, self.party, frozenset(self._held))
        listed = survivors.survivors
        payload = survivors_payload(
            p.job_id, p.round, self.party, self._advertised.set_digest, listed
        )
        self._signed = listed
        self._signature = SurvivorSignature(
            p.job_id, p.round, self.party, self._identity.sign(payload)
        )
        return self._signature

    # --- stage 6: unmask --------------------------------------------------------------

    def unmask(self, request: UnmaskRequest) -> UnmaskResponse:
        """Reveal one share per party whose shares we hold: of b if it survived, else of s."""
        if self._stage == _Stage.UNMASKED:
            if request.survivors != self._signed:
                self._abort(SecAggTamperError("this party already revealed shares for its list"))
            assert self._response is not None
            return self._response  # a retry: the same shares, nothing new
        self._enter(_Stage.SIGNED, _Stage.UNMASKED, "the unmask request")
        assert self._graph is not None and self._advertised is not None
        p, graph = self.params, self._graph
        self._guard_header(request.job_id, request.round, "the unmask request")
        listed = request.survivors
        if listed != self._signed:
            self._abort(
                SecAggTamperError(
                    "the unmask request carries a different survivor list than the one this "
                    "party signed"
                )
            )
        self._guard(
            check_unmask_request,
            request,
            p,
            self._roster_keys,
            self._advertised.set_digest,
            graph,
            self.party,
            frozenset(self._held),
        )
        survived = set(listed)
        b_out: list[tuple[str, bytes]] = []
        s_out: list[tuple[str, bytes]] = []
        if graph.complete:
            assert self._own_b_share is not None
            self._record(self.party, "b")
            b_out.append((self.party, self._own_b_share.y_bytes()))
        for owner in p.in_roster_order(set(self._held)):
            b_part, s_part = self._held[owner]
            if owner in survived:
                self._record(owner, "b")
                b_out.append((owner, b_part))
            else:
                self._record(owner, "s")
                s_out.append((owner, s_part))
        self._response = UnmaskResponse(p.job_id, p.round, self.party, tuple(b_out), tuple(s_out))
        return self._response

    # --- helpers ----------------------------------------------------------------------

    def _record(self, owner: str, kind: str) -> None:
        """Never reveal both shares of one party (Bonawitz et al. §4, round 4)."""
        if self._revealed.setdefault(owner, kind) != kind:
            self._abort(
                SecAggTamperError(
                    f"asked for the other share of {owner!r}; this party already revealed one"
                )
            )

    def _enter(self, expected: _Stage, then: _Stage, what: str) -> None:
        if self._stage != expected:
            state = self._stage.name.lower()
            self._stage = _Stage.ABORTED
            raise SecAggAbortedError(f"{what} arrived out of order (this party is at: {state})")
        self._stage = then

    def _abort(self, error: SecAggAbortedError) -> NoReturn:
        self._stage = _Stage.ABORTED
        raise error

    def _guard_header(self, job_id: str, round_: int, what: str) -> None:
        self._guard(check_header, self.params, job_id, round_, what)

    def _guard(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a check; on failure the node aborts (it answers nothing more this round)."""
        try:
            return function(*args, **kwargs)
        except SecAggAbortedError:
            self._stage = _Stage.ABORTED
            raise
