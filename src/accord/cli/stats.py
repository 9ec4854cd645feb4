"""``accord stats``: DP statistics of a job's columns, per party and over all parties.

Each party releases each query from its training split (values as declared, before any
standardisation), with OpenDP noise at the query's epsilon, charged to its node's ledger
(dataset ``train``) when its node home has caps; the combined statistic is computed from
the parties' noisy releases only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from accord.data.federation import PartyData
    from accord.data.schema import TableSchema
    from accord.fl.node_agreement import NodeAgreement
    from accord.job import Job
    from accord.privacy.statistics import NoisyStatistic, StatisticQuery

STATS_DATASET = "train"
STATS_KIND = "statistics"


def parse_query(text: str) -> StatisticQuery:
    """``kind=mean,column=X1,lower=0,upper=120,epsilon=1`` as a :class:`StatisticQuery`."""
    from pydantic import ValidationError

    from accord.config_errors import validation_line
    from accord.errors import InputError
    from accord.privacy.statistics import StatisticQuery

    fields: dict[str, Any] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise InputError(f"--query {text!r}: {part!r} is not key=value")
        if key in fields:
            raise InputError(f"--query {text!r}: {key} given twice")
        fields[key] = value
    try:
        query = StatisticQuery.model_validate(fields)
    except ValidationError as exc:
        raise InputError(f"--query {text!r}: {validation_line(exc, StatisticQuery)}") from None
    if query.kind != "count" and query.column is None:
        raise InputError(f"--query {text!r}: a {query.kind} needs a column")
    if query.kind != "count":
        query.require_bounds()
    return query


def column_values(
    party: PartyData, schema: TableSchema | None, column: str | None
) -> NDArray[np.float64]:
    """The party's training values of ``column`` (an encoded feature name or the label)."""
    import numpy as np

    from accord.data.schema import feature_names
    from accord.errors import InputError

    if column is None:
        return np.zeros(len(party.y_train), dtype=np.float64)
    if schema is None:
        names: list[str] = []
        label = "label"
    else:
        names = feature_names(schema)
        label = schema.label.column
    if column == label:
        return np.asarray(party.y_train, dtype=np.float64)
    if column in names:
        x = np.asarray(party.x_train).reshape(len(party.y_train), -1)
        return np.asarray(x[:, names.index(column)], dtype=np.float64)
    known = ", ".join([*names, label])
    raise InputError(f"column {column!r} is not an encoded feature or the label ({known})")


@click.command("stats")
@click.argument("job", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--query",
    "queries",
    multiple=True,
    required=True,
    help="kind=count|sum|mean|histogram|quantile,column=NAME,lower=L,upper=U,epsilon=E "
    "[,bins=B][,quantile=Q][,alpha=A]; repeatable.",
)
@click.option(
    "--node-homes",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder holding one node home per party (default: [nodes.<party>] home in the job, "
    "else ~/.accord/nodes/<party>).",
)
def stats(job: Path, queries: tuple[str, ...], node_homes: Path | None) -> None:
    """DP statistics of JOB's columns, per party and combined over all parties."""
    from accord.data.federation import build_federated_data
    from accord.fl.runner import absolutize
    from accord.fl.simulation import node_home_path
    from accord.job import load_job
    from accord.privacy.caps import load_node_settings
    from accord.privacy.events import Adversary
    from accord.privacy.ledger import PrivacyLedger
    from accord.privacy.statistics import combine, release

    parsed = [parse_query(text) for text in queries]  # refuse a bad query before any data
    base_dir = job.resolve().parent
    loaded = absolutize(load_job(job), base_dir)
    job_id = loaded.job_id()
    # Statistics are of the declared values: no per-party standardisation.
    cfg = loaded.data.model_copy(update={"standardize": False})
    data = build_federated_data(cfg, loaded.job.seed, base_dir)
    schema = cfg.schema_
    for party in data.parties:  # every column must exist before anything is released
        for query in parsed:
            column_values(party, schema, query.column)
    homes = {p.name: node_home_path(loaded, p.name, node_homes, base_dir) for p in data.parties}
    agreements = _node_agreements(loaded, base_dir, homes, [q.kind for q in parsed])
    for query in parsed:
        releases: list[NoisyStatistic] = []
        for party in data.parties:
            values = column_values(party, schema, query.column)
            home = homes[party.name]
            agreement = agreements.get(party.name)
            if agreement is not None:
                agreement.check()  # before each release: refused once out of force
            statistic = release(query, values, party.name)
            caps = load_node_settings(home).caps_for(STATS_DATASET) if home.is_dir() else []
            if agreement is not None:
                caps += [c for c in agreement.caps() if c.dataset == STATS_DATASET]
            if caps:
                assert statistic.dp_event is not None
                PrivacyLedger(home).charge(
                    job_id,
                    0,
                    STATS_KIND,
                    STATS_DATASET,
                    statistic.dp_event,
                    Adversary.COORDINATOR_AND_RECIPIENTS,
                    caps,
                )
            releases.append(statistic)
            _print(statistic)
        _print(combine(releases))


def _node_agreements(
    job: Job, base_dir: Path, homes: dict[str, Path], kinds: list[str]
) -> dict[str, NodeAgreement]:
    """Each node's agreement for this statistics run, checked before any release."""
    from accord.fl.node_agreement import open_node_agreement
    from accord.fl.provision import coordinator_agreement
    from accord.privacy.caps import load_node_settings

    agreement = coordinator_agreement(job, base_dir, homes)
    digest = None if agreement is None else agreement.digest
    found: dict[str, NodeAgreement] = {}
    for party, home in homes.items():
        settings = load_node_settings(home) if home.is_dir() else None
        floor = 0 if settings is None else settings.min_colluding_parties
        guard = open_node_agreement(home, party, job, digest, floor, kinds)
        if guard is not None:
            found[party] = guard
    return found


def _print(statistic: NoisyStatistic) -> None:
    who = f"party {statistic.party}" if statistic.party else "combined (all parties)"
    query = statistic.query
    print(f"{query.describe()} | {who}")
    if isinstance(statistic.value, tuple):
        lower, upper = query.require_bounds()
        width = (upper - lower) / query.bins
        pairs = zip(statistic.values(), statistic.intervals(), strict=True)
        for index, (value, (low, high)) in enumerate(pairs):
            left, right = lower + index * width, lower + (index + 1) * width
            print(f"  bin [{left:g}, {right:g}] value {value:g} interval [{low:g}, {high:g}]")
        print(f"  intervals hold for all bins at once with probability {1 - statistic.alpha:g}")
    else:
        low, high = statistic.intervals()[0]
        print(f"  value {statistic.value:.6g}")
        print(f"  interval [{low:.6g}, {high:.6g}] ({1 - statistic.alpha:g})")
    print(f"  mechanism {statistic.mechanism}")
    print(f"  adjacency {statistic.adjacency}")
    scope = "per party" if statistic.party is None else "this party"
    print(f"  epsilon {statistic.epsilon:g} ({scope}, against coordinator_and_recipients)")
