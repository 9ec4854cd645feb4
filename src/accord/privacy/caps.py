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

import difflib
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from accord.errors import InputError
from accord.privacy.events import Adversary

NODE_FILE = "node.toml"


class Cap(BaseModel):
    """At most ``epsilon`` at ``delta`` against ``adversary`` for all releases of ``dataset``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    epsilon: float = Field(ge=0)
    delta: float = Field(ge=0, lt=1)
    adversary: Adversary = Adversary.COORDINATOR_AND_RECIPIENTS

    @field_validator("epsilon")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

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


@dataclass(frozen=True)
class NodePrivacySettings:
    """The caps and exemptions of one node (empty when ``node.toml`` names none)."""

    party: str | None = None
    caps: list[Cap] = field(default_factory=list)
    exempt_kinds: frozenset[str] = frozenset()

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
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return NodePrivacySettings()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read it ({exc})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None
    try:
        parsed = _NodeFile.model_validate(raw)
    except ValidationError as exc:
        # An unknown key first: a misspelt key also makes the real one look missing.
        errors = sorted(exc.errors(), key=lambda error: error["type"] != "extra_forbidden")
        first = errors[0]
        more = exc.error_count() - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise InputError(f"{path}: {_describe(dict(first))}{suffix}") from None
    return NodePrivacySettings(
        party=parsed.party,
        caps=list(parsed.caps),
        exempt_kinds=frozenset(parsed.exempt.kinds),
    )


def _describe(error: dict[str, Any]) -> str:
    """One line for pydantic's error: the key (``caps[0].epsilon``), what is wrong."""
    key = ""
    for part in error["loc"]:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    key = key or "(top level)"
    if error["type"] == "extra_forbidden":
        name = str(error["loc"][-1])
        allowed = _allowed_keys([p for p in error["loc"][:-1] if not isinstance(p, int)])
        close = difflib.get_close_matches(name, allowed, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"allowed keys: {', '.join(allowed)}"
        return f"unknown key {key!r}; {hint}"
    if error["type"] == "missing":
        return f"{key}: required key is missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    if "input" not in error or isinstance(error["input"], dict | list):
        return f"{key}: {message}"
    return f"{key}: {message} (got {error['input']!r})"


def _allowed_keys(path: list[Any]) -> list[str]:
    models: dict[str, type[BaseModel]] = {"": _NodeFile, "caps": Cap, "exempt": _Exempt}
    model = models.get(str(path[0]) if path else "", _NodeFile)
    return sorted(model.model_fields)
