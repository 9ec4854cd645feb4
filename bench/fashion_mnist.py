"""Fashion-MNIST: FedAvg, FedProx and SCAFFOLD on 10 parties with Dirichlet(0.5) label skew.

The job is examples/fashion_mnist/job.toml (the built-in small CNN with GroupNorm, the
60k training images shared out by Dirichlet(0.5), the official 10k test set as the
coordinator's simulation-only test set); only ``strategy.name`` (and ``job.rounds`` with
``--rounds``) changes between runs. Each strategy runs in this process, one after the
other, with fresh node homes under .bench/fashion_mnist/homes-<strategy>, and the test
accuracy of the global model is printed after every round. A strategy trains for at most
``--max-minutes`` (default 10): the round under way when the limit passes is finished,
then the run stops and its last completed round counts. The target is FedAvg at 0.88 or
more within 10 minutes on this 2-core machine.

Run: .venv/bin/python bench/fashion_mnist.py [--rounds N] [--strategies fedavg,fedprox]
     [--max-minutes M]
Writes .bench/fashion_mnist/accuracy.png (accuracy per round, one line per strategy).
Last line: ``fedavg_acc A fedprox_acc B scaffold_acc C fedavg_minutes M rounds R``, final
test accuracies (``nan`` for a strategy not run), FedAvg's wall minutes (build and
training), and the rounds FedAvg completed (else those of the first strategy run).
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BENCH_DIR, REPO_ROOT, ensure_fashion_mnist, log

if TYPE_CHECKING:
    from accord.data.federation import FederatedData
    from accord.job import Job

JOB = REPO_ROOT / "examples" / "fashion_mnist" / "job.toml"
OUT = BENCH_DIR / "fashion_mnist"
PLOT = OUT / "accuracy.png"
STRATEGIES = ("fedavg", "fedprox", "scaffold")
TARGET = 0.88


class _TimeUp(Exception):
    """Raised from the round callback once a strategy has trained past its time limit."""


@dataclass
class Trace:
    """One strategy's run: test accuracy and wall seconds (since its start) per round."""

    strategy: str
    accuracy: dict[int, float] = field(default_factory=dict)
    elapsed: dict[int, float] = field(default_factory=dict)
    rounds: int = 0
    seconds: float = 0.0
    stopped_early: bool = False

    @property
    def final(self) -> float:
        return self.accuracy[max(self.accuracy)] if self.accuracy else math.nan

    def first_reaching(self, target: float) -> int | None:
        return next((r for r in sorted(self.accuracy) if self.accuracy[r] >= target), None)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None, help="override job.rounds")
    parser.add_argument(
        "--strategies",
        default=",".join(STRATEGIES),
        help=f"comma-separated, from {','.join(STRATEGIES)} (default: all three)",
    )
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=10.0,
        help="stop a strategy after the round that passes this many minutes (0: no limit)",
    )
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in STRATEGIES]
    if not chosen or unknown:
        parser.error(f"--strategies: choose from {', '.join(STRATEGIES)} (got {args.strategies})")
    args.strategies = list(dict.fromkeys(chosen))
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.max_minutes < 0:
        parser.error("--max-minutes must be >= 0")
    return args


def with_strategy(job: Job, strategy: str, rounds: int | None) -> Job:
    update: dict[str, Any] = {"strategy": job.strategy.model_copy(update={"name": strategy})}
    if rounds is not None:
        update["job"] = job.job.model_copy(update={"rounds": rounds})
    return job.model_copy(update=update)


def run_strategy(job: Job, data: FederatedData, strategy: str, max_seconds: float | None) -> Trace:
    """Run one strategy from a fresh start; print a row after every round."""
    from accord.fl.simulation import build_simulation

    homes = OUT / f"homes-{strategy}"
    shutil.rmtree(homes, ignore_errors=True)
    trace = Trace(strategy)
    start = time.perf_counter()
    simulation = build_simulation(job, JOB.parent, homes, data=data)

    def on_round(record: dict[str, Any]) -> None:
        elapsed = time.perf_counter() - start
        number = int(record["round"])
        trace.rounds, trace.seconds = number, elapsed
        server = record.get("server_test")
        accuracy = float(server["accuracy"]) if server else math.nan
        if server:
            trace.accuracy[number] = accuracy
            trace.elapsed[number] = elapsed
        print(
            f"{strategy:<10}{number:>6}{accuracy:>10.4f}{record['train_loss']:>12.4f}"
            f"{elapsed:>11.1f}",
            flush=True,
        )
        if max_seconds is not None and elapsed >= max_seconds and number < job.job.rounds:
            raise _TimeUp

    try:
        simulation.coordinator.run(on_round=on_round)
    except _TimeUp:
        trace.stopped_early = True
        log(
            f"fashion_mnist: {strategy} stopped after round {trace.rounds} of {job.job.rounds} "
            f"({trace.seconds / 60:.2f} min >= --max-minutes)"
        )
    trace.seconds = time.perf_counter() - start
    return trace


def print_table(traces: list[Trace]) -> None:
    """Accuracy and elapsed seconds per round, one column pair per strategy."""
    head = f"{'round':>5}" + "".join(f"{t.strategy + ' acc':>15}{'s':>8}" for t in traces)
    print(head)
    for number in range(1, max((t.rounds for t in traces), default=0) + 1):
        row = f"{number:>5}"
        for t in traces:
            if number in t.accuracy:
                row += f"{t.accuracy[number]:>15.4f}{t.elapsed[number]:>8.1f}"
            else:
                row += f"{'-':>15}{'-':>8}"
        print(row)
    sys.stdout.flush()


def plot(traces: list[Trace], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for t in traces:
        rounds = sorted(t.accuracy)
        ax.plot(rounds, [t.accuracy[r] for r in rounds], marker="o", markersize=3, label=t.strategy)
    ax.axhline(TARGET, color="grey", linestyle="--", linewidth=1, label=f"target {TARGET}")
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy (official 10k test set)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    ensure_fashion_mnist()
    from accord.data.federation import build_federated_data
    from accord.fl.runner import absolutize
    from accord.job import load_job

    base = absolutize(load_job(JOB), JOB.parent)
    max_seconds = args.max_minutes * 60 if args.max_minutes > 0 else None
    OUT.mkdir(parents=True, exist_ok=True)
    tick = time.perf_counter()
    # The partition depends only on the data section and the seed: load it once.
    data = build_federated_data(base.data, base.job.seed, JOB.parent)
    sizes = [len(p.y_train) for p in data.parties]
    log(
        f"fashion_mnist: {len(sizes)} parties, {sum(sizes)} training rows (min {min(sizes)}, "
        f"max {max(sizes)}), {0 if data.server_test is None else len(data.server_test[1])} "
        f"test rows; loaded in {time.perf_counter() - tick:.1f} s"
    )
    tr = base.training
    settings = (
        f"cnn {list(base.model.channels)}/{base.model.groups}, "
        f"{tr.local_epochs or tr.local_steps} local {'epochs' if tr.local_epochs else 'steps'}, "
        f"batch {tr.batch_size}, lr {tr.lr} ({tr.lr_schedule}), momentum {tr.momentum}, "
        f"mu {base.strategy.proximal_mu}"
    )
    print(f"fashion_mnist: {settings}, threads {base.job.threads}", flush=True)
    print(f"{'strategy':<10}{'round':>6}{'accuracy':>10}{'train_loss':>12}{'elapsed_s':>11}")
    traces: list[Trace] = []
    for strategy in args.strategies:
        job = with_strategy(base, strategy, args.rounds)
        traces.append(run_strategy(job, data, strategy, max_seconds))

    print()
    print_table(traces)
    plot(traces, f"Fashion-MNIST, 10 parties, Dirichlet(0.5)\n{settings}")
    log(f"fashion_mnist: plot written to {PLOT}")
    by_name = {t.strategy: t for t in traces}
    for t in traces:
        hit = t.first_reaching(TARGET)
        reach = (
            f"reached {TARGET} at round {hit} ({t.elapsed[hit] / 60:.2f} min)"
            if hit is not None
            else f"did not reach {TARGET}"
        )
        print(
            f"{t.strategy}: final accuracy {t.final:.4f} after {t.rounds} rounds in "
            f"{t.seconds / 60:.2f} min{' (time limit)' if t.stopped_early else ''}; {reach}"
        )
    main_trace = by_name.get("fedavg", traces[0])
    fedavg = by_name.get("fedavg")
    minutes = fedavg.seconds / 60 if fedavg is not None else math.nan

    def acc(name: str) -> float:
        return by_name[name].final if name in by_name else math.nan

    print(
        f"fedavg_acc {acc('fedavg'):.4f} fedprox_acc {acc('fedprox'):.4f} "
        f"scaffold_acc {acc('scaffold'):.4f} fedavg_minutes {minutes:.2f} "
        f"rounds {main_trace.rounds}",
        flush=True,
    )


if __name__ == "__main__":
    main()
