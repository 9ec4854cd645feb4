"""DP statistics: refusals, what each output states, interval coverage, ledger charges.

Coverage tests. OpenDP's samplers cannot be seeded, so each coverage test is a statistical
test: 2,000 independent releases at alpha = 0.1 must cover the true value (the statistic of
the data clamped to the declared bounds; for a quantile the grid quantile of the union) at
least ``1 - alpha - 0.03 = 0.87`` of the time. Every interval is valid at level 1 - alpha,
so the number of covering trials is at least Binomial(2000, 0.9) in distribution, and the
chance that a correct implementation fails (the false alarm) is at most
``P(Binomial(2000, 0.9) < 1740)``, computed exactly in :func:`test_the_false_alarm_rate`
(about 4e-6, below 1e-5). Most intervals here are conservative (Chernoff and union bounds),
so their real false alarm is far smaller.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from accord.errors import InputError, RefusedError
from accord.privacy.caps import load_node_settings
from accord.privacy.events import Adversary, event_to_json
from accord.privacy.ledger import PrivacyLedger
from accord.privacy.statistics import (
    ADJACENCY,
    NoisyStatistic,
    StatisticQuery,
    combine,
    grid_histogram,
    grid_quantile_index,
    release,
    true_statistic,
)
from tests.conftest import Invoke

TRIALS = 2000
ALPHA = 0.1
MIN_COVERED = math.ceil((1 - ALPHA - 0.03) * TRIALS)  # 1740

# Two parties' columns, fixed (the data are not random; only the noise is). Some values lie
# outside the bounds [0, 100], so clamping matters.
_RNG = np.random.default_rng(7)
PARTY_A: NDArray[np.float64] = np.concatenate([_RNG.normal(30, 15, 40), [-20.0, 150.0]])
PARTY_B: NDArray[np.float64] = np.concatenate([_RNG.normal(70, 10, 25), [130.0]])


def query(kind: str, **extra: Any) -> StatisticQuery:
    fields: dict[str, Any] = {
        "kind": kind,
        "column": "x",
        "lower": 0.0,
        "upper": 100.0,
        "bins": 8,
        "quantile": 0.5,
        "epsilon": 1.0,
        "alpha": ALPHA,
    }
    fields.update(extra)
    return StatisticQuery.model_validate(fields)


def covers(statistic: NoisyStatistic, truth: Any) -> bool:
    truths = list(truth) if isinstance(truth, tuple) else [truth]
    pairs = statistic.intervals()
    return len(pairs) == len(truths) and all(
        low <= t <= high for t, (low, high) in zip(truths, pairs, strict=True)
    )


def test_the_false_alarm_rate() -> None:
    """P(Binomial(2000, 0.9) < 1740), exactly: below 1e-5."""
    p = Fraction(9, 10)
    tail = sum(math.comb(TRIALS, k) * p**k * (1 - p) ** (TRIALS - k) for k in range(MIN_COVERED))
    assert float(tail) < 1e-5


@pytest.mark.parametrize("kind", ["count", "sum", "mean", "histogram", "quantile"])
def test_intervals_cover_the_clamped_truth_per_party_and_combined(kind: str) -> None:
    q = query(kind)
    truth_a = true_statistic(q, [PARTY_A])
    truth_all = true_statistic(q, [PARTY_A, PARTY_B])
    covered_a = covered_all = 0
    for _ in range(TRIALS):
        a = release(q, PARTY_A, "a")
        b = release(q, PARTY_B, "b")
        covered_a += covers(a, truth_a)
        covered_all += covers(combine([a, b]), truth_all)
    assert covered_a >= MIN_COVERED, (kind, covered_a)
    assert covered_all >= MIN_COVERED, (kind, covered_all)


def test_the_truth_is_the_statistic_of_the_clamped_data() -> None:
    clamped = np.clip(PARTY_A, 0, 100)
    assert true_statistic(query("sum"), [PARTY_A]) == pytest.approx(clamped.sum())
    assert true_statistic(query("mean"), [PARTY_A]) == pytest.approx(clamped.mean())
    hist = true_statistic(query("histogram"), [PARTY_A])
    assert sum(hist) == len(PARTY_A) and hist[0] >= 1 and hist[-1] >= 1


def test_the_combined_quantile_is_the_union_grid_quantile_not_an_average() -> None:
    low = np.full(30, 5.0)  # party a: everything in the first bin
    high = np.full(90, 95.0)  # party b: three times as many rows, in the last bin
    q = query("quantile", epsilon=50.0, bins=10)  # little noise
    a, b = release(q, low, "a"), release(q, high, "b")
    union = true_statistic(q, [low, high])
    assert union == 100.0  # the median of the union lies in the last bin
    combined = combine([a, b])
    assert combined.value == union
    assert combined.value != (a.value + b.value) / 2  # type: ignore[operator]
    hist = grid_histogram(np.concatenate([low, high]), 0, 100, 10)
    assert grid_quantile_index(hist, 0.5) == 9


@pytest.mark.parametrize("kind", ["sum", "mean", "histogram", "quantile"])
def test_a_missing_bound_is_refused_naming_the_query(kind: str) -> None:
    q = StatisticQuery.model_validate(
        {"kind": kind, "column": "age", "upper": 120.0, "epsilon": 1.0}
    )
    with pytest.raises(InputError, match=f"{kind}.* of age.*lower bound missing"):
        release(q, PARTY_A)


@pytest.mark.parametrize("kind", ["count", "sum", "mean", "histogram", "quantile"])
def test_every_release_states_mechanism_adjacency_epsilon_and_a_storable_event(
    kind: str,
) -> None:
    q = query(kind, epsilon=0.7)
    statistic = release(q, PARTY_A, "a")
    assert statistic.adjacency == ADJACENCY == "add or remove one record"
    assert statistic.epsilon == 0.7
    assert "OpenDP" in statistic.mechanism
    assert statistic.dp_event is not None
    event_to_json(statistic.dp_event)  # the ledger can store it
    combined = combine([statistic, release(q, PARTY_B, "b")])
    assert combined.dp_event is None and "OpenDP" in combined.mechanism


def test_events_cost_exactly_epsilon() -> None:
    import dp_accounting
    from dp_accounting.pld import pld_privacy_accountant

    for kind in ("count", "sum", "mean", "histogram"):
        event = release(query(kind, epsilon=0.8), PARTY_A).dp_event
        assert event is not None
        accountant = pld_privacy_accountant.PLDAccountant(value_discretization_interval=1e-4)
        accountant.compose(event)
        epsilon = accountant.get_epsilon(1e-9)
        assert epsilon == pytest.approx(0.8, abs=2e-3), kind
    assert release(query("sum", epsilon=0.8), PARTY_A).dp_event == (
        dp_accounting.LaplaceDpEvent(1 / 0.8)
    )


CAPS = """
party = "a"
[[caps]]
dataset = "train"
epsilon = 1.0
delta = 1e-6
"""


def test_the_ledger_refuses_a_statistic_over_the_cap(tmp_path: Path) -> None:
    home = tmp_path / "a"
    home.mkdir()
    (home / "node.toml").write_text(CAPS)
    caps = load_node_settings(home).caps_for("train")
    ledger = PrivacyLedger(home)
    first = release(query("mean", epsilon=0.6), PARTY_A).dp_event
    second = release(query("count", epsilon=0.6), PARTY_A).dp_event
    assert first is not None and second is not None
    node = Adversary.COORDINATOR_AND_RECIPIENTS
    ledger.charge("job", 0, "statistics", "train", first, node, caps)
    with pytest.raises(RefusedError, match="would spend epsilon"):
        ledger.charge("job", 0, "statistics", "train", second, node, caps)
    assert len(ledger.charges()) == 1


# -- accord stats ---------------------------------------------------------------------------

JOB = """
[job]
name = "stats"
rounds = 1
[data]
source = "csv"
test_fraction = 0.25
[data.partition]
kind = "natural"
[[data.parties]]
name = "a"
path = "a.csv"
[[data.parties]]
name = "b"
path = "b.csv"
[data.schema]
columns = [
  { name = "age", type = "numeric" },
  { name = "sex", type = "categorical", levels = [0, 1] },
]
label = { column = "y", classes = [0, 1] }
[model]
kind = "logreg"
"""


def write_job(root: Path) -> Path:
    for name, shift in (("a", 0), ("b", 20)):
        rows = ["age,sex,y"] + [f"{30 + shift + i % 40},{i % 2},{i % 3 == 0:d}" for i in range(60)]
        (root / f"{name}.csv").write_text("\n".join(rows) + "\n")
    job = root / "job.toml"
    job.write_text(JOB)
    return job


def test_stats_prints_each_party_and_combined(tmp_path: Path, invoke: Invoke) -> None:
    job = write_job(tmp_path)
    result = invoke(
        "stats",
        str(job),
        "--query",
        "kind=mean,column=age,lower=0,upper=120,epsilon=1",
        "--query",
        "kind=histogram,column=sex=1,lower=0,upper=1,bins=2,epsilon=1",
        "--query",
        "kind=quantile,column=y,lower=0,upper=1,bins=2,quantile=0.5,epsilon=1",
        "--node-homes",
        str(tmp_path / "homes"),
    )
    assert result.code == 0, result.err
    blocks = result.out.count("combined (all parties)")
    assert blocks == 3 and result.out.count("| party a") == 3
    for word in ("mechanism", "adjacency add or remove one record", "epsilon 1", "interval"):
        assert result.out.count(word) >= 9, word


def test_stats_with_a_missing_bound_is_one_line_exit_2(tmp_path: Path, invoke: Invoke) -> None:
    job = write_job(tmp_path)
    result = invoke("stats", str(job), "--query", "kind=sum,column=age,lower=0,epsilon=1")
    assert result.code == 2
    assert result.err.count("\n") == 1 and "upper bound missing" in result.err


def test_stats_over_the_cap_is_one_line_exit_3(tmp_path: Path, invoke: Invoke) -> None:
    job = write_job(tmp_path)
    home = tmp_path / "homes" / "a"
    home.mkdir(parents=True)
    (home / "node.toml").write_text(CAPS)
    args = ["stats", str(job), "--node-homes", str(tmp_path / "homes"), "--query"]
    first = invoke(*args, "kind=count,epsilon=0.6")
    assert first.code == 0, first.err
    second = invoke(*args, "kind=count,epsilon=0.6")
    assert second.code == 3
    assert second.err.count("\n") == 1 and "would spend epsilon" in second.err
    assert len(PrivacyLedger(home).charges()) == 1
