"""Typed messages between the coordinator and the nodes.

Requests go from the coordinator to a node; releases come back. A release states what it
is (its kind), whom it is for and which round it belongs to, so the gate can check it and
the transport can count its bytes. Models travel as one flat float32 vector.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import torch

COORDINATOR = "coordinator"


class ReleaseKind(StrEnum):
    """What a release carries; the gate refuses any other kind."""

    UPDATE = "update"
    """A model update (delta to the global model) and its row count."""
    METRICS = "metrics"
    """Evaluation metrics on the node's own test split, and its row count."""
    ROW_COUNT = "row_count"
    LABEL_HISTOGRAM = "label_histogram"
    PROTOCOL = "protocol"
    """A secure-aggregation message (keys, commitments, encrypted shares, signatures):
    no data-derived bytes, so it carries ``NoOpDpEvent``."""
    REVOCATION = "revocation"
    """A node's signed withdrawal from the agreement, or its receipt of another party's:
    no data-derived bytes."""
    RECEIPT = "receipt"
    """A node's privacy receipt for the run, from its own audit log and ledger."""


REVOCATION_STAGE = "agreement_revoked"
"""The ProtocolRequest stage by which the coordinator relays a party's signed revocation."""
RECEIPT_STAGE = "receipt"
"""The ProtocolRequest stage that ends a run: the coordinator hands every node the audit
heads it kept, and each node answers with its privacy receipt."""


def tensor_bytes(tensors: Mapping[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())


@dataclass(frozen=True, slots=True)
class TrainRequest:
    """Train on your data from ``global_params`` and release the update."""

    job_id: str
    round: int
    global_params: torch.Tensor | None
    """None under CKKS after round 1: the coordinator has no model; each node trains from
    its own copy."""
    lr: float
    extras: Mapping[str, torch.Tensor] = field(default_factory=dict)
    """Strategy state the node needs, e.g. SCAFFOLD's server control variate ``c``."""
    clip_norm: float | None = None
    """DP-FedAvg: the norm this round's update is clipped to (None in other jobs)."""

    @property
    def nbytes(self) -> int:
        sent = {} if self.global_params is None else {"global": self.global_params}
        return tensor_bytes({**sent, **self.extras})


@dataclass(frozen=True, slots=True)
class EvaluateRequest:
    """Evaluate ``params`` on your own test split and release the metrics."""

    job_id: str
    round: int
    params: torch.Tensor | None
    """None under CKKS: each node evaluates its own copy of the global model."""

    @property
    def nbytes(self) -> int:
        if self.params is None:
            return 0
        return self.params.numel() * self.params.element_size()


@dataclass(frozen=True, slots=True)
class ProtocolRequest:
    """One stage of a secure-aggregation round or of a CKKS job's key setup or round: the
    coordinator's message to a party."""

    job_id: str
    round: int
    stage: str
    payload: Any
    nbytes: int
    """The payload's size on the wire (computed once for a broadcast sent to many)."""


Request = TrainRequest | EvaluateRequest | ProtocolRequest


@dataclass(frozen=True, slots=True)
class Release:
    """Data-derived values that a node intends to send; only its gate may seal them."""

    kind: ReleaseKind
    job_id: str
    round: int
    sender: str
    recipient: str
    tensors: Mapping[str, torch.Tensor] = field(default_factory=dict)
    scalars: Mapping[str, float] = field(default_factory=dict)
    dataset: str | None = None
    """The node dataset the values were computed from (its caps apply)."""
    dp_event: Any = None
    """The dp_accounting DpEvent the release carries (None: no DP mechanism)."""
    adversary: str | None = None
    """Whom ``dp_event``'s epsilon holds against (an ``Adversary`` value)."""
    payload: Any = None
    """A secure-aggregation message (``accord.protect``), for kinds that carry one."""
    payload_nbytes: int = 0
    """The payload's size on the wire (a masked update packed at k bits per word)."""
    audit_head: Any = None
    """The sender's signed audit head after logging this release (set by its gate; an
    ``accord.governance.audit.AuditHead``)."""

    @property
    def nbytes(self) -> int:
        """Bytes that would cross the network: tensors, 8 bytes per scalar, the payload."""
        return tensor_bytes(self.tensors) + 8 * len(self.scalars) + self.payload_nbytes
