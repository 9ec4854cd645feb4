"""``accord demo --network``: a coordinator and four node processes on 127.0.0.1 (gRPC with
mutual TLS, set up from keys to kits) give the simulated demo's accuracy, digit for digit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _demo(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "accord", "demo", "--out", str(tmp_path / "runs" / "demo"),
         *extra],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def test_the_networked_demo_equals_the_simulated_one(tmp_path: Path) -> None:
    simulated = _demo(tmp_path / "sim", "--node-homes", str(tmp_path / "sim" / "homes"))
    networked = _demo(tmp_path / "net", "--network")
    assert simulated.returncode == 0, simulated.stderr
    assert networked.returncode == 0, networked.stderr
    last = simulated.stdout.strip().splitlines()[-1]
    assert last.startswith("federated test accuracy ")
    assert networked.stdout.strip().splitlines()[-1] == last
    work = tmp_path / "net" / "runs" / "demo-network"
    # Every process kept its own secrets: the kits hold no private key.
    for kit in (work / "kits").iterdir():
        for file in kit.iterdir():
            assert b"PRIVATE KEY" not in file.read_bytes(), file
    # The coordinator's run folder holds each node's receipt and audit head.
    out = tmp_path / "net" / "runs" / "demo"
    assert (out / "receipts.json").exists() and (out / "audit-heads.json").exists()
