"""Conformance: every clause of an agreement, enforced by each node from its own copy.

For each clause, a job (or terms) that departs from it is refused by the nodes with exit
code 3 and a message naming the clause, and the matching compliant job runs a round.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from accord.errors import (
    AccordError,
    AgreementRefusedError,
    AgreementRevokedError,
    JobFileError,
    RefusedError,
)
from accord.fl.simulation import build_simulation
from accord.governance.agreement import load_agreement, make_revocation, record_revocation
from accord.governance.agreement_check import job_violations
from accord.job import load_job, parse_job
from tests.agreement_kit import Federation, agreed_job, make_federation
from tests.conftest import SMALL_JOB, JobWriter

Terms = dict[str, Any]


@dataclass(frozen=True)
class Case:
    """Terms changed for the case; a job edit that breaks them; one that keeps them."""

    clause: str
    terms: Callable[[Terms], None]
    breaks: Callable[[str], str]
    keeps: Callable[[str], str]


def same(text: str) -> str:
    return text


def replace(old: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        assert old in text, old
        return text.replace(old, new)

    return edit


def append(extra: str) -> Callable[[str], str]:
    return lambda text: text + extra


def no_change(_: Terms) -> None:
    pass


DPSGD = '\n[privacy]\nmode = "dpsgd"\nnoise_multiplier = {z}\nclip_norm = 1.0\ndelta = 1e-5\n'


def _dp_job(z: float) -> Callable[[str], str]:
    # DP jobs scale by declared bounds; breast cancer's encoded features have none, so no
    # scaling at all.
    return lambda text: (
        replace("standardize = true", "standardize = false")(text) + DPSGD.format(z=z)
    )


CASES = [
    Case("agreement.purposes", no_change,
         replace('purpose = "cancer-research"', 'purpose = "marketing"'), same),
    Case("operations.train", lambda t: t["operations"].pop("train"), same, same),
    Case("operations.train.model_kinds",
         lambda t: t["operations"]["train"].update(model_kinds=["logreg"]),
         same, replace('kind = "mlp"', 'kind = "logreg"')),
    Case("operations.train.strategies", no_change,
         replace('name = "fedavg"', 'name = "fedprox"'), same),
    Case("operations.evaluate", lambda t: t["operations"].pop("evaluate"),
         same, append("\n[evaluation]\nfederated = false\n")),
    Case("protections.aggregation", lambda t: t["protections"].update(aggregation="secagg"),
         same, append('\n[protection]\nmode = "secagg"\nmax_dropout_fraction = 0.0\n')),
    Case("protections.min_parties", lambda t: t["protections"].update(min_parties=3),
         replace("min_parties = 1", "min_parties = 3"),
         lambda text: replace("min_parties = 1", "min_parties = 3")(text)
         + '\n[protection]\nmode = "secagg"\nmax_dropout_fraction = 0.0\n'),
    Case("protections.dp_required", lambda t: t["protections"].update(dp_required=True),
         same, _dp_job(1.0)),
    Case("outputs.final_model", lambda t: t["outputs"].update(final_model=["party-1"]),
         same, same),
    Case("outputs.metrics", lambda t: t["outputs"].update(metrics=["party-1"]),
         same, append("\n[evaluation]\nfederated = false\n")),
    Case("parties", lambda t: _not_an_owner(t, 0), same, same),
]  # fmt: skip


def _not_an_owner(terms: Terms, index: int) -> None:
    terms["parties"][index + 1]["role"] = "model_owner"
    terms["datasets"].pop(index)


def _case_id(case: Case) -> str:
    return case.clause


def build(federation: Federation, write_job: JobWriter, text: str, name: str) -> Any:
    job_file = write_job(text, name=name)
    return build_simulation(load_job(job_file), job_file.parent, federation.homes)


@pytest.fixture
def federation(tmp_path: Path) -> Federation:
    return make_federation(tmp_path)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_a_job_that_breaks_a_clause_is_refused_and_the_compliant_job_runs(
    federation: Federation, write_job: JobWriter, case: Case
) -> None:
    terms = federation.terms()
    case.terms(terms)
    federation.write_terms(terms)
    base = agreed_job(
        SMALL_JOB.format(seed=0, rounds=1, model="mlp", strategy="fedavg", sampling="all")
    )
    with pytest.raises(AgreementRefusedError) as refused:
        build(federation, write_job, case.breaks(base), "breaks.toml")
    assert refused.value.exit_code == 3
    assert f"clause {case.clause}" in str(refused.value)
    if case.clause in ("operations.train", "outputs.final_model", "parties"):
        return  # no job can keep these terms: training itself is what they forbid
    # The node homes hold the old copy: each data owner files the new terms itself.
    for home in federation.homes.iterdir():
        (home / "agreement.toml").unlink()
        (home / "agreement.sig").unlink()
    simulation = build(federation, write_job, case.keeps(base), "keeps.toml")
    record = simulation.coordinator.run_round(1)
    assert record["sampled"] == ["party-1", "party-2", "party-3", "party-4"]


def test_task_code_runs_only_when_the_agreement_approves_its_hash(
    federation: Federation, write_job: JobWriter
) -> None:
    from accord.models.task_code import task_code_hash

    task_dir = Path(__file__).resolve().parents[2] / "examples" / "custom_task"
    digest = task_code_hash(task_dir)
    base = agreed_job(
        SMALL_JOB.format(seed=0, rounds=1, model="custom", strategy="fedavg", sampling="all")
    )
    custom = base.replace('kind = "custom"', f'kind = "custom"\ntask_dir = "{task_dir}"\n'
                          f'task_hash = "{digest}"')  # fmt: skip
    terms = federation.terms()
    terms["operations"]["train"]["model_kinds"].append("custom")
    federation.write_terms(terms)
    with pytest.raises(AgreementRefusedError, match=r"clause code.allowed"):
        build(federation, write_job, custom, "custom.toml")
    terms["code"] = {"allowed": "approved", "task_hashes": ["0" * 64]}
    federation.write_terms(terms)
    _refile(federation)
    with pytest.raises(AgreementRefusedError, match=r"clause code.task_hashes"):
        build(federation, write_job, custom, "custom.toml")
    terms["code"]["task_hashes"].append(digest)
    federation.write_terms(terms)
    _refile(federation)
    build(federation, write_job, custom, "custom.toml").coordinator.run_round(1)


def _refile(federation: Federation) -> None:
    for home in federation.homes.iterdir():
        for name in ("agreement.toml", "agreement.sig"):
            (home / name).unlink(missing_ok=True)


def _base() -> str:
    return agreed_job(
        SMALL_JOB.format(seed=0, rounds=2, model="mlp", strategy="fedavg", sampling="all")
    )


def test_a_dp_cap_in_the_agreement_joins_the_nodes_own_caps(
    federation: Federation, write_job: JobWriter
) -> None:
    terms = federation.terms()
    for dataset in terms["datasets"]:
        dataset["dp_cap"] = {"epsilon": 1.0, "delta": 1e-5}
    federation.write_terms(terms)
    with pytest.raises(RefusedError, match="epsilon 1 at delta 1e-05"):
        build(federation, write_job, _dp_job(0.6)(_base()), "over.toml")
    # Within the agreement's cap, a node's own tighter cap still refuses.
    within = _dp_job(8.0)(_base())
    home = federation.homes / "party-2"
    (home / "node.toml").write_text(
        'party = "party-2"\n[[caps]]\ndataset = "train"\nepsilon = 0.01\ndelta = 1e-5\n'
    )
    with pytest.raises(RefusedError, match=r"party-2.*epsilon 0.01"):
        build(federation, write_job, within, "within.toml")
    (home / "node.toml").write_text('party = "party-2"\n')
    build(federation, write_job, within, "within.toml").coordinator.run_round(1)


def test_a_cap_against_the_coordinator_refuses_coordinator_added_noise(
    federation: Federation, write_job: JobWriter
) -> None:
    terms = federation.terms()
    terms["datasets"][0]["dp_cap"] = {"epsilon": 50.0, "delta": 1e-5}
    federation.write_terms(terms)
    dpfedavg = '\n[privacy]\nmode = "dpfedavg"\nnoise_multiplier = 1.0\nclip_norm = 1.0\n'
    text = _base().replace("standardize = true", "standardize = false") + dpfedavg
    with pytest.raises(RefusedError, match="coordinator_and_recipients"):
        build(federation, write_job, text, "central.toml")


def test_an_expired_or_unsigned_agreement_stops_every_node(
    federation: Federation, write_job: JobWriter
) -> None:
    federation.write_terms(federation.terms(), sign=False)
    with pytest.raises(AgreementRefusedError, match="not signed by"):
        build(federation, write_job, _base(), "job.toml")


def test_a_node_checks_its_own_copy_never_the_jobs(
    federation: Federation, write_job: JobWriter
) -> None:
    build(federation, write_job, _base(), "job.toml")  # files a copy in every home
    terms = federation.terms()
    terms["agreement"]["version"] = 2
    terms["protections"]["min_parties"] = 1
    federation.write_terms(terms)  # the job's copy changes; the homes keep version 1
    with pytest.raises(AgreementRefusedError, match="different terms than this node's"):
        build(federation, write_job, _base(), "job.toml")
    # A home with an agreement releases nothing under a job that names none.
    plain = write_job(_base().replace('agreement = "agreement.toml"\n', ""), name="plain.toml")
    with pytest.raises(AgreementRefusedError, match="names none"):
        build_simulation(load_job(plain), plain.parent, federation.homes)


def test_an_unknown_field_in_a_job_is_refused(write_job: JobWriter) -> None:
    text = _base().replace("[job]\n", '[job]\nwaiver = "party-1"\n')
    with pytest.raises(JobFileError, match=r"job.waiver: unknown key"):
        load_job(write_job(text, name="odd.toml"))


def test_a_revocation_stops_its_node_from_the_next_round_and_the_others_are_told(
    federation: Federation, write_job: JobWriter
) -> None:
    simulation = build(federation, write_job, _base(), "job.toml")
    simulation.coordinator.run_round(1)
    home_copy = load_agreement(federation.homes / "party-2" / "agreement.toml")
    revocation = make_revocation(home_copy, federation.identities["party-2"], "consent withdrawn")
    record_revocation(home_copy, revocation)
    with pytest.raises(AgreementRevokedError, match=r"party-2.*consent withdrawn.*3 of 3") as stop:
        simulation.coordinator.run_round(2)
    assert stop.value.exit_code == 3
    for party in ("party-1", "party-3", "party-4"):
        told = load_agreement(federation.homes / party / "agreement.toml")
        assert told.signature_file.revocations == [revocation]
    assert load_agreement(federation.agreement).signature_file.revocations == [revocation]
    # Every node now refuses, whoever asks.
    for node in simulation.nodes:
        with pytest.raises(AgreementRefusedError, match="revoked by party-2"):
            assert node.agreement is not None
            node.agreement.check()


def test_the_collusion_bound_is_the_larger_of_the_agreements_and_the_nodes(
    federation: Federation,
) -> None:
    import tomllib

    terms_raw = federation.terms()
    terms_raw["protections"].update(aggregation="secagg", min_colluding_parties=1)
    federation.write_terms(terms_raw)
    terms = load_agreement(federation.agreement).terms
    text = _base().replace("standardize = true", "standardize = false") + (
        '\n[protection]\nmode = "secagg"\n[privacy]\nmode = "dpfedavg"\nnoise_multiplier = 1.0\n'
        'noise_placement = "parties"\ncolluding_parties = {c}\n'
    )
    text = text.replace("min_parties = 1", "min_parties = 3")

    def violations(c: int, node_floor: int = 0) -> list[str]:
        job = parse_job(tomllib.loads(text.format(c=c)), "job.toml")
        return [v.clause for v in job_violations(terms, job, "party-1", node_floor)]

    assert violations(0) == ["protections.min_colluding_parties"]
    assert violations(1) == []
    assert violations(1, node_floor=2) == ["protections.min_colluding_parties"]
    assert violations(2, node_floor=2) == []


def test_every_refusal_is_an_accord_error_with_exit_code_3() -> None:
    assert issubclass(AgreementRefusedError, RefusedError)
    assert issubclass(AgreementRevokedError, AgreementRefusedError)
    assert AgreementRefusedError("x").exit_code == 3
    assert isinstance(AgreementRefusedError("x"), AccordError)
