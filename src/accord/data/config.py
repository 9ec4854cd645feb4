"""The ``[data]`` section of the job file: where the data is and how it is shared out.

Unknown keys are refused, and so is a key that the chosen source would ignore (a ``path``
with ``source = "sklearn"``): a setting that silently does nothing is a guess waiting to
go wrong. Relative paths are resolved against the job file's folder by
:func:`accord.data.federation.build_federated_data`.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from accord.data.bundled import BUNDLED_NAMES
from accord.data.schema import TableSchema
from accord.data.split import BoundsScaler
from accord.errors import DataError


class PartitionConfig(BaseModel):
    """How a simulation shares one pooled data set among parties (or ``natural``: it does not).

    ``parties`` is required unless ``kind = "natural"``; :class:`DataConfig` checks it, so
    that ``PartitionConfig()`` stays a valid default.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["iid", "dirichlet", "shards", "quantity", "natural"] = "iid"
    parties: int | None = Field(None, ge=1)
    alpha: float = Field(0.5, gt=0, allow_inf_nan=False)
    shards_per_party: int = Field(2, ge=1)
    min_rows: int = Field(2, ge=1)


class PartySource(BaseModel):
    """One party: its name, and under a natural partition its own file(s)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    path: str | None = None
    images: str | None = None
    labels: str | None = None

    @property
    def has_files(self) -> bool:
        return any(v is not None for v in (self.path, self.images, self.labels))


def _refuse(cfg: DataConfig, fields: tuple[str, ...], why: str) -> None:
    for name in fields:
        if getattr(cfg, name) is not None:
            key = "schema" if name == "schema_" else name
            raise ValueError(f"data.{key} is not used {why}; remove it")


class DataConfig(BaseModel):
    """The ``[data]`` section. ``schema`` is required for csv/parquet sources."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Literal["sklearn", "csv", "parquet", "idx"]
    name: str | None = None
    path: str | None = None
    images: str | None = None
    labels: str | None = None
    test_images: str | None = None
    test_labels: str | None = None
    schema_: TableSchema | None = Field(None, alias="schema")
    partition: PartitionConfig = Field(default_factory=PartitionConfig)
    parties: list[PartySource] = []
    test_fraction: float = Field(0.25, ge=0.0, lt=1.0)
    stratify: bool = True
    standardize: bool | Literal["bounds"] = False
    """``true``: each party's own mean and std; ``"bounds"``: the schema's declared min/max."""
    server_holdout: int = Field(0, ge=0)

    @property
    def natural(self) -> bool:
        return self.partition.kind == "natural"

    @field_validator("standardize", mode="before")
    @classmethod
    def _standardize_choice(cls, value: object) -> object:
        # Left to the union, a wrong value gets one error per member ("a valid boolean",
        # "'bounds'") under locations that name no key of the job file.
        if isinstance(value, bool) or value == "bounds":
            return value
        raise ValueError('choose true, false or "bounds"')

    @model_validator(mode="after")
    def _check(self) -> Self:
        self._check_parties()
        if self.source == "sklearn":
            self._check_sklearn()
        elif self.source == "idx":
            self._check_idx()
        else:
            self._check_table()
        if self.standardize == "bounds":
            self._check_bounds()
        # "bounds" is one scale for everyone, so only per-party statistics rule out a
        # coordinator's test set.
        if self.standardize is True and self.test_images is not None:
            raise ValueError(
                "data.test_images cannot be combined with data.standardize = true: each party "
                "standardises with its own statistics, so there is no single scale for the "
                "coordinator's test set"
            )
        if self.server_holdout:
            if self.natural:
                raise ValueError(
                    "data.server_holdout needs a pooled data set; a natural partition has none"
                )
            if self.standardize is True:
                raise ValueError(
                    "data.server_holdout cannot be combined with data.standardize = true: each "
                    "party standardises with its own statistics, so there is no single scale "
                    'for the coordinator\'s test set; standardize = "bounds" gives one'
                )
            if self.test_images is not None:
                raise ValueError(
                    "data.server_holdout and data.test_images both define the coordinator's "
                    "test set; keep one"
                )
        return self

    def _check_parties(self) -> None:
        names = [p.name for p in self.parties]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"data.parties: names must be unique, repeated: {', '.join(dupes)}")
        if self.natural:
            if not self.parties:
                raise ValueError(
                    'data.parties is required for partition.kind = "natural": one entry '
                    "(name and file) per party"
                )
            if self.partition.parties not in (None, len(self.parties)):
                raise ValueError(
                    f"data.partition.parties = {self.partition.parties} but data.parties lists "
                    f"{len(self.parties)}; remove partition.parties or make them agree"
                )
            return
        if self.partition.parties is None:
            raise ValueError(
                f'data.partition.parties is required for kind = "{self.partition.kind}": '
                "how many parties share the data"
            )
        with_files = [p.name for p in self.parties if p.has_files]
        if with_files:
            raise ValueError(
                f"data.parties: '{with_files[0]}' has files, but partition.kind = "
                f'"{self.partition.kind}" splits one data set; give only names, or use '
                'kind = "natural"'
            )
        if self.parties and len(self.parties) != self.partition.parties:
            raise ValueError(
                f"data.parties lists {len(self.parties)} names but data.partition.parties = "
                f"{self.partition.parties}; make them agree"
            )

    def _check_sklearn(self) -> None:
        if self.natural:
            raise ValueError('source = "sklearn" has no natural partition; choose another kind')
        if self.name is None:
            raise ValueError(f'data.name is required for source = "sklearn" ({BUNDLED_NAMES})')
        if self.name not in BUNDLED_NAMES:
            raise ValueError(
                f"data.name: unknown bundled set '{self.name}'; choose one of "
                f"{', '.join(BUNDLED_NAMES)}"
            )
        fields = ("path", "images", "labels", "test_images", "test_labels", "schema_")
        _refuse(self, fields, 'with source = "sklearn"')

    def _check_idx(self) -> None:
        _refuse(self, ("name", "path", "schema_"), 'with source = "idx"')
        if (self.test_images is None) != (self.test_labels is None):
            raise ValueError("data.test_images and data.test_labels go together; set both or none")
        if self.natural:
            _refuse(self, ("images", "labels"), "with a natural partition (set them per party)")
            for party in self.parties:
                if party.images is None or party.labels is None or party.path is not None:
                    raise ValueError(
                        f"data.parties '{party.name}': an IDX party needs images and labels "
                        "(and no path)"
                    )
        elif self.images is None or self.labels is None:
            raise ValueError('data.images and data.labels are required for source = "idx"')

    def _check_table(self) -> None:
        why = f'with source = "{self.source}"'
        _refuse(self, ("name", "images", "labels", "test_images", "test_labels"), why)
        if self.schema_ is None:
            raise ValueError(
                f'data.schema is required for source = "{self.source}": declare the feature '
                "columns and the label"
            )
        if self.natural:
            _refuse(self, ("path",), "with a natural partition (set it per party)")
            for party in self.parties:
                if party.path is None or party.images is not None or party.labels is not None:
                    raise ValueError(
                        f"data.parties '{party.name}': a {self.source} party needs a path "
                        "(and no images/labels)"
                    )
        elif self.path is None:
            raise ValueError(f'data.path is required for source = "{self.source}"')

    def _check_bounds(self) -> None:
        if self.schema_ is None:
            raise ValueError(
                'data.standardize = "bounds" scales by the min and max declared in '
                f'data.schema, and source = "{self.source}" has none; use a csv or parquet '
                "source with a schema, or standardize = false"
            )
        try:
            BoundsScaler.from_schema(self.schema_)
        except DataError as exc:
            raise ValueError(f'data.standardize = "bounds": {exc}') from None
