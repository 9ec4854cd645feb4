"""``accord``: run federated jobs, write reports, and show the demo."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from accord.cli.agreement import agreement
from accord.cli.approvals import approvals
from accord.cli.audit import audit
from accord.cli.budget import budget
from accord.cli.deploy import coordinator, node
from accord.cli.encrypted import encrypted
from accord.cli.errors import run_guarded
from accord.cli.keys import keys
from accord.cli.privacy import privacy_group
from accord.cli.provision import provision
from accord.cli.stats import stats

node_homes_option = click.option(
    "--node-homes",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder holding one node home per party (default: [nodes.<party>] home in the job, "
    "else ~/.accord/nodes/<party>).",
)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Accord: federated learning with differential privacy, protected aggregation and "
    "enforced data-sharing agreements.",
)
@click.version_option(package_name="accord")
def app() -> None:
    pass


@app.command()
@click.argument("job", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Run folder (default runs/<job name>).",
)
@click.option("--resume", is_flag=True, help="Continue from the run folder's checkpoint.")
@node_homes_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
def run(job: Path, out: Path | None, resume: bool, node_homes: Path | None, quiet: bool) -> None:
    """Run a federated JOB (a TOML file) in simulation and write runs/<name>/."""
    from accord.cli.progress import round_progress
    from accord.fl.run_dir import headline_metrics
    from accord.fl.runner import execute_run, prepare_run

    simulation, run_dir = prepare_run(job, out, resume, node_homes)
    done = run_dir.load_checkpoint(simulation.job_id).round if resume else 0
    with round_progress(simulation.job.job.rounds, done, enabled=not quiet) as on_round:
        outcome = execute_run(simulation, run_dir, resume, on_round)
    last = outcome.result.records[-1] if outcome.result.records else {}
    metrics = headline_metrics(last)
    print(f"report: {outcome.run_dir.report_file}")
    if outcome.result.params is None:
        from accord.fl.runner import ckks_model_file

        print(f"model: {ckks_model_file(simulation)} (in the CKKS key holder's node home)")
    if "accuracy" in metrics:
        print(f"test accuracy {metrics['accuracy']:.4f}")


@app.command()
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
def report(run_dir: Path) -> None:
    """Write (again) the HTML report of RUN_DIR, a folder written by accord run."""
    from accord.errors import InputError
    from accord.fl.run_dir import RunDir
    from accord.report.html import write_report

    folder = RunDir(run_dir)
    if not folder.job_file.exists():
        raise InputError(f"{run_dir}: not a run folder (no job.toml)")
    write_report(folder)
    print(f"report: {folder.report_file}")


@app.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("runs/demo"),
    show_default=True,
    help="Run folder (replaced).",
)
@node_homes_option
@click.option(
    "--network",
    is_flag=True,
    help="Run it through a coordinator and four node processes on 127.0.0.1 (gRPC, mutual "
    "TLS), set up from keys to kits in OUT-network/.",
)
def demo(out: Path, node_homes: Path | None, network: bool) -> None:
    """Four hospitals train one model on non-IID shares of breast-cancer data."""
    if network:
        from accord.cli.demo_network import run_network_demo

        run_network_demo(out, out.with_name(out.name + "-network"))
        return
    from accord.cli.demo import run_demo

    run_demo(out, node_homes)


@app.command("task-hash")
@click.argument("task_dir", type=click.Path(path_type=Path, file_okay=False))
def task_hash(task_dir: Path) -> None:
    """Print the hash of TASK_DIR, for model.task_hash in a job file."""
    from accord.models.task_code import task_code_hash

    print(task_code_hash(task_dir))


app.add_command(agreement)
app.add_command(approvals)
app.add_command(audit)
app.add_command(budget)
app.add_command(coordinator)
app.add_command(node)
app.add_command(encrypted)
app.add_command(keys)
app.add_command(privacy_group)
app.add_command(provision)
app.add_command(stats)


def main() -> None:
    run_guarded(lambda: app.main(args=sys.argv[1:], prog_name="accord", standalone_mode=False))


if __name__ == "__main__":
    main()
