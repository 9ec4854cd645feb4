"""The coordinator's side of a CKKS job: the key setup, and one round's encrypted sum.

The coordinator relays the setup's messages (``accord.fl.node_ckks``) and keeps only the
:class:`~accord.protect.ckks.PublicContext`, which refuses to hold a secret key. In a round
it adds the parties' ciphertexts and sends the encrypted sum back to every party; it never
sees a decryption, so it holds no model after the setup. The setup needs every party, and
every party must apply every round's sum (or the parties' models would drift apart): a
party that fails there stops the run safely (``RefusedError``, exit code 3).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from accord.errors import RefusedError, TooFewPartiesError
from accord.fl.messages import ProtocolRequest, Release, Request, TrainRequest
from accord.fl.node_ckks import (
    SETUP_ROUND,
    CkksAck,
    CkksAggregate,
    CkksHello,
    CkksKeyDelivery,
    CkksKeyRelay,
    CkksUpdate,
)
from accord.transport.base import Exchange, Transport

if TYPE_CHECKING:
    import torch

    from accord.protect.ckks import PublicContext


@dataclass
class CkksSetup:
    """What the coordinator keeps from the key setup: the public context only."""

    public: PublicContext
    bytes_down: int
    bytes_up: int
    seconds: float


@dataclass
class CkksRound:
    """What the coordinator learns from one round: who was added, and the traffic."""

    added: tuple[str, ...]
    failed: dict[str, str] = field(default_factory=dict)
    bytes_down: int = 0
    bytes_up: int = 0
    train_seconds: float = 0.0
    aggregate_seconds: float = 0.0
    apply_seconds: float = 0.0


def _exchange_all(
    transport: Transport, requests: Mapping[str, Request], what: str, traffic: Exchange
) -> dict[str, Release]:
    """Every party must answer: otherwise stop, saying who did not and why."""
    done = transport.exchange(requests)
    traffic.bytes_down += done.bytes_down
    traffic.bytes_up += done.bytes_up
    missing = {p: done.failed.get(p, "no answer") for p in requests if p not in done.replies}
    if missing:
        reasons = "; ".join(f"{p}: {why}" for p, why in missing.items())
        raise RefusedError(f"CKKS {what} stopped: every party must take part ({reasons})")
    return done.replies


def _payload(reply: Release, kind: type, what: str) -> Any:
    if not isinstance(reply.payload, kind):
        raise RefusedError(f"CKKS {what}: {reply.sender!r} answered with something else")
    return reply.payload


def setup_keys(
    transport: Transport,
    job_id: str,
    parties: Sequence[str],
    key_holder: str,
    initial: torch.Tensor,
) -> CkksSetup:
    """Hellos from every party, keys from the key holder, one envelope to each other party."""
    from accord.protect.ckks import PublicContext

    tick = time.perf_counter()
    traffic = Exchange()  # the stages' bytes, added up
    nbytes = initial.numel() * initial.element_size()
    hello = ProtocolRequest(job_id, SETUP_ROUND, "ckks_hello", initial, nbytes)
    replies = _exchange_all(transport, {p: hello for p in parties}, "key setup", traffic)
    hellos = tuple(_payload(replies[p], CkksHello, "hello") for p in parties)
    size = sum(h.nbytes for h in hellos)
    keys = ProtocolRequest(job_id, SETUP_ROUND, "ckks_keys", hellos, size)
    replies = _exchange_all(transport, {key_holder: keys}, "key setup", traffic)
    delivery: CkksKeyDelivery = _payload(replies[key_holder], CkksKeyDelivery, "key delivery")
    public = PublicContext.from_bytes(delivery.public_context, "the key holder's public context")
    holder_hello = next(h for h in hellos if h.party == key_holder)
    envelopes = {e.recipient: e for e in delivery.envelopes}
    others = [p for p in parties if p != key_holder]
    if sorted(envelopes) != sorted(others):
        raise RefusedError("CKKS key setup: the key holder did not seal the keys to every party")
    relays = {p: CkksKeyRelay(holder_hello, envelopes[p]) for p in others}
    requests = {
        p: ProtocolRequest(job_id, SETUP_ROUND, "ckks_open", relay, relay.nbytes)
        for p, relay in relays.items()
    }
    replies = _exchange_all(transport, requests, "key setup", traffic)
    for p in others:
        ack: CkksAck = _payload(replies[p], CkksAck, "key setup")
        if ack.key_id != public.key_id:
            raise RefusedError(f"CKKS key setup: {p!r} holds another key set")
    return CkksSetup(public, traffic.bytes_down, traffic.bytes_up, time.perf_counter() - tick)


def ckks_round(
    transport: Transport,
    public: PublicContext,
    job_id: str,
    round_number: int,
    parties: Sequence[str],
    train_requests: Mapping[str, TrainRequest],
    min_parties: int,
) -> CkksRound:
    """Train (encrypted updates), add the ciphertexts, every party applies the sum."""
    from accord.protect.ckks import add_ciphertexts

    tick = time.perf_counter()
    done = transport.exchange(train_requests)
    outcome = CkksRound((), dict(done.failed), done.bytes_down, done.bytes_up)
    updates: list[CkksUpdate] = []
    for party in train_requests:
        reply = done.replies.get(party)
        if reply is None:
            continue
        if (
            not isinstance(reply.payload, CkksUpdate)
            or reply.payload.vector.key_id != public.key_id
        ):
            outcome.failed[party] = "its update is not encrypted under the job's key set"
            continue
        updates.append(reply.payload)
    outcome.train_seconds = time.perf_counter() - tick
    if len(updates) < min_parties:
        reasons = "; ".join(f"{p}: {why}" for p, why in outcome.failed.items())
        raise TooFewPartiesError(
            f"round {round_number}: {len(updates)} parties released an update, fewer than "
            f"sampling.min_parties = {min_parties}" + (f" ({reasons})" if reasons else "")
        )
    tick = time.perf_counter()
    total = add_ciphertexts(public, [u.vector for u in updates])
    outcome.added = tuple(u.party for u in updates)
    outcome.aggregate_seconds = time.perf_counter() - tick
    tick = time.perf_counter()
    aggregate = CkksAggregate(total, len(updates))
    apply = ProtocolRequest(job_id, round_number, "ckks_apply", aggregate, aggregate.nbytes)
    traffic = Exchange()
    _exchange_all(transport, {p: apply for p in parties}, f"round {round_number}", traffic)
    outcome.bytes_down += traffic.bytes_down
    outcome.bytes_up += traffic.bytes_up
    outcome.apply_seconds = time.perf_counter() - tick
    return outcome
