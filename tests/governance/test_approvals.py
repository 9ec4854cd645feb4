"""A data owner's approvals: exact-job signatures, no replay, only the owner's own clauses.

Real Ed25519 keys and real files in a node home; the CLI runs in-process.
"""

from __future__ import annotations

import hashlib
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import rfc8785

from accord.errors import AccordError, InputError, RefusedError
from accord.governance import PartyIdentity, generate_identity, write_node_identity
from accord.governance.approvals import (
    APPROVALS_DIR,
    ApprovalRecord,
    ApprovalStore,
    Departure,
    approvable,
    approval_id,
    approve_command,
    decision_payload,
)
from accord.governance.audit import AuditLog, read_audit
from tests.conftest import Invoke, Result

PARTY = "cleveland"
JOB = hashlib.sha256(b"job").hexdigest()
TASK = hashlib.sha256(b"task").hexdigest()
TERMS = hashlib.sha256(b"terms").hexdigest()
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
WEEK = timedelta(days=7)

CODE = Departure(
    clause="code.task_hashes",
    message="task code 1a2b is not among the approved hashes",
    owner=PARTY,
)
CAP = Departure(
    clause="datasets.cleveland.train.dp_cap", message="epsilon 3 exceeds the cap 2", owner=PARTY
)
OTHER_OWNER = Departure(
    clause="datasets.hungary.train.dp_cap", message="epsilon 3 exceeds the cap 2", owner="hungary"
)
ALL_PARTIES = Departure(
    clause="protections.aggregation", message="the agreement requires secagg", owner=None
)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "cleveland-home"
    path.mkdir(mode=0o700)
    (path / "node.toml").write_text(f'party = "{PARTY}"\n')
    return path


@pytest.fixture
def identity(home: Path) -> PartyIdentity:
    owner = generate_identity(PARTY)
    write_node_identity(owner, home)
    return owner


def file_request(
    store: ApprovalStore, departures: list[Departure] | None = None, job: str = JOB
) -> ApprovalRecord:
    return store.request(
        PARTY,
        job,
        TASK,
        TERMS,
        "heart-2026 v3",
        "heart-fedprox",
        departures if departures is not None else [CODE, CAP],
    )


def valid(
    store: ApprovalStore,
    identity: PartyIdentity,
    *,
    job: str = JOB,
    task: str | None = TASK,
    terms: str = TERMS,
    departures: list[Departure] | None = None,
    now: datetime = NOW + timedelta(days=1),
) -> ApprovalRecord | None:
    wanted = departures if departures is not None else [CODE, CAP]
    return store.valid_approval(PARTY, job, task, terms, wanted, identity.public_key, now)


def write_record(store: ApprovalStore, fields: dict[str, object]) -> None:
    """Put a record file in place as someone with write access to the home could."""
    path = store.path(str(fields["id"]))
    path.parent.mkdir(mode=0o700, exist_ok=True)
    path.write_text(json.dumps(fields))


# --- requests ---------------------------------------------------------------------------------


def test_request_is_filed_once_with_owner_only_modes(home: Path, identity: PartyIdentity) -> None:
    store = ApprovalStore(home, AuditLog(home, identity))
    record = file_request(store)
    assert record.id == approval_id(PARTY, JOB, TASK, TERMS)
    assert (record.status, record.signature, record.expires_at) == ("pending", None, None)
    path = home / APPROVALS_DIR / f"{record.id}.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert ApprovalRecord.model_validate_json(path.read_bytes()) == record
    # The same job under the same terms is the same request, whatever is asked the 2nd time.
    assert file_request(store, [CODE]) == record
    assert store.list() == [record]
    assert [e.body["event"] for e in read_audit(home) if e.kind == "approval"] == ["requested"]


def test_the_id_names_the_party_job_code_and_terms() -> None:
    ids = {
        approval_id(PARTY, JOB, TASK, TERMS),
        approval_id("hungary", JOB, TASK, TERMS),
        approval_id(PARTY, TERMS, TASK, TERMS),
        approval_id(PARTY, JOB, None, TERMS),
        approval_id(PARTY, JOB, TASK, JOB),
    }
    assert len(ids) == 5 and all(len(i) == 16 for i in ids)
    assert approval_id(PARTY, JOB, TASK, TERMS) == approval_id(PARTY, JOB, TASK, TERMS)


@pytest.mark.parametrize("foreign", [OTHER_OWNER, ALL_PARTIES])
def test_request_refuses_clauses_this_owner_cannot_relax(home: Path, foreign: Departure) -> None:
    assert approvable([CODE, CAP], PARTY) and not approvable([CODE, foreign], PARTY)
    with pytest.raises(RefusedError, match=f"clause {foreign.clause}"):
        file_request(ApprovalStore(home), [CODE, foreign])
    assert not (home / APPROVALS_DIR).exists()


def test_request_of_nothing_and_of_another_home_party(home: Path) -> None:
    store = ApprovalStore(home)
    with pytest.raises(AccordError, match="needs no approval"):
        file_request(store, [])
    with pytest.raises(InputError, match="belongs to 'cleveland', not 'hungary'"):
        store.request("hungary", JOB, TASK, TERMS, "a v1", "j", [OTHER_OWNER])


# --- approving, and what an approval lets run --------------------------------------------------


def test_approval_lets_exactly_this_job_run(home: Path, identity: PartyIdentity) -> None:
    store = ApprovalStore(home, AuditLog(home, identity))
    pending = file_request(store)
    assert valid(store, identity) is None  # pending: still refused
    approved = store.approve(pending.id, identity, WEEK, now=NOW)
    assert approved.status == "approved"
    assert approved.expires_at == "2026-03-08T12:00:00+00:00"
    assert store.get(pending.id) == approved
    assert valid(store, identity) == approved
    assert valid(store, identity, departures=[CAP]) == approved  # a subset is covered
    # Replays: another job, other task code, other terms.
    assert valid(store, identity, job=hashlib.sha256(b"another job").hexdigest()) is None
    assert valid(store, identity, task=hashlib.sha256(b"other code").hexdigest()) is None
    assert valid(store, identity, task=None) is None
    assert valid(store, identity, terms=hashlib.sha256(b"other terms").hexdigest()) is None
    # A clause the owner did not relax, or one that is not the owner's to relax.
    extra = Departure(clause="operations.evaluate", message="not permitted", owner=PARTY)
    assert valid(store, identity, departures=[CODE, CAP, extra]) is None
    assert valid(store, identity, departures=[CODE, OTHER_OWNER]) is None
    assert valid(store, identity, departures=[ALL_PARTIES]) is None
    # Expiry.
    assert valid(store, identity, now=NOW + WEEK - timedelta(seconds=1)) == approved
    assert valid(store, identity, now=NOW + WEEK) is None
    events = [e.body["event"] for e in read_audit(home) if e.kind == "approval"]
    assert events == ["requested", "approved"]


def test_a_record_edited_after_signing_is_not_valid(home: Path, identity: PartyIdentity) -> None:
    store = ApprovalStore(home)
    approved = store.approve(file_request(store).id, identity, WEEK, now=NOW)
    fields = approved.model_dump(mode="json")
    path = store.path(approved.id)

    write_record(store, {**fields, "expires_at": "2027-03-08T12:00:00+00:00"})
    assert valid(store, identity) is None
    assert valid(store, identity, now=NOW + timedelta(days=30)) is None

    write_record(
        store,
        {
            **fields,
            "departures": [
                *fields["departures"],
                {"clause": "operations.evaluate", "message": "relaxed by hand", "owner": PARTY},
            ],
        },
    )
    assert valid(store, identity) is None

    # The signed approval moved to another job's id, its hashes rewritten to match.
    other = hashlib.sha256(b"another job").hexdigest()
    path.unlink()
    write_record(
        store, {**fields, "id": approval_id(PARTY, other, TASK, TERMS), "job_digest": other}
    )
    assert valid(store, identity, job=other) is None

    # The job digest changed in place: the id no longer matches, the record is refused.
    write_record(store, {**fields, "job_digest": other})
    assert valid(store, identity) is None and valid(store, identity, job=other) is None

    # The untouched record still verifies.
    write_record(store, fields)
    assert valid(store, identity) == approved


def test_the_signed_payload_covers_every_field_but_the_signature(
    home: Path, identity: PartyIdentity
) -> None:
    store = ApprovalStore(home)
    approved = store.approve(file_request(store).id, identity, WEEK, now=NOW)
    payload = decision_payload(approved)
    assert decision_payload(approved.model_copy(update={"signature": None})) == payload
    changes: dict[str, object] = {"job_digest": TERMS, "task_hash": None, "status": "rejected",
               "agreement_digest": JOB, "expires_at": "2027-01-01T00:00:00+00:00",
               "departures": [CODE], "party": "hungary", "job_name": "x", "id": "0" * 16,
               "agreement_label": "x", "requested_at": "x", "decided_at": "x"}  # fmt: skip
    assert set(changes) == set(ApprovalRecord.model_fields) - {"signature"}
    for field, value in changes.items():
        assert decision_payload(approved.model_copy(update={field: value})) != payload, field
    # Domain separation: not the bare hash of the fields.
    fields = approved.model_dump(mode="json", exclude={"signature"})
    assert payload != hashlib.sha256(rfc8785.dumps(fields)).digest()


def test_a_signature_by_another_key_is_not_valid(home: Path, identity: PartyIdentity) -> None:
    store = ApprovalStore(home)
    pending = file_request(store)
    hungary = generate_identity("hungary")
    with pytest.raises(RefusedError, match="'cleveland''s to decide, not 'hungary''s"):
        store.approve(pending.id, hungary, WEEK, now=NOW)
    # Another key under this party's name (placed in the home, or a stale key).
    impostor = PartyIdentity(PARTY, hungary.private_key)
    forged = store.approve(pending.id, impostor, WEEK, now=NOW)
    assert forged.status == "approved"
    assert valid(store, identity) is None


@pytest.mark.parametrize("foreign", [OTHER_OWNER, ALL_PARTIES])
def test_approve_never_relaxes_another_owners_clause(
    home: Path, identity: PartyIdentity, foreign: Departure
) -> None:
    # request() never files it; a record written by hand is still refused.
    store = ApprovalStore(home)
    fields = file_request(store).model_dump(mode="json")
    fields["departures"].append(foreign.model_dump())
    write_record(store, fields)
    with pytest.raises(RefusedError, match=f"clause {foreign.clause}"):
        store.approve(fields["id"], identity, WEEK, now=NOW)
    assert store.get(fields["id"]).status == "pending"


def test_decisions_are_final_until_an_approval_expires(home: Path, identity: PartyIdentity) -> None:
    store = ApprovalStore(home)
    pending = file_request(store)
    with pytest.raises(InputError, match="valid for some time"):
        store.approve(pending.id, identity, timedelta(0), now=NOW)
    store.approve(pending.id, identity, WEEK, now=NOW)
    with pytest.raises(RefusedError, match="not pending: approved at 2026-03-01T12:00:00"):
        store.approve(pending.id, identity, WEEK, now=NOW + timedelta(days=1))
    with pytest.raises(RefusedError, match="not pending"):
        store.reject(pending.id, identity, now=NOW + timedelta(days=1))
    # Once expired, the owner may sign again (the same job under the same terms).
    later = NOW + timedelta(days=10)
    renewed = store.approve(pending.id, identity, WEEK, now=later)
    assert valid(store, identity, now=later + timedelta(days=1)) == renewed
    assert file_request(store) == renewed  # request() leaves it unchanged


def test_reject_is_signed_and_keeps_the_job_refused(home: Path, identity: PartyIdentity) -> None:
    store = ApprovalStore(home)
    pending = file_request(store)
    rejected = store.reject(pending.id, identity, now=NOW)
    assert (rejected.status, rejected.expires_at) == ("rejected", None)
    assert rejected.decided_at == "2026-03-01T12:00:00+00:00" and rejected.signature
    assert valid(store, identity) is None
    with pytest.raises(RefusedError, match="not pending: rejected"):
        store.approve(pending.id, identity, WEEK, now=NOW)
    assert file_request(store) == rejected


def test_list_and_get_errors(home: Path) -> None:
    store = ApprovalStore(home)
    assert store.list() == []
    first = file_request(store)
    second = file_request(store, job=hashlib.sha256(b"second").hexdigest())
    write_record(store, {**first.model_dump(mode="json"), "requested_at": "2000-01-01T00:00:00Z"})
    first = store.get(first.id)
    assert [r.id for r in store.list()] == [second.id, first.id]  # newest first
    with pytest.raises(InputError, match="no approval 0123456789abcdef"):
        store.get("0123456789abcdef")
    with pytest.raises(InputError, match="not an approval id"):
        store.get("../../secrets/identity")
    store.path(first.id).write_text('{"id": "' + first.id + '"}')
    with pytest.raises(InputError, match=rf"{first.id}\.json: .*required key is missing"):
        store.list()
    assert valid_or_none(store) is None  # a malformed record lets nothing run


def valid_or_none(store: ApprovalStore) -> ApprovalRecord | None:
    key = generate_identity(PARTY).public_key
    return store.valid_approval(PARTY, JOB, TASK, TERMS, [CODE], key, NOW)


# --- the command line -------------------------------------------------------------------------


def one_line(result: Result, code: int, kind: str) -> str:
    assert result.code == code, (result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"accord: {kind}: "), result.err
    return lines[0]


def test_cli_list_approve_reject(invoke: Invoke, home: Path, identity: PartyIdentity) -> None:
    store = ApprovalStore(home)
    assert invoke("approvals", "list", "--node-home", str(home)).out == "no pending approvals\n"
    pending = file_request(store)
    other = file_request(store, job=hashlib.sha256(b"second").hexdigest())
    assert approve_command(home, pending.id) == (
        f"accord approvals approve {pending.id} --node-home {home}"
    )

    listed = invoke("approvals", "list", "--node-home", str(home))
    assert listed.code == 0, listed.err
    assert f"{pending.id}  pending  job 'heart-fedprox' under agreement heart-2026 v3" in listed.out
    assert f"    {CODE.clause}: {CODE.message}" in listed.out
    assert f"    {CAP.clause}: {CAP.message}" in listed.out

    approved = invoke("approvals", "approve", pending.id, "--node-home", str(home), "--days", "3")
    assert approved.code == 0, approved.err
    record = store.get(pending.id)
    assert record.status == "approved" and record.expires_at is not None
    assert f"approved {pending.id}: job 'heart-fedprox'" in approved.out
    assert f"    {CODE.clause}: {CODE.message}" in approved.out
    assert f"until {record.expires_at}; run the job again" in approved.out
    assert store.valid_approval(PARTY, JOB, TASK, TERMS, [CODE, CAP], identity.public_key)

    rejected = invoke("approvals", "reject", other.id, "--node-home", str(home))
    assert rejected.code == 0 and "the job stays refused" in rejected.out
    assert invoke("approvals", "list", "--node-home", str(home)).out == "no pending approvals\n"
    everything = invoke("approvals", "list", "--node-home", str(home), "--all").out
    assert f"{pending.id}  approved, valid until {record.expires_at}" in everything
    assert f"{other.id}  rejected" in everything


def test_cli_errors(invoke: Invoke, home: Path, identity: PartyIdentity, tmp_path: Path) -> None:
    store = ApprovalStore(home)
    pending = file_request(store)
    missing = str(tmp_path / "nowhere")
    assert "node home not found" in one_line(
        invoke("approvals", "list", "--node-home", missing), 2, "error"
    )
    assert "no approval 0123456789abcdef" in one_line(
        invoke("approvals", "approve", "0123456789abcdef", "--node-home", str(home)), 2, "error"
    )
    one_line(
        invoke("approvals", "approve", pending.id, "--node-home", str(home), "--days", "0"),
        2,
        "error",
    )
    assert invoke("approvals", "approve", pending.id, "--node-home", str(home)).code == 0
    assert "is not pending: approved" in one_line(
        invoke("approvals", "reject", pending.id, "--node-home", str(home)), 3, "refused"
    )

    fields = file_request(store, job=TERMS).model_dump(mode="json")
    fields["departures"].append(OTHER_OWNER.model_dump())
    write_record(store, fields)
    line = one_line(
        invoke("approvals", "approve", fields["id"], "--node-home", str(home)), 3, "refused"
    )
    assert "cannot relax another owner's clause" in line

    store.path(fields["id"]).write_text("not json")
    assert f"{fields['id']}.json" in one_line(
        invoke("approvals", "list", "--node-home", str(home)), 2, "error"
    )
