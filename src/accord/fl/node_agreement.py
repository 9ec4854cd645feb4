"""A node's agreement: its own copy in its home, checked before every release.

The node trusts only ``<home>/agreement.toml`` and the signatures beside it, never the
coordinator's word or the job's copy. Before each request it answers, it checks that the
agreement is in force now (every party signed, nobody revoked it, inside its window), that
the job names the same terms, that this node's own key is the one the agreement lists, and
that the job keeps every clause (:mod:`accord.governance.agreement_check`). Any failure
refuses with exit code 3 and names the clause.

A revocation found in the node's own copy is announced once: the node answers the
request with its signed revocation (a release of kind ``revocation``, which carries no
data) so that the coordinator can tell the other nodes, and refuses from then on. A
revocation the coordinator relays from another party is verified against this node's own
copy and recorded in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from accord.errors import (
    AgreementRefusedError,
    AgreementRevokedError,
    ApprovalNeededError,
    InputError,
)
from accord.fl.messages import COORDINATOR, Release, ReleaseKind
from accord.governance.agreement import (
    NODE_AGREEMENT_FILE,
    Agreement,
    AgreementStatus,
    RevocationEntry,
    load_agreement,
    record_revocation,
    signatures_path,
)
from accord.governance.agreement_check import job_violations
from accord.governance.agreement_terms import Terms
from accord.governance.identity import node_identity_path
from accord.job import Job
from accord.privacy.caps import Cap

if TYPE_CHECKING:
    from accord.governance.approvals import Departure
    from accord.governance.audit import AuditLog


def node_agreement_path(home: Path) -> Path:
    return home / NODE_AGREEMENT_FILE


@dataclass(frozen=True, slots=True)
class _Loaded:
    stamp: tuple[int, ...]
    agreement: Agreement
    status: AgreementStatus
    """Signatures verified once per version of the files, not once per release."""


class NodeAgreement:
    """One node's agreement for one job."""

    def __init__(
        self,
        home: Path,
        party: str,
        job: Job,
        job_digest: str,
        min_colluding: int = 0,
        statistics: Sequence[str] | None = None,
    ) -> None:
        self.statistics = None if statistics is None else tuple(statistics)
        self.home = home
        self.party = party
        self.job = job
        self.job_digest = job_digest
        self.min_colluding = min_colluding
        self._loaded: _Loaded | None = None
        self._terms_checked: str | None = None
        self._announced = False

    @property
    def path(self) -> Path:
        return node_agreement_path(self.home)

    def _load(self) -> _Loaded:
        """The home's copy, read again whenever either file changed."""
        stamp = _stamp(self.path) + _stamp(signatures_path(self.path))
        if self._loaded is None or self._loaded.stamp != stamp:
            agreement = load_agreement(self.path)
            self._loaded = _Loaded(stamp, agreement, agreement.status())
        return self._loaded

    def agreement(self) -> Agreement:
        return self._load().agreement

    def caps(self) -> list[Cap]:
        """The DP caps the agreement puts on this owner's datasets."""
        return agreement_caps(self.agreement().terms, self.party)

    def check(self, now: datetime | None = None) -> None:
        """Refuse (AgreementRefusedError, exit 3) unless the job may release now."""
        loaded = self._load()
        agreement = loaded.agreement
        where = f"party {self.party!r}"
        try:
            loaded.status.raise_unless_in_force(now or datetime.now(UTC))
        except AgreementRevokedError:
            raise
        except AgreementRefusedError as refusal:
            raise AgreementRefusedError(f"{where}: {refusal}") from None
        if agreement.digest != self.job_digest:
            raise AgreementRefusedError(
                f"{where}: the job runs under different terms than this node's agreement "
                f"{agreement.label} ({agreement.digest[:16]}; the job's: {self.job_digest[:16]})"
            )
        if self._terms_checked == agreement.digest:
            return
        listed = agreement.terms.party(self.party)
        if listed is not None and node_identity_path(self.home).exists():
            from accord.governance.identity import node_identity

            if node_identity(self.home, self.party).public_key_line != listed.key:
                raise AgreementRefusedError(
                    f"{where}: agreement {agreement.label} lists another key for this party "
                    "than this node's identity key"
                )
        violations = job_violations(
            agreement.terms, self.job, self.party, self.min_colluding, self.statistics
        )
        if violations:
            more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
            raise AgreementRefusedError(
                f"{where}: agreement {agreement.label}, {violations[0].line()}{more}"
            )
        self._terms_checked = agreement.digest

    def approval_for(self, departures: Sequence[Departure], log: AuditLog) -> str:
        """The id of the owner's valid approval of this exact job's ``departures`` (each a
        clause protecting this owner's data only). Without one, the request is filed in the
        node home (and logged) and the job refused, naming the id and the command."""
        from accord.governance.approvals import ApprovalStore, approve_command
        from accord.governance.identity import node_identity

        agreement = self.agreement()
        store = ApprovalStore(self.home, log)
        key = node_identity(self.home, self.party).public_key
        job_digest, task = self.job.digest(), self.job.model.task_hash
        found = store.valid_approval(
            self.party, job_digest, task, agreement.digest, departures, key
        )
        if found is not None:
            return found.id
        record = store.request(
            self.party, job_digest, task, agreement.digest, agreement.label, self.job.job.name,
            departures,
        )  # fmt: skip
        raise ApprovalNeededError(
            f"party {self.party!r}: agreement {agreement.label}, clause "
            f"{departures[0].clause}: {departures[0].message}. The owner may approve this "
            f"job ({record.status}, approval id {record.id}): "
            f"{approve_command(self.home, record.id)}, then run the job again",
            [record.id],
        )

    def revocation_to_announce(self, now: datetime | None = None) -> RevocationEntry | None:
        """Check as :meth:`check`; a revocation is returned the first time (to announce),
        refused after that."""
        try:
            self.check(now)
        except AgreementRevokedError as revoked:
            if self._announced:
                raise AgreementRefusedError(f"party {self.party!r}: {revoked}") from None
            self._announced = True
            assert isinstance(revoked.revocation, RevocationEntry)
            return revoked.revocation
        return None

    def receive_revocation(self, revocation: object) -> bool:
        """Record a revocation the coordinator relays, after verifying it against this
        node's own copy; True when it was new to this node."""
        if not isinstance(revocation, RevocationEntry):
            raise InputError(f"party {self.party!r}: a revocation notice carries no revocation")
        recorded = record_revocation(self.agreement(), revocation)
        self._announced = True  # the coordinator knows already
        return recorded


def _stamp(path: Path) -> tuple[int, ...]:
    try:
        info = path.stat()
    except FileNotFoundError:
        return (-1, -1)
    return (info.st_mtime_ns, info.st_size, info.st_ino)


def open_node_agreement(
    home: Path,
    party: str,
    job: Job,
    job_digest: str | None,
    min_colluding: int = 0,
    statistics: Sequence[str] | None = None,
) -> NodeAgreement | None:
    """The node's agreement for ``job``, checked once now; None where neither the home
    holds an agreement nor the job names one. A home with an agreement releases nothing
    under a job that names none (and the reverse)."""
    has_copy = node_agreement_path(home).exists()
    if not has_copy and job_digest is None:
        return None
    if job_digest is None:
        label = load_agreement(node_agreement_path(home)).label
        raise AgreementRefusedError(
            f"party {party!r}: this node releases only under its agreement {label}; the job "
            "names none (set [job] agreement)"
        )
    if not has_copy:
        raise AgreementRefusedError(
            f"party {party!r}: the job runs under an agreement, but this node home holds no "
            f"copy ({node_agreement_path(home)}); a node checks only its own copy"
        )
    guard = NodeAgreement(home, party, job, job_digest, min_colluding, statistics)
    guard.check()
    return guard


def agreement_caps(terms: Terms, owner: str) -> list[Cap]:
    """The DP caps the agreement sets on ``owner``'s datasets, as node caps (they join the
    caps of the owner's node.toml: both apply)."""
    return [
        Cap(
            dataset=d.name,
            epsilon=d.dp_cap.epsilon,
            delta=d.dp_cap.delta,
            adversary=d.dp_cap.adversary,
        )
        for d in terms.datasets_of(owner)
        if d.dp_cap is not None
    ]


def revocation_release(
    party: str,
    job_id: str,
    round_number: int,
    revocation: RevocationEntry | None,
    recorded: bool | None = None,
) -> Release:
    """A release of kind ``revocation``: this node's own signed withdrawal (to announce),
    or its receipt of another party's (``recorded``: whether it was new here)."""
    return Release(
        kind=ReleaseKind.REVOCATION, job_id=job_id, round=round_number, sender=party,
        recipient=COORDINATOR, payload=revocation,
        scalars={} if recorded is None else {"recorded": float(recorded)},
        payload_nbytes=0 if revocation is None else len(revocation.model_dump_json()),
    )  # fmt: skip
