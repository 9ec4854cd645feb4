"""A user's task directory, pinned by its hash, trains end to end."""

from __future__ import annotations

import shutil
from pathlib import Path

from accord.models.task_code import task_code_hash
from tests.conftest import REPO, Invoke, JobWriter


def test_custom_task_runs_and_an_edit_is_refused(
    invoke: Invoke, write_job: JobWriter, tmp_path: Path
) -> None:
    task = tmp_path / "task"
    shutil.copytree(REPO / "examples" / "custom_task", task)
    digest = task_code_hash(task)
    text = (
        write_job()
        .read_text()
        .replace('kind = "mlp"', f'kind = "custom"\ntask_dir = "task"\ntask_hash = "{digest}"')
        .replace("hidden = [16]\n", "")
    )
    job = write_job(text, name="custom.toml")
    result = invoke(
        "run",
        str(job),
        "--out",
        str(tmp_path / "run"),
        "--quiet",
        "--node-homes",
        str(tmp_path / "homes"),
    )
    assert result.code == 0, result.err
    assert not (task / "__pycache__").exists()

    with (task / "task.py").open("a") as handle:
        handle.write("\n# an edit\n")
    result = invoke(
        "run",
        str(job),
        "--out",
        str(tmp_path / "run2"),
        "--quiet",
        "--node-homes",
        str(tmp_path / "homes"),
    )
    assert result.code == 2 and "task" in result.err
    assert not (tmp_path / "run2").exists()
