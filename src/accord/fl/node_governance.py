"""A node's side of its agreement and audit trail, around every request it answers.

A mixin of :class:`accord.fl.node.Node`, split out to keep each file to one concern:
before a request reaches training or evaluation, the node checks its own agreement
(refusing, or announcing its party's withdrawal), records a withdrawal the coordinator
relays from another party, and at the end of a run keeps the other parties' audit heads
and gives its privacy receipt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from accord.errors import RefusedError
from accord.fl.messages import (
    COORDINATOR,
    RECEIPT_STAGE,
    REVOCATION_STAGE,
    ProtocolRequest,
    Release,
    ReleaseKind,
    Request,
)
from accord.fl.node_agreement import revocation_release

if TYPE_CHECKING:
    from accord.fl.gate import ReleaseGate, SealedRelease
    from accord.fl.node import NodeConfig
    from accord.fl.node_agreement import NodeAgreement


class NodeGovernance:
    """Agreement and audit handling of a :class:`~accord.fl.node.Node`."""

    party: str
    config: NodeConfig
    gate: ReleaseGate
    agreement: NodeAgreement | None

    if TYPE_CHECKING:

        def _check_job(self, job_id: str) -> None: ...  # Node's

    def _governance(self, request: Request) -> SealedRelease | None:
        """The release that answers ``request`` here, or None to handle it as usual."""
        if isinstance(request, ProtocolRequest) and request.stage == REVOCATION_STAGE:
            return self._receive_revocation(request)
        if isinstance(request, ProtocolRequest) and request.stage == RECEIPT_STAGE:
            return self._receipt(request)
        if self.agreement is not None:
            # Before any charge or any read of the data: refuses (exit 3) a job the
            # agreement no longer allows; a withdrawal in this node's copy is announced.
            revocation = self.agreement.revocation_to_announce()
            if revocation is not None:
                return self.gate.release(
                    revocation_release(self.party, self.config.job_id, request.round, revocation)
                )
        return None

    def _receive_revocation(self, request: ProtocolRequest) -> SealedRelease:
        """Another party withdrew: verify its signed revocation against this node's own
        agreement and record it there (this node then releases nothing more)."""
        self._check_job(request.job_id)
        if self.agreement is None:
            raise RefusedError(f"node {self.party!r}: this job runs under no agreement")
        recorded = self.agreement.receive_revocation(request.payload)
        return self.gate.release(
            revocation_release(self.party, self.config.job_id, request.round, None, recorded)
        )

    def _receipt(self, request: ProtocolRequest) -> SealedRelease:
        """The end of the run: keep the other parties' audit heads, give the receipt."""
        self._check_job(request.job_id)
        audit = self.gate.audit
        if audit is None:
            raise RefusedError(f"node {self.party!r}: this node keeps no audit log")
        audit.keep_peer_heads(request.payload)
        privacy = self.gate.privacy
        receipt = audit.receipt(None if privacy is None else privacy.ledger)
        return self.gate.release(
            Release(
                kind=ReleaseKind.RECEIPT, job_id=self.config.job_id, round=request.round,
                sender=self.party, recipient=COORDINATOR, payload=receipt,
                payload_nbytes=len(receipt.model_dump_json()),
            )
        )  # fmt: skip
