"""The coordinator's side of a withdrawal: tell every other node, then stop the run.

A node whose own copy of the agreement carries its party's signed revocation answers its
next request with that revocation instead of data. The coordinator records it in its own
copy of the agreement (it is a signatory too), relays it to every other node, which
verifies it against its own copy and records it, and stops the run with exit code 3. The
relay wraps the transport the coordinator already uses: the transport itself knows no
agreement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from accord.errors import AgreementRevokedError
from accord.fl.messages import REVOCATION_STAGE, ProtocolRequest, ReleaseKind, Request
from accord.transport.base import Exchange, Transport


class RevocationRelay:
    """A transport for the coordinator of a job under an agreement."""

    def __init__(
        self, inner: Transport, job_id: str, parties: Sequence[str], agreement_path: Path
    ) -> None:
        self.inner = inner
        self.job_id = job_id
        self.parties = list(parties)
        self.agreement_path = agreement_path

    def exchange(self, requests: Mapping[str, Request]) -> Exchange:
        done = self.inner.exchange(requests)
        announced = [
            (party, release)
            for party, release in done.replies.items()
            if release.kind is ReleaseKind.REVOCATION
        ]
        if not announced:
            return done
        party, release = announced[0]
        revocation = release.payload
        from accord.governance.agreement import load_agreement, record_revocation

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
