"""``accord coordinator`` and ``accord node``: the two processes of a deployment."""

from __future__ import annotations

import logging
from pathlib import Path

import click

_folder = click.Path(path_type=Path, file_okay=False)


def _logging(verbose: bool) -> None:
    # Refusals at the receiving side are logged (stderr), one line each.
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )


@click.command("coordinator")
@click.option("--kit", "kit", type=_folder, required=True, help="The coordinator's kit.")
@click.option("--job", "job", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option(
    "--key",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="The coordinator's identity key (its TLS key, NAME.tls.key, lies beside it).",
)
@click.option(
    "--tls-key",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The coordinator's TLS key (default: NAME.tls.key beside --key).",
)
@click.option("--out", type=_folder, default=None, help="Run folder (default runs/<job name>).")
@click.option("--listen", default=None, help="host:port to listen on (default: the kit's).")
@click.option(
    "--connect-timeout", default=300.0, show_default=True, help="Seconds to wait for nodes."
)
@click.option("--round-timeout", default=600.0, show_default=True, help="Seconds per reply.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its checkpoint.")
@click.option("--verbose", is_flag=True)
def coordinator(
    kit: Path,
    job: Path,
    key: Path,
    tls_key: Path | None,
    out: Path | None,
    listen: str | None,
    connect_timeout: float,
    round_timeout: float,
    resume: bool,
    verbose: bool,
) -> None:
    """Run JOB with the nodes of the kit's federation, over gRPC with mutual TLS."""
    from accord.fl.deploy_coordinator import serve_coordinator
    from accord.fl.run_dir import headline_metrics
    from accord.job import load_job

    _logging(verbose)
    name = load_job(job).job.name
    outcome = serve_coordinator(
        kit, job, key, out if out is not None else Path("runs") / name, listen,
        connect_timeout, round_timeout,
        on_listening=lambda port: print(f"listening on port {port}", flush=True),
        tls_key_path=tls_key, resume=resume,
    )  # fmt: skip
    last = outcome.result.records[-1] if outcome.result.records else {}
    metrics = headline_metrics(last)
    print(f"report: {outcome.run_dir.report_file}")
    if "accuracy" in metrics:
        print(f"test accuracy {metrics['accuracy']:.4f}")


@click.command("node")
@click.option("--kit", "kit", type=_folder, required=True, help="This party's kit.")
@click.option("--node-home", "node_home", type=_folder, required=True, help="This node's home.")
@click.option(
    "--data",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="This party's data file (a natural partition's CSV or Parquet), if not the job's.",
)
@click.option("--verbose", is_flag=True)
def node(kit: Path, node_home: Path, data: Path | None, verbose: bool) -> None:
    """Dial the kit's coordinator, accept or refuse its job, and answer through the gate."""
    from accord.fl.deploy_node import serve_node

    _logging(verbose)
    answered = serve_node(kit, node_home, data)
    print(f"done: answered {answered} requests")
