"""``accord run``: build a simulation from a job file, run it, write the run folder."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accord.errors import InputError
from accord.fl.coordinator import RunResult
from accord.fl.run_dir import RunDir
from accord.fl.simulation import Simulation, build_simulation
from accord.job import Job, dump_job_toml, load_job, resolve_path


def _abs(value: str | None, base_dir: Path) -> str | None:
    return None if value is None else str(resolve_path(value, base_dir).resolve())


def absolutize(job: Job, base_dir: Path) -> Job:
    """The job with every path made absolute, so the copy in the run folder runs as is."""
    data = job.data
    parties = [
        p.model_copy(
            update={k: _abs(getattr(p, k), base_dir) for k in ("path", "images", "labels")}
        )
        for p in data.parties
    ]
    data = data.model_copy(
        update={
            **{
                k: _abs(getattr(data, k), base_dir)
                for k in ("path", "images", "labels", "test_images", "test_labels")
            },
            "parties": parties,
        }
    )
    model = job.model.model_copy(
        update={
            "task_dir": _abs(job.model.task_dir, base_dir),
            "initial": _abs(job.model.initial, base_dir),
        }
    )
    nodes = {
        name: settings.model_copy(update={"home": _abs(settings.home, base_dir)})
        for name, settings in job.nodes.items()
    }
    section = job.job.model_copy(update={"agreement": _abs(job.job.agreement, base_dir)})
    return job.model_copy(update={"job": section, "data": data, "model": model, "nodes": nodes})


_FINAL_KEYS = ("round", "federated", "server_test", "train_loss")


@dataclass(frozen=True, slots=True)
class RunOutcome:
    run_dir: RunDir
    simulation: Simulation
    result: RunResult


def prepare_run(
    job_path: Path, out: Path | None, resume: bool, homes_root: Path | None, replace: bool = False
) -> tuple[Simulation, RunDir]:
    """Validate the job and load all data before anything is written."""
    job = absolutize(load_job(job_path), job_path.resolve().parent)
    run_dir = RunDir(out if out is not None else Path("runs") / job.job.name)
    if resume:
        if not run_dir.path.exists():
            raise InputError(f"{run_dir.path}: no such run folder to resume")
    elif run_dir.path.exists() and any(run_dir.path.iterdir()):
        if not replace:
            raise InputError(
                f"{run_dir.path}: run folder exists; pass --resume to continue it or --out DIR "
                "for a new one"
            )
        if not run_dir.job_file.exists():
            raise InputError(
                f"{run_dir.path}: exists and is not a run folder; it will not be replaced, "
                "choose another --out"
            )
    if resume and job.protection.ckks:
        raise InputError(
            "a CKKS job cannot be resumed: its keys lived only in the nodes' memory; "
            "start a new run"
        )
    run_id = run_dir.read_run_id() if resume else None
    simulation = build_simulation(
        job, job_path.resolve().parent, homes_root, run_dir, run_id=run_id
    )
    return simulation, run_dir


def execute_run(
    simulation: Simulation,
    run_dir: RunDir,
    resume: bool,
    on_round: Callable[[dict[str, Any]], None] | None = None,
    replace: bool = False,
) -> RunOutcome:
    coordinator = simulation.coordinator
    if resume:
        coordinator.restore(run_dir.load_checkpoint(simulation.job_id))
    else:
        if replace and run_dir.path.exists():
            shutil.rmtree(run_dir.path)
        run_dir.path.mkdir(parents=True, exist_ok=True)
        run_dir.write_job(dump_job_toml(simulation.job))
        run_dir.write_run_id(simulation.run_id)
    from accord.fl.coordinator_inbox import CoordinatorInbox
    from accord.fl.node_privacy import privacy_summary
    from accord.report.privacy import write_privacy_summary
    from accord.report.receipts import write_audit_heads, write_receipts

    inbox = coordinator.transport
    try:
        result = coordinator.run(on_round)
        if isinstance(inbox, CoordinatorInbox):
            write_receipts(run_dir, inbox.collect_receipts(coordinator.completed_rounds))
    finally:
        # Also when a run stops early (a node out of budget): say what it spent, and keep
        # the audit heads the nodes' releases carried.
        write_privacy_summary(run_dir, privacy_summary(simulation.nodes))
        if isinstance(inbox, CoordinatorInbox):
            write_audit_heads(run_dir, {p: h.to_json() for p, h in inbox.audit_heads.items()})
    summary: dict[str, Any] = {}
    if result.params is not None:
        named = simulation.model.state_dict(result.params)
        run_dir.write_model(
            named,
            {
                "job_id": simulation.job_id,
                "rounds": str(coordinator.completed_rounds),
                "model_kind": simulation.job.model.kind,
            },
        )
    else:
        # CKKS: the coordinator never held the model; the key holder's node wrote it, and
        # writes its own run folder and report beside it.
        if simulation.nodes:
            summary["model_held_by"] = str(ckks_model_file(simulation))
            summary["key_holder_report"] = str(write_key_holder_run(simulation, result.records))
        else:  # deployed: the key holder's own node process wrote it, in its own home
            summary["model_held_by"] = f"{simulation.job.protection.key_holder}'s node home"
    run_dir.write_summary(
        {
            **summary,
            "job_id": simulation.job_id,
            "rounds_completed": coordinator.completed_rounds,
            "loop_seconds": result.loop_seconds,
            "final": {k: v for k, v in result.records[-1].items() if k in _FINAL_KEYS}
            if result.records
            else {},
        }
    )
    from accord.report.html import write_report

    write_report(run_dir)
    return RunOutcome(run_dir, simulation, result)


def write_key_holder_run(simulation: Simulation, records: list[dict[str, Any]]) -> Path:
    """CKKS: the key holder's own run folder in its node home (private to its owner): the
    job, the round records the coordinator released, the model only the parties hold, and
    the report. The coordinator's run folder keeps only what the coordinator saw."""
    from accord.report.html import write_report

    holder = simulation.job.protection.key_holder
    node = next(n for n in simulation.nodes if n.party == holder)
    assert node.ckks is not None
    folder = RunDir(ckks_model_file(simulation).parent / "run")
    folder.path.mkdir(parents=True, exist_ok=True)
    folder.write_job(dump_job_toml(simulation.job))
    folder.write_run_id(simulation.run_id)
    folder.write_metrics(records)
    folder.write_model(
        simulation.model.state_dict(node.ckks.current_model()),
        {"job_id": simulation.job_id, "rounds": str(len(records)),
         "model_kind": simulation.job.model.kind, "written_by": str(holder)},
    )  # fmt: skip
    folder.write_summary({"job_id": simulation.job_id, "rounds_completed": len(records),
                          "written_by": holder})  # fmt: skip
    write_report(folder)
    return folder.report_file


def ckks_model_file(simulation: Simulation) -> Path:
    """Where a CKKS job's final model is: in the key holder's node home."""
    from accord.fl.node_ckks import ckks_model_path

    holder = simulation.job.protection.key_holder
    node = next(n for n in simulation.nodes if n.party == holder)
    return ckks_model_path(node.home.path, simulation.job_id)


def run_job(
    job_path: Path,
    out: Path | None = None,
    resume: bool = False,
    homes_root: Path | None = None,
    on_round: Callable[[dict[str, Any]], None] | None = None,
) -> RunOutcome:
    simulation, run_dir = prepare_run(job_path, out, resume, homes_root)
    return execute_run(simulation, run_dir, resume, on_round)
