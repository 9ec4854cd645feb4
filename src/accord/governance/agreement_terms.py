"""The terms of a data-sharing agreement: the schema of ``AGREEMENT.toml``.

Every section refuses unknown keys, so a clause this release does not know is refused,
never ignored (a node must not release under a term it cannot enforce). The schema fills in
defaults only for reading; signatures cover the terms exactly as written (see
``agreement.py``), so a newer schema with new defaults does not void old signatures.

See ``docs/agreements.md`` for a complete annotated example.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from accord.privacy.caps import CapBudget

_STRICT = ConfigDict(extra="forbid", frozen=True)
_NAME = r"^[A-Za-z0-9_.-]+$"

Role = Literal["data_owner", "model_owner", "coordinator"]
Sensitivity = Literal["public", "internal", "confidential", "special_category"]
ModelKind = Literal["logreg", "mlp", "cnn", "custom"]
Strategy = Literal["fedavg", "fedavgm", "fedprox", "fedadam", "fedyogi", "fedadagrad", "scaffold"]
Query = Literal["count", "sum", "mean", "histogram", "quantile"]
Aggregation = Literal["none", "secagg", "ckks", "secagg_or_ckks"]
ScoringModel = Literal["linear", "logistic"]


class AgreementHeader(BaseModel):
    """``[agreement]``: what it is, what for, and when it holds."""

    model_config = _STRICT
    id: str = Field(pattern=_NAME, max_length=100)
    version: int = Field(ge=1)
    title: str = Field(min_length=1, max_length=300)
    purposes: list[str] = Field(min_length=1)
    """The purposes a job may state in ``[job] purpose``; any other is refused."""
    valid_from: datetime
    valid_until: datetime

    @field_validator("valid_from", "valid_until")
    @classmethod
    def _with_offset(cls, value: datetime) -> datetime:
        # A local time means a different instant in every hospital's time zone.
        if value.tzinfo is None:
            raise ValueError("needs a UTC offset (e.g. 2026-01-01T00:00:00Z)")
        return value

    @model_validator(mode="after")
    def _window(self) -> AgreementHeader:
        if self.valid_until <= self.valid_from:
            raise ValueError("agreement.valid_until must be after agreement.valid_from")
        if len(set(self.purposes)) != len(self.purposes) or not all(self.purposes):
            raise ValueError("agreement.purposes must be distinct, non-empty strings")
        return self


class PartyTerm(BaseModel):
    """``[[parties]]``: a signatory, its role and its Ed25519 identity key line."""

    model_config = _STRICT
    name: str = Field(pattern=_NAME, max_length=64)
    role: Role
    key: str
    """``ed25519:<base64>``, as ``accord keys new`` prints it."""

    @field_validator("key")
    @classmethod
    def _key_line(cls, value: str) -> str:
        from accord.errors import InputError
        from accord.governance.identity import parse_public_key_line, public_key_line

        try:
            # The canonical line, so that comparing keys is comparing strings.
            return public_key_line(parse_public_key_line(value, "key"))
        except InputError as exc:
            raise ValueError(str(exc)) from None


class DpCapTerm(CapBudget):
    """A dataset's DP cap: all releases from it, composed, within epsilon at delta against
    the adversary. Set by the dataset's owner; it joins the caps in the owner's node.toml."""


class DatasetTerm(BaseModel):
    """``[[datasets]]``: one owner's dataset. ``name`` is what the owner's node calls it:
    ``train`` (the rows it trains on) or ``test`` (its test split)."""

    model_config = _STRICT
    owner: str = Field(pattern=_NAME)
    name: str = Field(pattern=_NAME)
    description: str = ""
    columns: list[str] = Field(default_factory=list)
    sensitivity: Sensitivity
    dp_cap: DpCapTerm | None = None


class TrainTerms(BaseModel):
    model_config = _STRICT
    model_kinds: list[ModelKind] = Field(min_length=1)
    strategies: list[Strategy] = Field(min_length=1)


class EvaluateTerms(BaseModel):
    model_config = _STRICT


class StatisticsTerms(BaseModel):
    model_config = _STRICT
    queries: list[Query] = Field(min_length=1)


class EncryptedScoringTerms(BaseModel):
    model_config = _STRICT
    models: list[ScoringModel] = Field(min_length=1)


class Operations(BaseModel):
    """``[operations.*]``: an operation not listed is not permitted."""

    model_config = _STRICT
    train: TrainTerms | None = None
    evaluate: EvaluateTerms | None = None
    statistics: StatisticsTerms | None = None
    encrypted_scoring: EncryptedScoringTerms | None = None


class Protections(BaseModel):
    """``[protections]``: what every job must run with."""

    model_config = _STRICT
    aggregation: Aggregation = "none"
    """``secagg``, ``ckks`` or ``secagg_or_ckks``: updates leave only masked or encrypted."""
    min_parties: int = Field(default=1, ge=1)
    """No aggregate of fewer parties. A node verifies this itself only under secure
    aggregation (it counts the roster members that signed the survivor list)."""
    min_parties_trust_coordinator: bool = False
    """Allow ``min_parties`` above 1 under ``none`` or ``ckks``, where only the coordinator
    knows how many parties an aggregate holds: the clause is then contractual."""
    dp_required: bool = False
    """Every job runs with differential privacy (``privacy.mode`` other than ``none``)."""
    min_colluding_parties: int = Field(default=0, ge=0)
    """Distributed DP must hold against at least this many parties colluding with the
    coordinator (``privacy.colluding_parties``)."""


class Outputs(BaseModel):
    """``[outputs]``: who receives what. Contractual: a node cannot see who receives."""

    model_config = _STRICT
    final_model: list[str] = Field(default_factory=list)
    metrics: list[str] = Field(default_factory=list)
    statistics: list[str] = Field(default_factory=list)
    intermediate_models: bool = False
    """Whether the global models between rounds may be kept or passed on."""


class CodeTerms(BaseModel):
    """``[code]``: ``builtin`` models only, or also the task directories whose hashes
    are listed (``accord task hash DIR``)."""

    model_config = _STRICT
    allowed: Literal["builtin", "approved"] = "builtin"
    task_hashes: list[str] = Field(default_factory=list)

    @field_validator("task_hashes")
    @classmethod
    def _hashes(cls, values: list[str]) -> list[str]:
        for value in values:
            if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
                raise ValueError(f"{value!r} is not a lowercase SHA-256 hex digest")
        return values

    @model_validator(mode="after")
    def _hashes_only_when_approved(self) -> CodeTerms:
        if self.allowed == "builtin" and self.task_hashes:
            raise ValueError('code.task_hashes needs code.allowed = "approved"')
        if self.allowed == "approved" and not self.task_hashes:
            raise ValueError('code.allowed = "approved" needs code.task_hashes')
        return self


class Retention(BaseModel):
    """``[retention]``: how long run artefacts are kept. Contractual."""

    model_config = _STRICT
    run_artifacts_days: int = Field(ge=0)
    on_expiry: Literal["delete", "archive"] = "delete"


class Terms(BaseModel):
    """The whole agreement."""

    model_config = _STRICT
    agreement: AgreementHeader
    parties: list[PartyTerm] = Field(min_length=2)
    datasets: list[DatasetTerm] = Field(default_factory=list)
    operations: Operations
    protections: Protections = Field(default_factory=Protections)
    outputs: Outputs = Field(default_factory=Outputs)
    code: CodeTerms = Field(default_factory=CodeTerms)
    retention: Retention

    @model_validator(mode="after")
    def _consistent(self) -> Terms:
        names = [p.name for p in self.parties]
        if len(set(names)) != len(names):
            raise ValueError("parties: a name is listed twice")
        if len({p.key for p in self.parties}) != len(names):
            raise ValueError("parties: one key is listed under two names")
        if sum(p.role == "coordinator" for p in self.parties) != 1:
            raise ValueError("parties: exactly one party has role = 'coordinator'")
        owners = {p.name for p in self.parties if p.role == "data_owner"}
        if not owners:
            raise ValueError("parties: no party has role = 'data_owner'")
        seen: set[tuple[str, str]] = set()
        for dataset in self.datasets:
            if dataset.owner not in owners:
                raise ValueError(f"datasets: {dataset.owner!r} is not a data_owner party")
            if (dataset.owner, dataset.name) in seen:
                raise ValueError(f"datasets: {dataset.owner}/{dataset.name} is listed twice")
            seen.add((dataset.owner, dataset.name))
        outputs = self.outputs
        for field, listed in (
            ("final_model", outputs.final_model),
            ("metrics", outputs.metrics),
            ("statistics", outputs.statistics),
        ):
            strangers = sorted(set(listed) - set(names))
            if strangers:
                raise ValueError(f"outputs.{field}: {strangers} are not parties")
        if self.protections.min_parties > len(owners):
            raise ValueError(
                f"protections.min_parties = {self.protections.min_parties} but only "
                f"{len(owners)} data owners sign"
            )
        return self

    def party(self, name: str) -> PartyTerm | None:
        return next((p for p in self.parties if p.name == name), None)

    @property
    def coordinator(self) -> str:
        return next(p.name for p in self.parties if p.role == "coordinator")

    def datasets_of(self, owner: str) -> list[DatasetTerm]:
        return [d for d in self.datasets if d.owner == owner]
