"""Faults over the network, with real processes on 127.0.0.1: a node killed mid-run, the
rounds going on without it, and the node, restarted, rejoining the job."""

from __future__ import annotations

import json
import signal
import time
import tomllib
from importlib import resources
from pathlib import Path

import tomli_w

from accord.cli.demo_network import PURPOSE, set_up_federation
from tests.e2e.processes import PARTIES, accord_process


def test_a_node_killed_mid_run_is_left_out_then_rejoins_when_restarted(tmp_path: Path) -> None:
    work = tmp_path / "work"
    agreement = set_up_federation(work, PARTIES)
    raw = tomllib.loads((resources.files("accord.demo") / "demo.toml").read_text())
    raw["job"].update(purpose=PURPOSE, agreement=str(agreement), rounds=400)
    # Rounds go on with any three of the four hospitals.
    raw["sampling"] = {"mode": "all", "min_parties": 3}
    raw["evaluation"] = {"every": 50}
    job = work / "job.toml"
    job.write_text(tomli_w.dumps(raw))
    out = tmp_path / "run"
    coordinator = accord_process(
        "coordinator", "--kit", work / "kits" / "coordinator", "--job", job,
        "--key", work / "keys" / "coordinator.key", "--out", out, "--round-timeout", "30",
        log=tmp_path / "coordinator.log",
    )  # fmt: skip
    nodes = {
        party: accord_process(
            "node",
            "--kit",
            work / "kits" / party,
            "--node-home",
            work / "homes" / party,
            log=tmp_path / f"{party}.log",
        )
        for party in PARTIES
    }
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 3):
        assert coordinator.poll() is None, (tmp_path / "coordinator.log").read_text()
        assert time.monotonic() < deadline, "no round finished in time"
        time.sleep(0.05)
    nodes["hospital-c"].send_signal(signal.SIGKILL)
    nodes["hospital-c"].wait(timeout=30)
    killed_at = metrics.read_text().count("\n")
    while metrics.read_text().count("\n") < killed_at + 20:  # rounds go on without it
        assert coordinator.poll() is None, (tmp_path / "coordinator.log").read_text()
        time.sleep(0.05)
    nodes["hospital-c"] = accord_process(
        "node", "--kit", work / "kits" / "hospital-c", "--node-home",
        work / "homes" / "hospital-c", log=tmp_path / "hospital-c-again.log",
    )  # fmt: skip
    assert coordinator.wait(timeout=300) == 0, (tmp_path / "coordinator.log").read_text()
    for node in nodes.values():
        node.wait(timeout=60)
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line]
    assert len(records) == 400
    assert records[0]["sampled"] == PARTIES
    without = [r for r in records if "hospital-c" not in r["sampled"]]
    assert len(without) >= 20
    assert all(r["sampled"] == ["hospital-a", "hospital-b", "hospital-d"] for r in without)
    # Restarted, it dialled in again, accepted the job again, and took part to the end.
    rejoined = [r for r in records if r["round"] > without[-1]["round"]]
    assert rejoined and all(r["sampled"] == PARTIES for r in rejoined)
    assert rejoined[-1]["round"] == 400
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds_completed"] == 400
