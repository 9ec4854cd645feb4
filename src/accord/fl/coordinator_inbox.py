"""What the coordinator keeps from every reply: the nodes' audit heads, and withdrawals.

**Audit heads.** Every release a node makes carries the node's signed audit head (the
sequence number and hash of its log's latest entry). The inbox keeps the latest head of
each party, so that a node whose log is later cut short or rolled back is caught: its log
must still contain every head it once sent (``accord audit verify --against``). The
runner writes them to the run folder (``audit-heads.json``) and hands them to every node
at the end of the run.

**Withdrawals.** A node whose own copy of the agreement carries its party's signed
revocation answers its next request with that revocation instead of data. The coordinator
records it in its own copy of the agreement (it is a signatory too), relays it to every
other node, which verifies it against its own copy and records it, and stops the run with
exit code 3. The inbox wraps the transport the coordinator already uses: the transport
itself knows no agreement.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from accord.errors import AgreementRevokedError
from accord.fl.messages import (
    RECEIPT_STAGE,
    REVOCATION_STAGE,
    ProtocolRequest,
    Release,
    ReleaseKind,
    Request,
)
from accord.transport.base import Exchange, Transport

if TYPE_CHECKING:
    from accord.governance.audit import AuditHead


class CoordinatorInbox:
    """The coordinator's transport: the node transport, plus what it keeps from replies."""

    def __init__(
        self,
        inner: Transport,
        job_id: str,
        parties: Sequence[str],
        agreement_path: Path | None = None,
    ) -> None:
        self.inner = inner
        self.job_id = job_id
        self.parties = list(parties)
        self.agreement_path = agreement_path
        self.audit_heads: dict[str, AuditHead] = {}
        """The latest audit head each party sent."""

    def exchange(self, requests: Mapping[str, Request]) -> Exchange:
        done = self.inner.exchange(requests)
        for party, release in done.replies.items():
            head = release.audit_head
            if head is not None and head.party == party:
                kept = self.audit_heads.get(party)
                if kept is None or kept.seq < head.seq:
                    self.audit_heads[party] = head
        if self.agreement_path is None:
            return done
        announced = [
            (party, release)
            for party, release in done.replies.items()
            if release.kind is ReleaseKind.REVOCATION
        ]
        if not announced:
            return done
        return self._relay_withdrawal(*announced[0])

    def collect_receipts(self, round_number: int) -> dict[str, dict[str, Any]]:
        """End of a run: hand every node the heads kept, collect each one's receipt."""
        heads = {party: head.to_json() for party, head in self.audit_heads.items()}
        request = ProtocolRequest(
            self.job_id, round_number, RECEIPT_STAGE, heads, len(json.dumps(heads))
        )
        done = self.exchange({party: request for party in self.parties})
        return {
            party: release.payload.model_dump(mode="json")
            for party, release in done.replies.items()
            if release.kind is ReleaseKind.RECEIPT and release.payload.party == party
        }

    def _relay_withdrawal(self, party: str, release: Release) -> NoReturn:
        revocation = release.payload
        from accord.governance.agreement import load_agreement, record_revocation

        assert self.agreement_path is not None
        # Raises if the revocation does not verify against the coordinator's own copy.
        record_revocation(load_agreement(self.agreement_path), revocation)
        notice = ProtocolRequest(
            self.job_id, release.round, REVOCATION_STAGE, revocation, release.payload_nbytes
        )
        others = [p for p in self.parties if p != party]
        told = self.inner.exchange({p: notice for p in others})
        recorded = sorted(p for p, r in told.replies.items() if r.kind is ReleaseKind.REVOCATION)
        reason = f" ({revocation.reason})" if revocation.reason else ""
        raise AgreementRevokedError(
            f"party {party!r} revoked the agreement{reason}; the run stops in round "
            f"{release.round}. {len(recorded)} of {len(others)} other nodes verified and "
            "recorded the revocation"
            + (f"; not reached: {', '.join(sorted(set(others) - set(recorded)))}"
               if len(recorded) < len(others) else ""),
            revocation,
        )  # fmt: skip
