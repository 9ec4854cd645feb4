"""Accord processes for the end-to-end network tests: one torch thread each, logs kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PARTIES = ["hospital-a", "hospital-b", "hospital-c", "hospital-d"]


def accord_process(*args: str | Path, log: Path) -> subprocess.Popen[bytes]:
    """``accord ARGS`` in a new process, its output appended to ``log``."""
    return subprocess.Popen(
        [sys.executable, "-m", "accord", *map(str, args)],
        stdout=log.open("ab"), stderr=subprocess.STDOUT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
