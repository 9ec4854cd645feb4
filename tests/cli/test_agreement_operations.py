"""The agreement's other operations: DP statistics and encrypted scoring, refused by clause."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from accord.governance.identity import generate_identity, write_identity_files
from tests.agreement_kit import Federation, agreed_job, make_federation
from tests.conftest import SMALL_JOB, Invoke


@pytest.fixture
def federation(tmp_path: Path) -> Federation:
    return make_federation(tmp_path)


def _stats(invoke: Invoke, federation: Federation, *queries: str) -> tuple[int, str]:
    job = federation.root / "stats.toml"
    job.write_text(agreed_job(SMALL_JOB.format(seed=0, rounds=1, model="mlp",
                                               strategy="fedavg", sampling="all")))  # fmt: skip
    args = ["stats", str(job), "--node-homes", str(federation.homes)]
    for query in queries:
        args += ["--query", query]
    result = invoke(*args)
    return result.code, result.out + result.err


def test_statistics_run_only_where_the_agreement_permits_the_query(
    federation: Federation, invoke: Invoke
) -> None:
    count = "kind=count,epsilon=1"
    mean = "kind=mean,column=label,lower=0,upper=1,epsilon=1"
    code, said = _stats(invoke, federation, count)
    assert code == 3 and "clause operations.statistics:" in said
    terms = federation.terms()
    terms["operations"]["statistics"] = {"queries": ["count"]}
    federation.write_terms(terms)
    for home in federation.homes.iterdir():
        (home / "agreement.toml").unlink()
        (home / "agreement.sig").unlink()
    code, said = _stats(invoke, federation, count, mean)
    assert code == 3 and "clause operations.statistics.queries: queries mean" in said
    code, said = _stats(invoke, federation, count)
    assert code == 3 and "clause outputs.statistics" in said
    terms["outputs"]["statistics"] = ["coordinator"]
    federation.write_terms(terms)
    for home in federation.homes.iterdir():
        (home / "agreement.toml").unlink()
        (home / "agreement.sig").unlink()
    code, said = _stats(invoke, federation, count)
    assert code == 0, said
    assert "combined (all parties)" in said


def test_encrypted_scoring_checks_the_role_and_the_model_kind(
    federation: Federation, invoke: Invoke, tmp_path: Path
) -> None:
    scorer = generate_identity("scorer")
    keys = tmp_path / "scorer-keys"
    keys.mkdir()
    write_identity_files(scorer, keys)
    federation.identities["scorer"] = scorer
    terms = federation.terms()
    terms["parties"].append({"name": "scorer", "role": "model_owner",
                             "key": scorer.public_key_line})  # fmt: skip
    federation.write_terms(terms)
    (tmp_path / "x.csv").write_text("age,chol\n0.5,1.0\n-0.2,0.3\n")
    (tmp_path / "m.json").write_text(json.dumps({"kind": "linear", "weights": [1.0, 2.0],
                                                 "bias": 0.0}))  # fmt: skip
    ckks = tmp_path / "ckks"
    assert invoke("encrypted", "keys", "--out", str(ckks)).code == 0
    agreement = ["--agreement", str(federation.agreement)]
    encrypt = ["encrypted", "encrypt", "--keys", str(ckks), "--csv", str(tmp_path / "x.csv"),
               "--out", str(tmp_path / "x.enc"), *agreement]  # fmt: skip
    refused = invoke(*encrypt, "--party", "party-1")
    assert refused.code == 3 and "clause operations.encrypted_scoring:" in refused.err
    terms["operations"]["encrypted_scoring"] = {"models": ["logistic"]}
    federation.write_terms(terms)
    wrong_role = invoke(*encrypt, "--party", "scorer")
    assert wrong_role.code == 3 and "clause parties" in wrong_role.err
    assert invoke(*encrypt, "--party", "party-1").code == 0
    score = ["encrypted", "score", "--model", str(tmp_path / "m.json"), "--in",
             str(tmp_path / "x.enc"), "--out", str(tmp_path / "s.enc"), *agreement]  # fmt: skip
    linear = invoke(*score, "--party", "scorer")
    assert linear.code == 3 and "clause operations.encrypted_scoring.models" in linear.err
    terms["operations"]["encrypted_scoring"] = {"models": ["linear", "logistic"]}
    federation.write_terms(terms)
    assert invoke(*score, "--party", "scorer").code == 0
    assert invoke(*score[:-2]).code == 0  # no --agreement: nothing to check
    assert invoke(*score).code == 2  # --agreement without --party
