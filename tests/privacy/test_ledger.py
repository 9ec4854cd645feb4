"""The privacy ledger: charges within every cap, refusals that store nothing, adversaries,
exempt releases, concurrent charges, and ``accord budget show``."""

from __future__ import annotations

import math
import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

import dp_accounting
import pytest
from dp_accounting.pld import PLDAccountant

from accord.errors import AccordError, RefusedError
from accord.privacy.caps import Cap, load_node_settings
from accord.privacy.events import Adversary
from accord.privacy.ledger import PrivacyLedger
from tests.conftest import Invoke

NODE = Adversary.COORDINATOR_AND_RECIPIENTS  # noise added on the node
CENTRAL = Adversary.RECIPIENTS_ONLY  # noise added by the coordinator

CAPS = """party = "cleveland"

[[caps]]
dataset = "train"
epsilon = 3.0
delta = 1e-5
adversary = "{adversary}"

[exempt]
kinds = ["metrics"]
"""

# At delta 1e-5 (PLD): Gaussian(2.5) costs 1.55 once, 2.29 twice, 2.88 three times, over 3
# four times; Gaussian(1.5) costs 2.75, more than half of a cap of 3.
CHEAP = dp_accounting.GaussianDpEvent(2.5)
DEAR = dp_accounting.GaussianDpEvent(1.5)
SAMPLED = dp_accounting.PoissonSampledDpEvent(0.2, dp_accounting.GaussianDpEvent(1.5))


def make_home(root: Path, adversary: str = "coordinator_and_recipients") -> Path:
    home = root / "cleveland"
    home.mkdir(parents=True, exist_ok=True)
    (home / "node.toml").write_text(CAPS.format(adversary=adversary))
    return home


def train_caps(home: Path) -> list[Cap]:
    return load_node_settings(home).caps_for("train")


def direct_pld_epsilon(events: list[Any], delta: float) -> float:
    """dp-accounting called directly: compose each event in turn, then ask for epsilon."""
    accountant = PLDAccountant(
        dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE, value_discretization_interval=1e-4
    )
    for event in events:
        accountant.compose(event)
    return float(accountant.get_epsilon(delta))


def test_ledger_is_sqlite_in_wal_mode_in_the_home(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    PrivacyLedger(home)
    path = home / "state" / "ledger.sqlite3"
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        columns = [row[1] for row in conn.execute("PRAGMA table_info(charges)")]
    assert columns == [
        "id",
        "job_id",
        "round",
        "release_kind",
        "dataset",
        "adversary",
        "event_json",
        "covered",
        "created_at",
    ]


def test_charges_within_the_cap_and_spent_equals_dp_accounting(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    ledger = PrivacyLedger(home)
    caps = train_caps(home)
    events = [CHEAP, SAMPLED, CHEAP]
    receipts = [
        ledger.charge("job1", r, "update", "train", event, NODE, caps)
        for r, event in enumerate(events, start=1)
    ]
    spent = ledger.spent("train", caps[0])
    assert spent == pytest.approx(direct_pld_epsilon(events, 1e-5), abs=1e-6)
    assert receipts[-1].spends[0].epsilon == pytest.approx(spent, abs=1e-12)
    assert receipts[-1].spends[0].remaining == pytest.approx(3.0 - spent, abs=1e-12)
    assert receipts[0].spends[0].epsilon == pytest.approx(
        direct_pld_epsilon([CHEAP], 1e-5), abs=1e-6
    )
    assert receipts[-1].accountant == "pld" == ledger.accountant_for("train")
    stored = ledger.charges("job1")
    assert [c.round for c in stored] == [1, 2, 3]
    assert [c.event for c in stored] == events
    assert all(c.covered and c.adversary is NODE and c.dataset == "train" for c in stored)
    assert stored[0].created_at.endswith("+00:00")
    assert ledger.charges("other job") == []


def test_the_charge_that_would_cross_the_cap_is_refused_and_not_stored(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    ledger = PrivacyLedger(home)
    caps = train_caps(home)
    for r in (1, 2, 3):
        ledger.charge("job1", r, "update", "train", CHEAP, NODE, caps)
    before = ledger.spent("train", caps[0])
    with pytest.raises(RefusedError) as info:
        ledger.charge("job1", 4, "update", "train", CHEAP, NODE, caps)
    message = str(info.value)
    would_be = direct_pld_epsilon([CHEAP] * 4, 1e-5)
    assert "\n" not in message
    for part in (
        "'cleveland'",
        "'train'",
        "epsilon 3 at delta 1e-05 against coordinator_and_recipients",
        f"already spent {before:.6f}",
        f"would spend epsilon {would_be:.6f}",
    ):
        assert part in message
    assert info.value.exit_code == 3
    assert len(ledger.charges()) == 3
    assert ledger.spent("train", caps[0]) == before


def test_several_caps_on_one_dataset_must_all_hold(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    ledger = PrivacyLedger(home)
    loose = Cap(dataset="train", epsilon=10.0, delta=1e-5)
    tight = Cap(dataset="train", epsilon=2.0, delta=1e-8)
    receipt = ledger.charge("job1", 1, "update", "train", CHEAP, NODE, [loose])
    assert [s.cap for s in receipt.spends] == [loose]
    with pytest.raises(RefusedError, match="delta 1e-08"):
        ledger.charge("job1", 2, "update", "train", CHEAP, NODE, [loose, tight])
    assert len(ledger.charges()) == 1


def test_coordinator_noised_release_needs_a_cap_that_trusts_the_coordinator(
    tmp_path: Path,
) -> None:
    strict_home = make_home(tmp_path / "strict")
    strict = PrivacyLedger(strict_home)
    with pytest.raises(RefusedError) as info:
        strict.charge("job1", 1, "update", "train", CHEAP, CENTRAL, train_caps(strict_home))
    assert "would spend epsilon inf" in str(info.value)
    assert "does not trust the coordinator" in str(info.value)
    assert strict.charges() == []
    ok, why = strict.plan_fits("train", [(CHEAP, CENTRAL)], train_caps(strict_home))
    assert not ok and "does not trust the coordinator" in why

    trusting_home = make_home(tmp_path / "trusting", adversary="recipients_only")
    trusting = PrivacyLedger(trusting_home)
    caps = train_caps(trusting_home)
    receipt = trusting.charge("job1", 1, "update", "train", CHEAP, CENTRAL, caps)
    assert receipt.charge.adversary is CENTRAL
    # Node-noised releases count with their events against a recipients_only cap too.
    trusting.charge("job1", 2, "update", "train", CHEAP, NODE, caps)
    expected = direct_pld_epsilon([CHEAP, CHEAP], 1e-5)
    assert trusting.spent("train", caps[0]) == pytest.approx(expected, abs=1e-6)


def test_a_coordinator_noised_release_already_stored_costs_inf_against_a_strict_cap(
    tmp_path: Path,
) -> None:
    home = make_home(tmp_path)
    ledger = PrivacyLedger(home)
    trusting = Cap(dataset="train", epsilon=3.0, delta=1e-5, adversary=CENTRAL)
    ledger.charge("job1", 1, "update", "train", CHEAP, CENTRAL, [trusting])
    assert ledger.spent("train", trusting) == pytest.approx(
        direct_pld_epsilon([CHEAP], 1e-5), abs=1e-6
    )
    assert math.isinf(ledger.spent("train", train_caps(home)[0]))


def test_an_exact_release_is_refused_on_a_capped_dataset_unless_exempt(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    ledger = PrivacyLedger(home)
    settings = load_node_settings(home)
    caps = settings.caps_for("train")
    with pytest.raises(RefusedError, match=r"'row_count' release .* no DP mechanism") as info:
        ledger.charge("job1", 1, "row_count", "train", None, NODE, caps)
    assert info.value.exit_code == 3
    assert ledger.charges() == []

    exempt = settings.is_exempt("metrics")
    receipt = ledger.charge("job1", 1, "metrics", "train", None, NODE, caps, exempt=exempt)
    assert not receipt.charge.covered
    assert receipt.charge.event == dp_accounting.NoOpDpEvent()
    assert receipt.spends == () and ledger.spent("train", caps[0]) == 0.0
    assert ledger.spent("train", caps[0]) == 0.0
    # An uncapped dataset records an exact release, uncovered, without an exemption.
    uncapped = ledger.charge("job1", 1, "row_count", "scratch", None, NODE, [])
    assert not uncapped.charge.covered and uncapped.spends == ()
    assert [c.covered for c in ledger.charges()] == [False, False]


def test_a_release_of_no_data_carries_a_noop_event_and_costs_nothing(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    ledger = PrivacyLedger(home)
    caps = train_caps(home)
    receipt = ledger.charge(
        "job1", 1, "secagg_keys", "train", dp_accounting.NoOpDpEvent(), CENTRAL, caps
    )
    # A NoOp changes no cap's epsilon, so the ledger does not recompute one.
    assert receipt.charge.covered and receipt.spends == ()
    assert all(ledger.spent("train", cap) == 0.0 for cap in caps)


def test_an_event_no_accountant_supports_is_refused(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    ledger = PrivacyLedger(home)
    event = dp_accounting.SampledWithReplacementDpEvent(1000, 10, CHEAP)
    for caps in (train_caps(home), []):
        with pytest.raises(RefusedError, match="neither accountant supports"):
            ledger.charge("job1", 1, "update", "train", event, NODE, caps)
    with pytest.raises(RefusedError, match="cannot account"):
        ledger.charge("job1", 1, "update", "train", dp_accounting.UnsupportedDpEvent(), NODE, [])
    assert ledger.charges() == []


def test_caps_of_another_dataset_are_a_bug(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    ledger = PrivacyLedger(home)
    with pytest.raises(AccordError, match="caps_for"):
        ledger.charge("job1", 1, "update", "test", CHEAP, NODE, train_caps(home))


def test_plan_fits_accounts_for_what_is_already_spent(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    ledger = PrivacyLedger(home)
    caps = train_caps(home)
    plan = [dp_accounting.SelfComposedDpEvent(CHEAP, 3)]
    ok, why = ledger.plan_fits("train", [(event, NODE) for event in plan], caps)
    assert ok, why
    ledger.charge("job0", 1, "update", "train", CHEAP, NODE, caps)
    ok, why = ledger.plan_fits("train", [(event, NODE) for event in plan], caps)
    assert not ok
    planned = direct_pld_epsilon([CHEAP] * 4, 1e-5)
    assert "'cleveland'" in why and "'train'" in why and f"reach epsilon {planned:.6f}" in why
    assert "epsilon 3 at delta 1e-05" in why and "\n" not in why
    assert ledger.plan_fits("train", [(CHEAP, NODE)] * 2, caps)[0]
    assert len(ledger.charges()) == 1  # planning stores nothing


# -- two processes charging one ledger at once --------------------------------------------


def _charge_in_process(home: str, barrier: Any, results: Any, worker: int) -> None:
    ledger = PrivacyLedger(Path(home))
    caps = load_node_settings(Path(home)).caps_for("train")
    barrier.wait(timeout=60)
    try:
        ledger.charge(f"job{worker}", 1, "update", "train", DEAR, NODE, caps)
        results.put("charged")
    except RefusedError as exc:
        results.put(f"refused: {exc}")


def test_two_processes_charging_at_once_never_overspend(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    PrivacyLedger(home)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results = context.Queue()
    workers = [
        context.Process(target=_charge_in_process, args=(str(home), barrier, results, worker))
        for worker in (1, 2)
    ]
    for worker in workers:
        worker.start()
    outcomes = sorted(results.get(timeout=120) for _ in workers)
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert outcomes[0] == "charged"
    assert outcomes[1].startswith("refused: ") and "already spent" in outcomes[1]
    ledger = PrivacyLedger(home)
    assert len(ledger.charges()) == 1
    cap = train_caps(home)[0]
    assert ledger.spent("train", cap) == pytest.approx(direct_pld_epsilon([DEAR], 1e-5), abs=1e-6)
    assert ledger.spent("train", cap) <= cap.epsilon


# -- accord budget show ---------------------------------------------------------------------


def test_budget_show_prints_exactly_the_spent_epsilon(tmp_path: Path, invoke: Invoke) -> None:
    home = make_home(tmp_path)
    ledger = PrivacyLedger(home)
    caps = train_caps(home)
    for r in (1, 2):
        ledger.charge("job1", r, "update", "train", SAMPLED, NODE, caps)
    ledger.charge("job1", 2, "metrics", "train", None, NODE, caps, exempt=True)
    spent = ledger.spent("train", caps[0])
    result = invoke("budget", "show", "--node-home", str(home))
    assert result.code == 0, result.err
    assert f"{spent:.6f}" in result.out
    assert f"{3.0 - spent:.6f}" in result.out
    assert "accountant pld" in result.out
    assert "3 charges, 1 not covered by epsilon" in result.out
    assert "coordinator_and_recipients" in result.out
    assert "Poisson(0.2, Gaussian(1.5))" in result.out
    assert "none: not covered" in result.out


def test_budget_show_of_a_missing_home_is_one_line_exit_2(tmp_path: Path, invoke: Invoke) -> None:
    result = invoke("budget", "show", "--node-home", str(tmp_path / "nowhere"))
    assert result.code == 2
    assert result.err.count("\n") == 1 and "node home not found" in result.err
    assert not (tmp_path / "nowhere").exists()
