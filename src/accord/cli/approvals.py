"""``accord approvals``: a data owner lists, approves or rejects jobs outside the terms.

A job that departs only from clauses protecting this owner's data is refused with an
approval id; the request waits in the owner's node home. These commands are the owner's
side of it: they read ``approvals/`` in that home and sign decisions with the home's own
identity key (see :mod:`accord.governance.approvals`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from accord.governance.approvals import ApprovalRecord, ApprovalStore
    from accord.governance.identity import PartyIdentity

_node_home = click.option(
    "--node-home",
    "node_home",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="The data owner's node home, where the requests wait.",
)


@click.group(
    short_help="A data owner's approvals of jobs outside the agreement: list, approve, reject.",
    help="A job that departs from clauses protecting your data waits in your node home until "
    "you approve or reject it. An approval is signed with the node's identity key over the "
    "exact job, task code and agreement, relaxes only your own clauses, and expires.",
)
def approvals() -> None:
    pass


def _store(node_home: Path) -> ApprovalStore:
    from accord.errors import InputError
    from accord.governance.approvals import ApprovalStore

    if not node_home.is_dir():
        raise InputError(f"{node_home}: node home not found (give an existing --node-home)")
    return ApprovalStore(node_home)


def _audited_store(node_home: Path, identity: PartyIdentity) -> ApprovalStore:
    """The store, logging each decision in the node's audit log."""
    from accord.governance.approvals import ApprovalStore
    from accord.governance.audit import AuditLog

    _store(node_home)
    return ApprovalStore(node_home, AuditLog(node_home, identity))


def _identity(node_home: Path) -> PartyIdentity:
    """The home's own identity: only the owner whose data the clauses protect decides."""
    from accord.errors import InputError
    from accord.governance.identity import home_party, node_identity

    party = home_party(node_home)
    if party is None:
        raise InputError(f"{node_home}: not a node home (no party line in node.toml)")
    return node_identity(node_home, party)


def _summary(record: ApprovalRecord) -> str:
    return f"job {record.job_name!r} under agreement {record.agreement_label}"


def _hashes(record: ApprovalRecord) -> str:
    code = record.task_hash[:16] if record.task_hash else "built-in model"
    agreement = record.agreement_digest[:16]
    return f"job {record.job_digest[:16]}, task code {code}, agreement {agreement}"


@approvals.command("list", short_help="List the requests waiting for a decision.")
@_node_home
@click.option("show_all", "--all", is_flag=True, help="Also list approved and rejected ones.")
def list_command(node_home: Path, show_all: bool) -> None:
    """List the pending requests of NODE_HOME (every request with --all), newest first,
    each with the clauses the job departs from."""
    records = _store(node_home).list()
    shown = [r for r in records if show_all or r.status == "pending"]
    if not shown:
        print("no approvals" if show_all else "no pending approvals")
        return
    now = datetime.now(UTC)
    for record in shown:
        status: str = record.status
        if record.status == "approved":
            status += f", {'expired' if record.expired(now) else 'valid'} until {record.expires_at}"
        print(f"{record.id}  {status}  {_summary(record)}  requested {record.requested_at}")
        for departure in record.departures:
            print(f"    {departure.line()}")
    if any(r.status == "pending" for r in shown):
        print(f"approve with: accord approvals approve ID --node-home {node_home}")


@approvals.command(short_help="Approve a request: sign it with this node's identity key.")
@click.argument("approval_id", metavar="ID")
@_node_home
@click.option(
    "--days",
    default=7,
    show_default=True,
    type=click.IntRange(1, 365),
    help="How long the approval lasts.",
)
def approve(approval_id: str, node_home: Path, days: int) -> None:
    """Approve request ID for DAYS days: the exact job, task code and agreement it names may
    then run despite the clauses listed (only clauses that protect this owner's data)."""
    identity = _identity(node_home)
    store = _audited_store(node_home, identity)
    record = store.approve(approval_id, identity, timedelta(days=days))
    print(f"approved {record.id}: {_summary(record)} ({_hashes(record)})")
    print("relaxes, for this job only:")
    for departure in record.departures:
        print(f"    {departure.line()}")
    print(f"until {record.expires_at}; run the job again")


@approvals.command(short_help="Reject a request: the job stays refused.")
@click.argument("approval_id", metavar="ID")
@_node_home
def reject(approval_id: str, node_home: Path) -> None:
    """Reject request ID (signed with this node's identity key); the job stays refused."""
    identity = _identity(node_home)
    record = _audited_store(node_home, identity).reject(approval_id, identity)
    print(f"rejected {record.id}: {_summary(record)} ({_hashes(record)}); the job stays refused")
