"""A node's side of secure aggregation: its identity, its roster, and the round in progress.

The node trains, quantizes its update (stochastic rounding from its secure generator) and
opens a :class:`~accord.protect.SecAggNode` for the round; each later stage of the protocol
arrives as a :class:`~accord.fl.messages.ProtocolRequest` and leaves through the node's
release gate: key advertisements, confirmations, encrypted shares, signatures and unmask
shares as ``protocol`` releases (no data-derived bytes), the masked update as the round's
``update`` release (charged like any update). The identity key and the roster come from
the node home, never from the coordinator.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from accord.errors import InputError, SecAggTamperError
from accord.job import Job

if TYPE_CHECKING:
    from accord.protect import SecAggNode, SecAggParams
    from accord.protect.quantize import RingVector
    from accord.secure_random import SecureGenerator

# The stages after the advertisement, in order: the request names one, the node answers.
STAGES = ("confirm", "share_keys", "masked_input", "sign_survivors", "unmask")


def model_hash(params: torch.Tensor) -> bytes:
    """SHA-256 of the global model as received (float32 bytes): every party must agree."""
    data = params.detach().to(torch.float32).contiguous().numpy().tobytes()
    return hashlib.sha256(data).digest()


def secagg_params(
    job: Job, job_id: str, round_number: int, roster: Sequence[str], vector_length: int
) -> SecAggParams:
    """The round's public settings, derived from the job and its parties by every side."""
    from accord.protect import SecAggParams, choose_ring_bits

    protection = job.protection
    roster = tuple(roster)
    noise_bound = 0
    if job.privacy.distributed_noise:
        from accord.privacy.skellam import noise_tail_bound, skellam_settings

        # Every party of the roster may add its noise share: P(wrap) <= 1e-9.
        variance = len(roster) * skellam_settings(job, len(roster)).party_variance
        noise_bound = noise_tail_bound(variance, vector_length)
    return SecAggParams(
        job_id=job_id,
        round=round_number,
        roster=roster,
        min_parties=job.sampling.min_parties,
        gamma=protection.max_corrupt_fraction,
        delta=protection.max_dropout_fraction,
        ring_bits=choose_ring_bits(
            protection.clip_range, protection.scale, len(roster), noise_bound=noise_bound
        ),
        vector_length=vector_length,
    )


def add_noise_share(
    job: Job, roster_size: int, quantized: RingVector, ring_bits: int, rng: SecureGenerator
) -> RingVector:
    """This party's share of the distributed DP noise, Skellam of variance mu per
    coordinate (:mod:`accord.privacy.skellam`), added to its quantized update in the ring,
    before masking: the coordinator only ever sees it inside the masked sum."""
    from accord.privacy.skellam import skellam, skellam_settings
    from accord.protect.quantize import ring_mask, word_dtype

    noise = skellam(rng, skellam_settings(job, roster_size).party_variance, quantized.size)
    # Two's complement modulo 2**64, then modulo 2**k, as in quantize().
    words = (quantized.astype(np.uint64) + noise.view(np.uint64)) & np.uint64(ring_mask(ring_bits))
    return words.astype(word_dtype(ring_bits))


@dataclass
class _Round:
    number: int
    session: SecAggNode
    quantized: RingVector


class NodeSecAgg:
    """One node's secure aggregation over a job's rounds (one round open at a time)."""

    def __init__(
        self, job: Job, job_id: str, party: str, home: Path, parties: Sequence[str]
    ) -> None:
        from accord.governance import load_roster, node_identity

        self.job = job
        self.job_id = job_id
        self.party = party
        self.parties = tuple(parties)
        self.identity = node_identity(home, party)
        roster = load_roster(home)
        missing = sorted(set(self.parties) - set(roster))
        if missing:
            raise InputError(
                f"node {party!r}: its roster ({roster.path}) lists no key for {missing}; "
                "secure aggregation needs every party's key from the node's owner"
            )
        self.roster_keys = {p: roster[p] for p in self.parties}
        self._round: _Round | None = None

    def advertise(
        self, round_number: int, global_params: torch.Tensor, update: torch.Tensor,
        rng: SecureGenerator,
    ) -> Any:  # fmt: skip
        """Quantize ``update`` and open the round; the signed key advertisement."""
        from accord.protect import SecAggNode, quantize

        protection = self.job.protection
        params = secagg_params(self.job, self.job_id, round_number, self.parties, update.numel())
        quantized = quantize(
            update.detach().double().numpy(), protection.clip_range, protection.scale,
            params.ring_bits, rng,
        )  # fmt: skip
        if self.job.privacy.distributed_noise:
            quantized = add_noise_share(
                self.job, len(self.parties), quantized, params.ring_bits, rng
            )
        session = SecAggNode(
            params, self.party, self.identity.private_key, self.roster_keys,
            model_hash(global_params), rng,
        )  # fmt: skip
        self._round = _Round(round_number, session, quantized)
        return session.advertise()

    def step(self, round_number: int, stage: str, payload: Any) -> Any:
        """The node's answer to one later stage of the open round."""
        current = self._round
        # A message out of turn is the coordinator's doing: refused, never a crash.
        if current is None or current.number != round_number:
            raise SecAggTamperError(
                f"node {self.party!r}: a secure-aggregation {stage!r} message for round "
                f"{round_number}, but no such round is open here"
            )
        session = current.session
        if stage == "confirm":
            return session.confirm(payload)
        if stage == "share_keys":
            return session.share_keys(payload)
        if stage == "masked_input":
            masked = session.masked_input(payload, current.quantized)
            current.quantized = np.zeros(0, dtype=current.quantized.dtype)  # no longer needed
            return masked
        if stage == "sign_survivors":
            return session.sign_survivors(payload)
        if stage == "unmask":
            response = session.unmask(payload)
            self._round = None
            return response
        raise SecAggTamperError(f"node {self.party!r}: unknown secure-aggregation stage {stage!r}")

    def rounding_slack(self, length: int) -> float:
        """The largest L2 change stochastic rounding can make to a vector of ``length``."""
        return math.sqrt(length) / self.job.protection.scale

    def ring_bits(self) -> int:
        assert self._round is not None
        return self._round.session.params.ring_bits
