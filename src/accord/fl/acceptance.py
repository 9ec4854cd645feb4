"""A node accepting a job: its agreement, its owner's approvals, its caps, its audit log.

The order matters, and is the same in simulation and deployment:

1. The node's own agreement: a job that breaks a clause of all parties is refused
   (exit 3, naming the clause) before anything else.
2. The job's DP plan against the caps: the node's own (``node.toml``) and the agreement's
   on this owner's datasets. A plan over a cap of the node's own is refused. A plan over
   only the agreement's cap on this owner's data departs from a clause that protects this
   owner alone: the owner may approve it (:mod:`accord.governance.approvals`). Without a
   valid approval the request is filed in the node home and the job is refused with the
   approval id and the command; with one, the agreement's cap is relaxed for exactly this
   job (the node's own caps still apply).
3. The decision goes into the node's audit log: accepted (with the approvals used), or
   refused and why.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from accord.errors import AccordError, RefusedError
from accord.fl.gate import GatePrivacy
from accord.fl.node_agreement import NodeAgreement, open_node_agreement
from accord.fl.node_audit import NodeAudit, ensure_identity
from accord.fl.node_home import NodeHome
from accord.fl.node_privacy import NodeDpPlan
from accord.job import Job
from accord.privacy.caps import NodePrivacySettings, load_node_settings

if TYPE_CHECKING:
    from accord.fl.node import Node
    from accord.governance.audit import AuditLog

PlanPrivacy = Callable[[NodePrivacySettings], tuple[GatePrivacy | None, NodeDpPlan | None]]
"""The node's DP plan and ledger, checked against the given caps (refuses over a cap)."""


@dataclass(frozen=True)
class Acceptance:
    """What a node settled on accepting a job."""

    agreement: NodeAgreement | None
    privacy: GatePrivacy | None
    dp_plan: NodeDpPlan | None
    audit: NodeAudit
    approvals: tuple[str, ...]


def accept_job(
    home: NodeHome,
    job: Job,
    job_id: str,
    run_key: str,
    agreement_digest: str | None,
    plan_privacy: PlanPrivacy,
) -> Acceptance:
    """Steps 1 and 2 above; a refusal is logged before it is raised."""
    log = ensure_identity(home.path, home.party)
    try:
        settings = load_node_settings(home.path)
        agreement = open_node_agreement(
            home.path, home.party, job, agreement_digest, settings.min_colluding_parties
        )
        approvals: tuple[str, ...] = ()
        if agreement is None:
            privacy, plan = plan_privacy(settings)
        else:
            privacy, plan, approvals = _within_agreement_caps(
                home, job, agreement, settings, plan_privacy, log
            )
        audit = NodeAudit(log, job, job_id, run_key, agreement)
    except AccordError as refusal:
        NodeAudit(log, job, job_id, run_key, None).refused(refusal)
        raise
    return Acceptance(agreement, privacy, plan, audit, approvals)


def accepted(build: Callable[[], Node], acceptance: Acceptance) -> Node:
    """Build the node (which makes any whole-job charge) and log the acceptance, or the
    refusal."""
    try:
        node = build()
    except AccordError as refusal:
        acceptance.audit.refused(refusal)
        raise
    acceptance.audit.accepted(acceptance.approvals)
    return node


def _within_agreement_caps(
    home: NodeHome,
    job: Job,
    agreement: NodeAgreement,
    settings: NodePrivacySettings,
    plan_privacy: PlanPrivacy,
    log: AuditLog,
) -> tuple[GatePrivacy | None, NodeDpPlan | None, tuple[str, ...]]:
    from accord.governance.approvals import Departure

    extra = agreement.caps()
    try:
        privacy, plan = plan_privacy(dataclasses.replace(settings, caps=[*settings.caps, *extra]))
        return privacy, plan, ()
    except RefusedError:
        pass
    # Over a cap: the node's own caps refuse outright (raises here) ...
    privacy, plan = plan_privacy(settings)
    # ... else the job departs from the agreement's caps on this owner's data only.
    departures = []
    for dataset in dict.fromkeys(cap.dataset for cap in extra):
        caps = [*settings.caps, *(c for c in extra if c.dataset == dataset)]
        try:
            plan_privacy(dataclasses.replace(settings, caps=caps))
        except RefusedError as why:
            clause = f"datasets.{home.party}.{dataset}.dp_cap"
            departures.append(Departure(clause=clause, message=str(why), owner=home.party))
    approval = agreement.approval_for(departures, log)
    return privacy, plan, (approval,)
