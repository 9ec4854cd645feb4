"""Helpers shared by every test folder."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from accord.cli.main import main

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

JobWriter = Callable[..., Path]

SMALL_JOB = """
[job]
name = "small"
seed = {seed}
rounds = {rounds}
threads = 1

[data]
source = "sklearn"
name = "breast_cancer"
test_fraction = 0.3
standardize = true

[data.partition]
kind = "dirichlet"
parties = 4
alpha = 1.0
min_rows = 20

[model]
kind = "{model}"
hidden = [16]

[strategy]
name = "{strategy}"

[sampling]
mode = "{sampling}"
rate = 0.75
min_parties = 1

[training]
local_epochs = 1
batch_size = 16
lr = 0.05
shuffle = true
"""


@pytest.fixture(autouse=True)
def _isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Default node homes (~/.accord/nodes) go to a temporary HOME, never the user's."""
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture
def write_job(tmp_path: Path) -> JobWriter:
    """``write_job(text=None, **fields)``: a job file (default: SMALL_JOB with fields)."""

    def write(text: str | None = None, name: str = "job.toml", **fields: object) -> Path:
        values: dict[str, object] = {
            "seed": 0,
            "rounds": 3,
            "model": "mlp",
            "strategy": "fedavg",
            "sampling": "all",
        }
        values.update(fields)
        path = tmp_path / name
        path.write_text(text if text is not None else SMALL_JOB.format(**values))
        return path

    return write


def shared_data(name: str) -> Path:
    """A folder of ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is absent (tests that use ../shared/data skip without it)")
    return path


# Run the ``accord`` command in-process, exactly as its entry point does.
@dataclass
class Result:
    code: int
    out: str
    err: str


Invoke = Callable[..., Result]


@pytest.fixture
def invoke(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Invoke:
    def run(*args: str) -> Result:
        monkeypatch.setattr(sys, "argv", ["accord", *args])
        with pytest.raises(SystemExit) as exit_info:
            main()
        captured = capsys.readouterr()
        code = exit_info.value.code
        return Result(code if isinstance(code, int) else 1, captured.out, captured.err)

    return run
