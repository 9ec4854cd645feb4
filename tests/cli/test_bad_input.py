"""Every bad input gives one clear line, exit code 2, no traceback, no run folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Invoke

CSV_JOB = """
[job]
name = "bad"
rounds = 2

[data]
source = "csv"
test_fraction = 0.25

[data.partition]
kind = "natural"

[[data.parties]]
name = "north"
path = "north.csv"

[[data.parties]]
name = "south"
path = "south.csv"

[data.schema]
missing_values = [-9]
missing_policy = "drop"
columns = [
  {{ name = "age", type = "numeric", min = 0, max = 120 }},
  {{ name = "dose", type = "numeric" }},
]
label = {{ column = "{label}", classes = [0, 1] }}

[model]
kind = "{model}"

[strategy]
name = "{strategy}"
{extra}
"""

GOOD_ROWS = ["age,dose,outcome"] + [f"{20 + i},{i % 5}.5,{i % 2}" for i in range(16)]


def make_job(
    tmp_path: Path,
    *,
    south: list[str] | None = None,
    label: str = "outcome",
    model: str = "logreg",
    strategy: str = "fedavg",
    extra: str = "",
) -> Path:
    (tmp_path / "north.csv").write_text("\n".join(GOOD_ROWS) + "\n")
    (tmp_path / "south.csv").write_text("\n".join(south or GOOD_ROWS) + "\n")
    job = tmp_path / "job.toml"
    job.write_text(CSV_JOB.format(label=label, model=model, strategy=strategy, extra=extra))
    return job


def check_refused(invoke: Invoke, job: Path, out: Path, *needles: str) -> None:
    result = invoke(
        "run", str(job), "--out", str(out), "--quiet", "--node-homes", str(out.parent / "homes")
    )
    assert result.code == 2, result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("accord: error: ")
    assert "Traceback" not in result.err
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not out.exists(), "nothing may be written to the run folder"


def test_the_good_job_runs(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke(
        "run",
        str(make_job(tmp_path)),
        "--out",
        str(tmp_path / "run"),
        "--quiet",
        "--node-homes",
        str(tmp_path / "homes"),
    )
    assert result.code == 0, result.err
    assert (tmp_path / "run" / "model.safetensors").exists()


def test_missing_job_file(invoke: Invoke, tmp_path: Path) -> None:
    check_refused(invoke, tmp_path / "nope.toml", tmp_path / "run", "nope.toml", "not found")


def test_job_file_that_is_not_toml(invoke: Invoke, tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    job.write_text("[job\nname = 1\n")
    check_refused(invoke, job, tmp_path / "run", "job.toml", "not valid TOML")


def test_missing_data_file(invoke: Invoke, tmp_path: Path) -> None:
    job = make_job(tmp_path)
    (tmp_path / "south.csv").unlink()
    check_refused(invoke, job, tmp_path / "run", "south.csv", "not found")


def test_missing_label_column(invoke: Invoke, tmp_path: Path) -> None:
    check_refused(invoke, make_job(tmp_path, label="diagnosis"), tmp_path / "run", "diagnosis")


def test_non_numeric_garbage(invoke: Invoke, tmp_path: Path) -> None:
    rows = [*GOOD_ROWS[:5], "31,lots,1", *GOOD_ROWS[5:]]
    check_refused(invoke, make_job(tmp_path, south=rows), tmp_path / "run", "south.csv", "dose")


def test_nan_or_inf_left_after_the_missing_value_policy(invoke: Invoke, tmp_path: Path) -> None:
    rows = [*GOOD_ROWS[:5], "31,inf,1", *GOOD_ROWS[5:]]
    check_refused(invoke, make_job(tmp_path, south=rows), tmp_path / "run", "south.csv", "dose")


def test_label_out_of_range(invoke: Invoke, tmp_path: Path) -> None:
    rows = [*GOOD_ROWS[:5], "31,2.5,7", *GOOD_ROWS[5:]]
    check_refused(invoke, make_job(tmp_path, south=rows), tmp_path / "run", "south.csv", "outcome")


def test_value_outside_declared_bounds(invoke: Invoke, tmp_path: Path) -> None:
    rows = [*GOOD_ROWS[:5], "310,2.5,1", *GOOD_ROWS[5:]]
    check_refused(invoke, make_job(tmp_path, south=rows), tmp_path / "run", "south.csv", "age")


def test_unknown_strategy(invoke: Invoke, tmp_path: Path) -> None:
    check_refused(invoke, make_job(tmp_path, strategy="fedsgd"), tmp_path / "run", "strategy.name")


def test_unknown_model(invoke: Invoke, tmp_path: Path) -> None:
    check_refused(invoke, make_job(tmp_path, model="resnet"), tmp_path / "run", "model.kind")


def test_misspelt_key(invoke: Invoke, tmp_path: Path) -> None:
    job = make_job(tmp_path, extra="[training]\nlocal_epoch = 2\n")
    check_refused(invoke, job, tmp_path / "run", "training.local_epoch", "local_epochs")


def test_party_with_zero_rows(invoke: Invoke, tmp_path: Path) -> None:
    check_refused(invoke, make_job(tmp_path, south=[GOOD_ROWS[0]]), tmp_path / "run", "south")


def test_party_with_zero_rows_after_dropping_missing_values(invoke: Invoke, tmp_path: Path) -> None:
    rows = [GOOD_ROWS[0], "-9,1.5,1", "40,-9,0"]
    check_refused(invoke, make_job(tmp_path, south=rows), tmp_path / "run", "south")


def test_task_code_hash_mismatch(invoke: Invoke, tmp_path: Path) -> None:
    task = Path(__file__).resolve().parents[2] / "examples" / "custom_task"
    extra = ""
    job = make_job(tmp_path, model="custom", extra=extra)
    text = job.read_text().replace(
        'kind = "custom"', f'kind = "custom"\ntask_dir = "{task}"\ntask_hash = "{"0" * 64}"'
    )
    job.write_text(text)
    check_refused(invoke, job, tmp_path / "run", "custom_task", "task_hash")


def test_existing_run_folder_needs_resume(invoke: Invoke, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text("")
    result = invoke("run", str(make_job(tmp_path)), "--out", str(out), "--quiet")
    assert result.code == 2 and "--resume" in result.err


@pytest.mark.parametrize("args", [["run"], ["frobnicate"], ["run", "a.toml", "--rounds", "3"]])
def test_bad_command_line(invoke: Invoke, args: list[str]) -> None:
    result = invoke(*args)
    assert result.code == 2
    assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err


def test_a_real_process_prints_no_traceback(tmp_path: Path) -> None:
    job = make_job(tmp_path, label="diagnosis")
    proc = subprocess.run(
        [sys.executable, "-m", "accord", "run", str(job), "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()


def test_demo_refuses_to_replace_a_folder_that_is_not_a_run(invoke: Invoke, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = invoke("demo", "--out", str(out), "--node-homes", str(tmp_path / "homes"))
    assert result.code == 2 and "not a run folder" in result.err
    assert (out / "notes.txt").read_text() == "keep me"


def test_node_home_inside_the_run_folder_is_refused_before_anything_is_made(
    invoke: Invoke, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    result = invoke("run", str(make_job(tmp_path)), "--out", str(out), "--quiet",
                    "--node-homes", str(out / "homes"))  # fmt: skip
    assert result.code == 2 and "inside the run folder" in result.err
    assert not out.exists()


def test_model_with_batch_norm_is_refused(invoke: Invoke, tmp_path: Path) -> None:
    task = tmp_path / "bn_task"
    task.mkdir()
    (task / "task.py").write_text(
        "from torch import nn\n\n"
        "def build_model(input_shape, num_classes):\n"
        "    return nn.Sequential(nn.Linear(input_shape[0], 4), nn.BatchNorm1d(4),\n"
        "                         nn.Linear(4, num_classes))\n"
    )
    from accord.models.task_code import task_code_hash

    job = make_job(tmp_path, model="custom")
    pinned = f'kind = "custom"\ntask_dir = "bn_task"\ntask_hash = "{task_code_hash(task)}"'
    job.write_text(job.read_text().replace('kind = "custom"', pinned))
    check_refused(invoke, job, tmp_path / "run", "batch norm", "GroupNorm")
