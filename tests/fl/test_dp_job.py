"""DP-SGD jobs: the plan is checked against each node's caps, charged once per round at
the release gate before local training, and refused or stopped at the cap."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from accord.errors import RefusedError, TooFewPartiesError
from accord.fl.simulation import build_simulation
from accord.job import load_job
from accord.privacy.accounting import dpsgd_event, epsilon, epsilon_of_events
from accord.privacy.caps import load_node_settings
from accord.privacy.dp_metrics import metrics_event
from accord.privacy.events import Adversary
from accord.privacy.ledger import PrivacyLedger
from tests.conftest import Invoke, JobWriter

DP_SECTION = """
[privacy]
mode = "dpsgd"
noise_multiplier = 1.0
clip_norm = 1.0
delta = 1e-5
"""


def dp_job(write_job: JobWriter, rounds: int = 2, extra: str = "") -> Path:
    text = write_job(rounds=rounds, model="logreg").read_text()
    text = text.replace("parties = 4", "parties = 2").replace("min_parties = 1", "min_parties = 2")
    # Per-party standardisation is refused in a DP job (its statistics are not private).
    text = text.replace("standardize = true", "standardize = false")
    return write_job(text + DP_SECTION + extra, name="dp.toml")


def write_caps(homes: Path, epsilon_cap: float, exempt: str = "") -> None:
    for party in ("party-1", "party-2"):
        (homes / party).mkdir(parents=True, exist_ok=True)
        (homes / party / "node.toml").write_text(
            f'party = "{party}"\n[[caps]]\ndataset = "train"\nepsilon = {epsilon_cap}\n'
            f"delta = 1e-5\n{exempt}"
        )


def round_epsilon(simulation: object, node_index: int, rounds: int) -> float:
    plan = simulation.nodes[node_index].dp_plan  # type: ignore[attr-defined]
    event = dpsgd_event(plan.noise_multiplier, plan.sample_rate, plan.steps_per_round * rounds)
    return epsilon(event, 1e-5, "pld")


def test_dp_job_charges_once_per_round_and_budget_show_says_so(
    write_job: JobWriter, tmp_path: Path, invoke: Invoke
) -> None:
    homes = tmp_path / "homes"
    write_caps(homes, 50.0, exempt='[exempt]\nkinds = ["metrics"]\n')
    simulation = build_simulation(load_job(dp_job(write_job)), tmp_path, homes)
    records = simulation.coordinator.run().records
    assert records[-1]["train_loss"] is None  # no loss is released in a DP job
    ledger = PrivacyLedger(homes / "party-1")
    charges = ledger.charges(f"{simulation.job_id}.{simulation.run_id}")
    updates = [c for c in charges if c.release_kind == "update"]
    assert [c.round for c in updates] == [1, 2]
    assert all(not c.covered for c in charges if c.release_kind == "metrics")
    cap = load_node_settings(homes / "party-1").caps[0]
    spent = ledger.spent("train", cap)
    assert spent == pytest.approx(round_epsilon(simulation, 0, 2), rel=1e-6)
    shown = invoke("budget", "show", "--node-home", str(homes / "party-1"))
    assert shown.code == 0 and f"{spent:.6f}" in shown.out


def test_an_over_budget_job_is_refused_before_training(
    write_job: JobWriter, tmp_path: Path
) -> None:
    homes = tmp_path / "homes"
    write_caps(homes, 0.5)
    with pytest.raises(RefusedError, match=r"party 'party-1'.*'train'.*epsilon"):
        build_simulation(load_job(dp_job(write_job, rounds=3)), tmp_path, homes)
    assert PrivacyLedger(homes / "party-1").charges() == []


def test_a_job_without_dp_is_refused_by_a_capped_node(write_job: JobWriter, tmp_path: Path) -> None:
    homes = tmp_path / "homes"
    write_caps(homes, 3.0)
    text = write_job().read_text().replace("parties = 4", "parties = 2")
    with pytest.raises(RefusedError, match=r"capped in node\.toml"):
        build_simulation(load_job(write_job(text, name="plain.toml")), tmp_path, homes)


def test_metrics_from_a_capped_dataset_are_refused_unless_exempt(
    write_job: JobWriter, tmp_path: Path
) -> None:
    homes = tmp_path / "homes"
    write_caps(homes, 50.0)
    simulation = build_simulation(load_job(dp_job(write_job, rounds=1)), tmp_path, homes)
    record = simulation.coordinator.run().records[-1]
    assert record["per_party"] == {}  # every node refused to release exact metrics
    assert set(record["refused_metrics"]) == {"party-1", "party-2"}


def test_a_node_that_cannot_afford_the_next_round_stops_and_the_job_stops_cleanly(
    write_job: JobWriter, tmp_path: Path, invoke: Invoke
) -> None:
    homes = tmp_path / "homes"
    job_file = dp_job(write_job, rounds=3, extra="")
    # First learn what one round costs, then set caps that the plan just fits.
    probe = build_simulation(load_job(job_file), tmp_path, tmp_path / "probe")
    three_rounds = max(round_epsilon(probe, i, 3) for i in (0, 1))
    write_caps(homes, three_rounds * 1.02, exempt='[exempt]\nkinds = ["metrics"]\n')
    from accord.fl.runner import execute_run, prepare_run

    simulation, run_dir = prepare_run(job_file, tmp_path / "run", False, homes)
    # Another job spends on party-1's data meanwhile: round 3 no longer fits its cap.
    plan = simulation.nodes[0].dp_plan
    assert plan is not None
    ledger = PrivacyLedger(homes / "party-1")
    cap = load_node_settings(homes / "party-1").caps[0]
    ledger.charge("other-job", 1, "update", "train", plan.round_event,
                  Adversary.COORDINATOR_AND_RECIPIENTS, [cap])  # fmt: skip
    with pytest.raises(TooFewPartiesError, match=r"round 3.*party-1"):
        execute_run(simulation, run_dir, False)

    spent = ledger.spent("train", cap)
    assert spent == pytest.approx(round_epsilon(simulation, 0, 3), rel=1e-6)
    assert spent <= cap.epsilon
    # A run that stops early still says what it spent.
    import json

    summary = json.loads((run_dir.path / "privacy.json").read_text())
    assert summary["parties"]["party-1"]["rounds_charged"] == 2


def test_the_report_has_a_privacy_section(
    write_job: JobWriter, tmp_path: Path, invoke: Invoke
) -> None:
    homes = tmp_path / "homes"
    write_caps(homes, 50.0, exempt='[exempt]\nkinds = ["metrics"]\n')
    out = tmp_path / "run"
    result = invoke("run", str(dp_job(write_job)), "--out", str(out), "--quiet",
                    "--node-homes", str(homes))  # fmt: skip
    assert result.code == 0, result.err
    import json

    privacy = json.loads((out / "privacy.json").read_text())
    party = privacy["parties"]["party-1"]
    assert party["adversary"] == "coordinator_and_recipients" and party["rounds_charged"] == 2
    assert party["not_covered_by_epsilon"] == ["metrics"]
    spent = PrivacyLedger(homes / "party-1").spent(
        "train", load_node_settings(homes / "party-1").caps[0]
    )
    assert party["epsilon"] == pytest.approx(spent, rel=1e-6)
    html = (out / "report.html").read_text()
    assert "<h2>Privacy</h2>" in html and "coordinator and recipients" in html
    assert html.count("data:image/png;base64,") == 3


def test_resume_plans_only_the_rounds_not_yet_charged(write_job: JobWriter, tmp_path: Path) -> None:
    from accord.fl.runner import execute_run, prepare_run

    job_file = dp_job(write_job, rounds=3)
    probe = build_simulation(load_job(job_file), tmp_path, tmp_path / "probe")
    write_caps(homes := tmp_path / "homes", max(round_epsilon(probe, i, 3) for i in (0, 1)) * 1.02,
               exempt='[exempt]\nkinds = ["metrics"]\n')  # fmt: skip

    class Crash(Exception):
        pass

    def crash_after_two(record: dict[str, object]) -> None:
        if record["round"] == 2:
            raise Crash

    simulation, run_dir = prepare_run(job_file, tmp_path / "run", False, homes)
    with pytest.raises(Crash):
        execute_run(simulation, run_dir, False, crash_after_two)
    # The whole plan (3 rounds) no longer fits on top of 2 charged rounds; the rest does.
    simulation, run_dir = prepare_run(job_file, tmp_path / "run", True, homes)
    execute_run(simulation, run_dir, True)
    charges = PrivacyLedger(homes / "party-1").charges(f"{simulation.job_id}.{simulation.run_id}")
    assert sorted(c.round for c in charges if c.release_kind == "update") == [1, 2, 3]
    # A new run of the same job file is a new run: its whole plan no longer fits.
    with pytest.raises(RefusedError, match="would reach epsilon"):
        prepare_run(job_file, tmp_path / "run-again", False, homes)


def test_a_job_cannot_name_the_dataset_it_is_charged_to(write_job: JobWriter) -> None:
    from accord.errors import JobFileError

    with pytest.raises(JobFileError, match=r"privacy\.dataset: unknown key"):
        load_job(dp_job(write_job, extra='dataset = "elsewhere"\n'))


def test_a_target_epsilon_is_met_by_each_node_calibrating_its_own_noise(
    write_job: JobWriter, tmp_path: Path
) -> None:
    job_file = dp_job(write_job)
    text = job_file.read_text().replace("noise_multiplier = 1.0", "target_epsilon = 2.0")
    simulation = build_simulation(
        load_job(write_job(text, name="target.toml")), tmp_path, tmp_path / "h"
    )
    sigmas = []
    for index in (0, 1):
        plan = simulation.nodes[index].dp_plan
        assert plan is not None
        sigmas.append(plan.noise_multiplier)
        spent = round_epsilon(simulation, index, 2)
        assert 0.99 * 2.0 <= spent <= 2.0
    assert sigmas[0] != sigmas[1]  # each from its own row count


def test_noisy_metrics_are_charged_and_released_from_a_capped_dataset(
    write_job: JobWriter, tmp_path: Path, invoke: Invoke
) -> None:
    homes = tmp_path / "homes"
    write_caps(homes, 50.0)  # no exemption: exact metrics would be refused
    job_file = dp_job(write_job, rounds=1, extra="\n[evaluation]\ndp_epsilon = 0.5\n")
    run_dir = tmp_path / "run"
    result = invoke("run", str(job_file), "--out", str(run_dir), "--node-homes", str(homes),
                    "--quiet")  # fmt: skip
    assert result.code == 0, result.err
    record = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert set(record["per_party"]) == {"party-1", "party-2"}
    ledger = PrivacyLedger(homes / "party-1")
    metrics = [c for c in ledger.charges() if c.release_kind == "metrics"]
    assert len(metrics) == 1 and metrics[0].covered
    assert metrics[0].event == metrics_event(0.5)
    party = json.loads((run_dir / "privacy.json").read_text())["parties"]["party-1"]
    assert party["metrics_epsilon"] == pytest.approx(epsilon_of_events([metrics_event(0.5)],
                                                                        1e-5, "pld"))  # fmt: skip
    cap = load_node_settings(homes / "party-1").caps[0]
    assert party["epsilon"] == pytest.approx(ledger.spent("train", cap), rel=1e-9)
    assert party["epsilon"] > party["metrics_epsilon"]


def test_a_plan_whose_noisy_metrics_would_pass_the_cap_is_refused_before_training(
    write_job: JobWriter, tmp_path: Path
) -> None:
    homes = tmp_path / "homes"
    job_file = dp_job(write_job, rounds=2, extra="\n[evaluation]\ndp_epsilon = 2.0\n")
    probe = build_simulation(load_job(job_file), tmp_path, tmp_path / "probe")
    updates_only = max(round_epsilon(probe, i, 2) for i in (0, 1))
    write_caps(homes, updates_only * 1.05)  # the updates fit; two metrics at 2.0 do not
    with pytest.raises(RefusedError, match=r"plan for dataset 'train' would reach"):
        build_simulation(load_job(job_file), tmp_path, homes)
    assert PrivacyLedger(homes / "party-1").charges() == []
