"""The ledger under concurrent jobs and crashes: never overspent, never a lost charge.

Real processes: two ``accord run`` processes racing for the last of a node's budget, and a
run killed with SIGKILL (between a charge and its release, and at a random moment).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from accord.privacy.ledger import PrivacyLedger
from tests.conftest import SMALL_JOB

PARTIES = ("party-1", "party-2")
DPSGD = """
[privacy]
mode = "dpsgd"
noise_multiplier = 1.0
clip_norm = 1.0
delta = 1e-5
"""


def dp_job(folder: Path, name: str, rounds: int) -> Path:
    text = SMALL_JOB.format(seed=0, rounds=rounds, model="logreg", strategy="fedavg",
                            sampling="all")  # fmt: skip
    text = text.replace("parties = 4", "parties = 2").replace("standardize = true",
                                                              "standardize = false")  # fmt: skip
    text = text.replace('name = "small"', f'name = "{name}"')
    # Both parties in every round: a node that refuses fails the round, and the job.
    text = text.replace("min_parties = 1", "min_parties = 2")
    path = folder / f"{name}.toml"
    path.write_text(text + DPSGD)
    return path


def cap_homes(homes: Path, epsilon: float | dict[str, float]) -> None:
    for party in PARTIES:
        cap = epsilon[party] if isinstance(epsilon, dict) else epsilon
        (homes / party).mkdir(parents=True, exist_ok=True)
        (homes / party / "node.toml").write_text(
            f'party = "{party}"\n[[caps]]\ndataset = "train"\nepsilon = {cap}\ndelta = 1e-5\n'
        )


def accord(*args: str | Path, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "accord", *map(str, args)],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


def round_epsilons(tmp_path: Path) -> dict[str, tuple[float, float]]:
    """What one round and two rounds of the job cost each node (their row counts differ),
    measured on scratch nodes."""
    from accord.fl.simulation import build_simulation
    from accord.job import load_job

    scratch = tmp_path / "scratch"
    cap_homes(scratch, 100.0)
    simulation = build_simulation(load_job(dp_job(tmp_path, "probe", 1)), tmp_path, scratch)
    from accord.privacy.caps import load_node_settings

    spent: dict[str, list[float]] = {party: [] for party in PARTIES}
    for round_number in (1, 2):
        simulation.coordinator.run_round(round_number)
        for party in PARTIES:
            cap = load_node_settings(scratch / party).caps_for("train")[0]
            spent[party].append(PrivacyLedger(scratch / party).spent("train", cap))
    return {party: (one, two) for party, (one, two) in spent.items()}


def test_two_jobs_racing_for_the_last_of_a_budget_exactly_one_gets_it(tmp_path: Path) -> None:
    one, two = round_epsilons(tmp_path)["party-1"]
    homes = tmp_path / "homes"
    # party-1 has room for one job's round, not for both jobs' rounds; party-2 for both.
    cap_homes(homes, {"party-1": (one + two) / 2, "party-2": 100.0})
    jobs = [dp_job(tmp_path, name, 1) for name in ("first", "second")]
    runs = [accord("run", job, "--node-homes", homes, "--out", tmp_path / job.stem, "--quiet",
                   cwd=tmp_path) for job in jobs]  # fmt: skip
    outcomes = [(run.wait(timeout=300), run.stderr.read() if run.stderr else "") for run in runs]
    codes = sorted(code for code, _ in outcomes)
    assert codes == [0, 3], outcomes
    refused = next(err for code, err in outcomes if code == 3)
    assert "refused" in refused and "epsilon" in refused and len(refused.strip().splitlines()) == 1
    assert "party-1" in refused
    (charge,) = PrivacyLedger(homes / "party-1").charges()
    # The last of party-1's budget went to the job that completed, and to it alone.
    winner = next(run for run, (code, _) in zip(jobs, outcomes, strict=True) if code == 0)
    assert (
        json.loads((tmp_path / winner.stem / "summary.json").read_text())["job_id"]
        == (charge.job_id.split(".")[0])
    )


def _charge_then_die(job: str, homes: str) -> None:
    """A node process killed right after its charge committed, before its release."""
    from accord.fl.gate import ReleaseGate
    from accord.fl.simulation import build_simulation
    from accord.job import load_job

    def die(self: ReleaseGate, release: object) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    ReleaseGate.release = die  # type: ignore[assignment,method-assign]
    path = Path(job)
    simulation = build_simulation(load_job(path), path.parent, Path(homes))
    simulation.coordinator.run_round(1)


def test_a_process_killed_between_charge_and_release_keeps_the_charge(tmp_path: Path) -> None:
    homes = tmp_path / "homes"
    cap_homes(homes, 100.0)
    job = dp_job(tmp_path, "killed", 2)
    child = multiprocessing.get_context("spawn").Process(
        target=_charge_then_die, args=(str(job), str(homes))
    )
    child.start()
    child.join(timeout=120)
    assert child.exitcode == -signal.SIGKILL
    charges = PrivacyLedger(homes / "party-1").charges()
    assert [(c.round, c.release_kind) for c in charges] == [(1, "update")]
    assert charges[0].covered


@pytest.mark.parametrize("seed", [0])
def test_a_run_killed_at_any_moment_has_charged_every_release_it_made(
    tmp_path: Path, seed: int
) -> None:
    homes = tmp_path / "homes"
    cap_homes(homes, 100.0)
    job = dp_job(tmp_path, "anytime", 30)
    out = tmp_path / "run"
    run = accord("run", job, "--node-homes", homes, "--out", out, "--quiet", cwd=tmp_path)
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        assert run.poll() is None and time.monotonic() < deadline, "the run ended early"
        time.sleep(0.05)
    time.sleep(random.Random(seed).uniform(0.0, 0.5))
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=30)
    done = [json.loads(line)["round"] for line in metrics.read_text().splitlines() if line]
    assert done, "no round finished before the kill"
    for party in PARTIES:
        charged = {c.round for c in PrivacyLedger(homes / party).charges()
                   if c.release_kind == "update"}  # fmt: skip
        # Every round the coordinator aggregated was charged first, on every node.
        assert set(done) <= charged, party
        # And a node never charged a round twice, nor more than one past the last release.
        assert max(charged) <= max(done) + 1
