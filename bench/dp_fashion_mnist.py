"""Fashion-MNIST with record-level DP-SGD at epsilon 3 (delta 1e-5), through the job engine.

Two settings, both with the Tramer-Boneh end-to-end CNN (examples/fashion_mnist_dp/task,
model only) and scored on the official 10k test set (the coordinator's simulation-only test
set) after the last round:

- ``central``: examples/fashion_mnist_dp/job.toml. One party holds all 60,000 training
  images; each round is one epoch of DP-SGD on its node, and FedAvg with server_lr 1 makes
  the global model the party's own DP-SGD model. Mean over ``--seeds`` seeds (default 3).
  Target (issue 4): at least 0.850 (Tramer & Boneh 2021 report 0.860 for this CNN at
  epsilon 3).
- ``federated``: examples/fashion_mnist_dp/federated.toml. 10 parties, Dirichlet(0.5) label
  skew (as examples/fashion_mnist/job.toml), DP-SGD at epsilon 3 on every party; reported,
  no target. ``--fed-seeds`` seeds (default 1).

Each node calibrates its own noise multiplier for ``privacy.target_epsilon`` over the job's
planned steps, from its own row count. Every run starts from fresh node homes under
.bench/dp_fashion_mnist/ (no caps in node.toml), so its ledger holds this run only; the
epsilon printed per party is read back from that ledger. The job seed fixes the initial
weights and the partition; the DP noise and the Poisson sampling come from each node's
secure generator, so no two runs are alike even with the same seed.

Run: .venv/bin/python bench/dp_fashion_mnist.py [--seeds 3] [--fed-seeds 1] [--rounds R]
     [--quick]
``--quick``: 6,000 training and 2,000 test images, 2 rounds, one seed of each (a smoke
check of about a minute; its accuracies mean nothing).
Last line: ``dp_fmnist_acc X fed_dp_fmnist_acc Y epsilon 3`` (X: the mean over seeds of the
central setting's final test accuracy; Y: the same for the federated one).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BENCH_DIR, FASHION_MNIST_PROBE, REPO_ROOT, ensure_fashion_mnist, log

if TYPE_CHECKING:
    from accord.data.federation import FederatedData
    from accord.job import Job

EXAMPLE = REPO_ROOT / "examples" / "fashion_mnist_dp"
JOBS = {"central": EXAMPLE / "job.toml", "federated": EXAMPLE / "federated.toml"}
OUT = BENCH_DIR / "dp_fashion_mnist"
TARGET = 0.85
QUICK_TRAIN, QUICK_TEST, QUICK_ROUNDS = 6000, 2000, 2


@dataclass
class Run:
    """One run of one setting: accuracy per round, final accuracy, privacy per party."""

    setting: str
    seed: int
    accuracy: dict[int, float] = field(default_factory=dict)
    seconds: float = 0.0
    noise_multiplier: dict[str, float] = field(default_factory=dict)
    epsilon: dict[str, float] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def final(self) -> float:
        return self.accuracy[max(self.accuracy)] if self.accuracy else math.nan


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="central seeds 0..N-1 (default 3)")
    parser.add_argument(
        "--fed-seeds", type=int, default=1, help="federated seeds 0..N-1 (default 1; 0: skip)"
    )
    parser.add_argument("--rounds", type=int, default=None, help="override job.rounds (both)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_TRAIN} training / {QUICK_TEST} test images, {QUICK_ROUNDS} rounds, 1 seed",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.fed_seeds = 1, 1
        args.rounds = args.rounds or QUICK_ROUNDS
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    if args.fed_seeds < 0:
        parser.error("--fed-seeds must be >= 0")
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def shrink(data: FederatedData, train_rows: int, test_rows: int) -> FederatedData:
    """The first rows of every party (``train_rows`` in all, shared pro rata) and of the
    test set: for ``--quick``. Each node then calibrates its noise for its smaller count."""
    total = sum(len(p.y_train) for p in data.parties)
    parties = []
    for party in data.parties:
        keep = max(2, len(party.y_train) * train_rows // total)
        parties.append(
            dataclasses.replace(party, x_train=party.x_train[:keep], y_train=party.y_train[:keep])
        )
    server = data.server_test
    if server is not None:
        server = (server[0][:test_rows], server[1][:test_rows])
    return dataclasses.replace(data, parties=parties, server_test=server)


def with_seed(job: Job, seed: int, rounds: int | None) -> Job:
    update: dict[str, Any] = {"seed": seed}
    if rounds is not None:
        update["rounds"] = rounds
    return job.model_copy(update={"job": job.job.model_copy(update=update)})


def run_once(setting: str, job: Job, data: FederatedData, seed: int) -> Run:
    """Build a fresh simulation (new node homes), run every round, read back the privacy."""
    from accord.fl.node_privacy import privacy_summary
    from accord.fl.simulation import build_simulation

    homes = OUT / f"homes-{setting}-{seed}"
    shutil.rmtree(homes, ignore_errors=True)
    run = Run(setting, seed)
    start = time.perf_counter()
    simulation = build_simulation(job, JOBS[setting].parent, homes, data=data)

    def on_round(record: dict[str, Any]) -> None:
        number = int(record["round"])
        server = record.get("server_test")
        if server:
            run.accuracy[number] = float(server["accuracy"])
        log(
            f"dp_fashion_mnist: {setting} seed {seed} round {number}/{job.job.rounds}: "
            f"test accuracy {run.accuracy.get(number, math.nan):.4f} "
            f"({time.perf_counter() - start:.0f} s)"
        )

    simulation.coordinator.run(on_round=on_round)
    run.seconds = time.perf_counter() - start
    summary = privacy_summary(simulation.nodes) or {"parties": {}}
    for party, entry in summary["parties"].items():
        run.noise_multiplier[party] = float(entry["noise_multiplier"])
        run.epsilon[party] = float(entry["epsilon"])
    run.rows = {p.name: len(p.y_train) for p in data.parties}
    return run


def describe(job: Job) -> str:
    t, p = job.training, job.privacy
    return (
        f"{job.data.partition.kind} x{len(job.data.parties) or job.data.partition.parties}, "
        f"{job.job.rounds} rounds of {t.local_epochs} local epoch(s), expected batch "
        f"{t.batch_size}, lr {t.lr} ({t.lr_schedule}), momentum {t.momentum}, clip "
        f"{p.clip_norm}, target epsilon {p.target_epsilon} at delta {p.delta}, "
        f"strategy {job.strategy.name} (server_lr {job.strategy.server_lr})"
    )


def report(runs: list[Run]) -> None:
    """Per-seed table and, per run, the noise multiplier and epsilon of every party."""
    print(f"{'setting':<10}{'seed':>5}{'accuracy':>10}{'minutes':>9}  sigma / epsilon per party")
    for r in runs:
        privacy = ", ".join(
            f"{party} ({r.rows[party]} rows) {r.noise_multiplier[party]:.3f}/{r.epsilon[party]:.3f}"
            for party in r.noise_multiplier
        )
        print(f"{r.setting:<10}{r.seed:>5}{r.final:>10.4f}{r.seconds / 60:>9.2f}  {privacy}")
    for setting in ("central", "federated"):
        chosen = [r for r in runs if r.setting == setting]
        if not chosen:
            continue
        finals = [r.final for r in chosen]
        spread = f", sd {statistics.stdev(finals):.4f}" if len(finals) > 1 else ""
        print(f"{setting}: mean {statistics.fmean(finals):.4f} over {len(finals)} seed(s){spread}")
        curve = chosen[0].accuracy
        print(
            f"{setting} seed {chosen[0].seed} by round: "
            + " ".join(f"{curve[k]:.3f}" for k in sorted(curve))
        )
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not FASHION_MNIST_PROBE.exists():
        try:  # as the other benchmarks: install Debian's dataset-fashion-mnist if we can
            ensure_fashion_mnist()
        except SystemExit:
            print(f"dp_fashion_mnist: skipped: {FASHION_MNIST_PROBE} is absent and not installable")
            sys.exit(0)
    from accord.data.federation import build_federated_data
    from accord.fl.runner import absolutize
    from accord.job import load_job

    OUT.mkdir(parents=True, exist_ok=True)
    wall = time.perf_counter()
    plan = [("central", seed) for seed in range(args.seeds)]
    plan += [("federated", seed) for seed in range(args.fed_seeds)]
    bases = {name: absolutize(load_job(path), path.parent) for name, path in JOBS.items()}
    for name in dict.fromkeys(s for s, _ in plan):
        print(f"{name}: {describe(with_seed(bases[name], 0, args.rounds))}", flush=True)
    runs: list[Run] = []
    loaded: dict[tuple[str, int], FederatedData] = {}
    for setting, seed in plan:
        job = with_seed(bases[setting], seed, args.rounds)
        # The partition depends on the data section and the seed only.
        key = (setting, seed)
        if key not in loaded:
            data = build_federated_data(job.data, seed, JOBS[setting].parent)
            loaded[key] = shrink(data, QUICK_TRAIN, QUICK_TEST) if args.quick else data
        runs.append(run_once(setting, job, loaded.pop(key), seed))
        r = runs[-1]
        log(
            f"dp_fashion_mnist: {setting} seed {seed}: final accuracy {r.final:.4f} in "
            f"{r.seconds / 60:.2f} min; sigma {sorted(set(r.noise_multiplier.values()))[:3]}..."
        )
    print()
    report(runs)
    central = statistics.fmean(r.final for r in runs if r.setting == "central")
    fed_runs = [r.final for r in runs if r.setting == "federated"]
    federated = statistics.fmean(fed_runs) if fed_runs else math.nan
    met = "met" if central >= TARGET else "not met"
    print(
        f"central target {TARGET}: {met}; whole script {(time.perf_counter() - wall) / 60:.2f} "
        f"min{' (--quick: a smoke check, not a result)' if args.quick else ''}"
    )
    epsilon = bases["central"].privacy.target_epsilon
    print(f"dp_fmnist_acc {central:.4f} fed_dp_fmnist_acc {federated:.4f} epsilon {epsilon:g}")


if __name__ == "__main__":
    main()
