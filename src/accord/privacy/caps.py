"""A node's privacy settings: the caps and exemptions in its ``node.toml``.

The data owner writes them in the node home, next to the ``party`` line::

    party = "cleveland"

    [[caps]]
    dataset = "train"       # the party's training split
    epsilon = 3.0
    delta = 1e-5
    adversary = "coordinator_and_recipients"   # the default, and the stronger

    [[caps]]
    dataset = "test"        # a test split may be its own dataset, with its own cap
    epsilon = 1.0
    delta = 1e-6

    [exempt]
    kinds = ["metrics"]     # release kinds allowed on a capped dataset without a DP event

    min_colluding_parties = 2   # distributed DP must hold against 2 colluding parties

Each cap says: every release from ``dataset``, composed, costs at most ``epsilon`` at
``delta`` against ``adversary``. ``"coordinator_and_recipients"`` counts only noise added
on this node (a coordinator-noised release is treated as non-private);
``"recipients_only"`` trusts the coordinator, so central DP counts too. A dataset may carry
several caps; a release must satisfy all of them.

An exempt kind may leave a capped dataset without a DP mechanism; the ledger records it as
"not covered by epsilon" and every report says so.

These settings belong to the data owner: they are read only from the node home, and no
job file, agreement or coordinator message can override or loosen them (an agreement may
add caps of its own, never remove these). Unknown keys are refused, never ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from accord.config_errors import read_toml, validation_line
from accord.errors import InputError
from accord.privacy.events import Adversary

NODE_FILE = "node.toml"


class CapBudget(BaseModel):
    """At most ``epsilon`` at ``delta`` against ``adversary`` (an agreement's cap on a
    dataset it names, or the budget part of a node's :class:`Cap`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epsilon: float = Field(ge=0)
    delta: float = Field(ge=0, lt=1)
    adversary: Adversary = Adversary.COORDINATOR_AND_RECIPIENTS

    @field_validator("epsilon")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


class Cap(CapBudget):
    """At most ``epsilon`` at ``delta`` against ``adversary`` for all releases of ``dataset``."""

    dataset: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")

    def describe(self) -> str:
        """``epsilon 3 at delta 1e-05 against coordinator_and_recipients``."""
        return f"epsilon {self.epsilon:g} at delta {self.delta:g} against {self.adversary.value}"


class _Exempt(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kinds: list[str] = Field(default_factory=list)


class _NodeFile(BaseModel):
    """The whole of ``node.toml`` as far as this module knows it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    party: str | None = None
    caps: list[Cap] = Field(default_factory=list)
    exempt: _Exempt = Field(default_factory=_Exempt)
    min_colluding_parties: int = Field(default=0, ge=0)


@dataclass(frozen=True)
class NodePrivacySettings:
    """The caps and exemptions of one node (empty when ``node.toml`` names none)."""

    party: str | None = None
    caps: list[Cap] = field(default_factory=list)
    exempt_kinds: frozenset[str] = frozenset()
    min_colluding_parties: int = 0
    """Distributed DP must hold against at least this many parties colluding with the
    coordinator: a job with a smaller ``privacy.colluding_parties`` is refused."""

    def caps_for(self, dataset: str) -> list[Cap]:
        """Every cap on ``dataset`` (an empty list: the dataset is not capped)."""
        return [cap for cap in self.caps if cap.dataset == dataset]

    def is_exempt(self, kind: str) -> bool:
        return kind in self.exempt_kinds

    @property
    def datasets(self) -> list[str]:
        """Capped datasets, in the order ``node.toml`` names them first."""
        return list(dict.fromkeys(cap.dataset for cap in self.caps))


def load_node_settings(home: Path) -> NodePrivacySettings:
    """Read ``home/node.toml``; a home without one has no caps.

    Any problem (not TOML, an unknown key, a bad value) is one :class:`InputError` line that
    names the file and the key.
    """
    path = home / NODE_FILE
    try:
        raw = read_toml(path, InputError, "node file")
    except FileNotFoundError:
        return NodePrivacySettings()
    try:
        parsed = _NodeFile.model_validate(raw)
    except ValidationError as exc:
        raise InputError(f"{path}: {validation_line(exc, _NodeFile)}") from None
    return NodePrivacySettings(
        party=parsed.party,
        caps=list(parsed.caps),
        exempt_kinds=frozenset(parsed.exempt.kinds),
        min_colluding_parties=parsed.min_colluding_parties,
    )
