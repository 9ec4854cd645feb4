"""The job file schema: defaults, schedules, validation messages, the job id."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from accord.errors import JobFileError
from accord.job import TrainingConfig, load_job, parse_job
from tests.conftest import REPO, JobWriter

MINIMAL = {
    "job": {"name": "j", "rounds": 3},
    "data": {"source": "sklearn", "name": "wine", "partition": {"parties": 2}},
    "model": {"kind": "logreg"},
}


def with_section(section: str, **values: object) -> dict[str, object]:
    raw: dict[str, object] = {k: dict(v) for k, v in MINIMAL.items()}
    raw[section] = {**raw.get(section, {}), **values}  # type: ignore[dict-item]
    return raw


def test_defaults() -> None:
    job = parse_job(MINIMAL, "job.toml")
    assert job.strategy.name == "fedavg" and job.sampling.mode == "all"
    assert job.training.local_epochs == 1 and job.training.local_steps is None
    assert job.evaluation.federated is True and job.job.seed == 0


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("constant", [0.4, 0.4, 0.4, 0.4, 0.4]),
        ("step", [0.4, 0.4, 0.2, 0.2, 0.1]),
        ("exponential", [0.4, 0.2, 0.1, 0.05, 0.025]),
        ("cosine", [0.4 * 0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(5)]),
    ],
)
def test_learning_rate_schedules(schedule: str, expected: list[float]) -> None:
    cfg = TrainingConfig(lr=0.4, lr_schedule=schedule, lr_gamma=0.5, lr_step_rounds=2)  # type: ignore[arg-type]
    assert [cfg.lr_at(r, 5) for r in range(1, 6)] == pytest.approx(expected)


def test_local_steps_replace_epochs() -> None:
    job = parse_job(with_section("training", local_steps=7), "job.toml")
    assert job.training.local_steps == 7 and job.training.local_epochs is None
    with pytest.raises(JobFileError, match="not both"):
        parse_job(with_section("training", local_steps=7, local_epochs=2), "job.toml")


@pytest.mark.parametrize(
    ("section", "values", "needle"),
    [
        ("strategy", {"nmae": "fedavg"}, "strategy.nmae: unknown key; did you mean 'name'?"),
        ("strategy", {"name": "fedsgd"}, "strategy.name: unknown value 'fedsgd'; choose"),
        ("model", {"kind": "custom"}, "needs model.task_dir and model.task_hash"),
        ("sampling", {"mode": "poisson"}, "needs sampling.rate"),
        ("job", {"rounds": 0}, "job.rounds"),
        ("job", {"seed": -1}, "job.seed"),
        ("training", {"lr": "fast"}, "training.lr"),
    ],
)
def test_errors_name_the_key(section: str, values: dict[str, object], needle: str) -> None:
    with pytest.raises(JobFileError, match=r"^job\.toml: ") as info:
        parse_job(with_section(section, **values), "job.toml")
    assert needle in str(info.value)


def test_unknown_top_level_section() -> None:
    raw = {**MINIMAL, "trainig": {}}
    with pytest.raises(JobFileError, match="trainig: unknown key; did you mean 'training'"):
        parse_job(raw, "job.toml")


def test_job_id_is_stable_and_changes_with_the_job(write_job: JobWriter) -> None:
    first = load_job(write_job()).job_id()
    assert first == load_job(write_job()).job_id() and len(first) == 16
    assert first != load_job(write_job(rounds=4, name="other.toml")).job_id()


def test_local_steps_are_what_each_node_runs(write_job: JobWriter, tmp_path: Path) -> None:
    from accord.fl.messages import TrainRequest
    from accord.fl.simulation import build_simulation

    text = write_job().read_text().replace("local_epochs = 1", "local_steps = 3")
    job = load_job(write_job(text, name="steps.toml"))
    simulation = build_simulation(job, tmp_path, tmp_path / "h")
    node = simulation.nodes[0]
    request = TrainRequest(simulation.job_id, 1, simulation.initial, 0.05)
    release = node.gate.unseal(node.handle(request))
    assert release.scalars["steps"] == 3.0


WINE: dict[str, object] = {"source": "sklearn", "name": "wine", "partition": {"parties": 2}}
BOUNDED_CSV: dict[str, object] = {
    "source": "csv",
    "path": "t.csv",
    "partition": {"parties": 2},
    "schema": {
        "columns": [{"name": "age", "type": "numeric", "min": 0, "max": 120}],
        "label": {"column": "y", "classes": [0, 1]},
    },
}


def with_data(data: dict[str, object], mode: str = "dpsgd", **values: object) -> dict[str, object]:
    """MINIMAL with ``data`` (plus ``values``) and, unless mode is "none", DP in ``mode``."""
    privacy = {"mode": mode, "noise_multiplier": 1.0} if mode != "none" else {}
    return {**MINIMAL, "data": {**data, **values}, "privacy": privacy}


@pytest.mark.parametrize("mode", ["dpsgd", "dpfedavg"])
def test_a_dp_job_may_not_standardise_by_its_rows(mode: str) -> None:
    with pytest.raises(JobFileError) as info:
        parse_job(with_data(WINE, mode, standardize=True), "job.toml")
    assert str(info.value).endswith(
        "data.standardize = true fits each party's mean and standard deviation on its own "
        'rows, which differential privacy does not cover; use data.standardize = "bounds" '
        "(scales by the schema's declared min and max)"
    )


def test_a_dp_job_may_scale_by_declared_bounds() -> None:
    dp = parse_job(with_data(BOUNDED_CSV, standardize="bounds"), "job.toml")
    assert dp.privacy.enabled and dp.data.standardize == "bounds"
    plain = parse_job(with_data(BOUNDED_CSV, "none", standardize=True), "job.toml")
    assert not plain.privacy.enabled and plain.data.standardize is True
    with pytest.raises(JobFileError, match=r'^job\.toml: data\.standardize = "bounds" scales by'):
        parse_job(with_data(WINE, standardize="bounds"), "job.toml")


def test_the_dp_heart_disease_example_scales_by_its_schema() -> None:
    job = load_job(REPO / "examples" / "heart_disease" / "dp.toml")
    assert job.privacy.enabled and job.data.standardize == "bounds"
