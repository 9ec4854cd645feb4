"""The coordinator SIGKILLed mid-run and resumed: the same final model as an uninterrupted
run with the same seed and node secrets, and every node's ledger charged once per round.

Real processes on 127.0.0.1. The node processes stay up while the coordinator is down,
dial it again, and resend the releases they kept for the round in progress (no retraining,
no new charge), so even DP-SGD's noise, drawn from each node's secret generator, is the
same as in the uninterrupted run.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import tomllib
from importlib import resources
from pathlib import Path

import tomli_w
import torch

from accord.cli.demo_network import PURPOSE, set_up_federation
from accord.fileio import load_tensors
from accord.node_secrets import open_node_generator
from accord.privacy.ledger import PrivacyLedger
from tests.e2e.processes import PARTIES, accord_process

ROUNDS = 40


def _coordinator(
    work: Path, job: Path, out: Path, log: Path, *extra: str
) -> subprocess.Popen[bytes]:
    return accord_process("coordinator", "--kit", work / "kits" / "coordinator", "--job", job,
                   "--key", work / "keys" / "coordinator.key", "--out", out, *extra,
                   log=log)  # fmt: skip


def _nodes(work: Path, homes: Path, logs: Path) -> list[subprocess.Popen[bytes]]:
    kits = work / "kits"
    return [
        accord_process("node", "--kit", kits / p, "--node-home", homes / p, log=logs / f"{p}.log")
        for p in PARTIES
    ]


def _rounds_done(metrics: Path) -> int:
    return metrics.read_text().count("\n") if metrics.exists() else 0


def test_a_killed_coordinator_resumes_to_the_same_model_and_exact_ledgers(
    tmp_path: Path,
) -> None:
    work = tmp_path / "work"
    agreement = set_up_federation(work, PARTIES)
    for party in PARTIES:
        open_node_generator(work / "homes" / party)  # the node secrets, before copying
    shutil.copytree(work / "homes", tmp_path / "homes-b")
    raw = tomllib.loads((resources.files("accord.demo") / "demo.toml").read_text())
    raw["job"].update(purpose=PURPOSE, agreement=str(agreement), rounds=ROUNDS)
    raw["data"]["standardize"] = False  # a DP job: no per-party statistics
    raw["privacy"] = {"mode": "dpsgd", "noise_multiplier": 1.0, "clip_norm": 1.0}
    raw["evaluation"] = {"every": 20}
    job = work / "job.toml"
    job.write_text(tomli_w.dumps(raw))
    logs = tmp_path / "logs"
    logs.mkdir()

    # A: uninterrupted.
    out_a = tmp_path / "run-a"
    coordinator = _coordinator(work, job, out_a, logs / "coordinator-a.log")
    nodes = _nodes(work, work / "homes", logs)
    assert coordinator.wait(timeout=600) == 0, (logs / "coordinator-a.log").read_text()
    for node in nodes:
        node.wait(timeout=60)

    # B: the same homes' secrets, the coordinator killed mid-run, then resumed.
    out_b = tmp_path / "run-b"
    coordinator = _coordinator(work, job, out_b, logs / "coordinator-b.log")
    nodes = _nodes(work, tmp_path / "homes-b", logs)
    deadline = time.monotonic() + 300
    while _rounds_done(out_b / "metrics.jsonl") < 8:
        assert coordinator.poll() is None, (logs / "coordinator-b.log").read_text()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    coordinator.send_signal(signal.SIGKILL)
    coordinator.wait(timeout=30)
    killed_at = _rounds_done(out_b / "metrics.jsonl")
    assert killed_at < ROUNDS
    resumed = _coordinator(work, job, out_b, logs / "coordinator-b.log", "--resume")
    assert resumed.wait(timeout=600) == 0, (logs / "coordinator-b.log").read_text()
    for node in nodes:
        assert node.wait(timeout=60) == 0

    model_a = load_tensors(out_a / "model.safetensors")
    model_b = load_tensors(out_b / "model.safetensors")
    assert model_a.keys() == model_b.keys()
    for name in model_a:
        assert torch.equal(model_a[name], model_b[name]), name
    records = [json.loads(line) for line in (out_b / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in records] == list(range(1, ROUNDS + 1))
    for party in PARTIES:
        charges_a = PrivacyLedger(work / "homes" / party).charges()
        charges_b = PrivacyLedger(tmp_path / "homes-b" / party).charges()
        rounds_b = [c.round for c in charges_b if c.release_kind == "update"]
        # Every round charged exactly once, as in the uninterrupted run.
        assert rounds_b == list(range(1, ROUNDS + 1)), party
        assert [(c.round, c.release_kind, c.event_json) for c in charges_a] == [
            (c.round, c.release_kind, c.event_json) for c in charges_b
        ]
