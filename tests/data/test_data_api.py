"""The public surface of accord.data, and what importing it costs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import accord.data

PUBLIC = {
    "BUNDLED_NAMES",
    "ColumnSpec",
    "DataConfig",
    "FederatedData",
    "LabelSpec",
    "PartitionConfig",
    "PartyData",
    "PartySource",
    "Standardizer",
    "TableSchema",
    "build_federated_data",
    "encode_table",
    "feature_names",
    "load_bundled",
    "load_idx_images_labels",
    "load_table",
    "num_features",
    "partition",
    "partition_dirichlet",
    "partition_iid",
    "partition_quantity_skew",
    "partition_shards",
    "read_idx",
    "stratified_split",
}


def test_public_names() -> None:
    assert set(accord.data.__all__) == PUBLIC
    assert all(hasattr(accord.data, name) for name in PUBLIC)


def test_import_is_light() -> None:
    # Process start-up time is benchmarked: heavy libraries load only when a loader runs.
    code = (
        "import sys, accord.data; "
        "print(sorted(m for m in ('pandas', 'pyarrow', 'sklearn', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_no_unsafe_deserialisation_in_source() -> None:
    source = Path(accord.data.__file__).parent
    for path in source.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "pick" + "le" not in text.lower(), path
        assert "allow_" + "pickle" not in text, path
