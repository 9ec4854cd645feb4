"""The run folder the coordinator writes: ``runs/<name>/``.

``job.toml`` (the resolved job), ``metrics.jsonl`` (one line per round),
``model.safetensors`` (the final model), ``summary.json`` (final metrics and the round
loop's wall time), ``report.html``, and ``checkpoint.safetensors`` (the
state after the last completed round, from which ``--resume`` continues). Every file is
written atomically, so an interrupted run leaves whole files only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from accord.errors import InputError
from accord.fileio import load_tensors_with_metadata, save_tensors_atomic, write_text_atomic


@dataclass(frozen=True, slots=True)
class Checkpoint:
    round: int
    global_params: torch.Tensor
    strategy_state: dict[str, torch.Tensor]
    records: list[dict[str, Any]]


def headline_metrics(record: dict[str, Any]) -> dict[str, Any]:
    """A round's test metrics to show: federated where they exist, else the coordinator's
    simulation-only test set, else nothing."""
    for source in ("federated", "server_test"):
        metrics = record.get(source) or {}
        if "accuracy" in metrics:
            return dict(metrics)
    return {}


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def job_file(self) -> Path:
        return self.path / "job.toml"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def model_file(self) -> Path:
        return self.path / "model.safetensors"

    @property
    def report_file(self) -> Path:
        return self.path / "report.html"

    def write_job(self, toml_text: str) -> None:
        write_text_atomic(self.job_file, toml_text)

    def write_metrics(self, records: list[dict[str, Any]]) -> None:
        lines = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
        write_text_atomic(self.metrics_file, lines)

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_file.exists():
            raise InputError(f"{self.metrics_file}: not found; is {self.path} a run folder?")
        records = []
        for number, line in enumerate(self.metrics_file.read_text().splitlines(), 1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise InputError(f"{self.metrics_file}:{number}: not valid JSON") from None
        return records

    def append_metrics(self, record: dict[str, Any]) -> None:
        """Add one round's line (one write: cheaper than rewriting the file each round)."""
        with self.metrics_file.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")

    @property
    def checkpoint_file(self) -> Path:
        return self.path / "checkpoint.safetensors"

    def save_checkpoint(self, checkpoint: Checkpoint, job_id: str) -> None:
        """One file per round, written atomically: the global model, the strategy's state,
        and (in its header) the round, the job id and every round's metrics so far.

        One file, not four, because each atomic replace costs milliseconds on a slow disk
        and checkpoints are written every round.
        """
        tensors = {"global": checkpoint.global_params}
        tensors.update({f"strategy.{k}": v for k, v in checkpoint.strategy_state.items()})
        metadata = {
            "round": str(checkpoint.round),
            "job_id": job_id,
            "records": json.dumps(checkpoint.records, sort_keys=True),
        }
        save_tensors_atomic(self.checkpoint_file, tensors, metadata)

    def load_checkpoint(self, job_id: str) -> Checkpoint:
        """The last checkpoint; metrics.jsonl is rewritten to match it."""
        if not self.checkpoint_file.exists():
            raise InputError(f"{self.path}: no checkpoint to resume from; run without --resume")
        tensors, metadata = load_tensors_with_metadata(self.checkpoint_file)
        if metadata.get("job_id") != job_id:
            raise InputError(
                f"{self.path}: the checkpoint belongs to job {metadata.get('job_id')}, not this "
                f"job ({job_id}); resume with the same job file"
            )
        strategy_state = {
            k.removeprefix("strategy."): v for k, v in tensors.items() if k.startswith("strategy.")
        }
        records = json.loads(metadata["records"])
        self.write_metrics(records)
        return Checkpoint(int(metadata["round"]), tensors["global"], strategy_state, records)

    @property
    def run_id_file(self) -> Path:
        return self.path / "run_id"

    def read_run_id(self) -> str | None:
        """The run's id in the nodes' ledgers (``None`` for a folder without one)."""
        if not self.run_id_file.exists():
            return None
        return self.run_id_file.read_text().strip() or None

    def write_run_id(self, run_id: str) -> None:
        write_text_atomic(self.run_id_file, run_id + "\n")

    @property
    def summary_file(self) -> Path:
        return self.path / "summary.json"

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Final metrics and the round loop's wall time (this session's part, on resume)."""
        write_text_atomic(self.summary_file, json.dumps(summary, indent=2, sort_keys=True))

    def write_model(self, named: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
        save_tensors_atomic(self.model_file, named, metadata)
