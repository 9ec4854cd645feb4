"""The run folder the coordinator writes: ``runs/<name>/``.

``job.toml`` (the resolved job), ``metrics.jsonl`` (one line per round),
``model.safetensors`` (the final model), ``report.html``, and ``checkpoint/`` (the
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
from accord.fileio import load_tensors, save_tensors_atomic, write_text_atomic


@dataclass(frozen=True, slots=True)
class Checkpoint:
    round: int
    global_params: torch.Tensor
    strategy_state: dict[str, torch.Tensor]
    records: list[dict[str, Any]]


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

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoint"

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

    def save_checkpoint(self, checkpoint: Checkpoint, job_id: str) -> None:
        # Tensors first, then the small JSON that names the round: the JSON is the commit.
        folder = self.checkpoint_dir
        save_tensors_atomic(folder / "global.safetensors", {"params": checkpoint.global_params})
        save_tensors_atomic(folder / "strategy.safetensors", checkpoint.strategy_state)
        self.write_metrics(checkpoint.records)
        state = {"round": checkpoint.round, "job_id": job_id}
        write_text_atomic(folder / "state.json", json.dumps(state))

    def load_checkpoint(self, job_id: str) -> Checkpoint:
        state_file = self.checkpoint_dir / "state.json"
        if not state_file.exists():
            raise InputError(f"{self.path}: no checkpoint to resume from; run without --resume")
        state = json.loads(state_file.read_text())
        if state.get("job_id") != job_id:
            raise InputError(
                f"{self.path}: the checkpoint belongs to job {state.get('job_id')}, not this job "
                f"({job_id}); resume with the same job file"
            )
        params = load_tensors(self.checkpoint_dir / "global.safetensors")["params"]
        strategy_state = load_tensors(self.checkpoint_dir / "strategy.safetensors")
        records = [r for r in self.read_metrics() if r["round"] <= state["round"]]
        return Checkpoint(int(state["round"]), params, strategy_state, records)

    def write_model(self, named: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
        save_tensors_atomic(self.model_file, named, metadata)
