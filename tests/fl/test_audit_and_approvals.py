"""The audit trail, owner approvals and privacy receipts, through real runs of the engine."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from accord.errors import AgreementRefusedError, RefusedError
from accord.fl.simulation import build_simulation
from accord.governance.approvals import ApprovalStore
from accord.governance.audit import AUDIT_FILE, read_audit, verify_audit
from accord.governance.identity import node_identity
from accord.job import load_job
from tests.agreement_kit import OWNERS, Federation, agreed_job, make_federation
from tests.conftest import SMALL_JOB, Invoke, JobWriter

DPSGD = '\n[privacy]\nmode = "dpsgd"\nnoise_multiplier = 1.0\nclip_norm = 1.0\ndelta = 1e-5\n'


@pytest.fixture
def federation(tmp_path: Path) -> Federation:
    return make_federation(tmp_path)


def dp_job_text(rounds: int = 2, lr: str = "0.05") -> str:
    text = SMALL_JOB.format(
        seed=0, rounds=rounds, model="logreg", strategy="fedavg", sampling="all"
    ).replace("standardize = true", "standardize = false")
    return agreed_job(text.replace("lr = 0.05", f"lr = {lr}")) + DPSGD  # fmt: skip


def capped_terms(federation: Federation, epsilon: float) -> None:
    terms = federation.terms()
    for dataset in terms["datasets"]:
        dataset["dp_cap"] = {"epsilon": epsilon, "delta": 1e-5}
    federation.write_terms(terms)


def test_a_job_over_the_owners_own_cap_waits_for_the_owners_approval(
    federation: Federation, write_job: JobWriter, invoke: Invoke
) -> None:
    capped_terms(federation, 1.0)
    job_file = write_job(dp_job_text(), name="dp.toml")
    with pytest.raises(AgreementRefusedError) as refused:
        build_simulation(load_job(job_file), job_file.parent, federation.homes)
    message = str(refused.value)
    assert "clause datasets.party-1.train.dp_cap" in message
    approval = re.search(r"approval id ([0-9a-f]{16})", message)
    assert approval is not None and "accord approvals approve" in message
    home = federation.homes / "party-1"
    listed = invoke("approvals", "list", "--node-home", str(home))
    assert listed.code == 0 and approval.group(1) in listed.out and "dp_cap" in listed.out
    assert invoke("approvals", "approve", approval.group(1), "--node-home", str(home)).code == 0
    # Every owner filed its own request at once; one owner's approval is not another's.
    assert len(refused.value.approval_ids) == 4  # type: ignore[attr-defined]
    with pytest.raises(AgreementRefusedError, match=r"party 'party-2'.*approval id"):
        build_simulation(load_job(job_file), job_file.parent, federation.homes)
    for owner in OWNERS[1:]:
        owner_home = federation.homes / owner
        (record,) = ApprovalStore(owner_home).list()
        assert invoke("approvals", "approve", record.id, "--node-home", str(owner_home)).code == 0
    simulation = build_simulation(load_job(job_file), job_file.parent, federation.homes)
    simulation.coordinator.run_round(1)
    kinds = [(e.kind, e.body.get("event")) for e in read_audit(home)]
    assert ("approval", "requested") in kinds and ("approval", "approved") in kinds
    accepted = [e for e in read_audit(home) if e.kind == "job_accepted"]
    assert accepted[-1].body["approvals"] == [approval.group(1)]


def test_an_approval_is_not_replayed_for_another_job_or_another_owners_clause(
    federation: Federation, write_job: JobWriter, invoke: Invoke
) -> None:
    capped_terms(federation, 1.0)
    approved = write_job(dp_job_text(), name="approved.toml")
    with pytest.raises(AgreementRefusedError):
        build_simulation(load_job(approved), approved.parent, federation.homes)
    home = federation.homes / "party-1"
    (record,) = ApprovalStore(home).list()
    assert invoke("approvals", "approve", record.id, "--node-home", str(home)).code == 0
    # The same job with another learning rate is another job: a new request, still refused.
    other = write_job(dp_job_text(lr="0.06"), name="other.toml")
    with pytest.raises(AgreementRefusedError, match=r"party 'party-1'.*approval id"):
        build_simulation(load_job(other), other.parent, federation.homes)
    assert len(ApprovalStore(home).list()) == 2
    # party-2's key cannot approve party-1's request, and its home cannot relax party-1's cap.
    (pending,) = [r for r in ApprovalStore(home).list() if r.status == "pending"]
    with pytest.raises(RefusedError, match="is 'party-1''s to decide, not 'party-2''s"):
        ApprovalStore(home).approve(pending.id, federation.identities["party-2"], timedelta(days=1))


def test_a_cap_of_the_nodes_own_is_never_approvable(
    federation: Federation, write_job: JobWriter
) -> None:
    capped_terms(federation, 1.0)
    home = federation.homes / "party-1"
    (home / "node.toml").write_text(
        'party = "party-1"\n[[caps]]\ndataset = "train"\nepsilon = 0.5\ndelta = 1e-5\n'
    )
    job_file = write_job(dp_job_text(), name="dp.toml")
    with pytest.raises(RefusedError) as refused:
        build_simulation(load_job(job_file), job_file.parent, federation.homes)
    assert "approval id" not in str(refused.value) and "epsilon 0.5" in str(refused.value)
    refusal = [e for e in read_audit(home) if e.kind == "job_refused"]
    assert refusal and "epsilon 0.5" in refusal[-1].body["reason"]


def test_every_release_is_logged_and_carries_the_head_the_coordinator_keeps(
    federation: Federation, write_job: JobWriter, invoke: Invoke, tmp_path: Path
) -> None:
    job_file = write_job(dp_job_text(), name="dp.toml")
    out = tmp_path / "run"
    result = invoke("run", str(job_file), "--node-homes", str(federation.homes), "--out",
                    str(out), "--quiet")  # fmt: skip
    assert result.code == 0, result.err
    heads = out / "audit-heads.json"
    receipts = json.loads((out / "receipts.json").read_text())
    assert sorted(receipts) == OWNERS
    receipt = receipts["party-1"]
    assert receipt["agreement"].startswith("test-agreement v1 (terms ")
    assert receipt["releases"] == {"metrics": 2, "update": 2}
    against = {line["adversary"]: line["epsilon"] for line in receipt["epsilon"]}
    assert against["coordinator_and_recipients"] > 0
    assert "Privacy receipts" in (out / "report.html").read_text()
    for owner in OWNERS:
        home = federation.homes / owner
        entries = read_audit(home)
        releases = [e for e in entries if e.kind == "release"]
        assert [(e.body["kind"], e.body["round"]) for e in releases] == [
            ("update", 1),
            ("metrics", 1),
            ("update", 2),
            ("metrics", 2),
        ]
        assert releases[0].body["dp_event"]["type"] in (
            "PoissonSampledDpEvent",
            "SelfComposedDpEvent",
        )
        assert releases[0].body["agreement"]["label"] == "test-agreement v1"
        key = node_identity(home, owner).public_key
        assert verify_audit(entries, key, owner) == []
        verified = invoke("audit", "verify", "--node-home", str(home), "--against", str(heads))
        assert verified.code == 0, verified.err
    # Cut the tail off party-3's log: only the heads the coordinator kept show it.
    database = federation.homes / "party-3" / AUDIT_FILE
    with sqlite3.connect(database) as conn:
        conn.execute("DROP TRIGGER IF EXISTS entries_no_delete")
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"):
            conn.execute(f"DROP TRIGGER {name}")
        conn.execute("DELETE FROM entries WHERE seq > (SELECT MAX(seq) - 3 FROM entries)")
    alone = invoke("audit", "verify", "--node-home", str(federation.homes / "party-3"))
    assert alone.code == 0
    cut = invoke("audit", "verify", "--node-home", str(federation.homes / "party-3"),
                 "--against", str(heads))  # fmt: skip
    assert cut.code == 3 and "cut off" in cut.err
    # Every node kept the others' heads too.
    peers = json.loads((federation.homes / "party-1" / "state" / "peer-heads.json").read_text())
    assert sorted(peers) == ["party-2", "party-3", "party-4"]
