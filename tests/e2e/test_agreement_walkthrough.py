"""examples/agreement/walkthrough.sh, run as a user would: keys, terms, signatures, a run,
receipts, audit verification, a refused job, and a withdrawal the other nodes record."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_the_agreement_walkthrough_runs_end_to_end(tmp_path: Path) -> None:
    folder = tmp_path / "agreement"
    shutil.copytree(REPO / "examples" / "agreement", folder,
                    ignore=shutil.ignore_patterns("work"))  # fmt: skip
    accord = Path(sys.executable).with_name("accord")
    env = {**os.environ, "ACCORD": str(accord)}
    done = subprocess.run(["bash", str(folder / "walkthrough.sh")], capture_output=True,
                          text=True, env=env, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    assert "every party has signed" in out and "In force now" in out
    assert "audit log of hospital-a verifies" in out
    assert "clause protections.aggregation" in done.stderr
    assert "the coordinator and 2 of 2 other nodes verified and recorded the withdrawal" in (
        done.stderr
    )
    assert "was revoked by hospital-b" in done.stderr.splitlines()[-1]
    assert (folder / "work" / "run" / "receipts.json").exists()
