"""A data owner's approvals: a job outside the agreement's terms, waiting for the owner.

A node refuses a job that departs from the agreement. Where every clause it departs from
protects this node's own data (``Violation.owner`` is this party), the refusal files a
*request* in the node home, ``approvals/<id>.json`` (mode 0600, written atomically), and
tells the operator its id. The owner reads exactly which clauses the job departs from
(``accord approvals list``) and approves or rejects it; after an approval the job is run
again and :meth:`ApprovalStore.valid_approval` lets it through.

Why it is safe to keep these as files in the node home:

* An approval is an Ed25519 signature by the node's own identity key over
  :func:`decision_payload`: the exact job digest, task-code hash and agreement digest, the
  clauses relaxed, the status and the expiry. Editing the file (a later expiry, another
  job) breaks the signature; an approval of one job is never one of another.
* Only clauses that protect the approving owner's own data can be relaxed
  (:func:`approvable`): a clause of all parties, or one protecting another owner, stays
  enforced whatever any single owner signs.
* An approval expires. Every request and decision is appended to the node's signed,
  hash-chained audit log (:mod:`accord.governance.audit`) when the store is given it: the
  record shows the current state, the audit log the history of decisions.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Self

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from accord.config_errors import validation_line
from accord.errors import AccordError, InputError, RefusedError
from accord.fileio import fsync_dir, write_bytes_atomic
from accord.governance.audit import AuditLog
from accord.governance.identity import (
    PARTY_NAME_PATTERN,
    PartyIdentity,
    b64_bytes,
    b64_text,
    home_party,
    verify_signature,
)

APPROVALS_DIR = "approvals"
"""Inside a node home: one ``<id>.json`` per request."""
_KIND = "accord-approval-v1"
_HEX64 = r"^[0-9a-f]{64}$"
_ID = re.compile(r"[0-9a-f]{16}")


class Departure(BaseModel):
    """One clause a job departs from, as the owner is asked to relax it."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    clause: str
    message: str
    owner: str | None
    """The owner whose data the clause protects; None: a clause of all parties."""

    def line(self) -> str:
        return f"{self.clause}: {self.message}"


class ApprovalRecord(BaseModel):
    """A request for one exact job under one exact agreement, and the owner's decision."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    id: str = Field(pattern=r"^[0-9a-f]{16}$")
    party: str = Field(pattern=f"^{PARTY_NAME_PATTERN}$")
    job_digest: str = Field(pattern=_HEX64)
    task_hash: str | None = Field(pattern=_HEX64)
    agreement_digest: str = Field(pattern=_HEX64)
    agreement_label: str
    job_name: str
    departures: list[Departure] = Field(min_length=1)
    requested_at: str
    status: Literal["pending", "approved", "rejected"]
    decided_at: str | None = None
    expires_at: str | None = None
    signature: str | None = None

    @field_validator("requested_at", "decided_at", "expires_at")
    @classmethod
    def _utc_time(cls, value: str | None) -> str | None:
        if value is not None:
            _parse_time(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        # The id names the job and terms it was filed for; a record whose fields were
        # changed under its id is malformed, not a request for something else.
        expected = approval_id(self.party, self.job_digest, self.task_hash, self.agreement_digest)
        if self.id != expected:
            raise ValueError(f"id {self.id} does not match the record's hashes ({expected})")
        decided = (self.decided_at, self.signature)
        if self.status == "pending" and (*decided, self.expires_at) != (None, None, None):
            raise ValueError("a pending request has no decided_at, expires_at or signature")
        if self.status != "pending" and None in decided:
            raise ValueError(f"an {self.status} record needs decided_at and signature")
        if (self.status == "approved") != (self.expires_at is not None):
            raise ValueError("expires_at is set on approvals, and only on approvals")
        return self

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and _now(now) >= _parse_time(self.expires_at)


def approval_id(party: str, job_digest: str, task_hash: str | None, agreement_digest: str) -> str:
    """First 16 hex digits of SHA-256 over the RFC 8785 JSON of the four fields: the same
    job under the same terms at the same owner always gets the same id."""
    body = {"party": party, "job_digest": job_digest, "task_hash": task_hash,
            "agreement_digest": agreement_digest}  # fmt: skip
    return hashlib.sha256(rfc8785.dumps(body)).hexdigest()[:16]


def decision_payload(record: ApprovalRecord) -> bytes:
    """What the owner signs: SHA-256 of the RFC 8785 JSON of every field but the signature,
    with a kind, so that the signature means nothing as an agreement or revocation."""
    return _payload(record.model_dump(mode="json"))


def _payload(fields: dict[str, Any]) -> bytes:
    body = {"kind": _KIND, **{k: v for k, v in fields.items() if k != "signature"}}
    return hashlib.sha256(rfc8785.dumps(body)).digest()


def approvable(departures: Sequence[Departure], party: str) -> bool:
    """True only when every departure protects ``party``'s own data: one owner can waive
    protections of its own data, never another owner's nor a clause of all parties."""
    return all(d.owner == party for d in departures)


def approve_command(home: Path, approval_id: str) -> str:
    """The command that approves ``approval_id``, for the message of a refused job."""
    return f"accord approvals approve {approval_id} --node-home {shlex.quote(str(home))}"


class ApprovalStore:
    """The approval requests and decisions of one node home."""

    def __init__(self, home: Path, audit: AuditLog | None = None) -> None:
        self.home = home
        self.folder = home / APPROVALS_DIR
        self.audit = audit
        """Where requests and decisions are logged (the node's audit log)."""

    def path(self, approval_id: str) -> Path:
        if not _ID.fullmatch(approval_id):  # also keeps the id from naming another path
            raise InputError(f"{approval_id!r} is not an approval id (16 hex digits)")
        return self.folder / f"{approval_id}.json"

    def request(
        self,
        party: str,
        job_digest: str,
        task_hash: str | None,
        agreement_digest: str,
        agreement_label: str,
        job_name: str,
        departures: Sequence[Departure],
    ) -> ApprovalRecord:
        """File a pending request; an existing record with this id is returned unchanged,
        whatever its status (a job refused twice is one request). Refused (RefusedError)
        when a departure is not approvable by ``party``: the job is then refused outright."""
        if not departures:
            raise AccordError("a job within the agreement's terms needs no approval")
        if not approvable(departures, party):
            raise RefusedError(_not_approvable(departures, party))
        owner = home_party(self.home)
        if owner is not None and owner != party:
            raise InputError(f"{self.home}: this node home belongs to {owner!r}, not {party!r}")
        new_id = approval_id(party, job_digest, task_hash, agreement_digest)
        if self.path(new_id).exists():
            return self.get(new_id)
        record = _validated(
            self.path(new_id),
            id=new_id,
            party=party,
            job_digest=job_digest,
            task_hash=task_hash,
            agreement_digest=agreement_digest,
            agreement_label=agreement_label,
            job_name=job_name,
            departures=[d.model_dump() for d in departures],
            requested_at=_stamp(None),
            status="pending",
        )
        self._write(record, "requested")
        return record

    def get(self, approval_id: str) -> ApprovalRecord:
        """The record ``approval_id`` (InputError when there is none, or it is malformed)."""
        path = self.path(approval_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise InputError(
                f"no approval {approval_id} in {self.folder} (see `accord approvals list "
                f"--node-home {shlex.quote(str(self.home))} --all`)"
            ) from None
        except OSError as exc:
            raise InputError(f"{path}: cannot read the approval ({exc.strerror})") from None
        try:
            record = ApprovalRecord.model_validate_json(data)
        except ValidationError as exc:
            raise InputError(f"{path}: {validation_line(exc, ApprovalRecord)}") from None
        if record.id != approval_id:
            raise InputError(f"{path}: the record's id is {record.id}, not {approval_id}")
        return record

    def list(self) -> list[ApprovalRecord]:
        """Every record, newest request first (a malformed file: InputError naming it)."""
        if not self.folder.is_dir():
            return []
        records = []
        for path in self.folder.glob("*.json"):
            if not _ID.fullmatch(path.stem):
                raise InputError(f"{path}: not an approval record (its name is not <id>.json)")
            records.append(self.get(path.stem))
        return sorted(records, key=lambda r: (_parse_time(r.requested_at), r.id), reverse=True)

    def approve(
        self,
        approval_id: str,
        identity: PartyIdentity,
        valid_for: timedelta,
        now: datetime | None = None,
    ) -> ApprovalRecord:
        """Sign and store the approval, valid for ``valid_for`` from ``now``.

        Refused (RefusedError) when ``identity`` is not the record's party, when a
        departure protects anyone but that party, or when the record was already decided
        (an approval that has expired may be renewed: the owner signs again).
        """
        record = self._decidable(approval_id, identity, now, renew=True)
        if not approvable(record.departures, identity.name):
            raise RefusedError(f"approval {approval_id}: " + _not_approvable(
                record.departures, identity.name))  # fmt: skip
        if valid_for <= timedelta(0):
            raise InputError(f"an approval must be valid for some time (got {valid_for})")
        at = _now(now)
        return self._decide(record, identity, "approved", at, _stamp(at + valid_for))

    def reject(
        self, approval_id: str, identity: PartyIdentity, now: datetime | None = None
    ) -> ApprovalRecord:
        """Sign and store the rejection (RefusedError: not this party's, or not pending)."""
        record = self._decidable(approval_id, identity, now, renew=False)
        return self._decide(record, identity, "rejected", _now(now), None)

    def valid_approval(
        self,
        party: str,
        job_digest: str,
        task_hash: str | None,
        agreement_digest: str,
        departures: Sequence[Departure],
        public_key: Ed25519PublicKey,
        now: datetime | None = None,
    ) -> ApprovalRecord | None:
        """The approval that lets this exact job run, or None (the job stays refused).

        It must be approved, signed under ``public_key`` (the node's own identity key),
        name exactly this party, job, task code and agreement, be unexpired at ``now``, and
        cover every departure (same clause and owner) with each owner ``party``.
        """
        wanted = approval_id(party, job_digest, task_hash, agreement_digest)
        try:
            record = self.get(wanted)
        except InputError:  # none, or malformed (request() names the file)
            return None
        same = (record.party, record.job_digest, record.task_hash, record.agreement_digest)
        if record.status != "approved" or same != (party, job_digest, task_hash, agreement_digest):
            return None
        signature = b64_bytes(record.signature or "")
        if not verify_signature(public_key, signature, decision_payload(record)):
            return None  # edited since it was signed, or signed by another key
        if record.expired(now):
            return None
        relaxed = {(d.clause, d.owner) for d in record.departures if d.owner == party}
        if not approvable(departures, party) or any(
            (d.clause, d.owner) not in relaxed for d in departures
        ):
            return None
        return record

    # --- internals -----------------------------------------------------------------------

    def _decidable(
        self, approval_id: str, identity: PartyIdentity, now: datetime | None, renew: bool
    ) -> ApprovalRecord:
        record = self.get(approval_id)
        if identity.name != record.party:
            raise RefusedError(
                f"approval {approval_id} is {record.party!r}'s to decide, not {identity.name!r}'s"
            )
        if record.status == "pending" or (renew and record.expired(now)):
            return record
        when = f" (until {record.expires_at})" if record.status == "approved" else ""
        raise RefusedError(
            f"approval {approval_id} is not pending: {record.status} at {record.decided_at}{when}"
        )

    def _decide(
        self,
        record: ApprovalRecord,
        identity: PartyIdentity,
        status: Literal["approved", "rejected"],
        at: datetime,
        expires_at: str | None,
    ) -> ApprovalRecord:
        fields: dict[str, Any] = record.model_dump(mode="json")
        fields.update(status=status, decided_at=_stamp(at), expires_at=expires_at)
        # The same JSON form that decision_payload() covers when the record is read back.
        signature = identity.sign(_payload(fields))
        fields["signature"] = b64_text(signature)
        decided = _validated(self.path(record.id), **fields)
        self._write(decided, status)
        return decided

    def _write(self, record: ApprovalRecord, event: str) -> None:
        """Replace the record file, then log the event in the node's audit log."""
        self._make_folder()
        fields = record.model_dump(mode="json")
        data = (json.dumps(fields, indent=2) + "\n").encode("utf-8")
        write_bytes_atomic(self.path(record.id), data, 0o600, sync_dir=True)
        if self.audit is not None:
            self.audit.append("approval", {"event": event, "record": fields})

    def _make_folder(self) -> None:
        if not self.home.is_dir():
            raise InputError(f"{self.home}: node home not found")
        try:
            self.folder.mkdir(mode=0o700, exist_ok=True)
            os.chmod(self.folder, 0o700)  # mkdir's mode is filtered by the umask
        except OSError as exc:
            raise InputError(f"{self.folder}: cannot create the folder ({exc.strerror})") from None
        fsync_dir(self.home)


def _validated(path: Path, **fields: object) -> ApprovalRecord:
    try:
        return ApprovalRecord.model_validate(fields)
    except ValidationError as exc:
        raise InputError(f"{path}: {validation_line(exc, ApprovalRecord)}") from None


def _not_approvable(departures: Sequence[Departure], party: str) -> str:
    """Why ``party`` cannot approve: the first clause it may not relax."""
    for d in departures:
        if d.owner is None:
            return f"clause {d.clause} binds all parties: no one owner relaxes it ({d.message})"
        if d.owner != party:
            return (
                f"clause {d.clause} protects {d.owner!r}'s data: {party!r} cannot relax another "
                f"owner's clause ({d.message})"
            )
    return "nothing to refuse"  # not reached: callers check approvable() first


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(UTC)).astimezone(UTC)


def _stamp(at: datetime | None) -> str:
    """UTC, RFC 3339, to the second: ``2026-03-01T12:00:00+00:00``."""
    return _now(at).isoformat(timespec="seconds")


def _parse_time(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an RFC 3339 time") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone (write it in UTC, +00:00)")
    return parsed
