"""Checks shared by every party and the coordinator: advertisements, confirmations, graph.

Both sides run the same code on the same broadcasts, so an honest coordinator and the
honest parties always agree on the set U1, its digest, k, t, m and the graph. Every
check that fails raises: :class:`SecAggTamperError` for what an honest coordinator
relaying honest parties never produces (a bad signature, another job or round, an
unknown party, different model hashes, a nonce that does not open its commitment),
:class:`SecAggTooFewError` when too few parties remain.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from accord.errors import SecAggParameterError, SecAggTamperError, SecAggTooFewError
from accord.protect.graph import NONCE_BYTES, NeighbourGraph, build_graph, graph_seed
from accord.protect.graph import nonce_commitment as commit_nonce
from accord.protect.graph_params import GraphParams
from accord.protect.messages import (
    Advertisement,
    AdvertisementSet,
    Confirmation,
    ConfirmationSet,
    advertisement_set_digest,
)
from accord.protect.params import SecAggParams

__all__ = [
    "AdvertisedRound",
    "RosterKeys",
    "check_advertisement",
    "check_confirmation",
    "check_header",
    "check_signature",
    "verify_advertisement_set",
    "verify_confirmations",
]

RosterKeys = Mapping[str, Ed25519PublicKey]
_KEY_BYTES = 32


@dataclass(frozen=True)
class AdvertisedRound:
    """U1 as checked: the advertisements in roster order, their digest, and k, t, m."""

    advertisements: Mapping[str, Advertisement]
    members: tuple[str, ...]
    set_digest: bytes
    graph_params: GraphParams


def check_header(params: SecAggParams, job_id: str, round_: int, what: str) -> None:
    if job_id != params.job_id or round_ != params.round:
        raise SecAggTamperError(
            f"{what} is for job {job_id!r}, round {round_}; this is job {params.job_id!r}, "
            f"round {params.round}"
        )


def check_signature(key: Ed25519PublicKey, signature: bytes, payload: bytes, what: str) -> None:
    try:
        key.verify(signature, payload)
    except InvalidSignature:
        raise SecAggTamperError(
            f"{what} does not carry a valid signature of the party's roster key"
        ) from None


def check_advertisement(ad: Advertisement, params: SecAggParams, roster_keys: RosterKeys) -> None:
    """One advertisement: this job and round, a roster party, well-formed, validly signed."""
    check_header(params, ad.job_id, ad.round, f"the advertisement of {ad.party!r}")
    if ad.party not in roster_keys:
        raise SecAggTamperError(f"an advertisement names {ad.party!r}, who is not on the roster")
    sizes = (ad.model_hash, ad.c_public, ad.s_public, ad.nonce_commitment, ad.self_mask_commitment)
    if any(len(field) != _KEY_BYTES for field in sizes):
        raise SecAggTamperError(f"the advertisement of {ad.party!r} is malformed")
    check_signature(
        roster_keys[ad.party], ad.signature, ad.payload(), f"the advertisement of {ad.party!r}"
    )


def verify_advertisement_set(
    ad_set: AdvertisementSet,
    params: SecAggParams,
    roster_keys: RosterKeys,
    model_hash: bytes | None,
) -> AdvertisedRound:
    """Check U1 and derive its digest and the round's k, t, m.

    ``model_hash``: the checker's own hash of the global model; every advertisement must
    carry it. (None: they must merely all agree.)
    """
    check_header(params, ad_set.job_id, ad_set.round, "the advertisement set")
    by_party: dict[str, Advertisement] = {}
    for ad in ad_set.advertisements:
        check_advertisement(ad, params, roster_keys)
        if ad.party in by_party:
            raise SecAggTamperError(f"the advertisement set lists {ad.party!r} twice")
        by_party[ad.party] = ad
    hashes = {ad.model_hash for ad in by_party.values()}
    if model_hash is not None:
        others = sorted(p for p, ad in by_party.items() if ad.model_hash != model_hash)
        if others:
            raise SecAggTamperError(
                f"parties {others} received a different global model than this party "
                "(their model hashes differ): the coordinator sent different models"
            )
    elif len(hashes) > 1:
        raise SecAggTamperError("the parties received different global models")
    members = params.in_roster_order(set(by_party))
    try:
        graph_params = params.graph_params_for(len(members))
    except SecAggParameterError as error:
        raise SecAggTooFewError(f"only {len(members)} parties advertised: {error}") from None
    ordered = tuple(by_party[p] for p in members)
    set_digest = advertisement_set_digest(params.job_id, params.round, ordered)
    return AdvertisedRound({p: by_party[p] for p in members}, members, set_digest, graph_params)


def check_confirmation(
    confirmation: Confirmation,
    params: SecAggParams,
    roster_keys: RosterKeys,
    advertised: AdvertisedRound,
) -> None:
    """One confirmation: of a party in U1, over U1's digest, opening its commitment, signed."""
    who = f"the confirmation of {confirmation.party!r}"
    check_header(params, confirmation.job_id, confirmation.round, who)
    ad = advertised.advertisements.get(confirmation.party)
    if ad is None:
        raise SecAggTamperError(f"{who}: the party did not advertise in this round")
    if confirmation.set_digest != advertised.set_digest:
        raise SecAggTamperError(
            f"{who} is for another advertisement set: the coordinator showed parties different sets"
        )
    if len(confirmation.nonce) != NONCE_BYTES or ad.nonce_commitment != commit_nonce(
        params.job_id, params.round, confirmation.party, confirmation.nonce
    ):
        raise SecAggTamperError(f"{who}: the revealed nonce does not open the commitment")
    check_signature(
        roster_keys[confirmation.party], confirmation.signature, confirmation.payload(), who
    )


def verify_confirmations(
    confirmation_set: ConfirmationSet,
    params: SecAggParams,
    roster_keys: RosterKeys,
    advertised: AdvertisedRound,
) -> NeighbourGraph:
    """Check the confirmations and derive the round's graph (see ``graph.py``)."""
    check_header(params, confirmation_set.job_id, confirmation_set.round, "the confirmation set")
    nonces: dict[str, bytes] = {}
    for confirmation in confirmation_set.confirmations:
        check_confirmation(confirmation, params, roster_keys, advertised)
        if confirmation.party in nonces:
            raise SecAggTamperError(f"the confirmation set lists {confirmation.party!r} twice")
        nonces[confirmation.party] = confirmation.nonce
    confirmed = params.in_roster_order(set(nonces))
    graph_params = advertised.graph_params
    if not graph_params.complete and len(confirmed) != len(advertised.members):
        missing = sorted(set(advertised.members) - set(nonces))
        raise SecAggTooFewError(
            f"parties {missing} advertised but did not confirm; a sparse graph needs every "
            "advertised party's nonce (a coordinator free to leave nonces out could choose "
            "among graphs), so this round stops"
        )
    if len(confirmed) < graph_params.threshold + (0 if graph_params.complete else 1):
        raise SecAggTooFewError(
            f"only {len(confirmed)} parties confirmed; unmasking needs {graph_params.threshold}"
        )
    seed = graph_seed(
        params.job_id, params.round, advertised.set_digest, [(p, nonces[p]) for p in confirmed]
    )
    return build_graph(graph_params, confirmed, seed)
