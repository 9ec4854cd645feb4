"""The federated engine: reproducibility, resume, sampling, evaluation, node state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from accord.errors import TooFewPartiesError
from accord.fl.coordinator import combine_metrics
from accord.fl.messages import COORDINATOR, Release, ReleaseKind
from accord.fl.run_dir import RunDir
from accord.fl.runner import execute_run, prepare_run
from accord.fl.simulation import build_simulation
from accord.job import load_job
from tests.conftest import JobWriter


def final_params(job_file: Path, homes: Path, rounds: int | None = None) -> torch.Tensor:
    job = load_job(job_file)
    if rounds is not None:
        job = job.model_copy(update={"job": job.job.model_copy(update={"rounds": rounds})})
    simulation = build_simulation(job, job_file.parent, homes)
    return simulation.coordinator.run().params


@pytest.mark.parametrize("strategy", ["fedavg", "scaffold"])
def test_same_job_seed_and_secrets_give_bit_for_bit_equal_models(
    write_job: JobWriter, tmp_path: Path, strategy: str
) -> None:
    job_file = write_job(strategy=strategy, sampling="poisson", rounds=4)
    first = final_params(job_file, tmp_path / "homes-1")
    second = final_params(job_file, tmp_path / "homes-2")
    assert torch.equal(first, second)
    other_seed = final_params(
        write_job(strategy=strategy, sampling="poisson", rounds=4, seed=1, name="seed1.toml"),
        tmp_path / "homes-3",
    )
    assert not torch.equal(first, other_seed)


class _Crash(Exception):
    pass


@pytest.mark.parametrize("strategy", ["fedavg", "scaffold", "fedadam"])
def test_resume_equals_an_uninterrupted_run(
    write_job: JobWriter, tmp_path: Path, strategy: str
) -> None:
    job_file = write_job(strategy=strategy, sampling="poisson", rounds=6)
    straight = final_params(job_file, tmp_path / "homes-straight")

    out = tmp_path / "run"
    simulation, run_dir = prepare_run(job_file, out, False, tmp_path / "homes")

    def crash_after_three(record: dict[str, Any]) -> None:
        if record["round"] == 3:
            raise _Crash

    with pytest.raises(_Crash):
        execute_run(simulation, run_dir, False, crash_after_three)
    assert len(run_dir.read_metrics()) == 3
    assert not run_dir.model_file.exists()

    simulation, run_dir = prepare_run(job_file, out, True, tmp_path / "homes")
    outcome = execute_run(simulation, run_dir, True)
    assert torch.equal(outcome.result.params, straight)
    assert [r["round"] for r in run_dir.read_metrics()] == [1, 2, 3, 4, 5, 6]
    assert run_dir.model_file.exists() and run_dir.report_file.exists()


def test_a_round_with_fewer_parties_than_min_parties_fails_cleanly(
    write_job: JobWriter, tmp_path: Path
) -> None:
    text = (
        write_job(sampling="poisson")
        .read_text()
        .replace("rate = 0.75\nmin_parties = 1", "rate = 0.01\nmin_parties = 2")
    )
    job_file = write_job(text, name="strict.toml")
    with pytest.raises(TooFewPartiesError, match="min_parties = 2"):
        final_params(job_file, tmp_path / "homes")


def test_round_records_metrics_bytes_and_phase_times(write_job: JobWriter, tmp_path: Path) -> None:
    job = load_job(write_job(rounds=2))
    simulation = build_simulation(job, tmp_path, tmp_path / "homes")
    records = simulation.coordinator.run().records
    size = simulation.model.size * 4
    first = records[0]
    assert first["sampled"] == ["party-1", "party-2", "party-3", "party-4"]
    assert first["bytes_down"] == 4 * size
    assert first["bytes_up"] == 4 * (size + 3 * 8)
    assert set(first["seconds"]) == {"train", "aggregate", "evaluate"}
    per_party = first["per_party"]
    assert list(per_party) == first["sampled"]
    rows = sum(m["num_examples"] for m in per_party.values())
    assert first["federated"]["num_examples"] == rows
    weighted = sum(m["accuracy"] * m["num_examples"] for m in per_party.values()) / rows
    assert first["federated"]["accuracy"] == pytest.approx(weighted)
    assert records[-1]["federated"]["accuracy"] > 0.85


def test_metrics_are_combined_in_party_order_weighted_by_rows() -> None:
    def metrics(sender: str, n: float, acc: float) -> Release:
        return Release(
            ReleaseKind.METRICS,
            "j",
            1,
            sender,
            COORDINATOR,
            scalars={"num_examples": n, "loss": 1 - acc, "accuracy": acc},
        )

    combined = combine_metrics([metrics("a", 30, 0.9), metrics("b", 10, 0.5)])
    assert combined == {
        "num_examples": 40,
        "loss": pytest.approx(0.2),
        "accuracy": pytest.approx(0.8),
    }


@pytest.mark.parametrize("strategy", ["fedavgm", "fedprox", "fedyogi", "fedadagrad"])
def test_every_strategy_trains_a_useful_model(
    write_job: JobWriter, tmp_path: Path, strategy: str
) -> None:
    job = load_job(write_job(strategy=strategy, rounds=5, model="logreg"))
    simulation = build_simulation(job, tmp_path, tmp_path / "homes")
    records = simulation.coordinator.run().records
    assert records[-1]["federated"]["accuracy"] > 0.85


def test_scaffold_keeps_its_control_variate_in_the_node_home(
    write_job: JobWriter, tmp_path: Path
) -> None:
    job = load_job(write_job(strategy="scaffold", rounds=3))
    simulation = build_simulation(job, tmp_path, tmp_path / "homes")
    simulation.coordinator.run()
    saved = sorted((tmp_path / "homes" / "party-1" / "jobs" / simulation.job_id).glob("state-*"))
    assert [p.name for p in saved] == ["state-000002.safetensors", "state-000003.safetensors"]
    assert (tmp_path / "homes" / "party-1" / "node.toml").read_text() == 'party = "party-1"\n'
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in saved)


def test_run_folder_contents(write_job: JobWriter, tmp_path: Path) -> None:
    simulation, run_dir = prepare_run(
        write_job(rounds=2), tmp_path / "run", False, tmp_path / "homes"
    )
    execute_run(simulation, run_dir, False)
    names = {p.name for p in run_dir.path.iterdir()}
    assert {
        "job.toml",
        "metrics.jsonl",
        "model.safetensors",
        "report.html",
        "checkpoint.safetensors",
        "summary.json",
    } <= names
    html = run_dir.report_file.read_text()
    assert html.count("data:image/png;base64,") == 2
    rerun = load_job(run_dir.job_file)
    assert rerun.job_id() == simulation.job_id
    assert isinstance(RunDir(run_dir.path).read_metrics()[0]["train_loss"], float)


def test_a_party_whose_training_split_holds_one_class_trains(tmp_path: Path) -> None:
    rows = ["a,b,y"] + [f"{i},{i % 3},1" for i in range(12)]
    mixed = ["a,b,y"] + [f"{i},{i % 3},{i % 2}" for i in range(12)]
    (tmp_path / "one.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "two.csv").write_text("\n".join(mixed) + "\n")
    job_file = tmp_path / "job.toml"
    job_file.write_text(
        """
[job]
name = "one-class"
rounds = 2
[data]
source = "csv"
test_fraction = 0.25
standardize = true
[data.partition]
kind = "natural"
[[data.parties]]
name = "one"
path = "one.csv"
[[data.parties]]
name = "two"
path = "two.csv"
[data.schema]
columns = [{ name = "a", type = "numeric" }, { name = "b", type = "numeric" }]
label = { column = "y", classes = [0, 1] }
[model]
kind = "logreg"
"""
    )
    simulation = build_simulation(load_job(job_file), tmp_path, tmp_path / "homes")
    assert set(simulation.data.parties[0].y_train.tolist()) == {1}
    records = simulation.coordinator.run().records
    assert records[-1]["per_party"]["one"]["num_examples"] == 3


def test_a_job_without_dp_never_creates_a_generator_key(
    write_job: JobWriter, tmp_path: Path
) -> None:
    simulation = build_simulation(load_job(write_job()), tmp_path, tmp_path / "homes")
    simulation.coordinator.run()
    key = tmp_path / "homes" / "party-1" / "secrets" / "generator.key"
    assert not key.exists()
    draw = simulation.nodes[0].secure_random.uniform(4)
    assert key.exists() and key.stat().st_mode & 0o777 == 0o600
    assert ((draw > 0) & (draw < 1)).all()
