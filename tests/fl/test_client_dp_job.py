"""DP-FedAvg jobs: each node charges the whole job when it accepts it, against the
recipients only; a node that does not trust the coordinator refuses; the coordinator
samples and adds noise from its own secure generator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from dp_accounting import SelfComposedDpEvent

from accord.errors import InputError, RefusedError
from accord.fl.messages import ReleaseKind
from accord.fl.simulation import build_simulation
from accord.job import load_job
from accord.privacy.accounting import dpsgd_event, epsilon
from accord.privacy.caps import load_node_settings
from accord.privacy.ledger import PrivacyLedger
from tests.conftest import Invoke, JobWriter

CLIENT_DP = """
[privacy]
mode = "dpfedavg"
noise_multiplier = 4.0
clip_norm = 0.5
delta = 1e-5
"""


def client_dp_job(write_job: JobWriter, extra: str = "", **fields: object) -> Path:
    text = write_job(model="logreg", sampling="poisson", **fields).read_text()
    # DP jobs scale by declared bounds or not at all; per-party statistics are not private.
    text = text.replace("standardize = true", "standardize = false")
    return write_job(text + CLIENT_DP + extra, name="dpfedavg.toml")


def write_caps(homes: Path, epsilon_cap: float, adversary: str | None) -> None:
    line = f'adversary = "{adversary}"\n' if adversary else ""
    for party in ("party-1", "party-2", "party-3", "party-4"):
        (homes / party).mkdir(parents=True, exist_ok=True)
        (homes / party / "node.toml").write_text(
            f'party = "{party}"\n[[caps]]\ndataset = "train"\nepsilon = {epsilon_cap}\n'
            f'delta = 1e-5\n{line}[exempt]\nkinds = ["metrics"]\n'
        )


def test_a_central_dp_job_is_refused_by_a_node_that_does_not_trust_the_coordinator(
    write_job: JobWriter, tmp_path: Path, invoke: Invoke
) -> None:
    homes = tmp_path / "homes"
    write_caps(homes, 1000.0, adversary=None)  # the default: coordinator_and_recipients
    job_file = client_dp_job(write_job)
    with pytest.raises(RefusedError, match=r"party 'party-1'.*inf.*does not trust the coordinator"):
        build_simulation(load_job(job_file), tmp_path, homes)
    assert PrivacyLedger(homes / "party-1").charges() == []
    result = invoke("run", str(job_file), "--out", str(tmp_path / "run"),
                    "--node-homes", str(homes), "--quiet")  # fmt: skip
    assert result.code == 3 and "does not trust the coordinator" in result.err


def test_a_dpfedavg_run_charges_every_round_up_front_and_releases_each_round_once(
    write_job: JobWriter, tmp_path: Path, invoke: Invoke
) -> None:
    homes = tmp_path / "homes"
    write_caps(homes, 5.0, adversary="recipients_only")
    job_file = client_dp_job(write_job, rounds=3)
    simulation = build_simulation(load_job(job_file), tmp_path, homes)
    run_key = f"{simulation.job_id}.{simulation.run_id}"
    plan = simulation.nodes[0].dp_plan
    assert plan is not None
    # Accepting the job charged all three rounds, before any training.
    for node in simulation.nodes:
        charges = PrivacyLedger(node.home.path).charges(run_key)
        assert [(c.round, c.release_kind) for c in charges] == [(0, "update")]
        assert charges[0].event == SelfComposedDpEvent(plan.round_event, 3)
    records = simulation.coordinator.run().records
    assert all(r["sampled"] is None and r["train_loss"] is None for r in records)
    ledger = PrivacyLedger(homes / "party-1")
    released = [
        c.round for c in ledger.charges(run_key) if c.round > 0 and c.release_kind == "update"
    ]
    assert released == sorted(set(released)) and set(released) <= {1, 2, 3}
    cap = load_node_settings(homes / "party-1").caps[0]
    expected = epsilon(dpsgd_event(2.0, 0.75, 3), 1e-5)
    assert ledger.spent("train", cap) == pytest.approx(expected, rel=1e-6)
    # A round is released once: a second request for a released round is refused.
    node = simulation.nodes[0]
    adversary = plan.adversary
    for round_number in released:
        with pytest.raises(RefusedError, match="already made once"):
            node.gate.charge_prepaid(round_number, 3, ReleaseKind.UPDATE, "train", adversary)
    with pytest.raises(RefusedError, match="outside the job's 3 charged rounds"):
        node.gate.charge_prepaid(4, 3, ReleaseKind.UPDATE, "train", adversary)
    shown = invoke("budget", "show", "--node-home", str(homes / "party-1"))
    assert shown.code == 0 and f"{expected:.6f}" in shown.out


def test_the_report_shows_record_and_party_level_epsilon(
    write_job: JobWriter, tmp_path: Path, invoke: Invoke
) -> None:
    job_file = client_dp_job(write_job, rounds=2, extra="adaptive_clipping = true\n"
                             "clipped_count_stddev = 3.0\n")  # fmt: skip
    run_dir = tmp_path / "run"
    result = invoke("run", str(job_file), "--out", str(run_dir),
                    "--node-homes", str(tmp_path / "h"), "--quiet")  # fmt: skip
    assert result.code == 0, result.err
    summary = json.loads((run_dir / "privacy.json").read_text())
    party = summary["parties"]["party-1"]
    assert summary["mode"] == "dpfedavg" and party["adversary"] == "recipients_only"
    # One record can move a clipped update by 2S, a whole party by S: twice the sensitivity.
    assert party["epsilon"] > party["party_epsilon"]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["clip_norm"] == 0.5 and records[1]["clip_norm"] != 0.5  # adaptive
    report = (run_dir / "report.html").read_text()
    assert "epsilon (party-level)" in report and "recipients only" in report


def test_dpfedavg_refuses_scaffold_and_samples_from_a_secure_generator(
    write_job: JobWriter, tmp_path: Path
) -> None:
    with pytest.raises(InputError, match="scaffold"):
        build_simulation(load_job(client_dp_job(write_job, strategy="scaffold")), tmp_path)
    job = load_job(client_dp_job(write_job, rounds=1))
    first = build_simulation(job, tmp_path, tmp_path / "a").coordinator
    second = build_simulation(job, tmp_path, tmp_path / "b").coordinator
    # The same job seed, different draws: the job file does not reveal who is sampled.
    # (Four parties at rate 0.75 over 40 rounds agree by chance with probability < 1e-20.)
    draws = [[c.sample(r) for r in range(1, 41)] for c in (first, second)]
    assert draws[0] != draws[1]


def test_a_dpfedavg_round_that_samples_nobody_steps_with_noise_alone(
    write_job: JobWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    simulation = build_simulation(load_job(client_dp_job(write_job, rounds=1)), tmp_path,
                                  tmp_path / "homes")  # fmt: skip
    coordinator = simulation.coordinator
    monkeypatch.setattr(coordinator, "sample", lambda round_number: [])
    before = coordinator.params.clone()
    record = coordinator.run_round(1)
    # Poisson sampling drew no one: the mean is the coordinator's noise over m, as always.
    assert record["train_loss"] is None and record["sampled"] is None
    assert not torch.equal(coordinator.params, before)
