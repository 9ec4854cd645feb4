"""The job file: its schema, loading, and one-line errors that name the key at fault.

A job is a TOML file. Every section refuses unknown keys (a misspelt key is an error,
never silently ignored); relative paths are resolved against the job file's folder.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from accord.config_errors import read_toml, validation_line
from accord.data.config import DataConfig
from accord.errors import JobFileError
from accord.privacy.config import PrivacyConfig
from accord.protect.config import ProtectionConfig

_STRICT = ConfigDict(extra="forbid", frozen=True)

STRATEGY_NAMES = ("fedavg", "fedavgm", "fedprox", "fedadam", "fedyogi", "fedadagrad", "scaffold")
StrategyName = Literal[
    "fedavg", "fedavgm", "fedprox", "fedadam", "fedyogi", "fedadagrad", "scaffold"
]


class JobSection(BaseModel):
    model_config = _STRICT
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=100)
    seed: int = Field(default=0, ge=0, lt=2**63)
    rounds: int = Field(ge=1, le=100_000)
    threads: int | None = Field(default=None, ge=1, le=256)
    """torch's intra-op thread count; bit-for-bit reproducibility needs the same count."""
    purpose: str | None = Field(default=None, min_length=1, max_length=300)
    """What the job is for; under an agreement it must be one of the agreement's purposes."""
    agreement: str | None = None
    """The agreement the job runs under (a path, relative to the job file). Each node
    checks the job against its own copy, never this one: the two must be the same terms."""


class ModelConfig(BaseModel):
    model_config = _STRICT
    kind: Literal["logreg", "mlp", "cnn", "custom"]
    hidden: list[int] = Field(default_factory=lambda: [64])
    channels: list[int] = Field(default_factory=lambda: [16, 32])
    groups: int = Field(default=4, ge=1)
    task_dir: str | None = None
    task_hash: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    initial: str | None = None
    """A safetensors file with the initial weights (default: initialise from the job seed)."""

    @model_validator(mode="after")
    def _custom_needs_task(self) -> ModelConfig:
        if self.kind == "custom" and (self.task_dir is None or self.task_hash is None):
            raise ValueError("model.kind = 'custom' needs model.task_dir and model.task_hash")
        if self.kind != "custom" and self.task_dir is not None:
            raise ValueError("model.task_dir is only for model.kind = 'custom'")
        return self


class StrategyConfig(BaseModel):
    """Options shared by every strategy; each strategy reads the ones it needs."""

    model_config = _STRICT
    name: StrategyName = "fedavg"
    server_lr: float | None = Field(default=None, gt=0)
    """Server learning rate; default 1.0 for averaging strategies, 0.1 for adaptive ones."""
    server_momentum: float = Field(default=0.9, ge=0, lt=1)
    proximal_mu: float = Field(default=0.01, ge=0)
    beta1: float = Field(default=0.9, ge=0, lt=1)
    beta2: float = Field(default=0.99, ge=0, lt=1)
    tau: float = Field(default=1e-3, gt=0)
    """Adaptivity (epsilon) of FedAdam, FedYogi and FedAdagrad (Reddi et al. 2021)."""


class SamplingConfig(BaseModel):
    model_config = _STRICT
    mode: Literal["all", "poisson", "count"] = "all"
    rate: float | None = Field(default=None, gt=0, le=1)
    count: int | None = Field(default=None, ge=1)
    min_parties: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _mode_fields(self) -> SamplingConfig:
        if self.mode == "poisson" and self.rate is None:
            raise ValueError("sampling.mode = 'poisson' needs sampling.rate")
        if self.mode == "count" and self.count is None:
            raise ValueError("sampling.mode = 'count' needs sampling.count")
        return self


class TrainingConfig(BaseModel):
    model_config = _STRICT
    local_epochs: int | None = Field(default=1, ge=1)
    local_steps: int | None = Field(default=None, ge=1)
    """Steps instead of epochs: set local_steps and leave local_epochs out."""
    batch_size: int = Field(default=32, ge=1)
    lr: float = Field(default=0.1, gt=0)
    momentum: float = Field(default=0.0, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)
    shuffle: bool = True
    lr_schedule: Literal["constant", "step", "exponential", "cosine"] = "constant"
    lr_gamma: float = Field(default=0.5, gt=0, le=1)
    lr_step_rounds: int = Field(default=10, ge=1)
    lr_min: float = Field(default=0.0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _steps_replace_epochs(cls, values: Any) -> Any:
        if isinstance(values, dict) and values.get("local_steps") is not None:
            if values.get("local_epochs") is not None:
                raise ValueError("set training.local_epochs or training.local_steps, not both")
            values = {**values, "local_epochs": None}
        return values

    def lr_at(self, round_number: int, rounds: int) -> float:
        """The local learning rate in round ``round_number`` (1-based) of ``rounds``."""
        import math

        done = round_number - 1
        if self.lr_schedule == "step":
            return self.lr * self.lr_gamma ** (done // self.lr_step_rounds)
        if self.lr_schedule == "exponential":
            return self.lr * self.lr_gamma**done
        if self.lr_schedule == "cosine":
            span = max(rounds - 1, 1)
            return self.lr_min + 0.5 * (self.lr - self.lr_min) * (
                1 + math.cos(math.pi * done / span)
            )
        return self.lr


class EvaluationConfig(BaseModel):
    model_config = _STRICT
    every: int = Field(default=1, ge=1)
    """Evaluate every N rounds (and always after the last)."""
    federated: bool = True
    """Each node evaluates the global model on its own test split and releases metrics."""
    dp_epsilon: float | None = Field(default=None, gt=0)
    """Release each node's metrics with DP noise at this epsilon per evaluation (charged
    to its ledger); None releases exact metrics (refused on capped data unless exempt)."""
    dp_loss_bound: float = Field(default=10.0, gt=0)
    """With dp_epsilon: each example's cross-entropy is clamped to this before summing."""


class NodeSettings(BaseModel):
    model_config = _STRICT
    home: str | None = None


class Job(BaseModel):
    model_config = _STRICT
    job: JobSection
    data: DataConfig
    model: ModelConfig
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    protection: ProtectionConfig = Field(default_factory=ProtectionConfig)
    nodes: dict[str, NodeSettings] = Field(default_factory=dict)
    """Per-party node settings in simulation, e.g. ``[nodes.cleveland] home = "..."``."""

    @model_validator(mode="after")
    def _dp_settings_across_sections(self) -> Job:
        # The trained model depends on how its inputs were scaled; per-party statistics of
        # the rows would shape it outside the guarantee. The schema's bounds are no data.
        if self.privacy.enabled and self.data.standardize is True:
            raise ValueError(
                "data.standardize = true fits each party's mean and standard deviation on its "
                "own rows, which differential privacy does not cover; use data.standardize = "
                '"bounds" (scales by the schema\'s declared min and max)'
            )
        if self.privacy.client_level and self.sampling.mode == "count":
            raise ValueError(
                'privacy.mode = "dpfedavg" needs Poisson client sampling (its accounting '
                'assumes it): use sampling.mode = "poisson" with sampling.rate, or "all"'
            )
        if self.privacy.distributed_noise and not self.protection.secagg:
            raise ValueError(
                'privacy.noise_placement = "parties" needs protection.mode = "secagg": each '
                "party's noise is too small to protect its update alone; only the masked sum "
                "carries enough"
            )
        return self

    def digest(self) -> str:
        """SHA-256 of the job's canonical JSON, hex: what an owner's approval names."""
        canonical = json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def job_id(self) -> str:
        """A stable id: the first 16 hex digits of :meth:`digest`."""
        return self.digest()[:16]


def parse_job(raw: dict[str, Any], source: str) -> Job:
    """Validate a parsed TOML document; errors become one :class:`JobFileError` line."""
    try:
        return Job.model_validate(raw)
    except ValidationError as exc:
        raise JobFileError(f"{source}: {validation_line(exc, Job)}") from None


def load_job(path: Path) -> Job:
    """Read and validate a job file."""
    try:
        raw = read_toml(path, JobFileError, "job file")
    except FileNotFoundError:
        raise JobFileError(f"{path}: job file not found") from None
    return parse_job(raw, str(path))


def resolve_path(value: str, base_dir: Path) -> Path:
    """A path from the job file, relative to the job file's folder."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base_dir / path)


def dump_job_toml(job: Job) -> str:
    """The resolved job as TOML (written into the run folder)."""
    import tomli_w

    data = job.model_dump(mode="json", by_alias=True, exclude_none=True)
    return tomli_w.dumps(data)
