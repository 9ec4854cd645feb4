"""Build every party's data for a job: load, hold out, partition, split, standardise.

``standardize = "bounds"`` is applied as each table is loaded: it depends only on the
schema, so the parties and the coordinator's test set get the same scale. ``standardize =
true`` is fitted per party, on its own training split, after the split.

Deterministic from the job seed: each random step draws from its own generator,
``np.random.default_rng([seed, TAG])``, so changing one step (say the partition kind)
does not move the rows another step picks (the server holdout, a party's split).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from accord.data.bundled import load_bundled
from accord.data.config import DataConfig
from accord.data.idx import load_idx_images_labels
from accord.data.partition import partition
from accord.data.schema import TableSchema
from accord.data.split import BoundsScaler, Standardizer, stratified_split
from accord.data.tables import load_table, table_format
from accord.errors import DataError, JobFileError
from accord.seeds import SeedTag, seeded

FloatArray = npt.NDArray[np.float32]
LabelArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class PartyData:
    """One party's own rows, already split (and scaled if the job asks)."""

    name: str
    x_train: FloatArray
    y_train: LabelArray
    x_test: FloatArray
    y_test: LabelArray


@dataclass
class FederatedData:
    """All parties of a simulation. ``server_test`` is the coordinator's test set, if any."""

    parties: list[PartyData]
    num_classes: int
    input_shape: tuple[int, ...]
    server_test: tuple[FloatArray, LabelArray] | None = None


def _resolve(base_dir: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base_dir / path


def _load_table(cfg: DataConfig, path: Path) -> tuple[FloatArray, LabelArray]:
    schema = cfg.schema_
    assert schema is not None  # DataConfig requires it for table sources
    kind = table_format(path)
    if kind != cfg.source:
        raise DataError(
            f'{path}: data.source = "{cfg.source}" but the file suffix says {kind}; '
            f'set data.source = "{kind}" or rename the file'
        )
    x, y = load_table(path, schema)
    if cfg.standardize == "bounds":
        x = BoundsScaler.from_schema(schema).transform(x)
    return x, y


def _load_pooled(cfg: DataConfig, base_dir: Path) -> tuple[FloatArray, LabelArray]:
    if cfg.source == "sklearn":
        assert cfg.name is not None
        return load_bundled(cfg.name)
    if cfg.source == "idx":
        assert cfg.images is not None and cfg.labels is not None
        return load_idx_images_labels(
            _resolve(base_dir, cfg.images), _resolve(base_dir, cfg.labels)
        )
    assert cfg.path is not None
    return _load_table(cfg, _resolve(base_dir, cfg.path))


def _load_party(cfg: DataConfig, index: int, base_dir: Path) -> tuple[str, FloatArray, LabelArray]:
    party = cfg.parties[index]
    if cfg.source == "idx":
        assert party.images is not None and party.labels is not None
        x, y = load_idx_images_labels(
            _resolve(base_dir, party.images), _resolve(base_dir, party.labels)
        )
    else:
        assert party.path is not None
        x, y = _load_table(cfg, _resolve(base_dir, party.path))
    return party.name, x, y


def _names(cfg: DataConfig, count: int, party_names: list[str] | None) -> list[str]:
    declared = [p.name for p in cfg.parties]
    if party_names is not None:
        if len(set(party_names)) != len(party_names):
            raise DataError(f"party names must be unique, got {party_names}")
        if declared and declared != list(party_names):
            raise DataError(
                f"data.parties names {declared} differ from the job's parties {party_names}; "
                "make them the same"
            )
        if len(party_names) != count:
            raise DataError(
                f"the job names {len(party_names)} parties but data.partition.parties = "
                f"{count}; make them agree"
            )
        return list(party_names)
    return declared or [f"party-{i + 1}" for i in range(count)]


def _server_test(
    cfg: DataConfig, seed: int, base_dir: Path, x: FloatArray, y: LabelArray
) -> tuple[FloatArray, LabelArray, tuple[FloatArray, LabelArray] | None]:
    """Rows left for the parties and the coordinator's test set (held out or from files)."""
    if cfg.test_images is not None and cfg.test_labels is not None:
        test = load_idx_images_labels(
            _resolve(base_dir, cfg.test_images), _resolve(base_dir, cfg.test_labels)
        )
        return x, y, test
    if cfg.server_holdout == 0:
        return x, y, None
    if cfg.server_holdout >= len(y):
        raise DataError(
            f"data.server_holdout = {cfg.server_holdout} leaves no rows for the parties "
            f"(the data set has {len(y)}); lower it"
        )
    chosen = seeded(seed, SeedTag.HOLDOUT).permutation(len(y))
    held = np.sort(chosen[: cfg.server_holdout])
    rest = np.sort(chosen[cfg.server_holdout :])
    return x[rest], y[rest], (x[held], y[held])


def _split_party(
    name: str, x: FloatArray, y: LabelArray, cfg: DataConfig, rng: np.random.Generator
) -> PartyData:
    if len(y) == 0:
        raise DataError(f"party '{name}' has 0 rows; give it data or use fewer parties")
    train, test = stratified_split(y, cfg.test_fraction, rng, cfg.stratify)
    x_train, x_test = x[train], x[test]
    if cfg.standardize is True:
        scaler = Standardizer.fit(x_train)
        x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    return PartyData(name, x_train, y[train], x_test, y[test])


def _num_classes(schema: TableSchema | None, labels: list[LabelArray]) -> int:
    if schema is not None:
        return schema.label.num_classes
    return max((int(y.max()) for y in labels if y.size), default=0) + 1


def build_federated_data(
    cfg: DataConfig, seed: int, base_dir: Path, party_names: list[str] | None = None
) -> FederatedData:
    """Every party's train/test data for a simulation, deterministic from ``seed``.

    Order: load; remove ``server_holdout`` random rows as the coordinator's test set (or
    read ``test_images``/``test_labels``); partition (natural: one source per party, all
    encoded with the same schema so that features line up); split each party with its own
    generator ``[seed, SeedTag.SPLIT, index]``; with ``standardize = true``, standardise each
    party with the statistics of its own training split (``"bounds"`` scaled the rows as they
    were loaded). Relative paths are resolved against ``base_dir``.

    Party names: natural partition, from ``data.parties`` (``party_names``, if given, must
    name the same parties; the order stays that of ``data.parties``); otherwise
    ``party_names``, else ``data.parties``' names, else ``party-1..party-N``.
    """
    if seed < 0:
        # numpy's SeedSequence refuses negative entries; say so in the job file's terms.
        raise JobFileError(f"job.seed = {seed}: the seed must be >= 0")
    base = Path(base_dir)
    server_test: tuple[FloatArray, LabelArray] | None = None
    if cfg.natural:
        loaded = [_load_party(cfg, i, base) for i in range(len(cfg.parties))]
        if party_names is not None and sorted(party_names) != sorted(n for n, _, _ in loaded):
            raise DataError(
                f"data.parties {[n for n, _, _ in loaded]} differ from the job's parties "
                f"{party_names}; make them the same"
            )
        if cfg.test_images is not None and cfg.test_labels is not None:
            server_test = load_idx_images_labels(
                _resolve(base, cfg.test_images), _resolve(base, cfg.test_labels)
            )
    else:
        x, y = _load_pooled(cfg, base)
        x, y, server_test = _server_test(cfg, seed, base, x, y)
        parts = partition(cfg.partition, y, seeded(seed, SeedTag.PARTITION))
        names = _names(cfg, len(parts), party_names)
        loaded = [(name, x[rows], y[rows]) for name, rows in zip(names, parts, strict=True)]

    shape = loaded[0][1].shape[1:]
    for name, x_party, _ in loaded:
        if x_party.shape[1:] != shape:
            raise DataError(
                f"party '{name}': examples of shape {x_party.shape[1:]} differ from party "
                f"'{loaded[0][0]}' ({shape}); all parties need the same shape"
            )
    if server_test is not None and server_test[0].shape[1:] != shape:
        raise DataError(
            f"data.test_images: examples of shape {server_test[0].shape[1:]} differ from the "
            f"parties' {shape}"
        )
    labels = [y_party for _, _, y_party in loaded]
    if server_test is not None:
        labels.append(server_test[1])
    parties = [
        _split_party(name, x_party, y_party, cfg, seeded(seed, SeedTag.SPLIT, i))
        for i, (name, x_party, y_party) in enumerate(loaded)
    ]
    return FederatedData(
        parties=parties,
        num_classes=_num_classes(cfg.schema_, labels),
        input_shape=tuple(int(d) for d in shape),
        server_test=server_test,
    )
