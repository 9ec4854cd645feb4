"""The consistency check and the mask attestations (Bonawitz et al. 2017, §6, rounds 3-4).

Before it reveals any share, a party needs to know that every honest party reveals for
the *same* survivor list L (otherwise the coordinator could collect shares of b_u from
some holders and of s_u from others), and that each survivor it helps unmask really
masked with it. Both checks live here, shared by the parties and the coordinator.
"""

from __future__ import annotations

from accord.errors import SecAggAbortedError, SecAggTamperError, SecAggTooFewError
from accord.protect.graph import NeighbourGraph
from accord.protect.messages import (
    MaskAttestation,
    SurvivorList,
    UnmaskRequest,
    survivors_payload,
)
from accord.protect.params import SecAggParams
from accord.protect.round_setup import RosterKeys, check_header, check_signature

__all__ = [
    "check_attestation",
    "check_survivor_list",
    "check_unmask_request",
    "verify_survivor_signatures",
]


def check_survivor_list(
    survivors: SurvivorList,
    params: SecAggParams,
    graph: NeighbourGraph,
    party: str,
    masked_with: frozenset[str],
) -> None:
    """What ``party`` checks before signing L (Bonawitz et al. §6, ConsistencyCheck)."""
    check_header(params, survivors.job_id, survivors.round, "the survivor list")
    listed = survivors.survivors
    if listed != params.in_roster_order(set(listed)) or not set(listed) <= set(graph.members):
        raise SecAggTamperError("the survivor list is malformed or names outsiders")
    if party not in listed:
        raise SecAggAbortedError(
            "the coordinator's survivor list leaves this party out although it sent its "
            "masked input; it will not take part in unmasking"
        )
    if len(listed) < graph.params.min_signatures:
        raise SecAggTooFewError(
            f"the survivor list has {len(listed)} parties; at least "
            f"{graph.params.min_signatures} are needed"
        )
    unmasked = sorted((graph.neighbours(party) & set(listed)) - masked_with)
    if unmasked:
        raise SecAggTamperError(
            f"the survivor list names neighbours {unmasked} whose shares never reached this "
            "party (so it did not mask with them)"
        )


def verify_survivor_signatures(
    request: UnmaskRequest,
    params: SecAggParams,
    roster_keys: RosterKeys,
    set_digest: bytes,
    min_signatures: int,
) -> frozenset[str]:
    """The members of L whose valid signatures over L the request carries, at least
    ``min_signatures`` of them; any invalid, stray or repeated signature is tampering."""
    listed = request.survivors
    signers: set[str] = set()
    for sig in request.signatures:
        who = f"the survivor signature of {sig.party!r}"
        check_header(params, sig.job_id, sig.round, who)
        if sig.party not in listed or sig.party in signers:
            raise SecAggTamperError(f"a stray or repeated signature of {sig.party!r}")
        payload = survivors_payload(params.job_id, params.round, sig.party, set_digest, listed)
        check_signature(roster_keys[sig.party], sig.signature, payload, who)
        signers.add(sig.party)
    if len(signers) < min_signatures:
        raise SecAggTooFewError(
            f"the survivor list carries {len(signers)} valid signatures; {min_signatures} "
            "are needed before any share is revealed"
        )
    return frozenset(signers)


def check_attestation(
    attestation: MaskAttestation | None,
    party: str,
    params: SecAggParams,
    roster_keys: RosterKeys,
    set_digest: bytes,
) -> tuple[str, ...]:
    """The neighbours ``party`` says it masked with, from its valid signed attestation."""
    who = f"the mask attestation of {party!r}"
    if attestation is None or attestation.party != party:
        raise SecAggTamperError(f"{who} is missing")
    check_header(params, attestation.job_id, attestation.round, who)
    listed = attestation.masked_with
    if attestation.set_digest != set_digest or listed != params.in_roster_order(set(listed)):
        raise SecAggTamperError(f"{who} is malformed or for another advertisement set")
    check_signature(roster_keys[party], attestation.signature, attestation.payload(), who)
    return listed


def check_unmask_request(
    request: UnmaskRequest,
    params: SecAggParams,
    roster_keys: RosterKeys,
    set_digest: bytes,
    graph: NeighbourGraph,
    party: str,
    held: frozenset[str],
) -> None:
    """All ``party`` checks before revealing: m valid signatures over L, and for every
    survivor whose shares it holds, an attestation that the survivor masked with it."""
    verify_survivor_signatures(
        request, params, roster_keys, set_digest, graph.params.min_signatures
    )
    attested = {a.party: a for a in request.attestations}
    for owner in params.in_roster_order(held & set(request.survivors)):
        masked_with = check_attestation(attested.get(owner), owner, params, roster_keys, set_digest)
        if party not in masked_with:
            raise SecAggTamperError(
                f"{owner!r} did not mask with this party although this party holds its "
                "shares: the coordinator delivered envelopes one way only"
            )
