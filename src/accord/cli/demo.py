"""``accord demo``: the embedded default job, and what each hospital reaches alone."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from accord.cli.progress import round_progress


def run_demo(out: Path, homes_root: Path | None) -> None:
    from rich.console import Console

    from accord.fl.runner import execute_run, prepare_run

    job_file = resources.files("accord.demo") / "demo.toml"
    with resources.as_file(job_file) as job_path:
        simulation, run_dir = prepare_run(job_path, out, False, homes_root, replace=True)
    console = Console()
    console.print(
        "Four hospitals hold non-IID shares of the breast-cancer data; the model travels, "
        "the rows stay."
    )
    with round_progress(simulation.job.job.rounds, 0) as on_round:
        outcome = execute_run(simulation, run_dir, False, on_round, replace=True)
    assert outcome.result.params is not None  # the demo job is not a CKKS job
    print_summary(console, simulation, outcome.result.params, outcome.run_dir.report_file)


def print_summary(console: Any, simulation: Any, params: Any, report_file: Path) -> None:
    """The demo's table (each hospital alone vs. together) and its last two lines."""
    from rich.table import Table

    from accord.fl.baselines import evaluate_on_parties, train_alone

    federated = evaluate_on_parties(simulation, params)
    table = Table(title="Each hospital alone vs. together (test accuracy)")
    for column in (
        "hospital",
        "train rows",
        "test rows",
        "alone: own test",
        "alone: all tests",
        "federated: own test",
    ):
        table.add_column(column, justify="left" if column == "hospital" else "right")
    for party in simulation.data.parties:
        alone = evaluate_on_parties(simulation, train_alone(simulation, party.name))
        own = alone["per_party"][party.name]
        table.add_row(
            party.name,
            str(len(party.y_train)),
            str(len(party.y_test)),
            f"{own['accuracy']:.4f}",
            f"{alone['federated']['accuracy']:.4f}",
            f"{federated['per_party'][party.name]['accuracy']:.4f}",
        )
    console.print(table)
    print(f"report: {report_file}")
    print(f"federated test accuracy {federated['federated']['accuracy']:.4f}")
