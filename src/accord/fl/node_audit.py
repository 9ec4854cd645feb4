"""What a node writes in its audit log about one job, and the privacy receipt it gives.

Every decision is one signed, hash-chained entry (:mod:`accord.governance.audit`): the job
accepted or refused and why, the job's whole-plan charge where it pays up front, and every
release that carries data (its kind, round, recipient, dataset, DP event, adversary and
the epsilon of each cap after it, the protection, the task-code hash and the agreement).
Secure aggregation's protocol messages carry no data and are not entries of their own;
they carry the node's current head like every release.

At the end of a run the node gives a :class:`PrivacyReceipt`, drawn from its own log and
ledger: which protections ran, epsilon per dataset and per adversary, the code hash, the
agreement version, the approvals it used, and its audit head.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from accord.errors import InputError
from accord.fileio import write_bytes_atomic
from accord.governance.audit import AuditHead, AuditLog, read_audit
from accord.job import Job
from accord.privacy.events import Adversary, event_to_json

if TYPE_CHECKING:
    from dp_accounting import DpEvent

    from accord.fl.messages import Release
    from accord.fl.node_agreement import NodeAgreement
    from accord.privacy.ledger import ChargeReceipt, PrivacyLedger

PEER_HEADS_FILE = Path("state") / "peer-heads.json"
"""The other parties' audit heads this node has seen (the latest of each)."""


class EpsilonLine(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    dataset: str
    adversary: str
    epsilon: float | None
    """None: no protection against this adversary (infinite epsilon)."""
    delta: float
    accountant: str


class PrivacyReceipt(BaseModel):
    """One party's account of a run, from its own audit log and ledger."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    party: str
    job_id: str
    run: str
    job_digest: str
    agreement: str | None
    """``heart-2026 v3 (terms 1a2b...)``, or None for a job under no agreement."""
    protection: str
    privacy: str
    task_hash: str | None
    releases: dict[str, int]
    """Releases logged this run, by kind."""
    epsilon: list[EpsilonLine]
    not_covered: list[str]
    """Release kinds that left without a DP mechanism (exempt, or uncapped)."""
    approvals: list[str]
    audit_head: dict[str, object]


class NodeAudit:
    """One node's audit of one job."""

    def __init__(
        self,
        log: AuditLog,
        job: Job,
        job_id: str,
        run_key: str,
        agreement: NodeAgreement | None,
    ) -> None:
        self.log = log
        self.job = job
        self.job_id = job_id
        self.run_key = run_key
        self.agreement = agreement
        self.approvals: list[str] = []
        self._head: AuditHead | None = None
        """The head of this node's last entry: protocol messages carry it without a read."""

    def _append(self, kind: str, body: dict[str, Any]) -> AuditHead:
        self._head = self.log.append(kind, body)
        return self._head

    def _common(self) -> dict[str, Any]:
        return {"job": self.job_id, "run": self.run_key, "job_digest": self.job.digest()}

    def _agreement(self) -> dict[str, str] | None:
        if self.agreement is None:
            return None
        agreement = self.agreement.agreement()
        return {"label": agreement.label, "digest": agreement.digest}

    def accepted(self, approvals: Sequence[str] = ()) -> AuditHead:
        self.approvals = list(approvals)
        return self._append("job_accepted", {
            **self._common(), "name": self.job.job.name, "purpose": self.job.job.purpose,
            "agreement": self._agreement(), "task_hash": self.job.model.task_hash,
            "protection": self.job.protection.mode, "privacy": self.job.privacy.mode,
            "approvals": self.approvals,
        })  # fmt: skip

    def refused(self, refusal: BaseException) -> AuditHead:
        return self._append("job_refused", {
            **self._common(), "name": self.job.job.name, "reason": str(refusal),
        })  # fmt: skip

    def charged_job(self, kind: str, dataset: str, event: DpEvent, adversary: Adversary) -> None:
        """The whole job's charge, made when the node accepts it (DP-FedAvg)."""
        self._append("job_charge", {
            **self._common(), "kind": kind, "dataset": dataset,
            "dp_event": json.loads(event_to_json(event)), "adversary": adversary.value,
        })  # fmt: skip

    def released(self, release: Release, charge: ChargeReceipt | None) -> AuditHead:
        event = release.dp_event
        spends = [] if charge is None else [
            {"cap": s.cap.describe(), "epsilon": _finite(s.epsilon)} for s in charge.spends
        ]  # fmt: skip
        return self._append("release", {
            **self._common(), "round": release.round, "kind": release.kind.value,
            "recipient": release.recipient, "dataset": release.dataset,
            "dp_event": None if event is None else json.loads(event_to_json(event)),
            "adversary": release.adversary, "epsilon_after": spends,
            "protection": self.job.protection.mode, "task_hash": self.job.model.task_hash,
            "agreement": self._agreement(), "bytes": release.nbytes,
        })  # fmt: skip

    def resent(self, release: Release) -> AuditHead:
        """A kept release sent again (the coordinator asked twice): no new charge."""
        return self._append("resent", {
            **self._common(), "round": release.round, "kind": release.kind.value,
            "recipient": release.recipient, "bytes": release.nbytes,
        })  # fmt: skip

    def head(self) -> AuditHead | None:
        return self._head if self._head is not None else self.log.head()

    def keep_peer_heads(self, heads: Mapping[str, Mapping[str, object]]) -> None:
        """Keep the latest head of every other party, to check their logs against later."""
        path = self.log.home / PEER_HEADS_FILE
        kept: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        for party, head in heads.items():
            if party == self.log.identity.name or not isinstance(head, Mapping):
                continue
            seq = head.get("seq")
            old = kept.get(party, {}).get("seq", 0)
            if isinstance(seq, int) and seq > old:
                kept[party] = dict(head)
        data = json.dumps(kept, indent=2, sort_keys=True).encode("utf-8")
        write_bytes_atomic(path, data, mode=0o600)

    def receipt(self, ledger: PrivacyLedger | None) -> PrivacyReceipt:
        """The run's receipt, from the entries of this run in the node's own log."""
        entries = [
            e for e in read_audit(self.log.home)
            if e.body.get("run") == self.run_key and e.party == self.log.identity.name
        ]  # fmt: skip
        kinds = Counter(e.body["kind"] for e in entries if e.kind == "release")
        approvals = sorted({a for e in entries if e.kind == "job_accepted"
                            for a in e.body.get("approvals", [])})  # fmt: skip
        epsilon, uncovered = _run_epsilons(ledger, self.run_key, self.job.privacy.delta)
        agreement = self._agreement()
        head = self.log.head()
        return PrivacyReceipt(
            party=self.log.identity.name, job_id=self.job_id, run=self.run_key,
            job_digest=self.job.digest(),
            agreement=None if agreement is None
            else f"{agreement['label']} (terms {agreement['digest'][:16]})",
            protection=self.job.protection.mode, privacy=self.job.privacy.mode,
            task_hash=self.job.model.task_hash, releases=dict(sorted(kinds.items())),
            epsilon=epsilon, not_covered=uncovered, approvals=approvals,
            audit_head={} if head is None else head.to_json(),
        )  # fmt: skip


def _finite(value: float) -> float | None:
    return None if math.isinf(value) else value


def _run_epsilons(
    ledger: PrivacyLedger | None, run_key: str, delta: float
) -> tuple[list[EpsilonLine], list[str]]:
    """Epsilon of everything this run charged, per dataset and per adversary."""
    if ledger is None:
        return [], []
    from accord.privacy.cap_accounting import (
        accountant_for_events,
        composed_epsilon,
        events_against,
    )

    charges = ledger.charges(run_key)
    lines: list[EpsilonLine] = []
    for dataset in dict.fromkeys(c.dataset for c in charges):
        mine = [(c.event, c.adversary) for c in charges if c.dataset == dataset]
        accountant = accountant_for_events([event for event, _ in mine])
        for adversary in Adversary:
            value = composed_epsilon(events_against(mine, adversary), delta, accountant)
            lines.append(EpsilonLine(dataset=dataset, adversary=adversary.value,
                                     epsilon=_finite(value), delta=delta,
                                     accountant=accountant))  # fmt: skip
    uncovered = sorted({c.release_kind for c in charges if not c.covered})
    return lines, uncovered


def ensure_identity(home: Path, party: str) -> AuditLog:
    """The node's audit log. Simulation only creates a missing identity key (a deployed
    node's owner creates it with ``accord keys new --node-home``)."""
    from accord.governance.identity import (
        generate_identity,
        node_identity,
        node_identity_path,
        write_node_identity,
    )

    if not node_identity_path(home).exists():
        try:
            write_node_identity(generate_identity(party), home)
        except InputError:
            # Another run on the same home created it first (it never overwrites one).
            if not node_identity_path(home).exists():
                raise
    return AuditLog(home, node_identity(home, party))
