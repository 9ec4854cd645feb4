"""The data layer: data declared, not guessed.

Loaders (CSV/Parquet by a declared schema, IDX, scikit-learn's bundled sets), the ``[data]``
section of the job file, simulation partitioners, each party's split and standardisation,
and :func:`build_federated_data`, which puts them together. pandas, pyarrow and
scikit-learn are imported only when a loader needs them.
"""

from accord.data.bundled import BUNDLED_NAMES, load_bundled
from accord.data.config import DataConfig, PartitionConfig, PartySource
from accord.data.encode import encode_table
from accord.data.federation import FederatedData, PartyData, build_federated_data
from accord.data.idx import load_idx_images_labels, read_idx
from accord.data.partition import (
    partition,
    partition_dirichlet,
    partition_iid,
    partition_quantity_skew,
    partition_shards,
)
from accord.data.schema import ColumnSpec, LabelSpec, TableSchema, feature_names, num_features
from accord.data.split import Standardizer, stratified_split
from accord.data.tables import load_table

__all__ = [
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
]
