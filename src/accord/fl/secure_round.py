"""The coordinator's side of a secure-aggregation round: six exchanges, one sum.

The coordinator relays the protocol's messages (``accord.protect.SecAggServer``) through
the same transport as every other request and learns only the sum of the surviving
parties' quantized updates. A party that fails or refuses at a stage drops out of the
stages after it; the protocol tolerates that down to its thresholds and otherwise stops
the round safely (``SecAggAbortedError``, exit code 3). A message the server refuses (a
bad signature, a wrong round) drops its sender, as a refusal would.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from accord.errors import SecAggAbortedError, SecAggParameterError
from accord.fl.messages import ProtocolRequest, Release, Request
from accord.fl.node_secagg import STAGES, model_hash, secagg_params
from accord.job import Job
from accord.transport.base import Transport

if TYPE_CHECKING:
    import torch
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


@dataclass
class SecureSum:
    """What the coordinator learns from one round: the sum, and who is in it."""

    total: npt.NDArray[np.float64]
    survivors: tuple[str, ...]
    failed: dict[str, str] = field(default_factory=dict)
    bytes_down: int = 0
    bytes_up: int = 0
    error_bound: float = 0.0
    """Per-coordinate bound on |total - sum of the survivors' clipped updates|."""
    train_seconds: float = 0.0
    """The first exchange: local training, quantization and the key advertisement."""
    protocol_seconds: float = 0.0
    """The five later exchanges and the unmasking: the protocol's own cost."""


def secure_sum_possible(
    job: Job, job_id: str, round_number: int, roster: Sequence[str], sampled: int
) -> bool:
    """Whether a round of ``sampled`` parties can give a secure sum at all.

    Checked before anyone is contacted, so a DP-FedAvg round that Poisson sampling left
    too small can be skipped without a single message: not with fewer than
    ``min_parties``, fewer than 3, or too few for the graph's threshold even with no
    dropout.
    """
    if sampled < job.sampling.min_parties:
        return False
    try:
        secagg_params(job, job_id, round_number, roster, 1).graph_params_for(sampled)
    except (SecAggParameterError, SecAggAbortedError):
        return False
    return True


def secure_sum(
    transport: Transport,
    job: Job,
    job_id: str,
    round_number: int,
    roster: Sequence[str],
    roster_keys: Mapping[str, Ed25519PublicKey],
    global_params: torch.Tensor,
    train_requests: Mapping[str, Request],
) -> SecureSum:
    """Run one round's protocol with the sampled parties of ``train_requests``."""
    from accord.protect import SecAggServer, dequantize_sum, quantization_error_bound

    params = secagg_params(job, job_id, round_number, roster, global_params.numel())
    server = SecAggServer(params, roster_keys, model_hash(global_params))
    result = SecureSum(np.zeros(0), ())

    def exchange(requests: Mapping[str, Request], receive: Callable[[Any], None]) -> list[str]:
        """Send, feed each reply's payload to the server; the parties that answered."""
        done = transport.exchange(requests)
        result.bytes_down += done.bytes_down
        result.bytes_up += done.bytes_up
        result.failed.update(done.failed)
        answered = []
        for party in requests:
            reply: Release | None = done.replies.get(party)
            if reply is None:
                continue
            try:
                receive(reply.payload)
            except SecAggAbortedError as refusal:
                result.failed[party] = f"its message was refused: {refusal}"
                continue
            answered.append(party)
        return answered

    def stage(parties: Sequence[str], name: str, broadcast: Callable[[str], Any],
              receive: Callable[[Any], None]) -> list[str]:  # fmt: skip
        payloads = {p: broadcast(p) for p in parties}
        sizes: dict[int, int] = {}  # a broadcast's size, counted once, sent to each party
        requests = {
            p: ProtocolRequest(job_id, round_number, name, payload,
                               sizes.setdefault(id(payload), int(payload.nbytes)))
            for p, payload in payloads.items()
        }  # fmt: skip
        return exchange(requests, receive)

    tick = time.perf_counter()
    try:
        alive = exchange(train_requests, server.receive_advertisement)
        result.train_seconds = time.perf_counter() - tick
        tick = time.perf_counter()
        advertisements = server.advertisement_set()
        alive = stage(alive, STAGES[0], lambda _: advertisements, server.receive_confirmation)
        confirmations = server.confirmation_set()
        alive = stage(alive, STAGES[1], lambda _: confirmations, server.receive_key_shares)
        deliveries = server.share_deliveries()
        alive = stage(alive, STAGES[2], deliveries.__getitem__, server.receive_masked_input)
        survivors = server.survivor_list()
        alive = stage(alive, STAGES[3], lambda _: survivors, server.receive_survivor_signature)
        unmask = server.unmask_request()
        stage(alive, STAGES[4], lambda _: unmask, server.receive_unmask_response)
        total = server.result()
    except SecAggAbortedError as stop:
        # The round ends with nothing learnt; say which parties fell away, and why.
        reasons = "; ".join(f"{p}: {why}" for p, why in result.failed.items())
        raise type(stop)(
            f"round {round_number}: secure aggregation stopped: {stop}"
            + (f" (parties that dropped out or refused: {reasons})" if reasons else "")
        ) from None
    protection = job.protection
    result.total = dequantize_sum(total, protection.scale, params.ring_bits)
    result.protocol_seconds = time.perf_counter() - tick
    result.survivors = server.survivors
    result.error_bound = quantization_error_bound(len(result.survivors), protection.scale)
    return result
