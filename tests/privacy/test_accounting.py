"""The accountant wrapper: dp-accounting's numbers, Opacus's RDP, calibration, the CLI."""

from __future__ import annotations

import itertools
import logging
import math
import re
import warnings
from collections.abc import Iterator
from decimal import Decimal

import dp_accounting as dpa
import pytest
from dp_accounting.pld import PLDAccountant
from dp_accounting.rdp import RdpAccountant
from dp_accounting.rdp.rdp_privacy_accountant import DEFAULT_RDP_ORDERS

from accord.cli.privacy import plain_decimal
from accord.errors import InputError
from accord.privacy.accounting import (
    PLD_DISCRETIZATION,
    RDP_ORDERS,
    best_accountant,
    calibrate_noise,
    dpsgd_event,
    epsilon,
    epsilon_of_events,
    round_up_significant,
    supports_pld,
)
from tests.conftest import Invoke

DELTA = 1e-5
ADD_OR_REMOVE = dpa.NeighboringRelation.ADD_OR_REMOVE_ONE

# The grid of the issue: sigma x q x T; the comparisons hold where epsilon <= 20.
SIGMAS = (0.7, 1.0, 2.0)
RATES = (0.001, 0.01, 0.1)
STEPS = (10, 100, 1000)
GRID = list(itertools.product(SIGMAS, RATES, STEPS))


@pytest.fixture(autouse=True)
def _quiet_rdp_log() -> Iterator[None]:
    # dp-accounting logs a warning per RDP order whose series does not converge (it then
    # leaves that order out, which only loosens the bound); it is noise in test output.
    logging.disable(logging.WARNING)
    yield
    logging.disable(logging.NOTSET)


def _direct(event: dpa.DpEvent, accountant: str) -> float:
    """dp-accounting called directly, with the documented settings."""
    if accountant == "pld":
        acc: dpa.PrivacyAccountant = PLDAccountant(
            ADD_OR_REMOVE, value_discretization_interval=1e-4
        )
    else:
        acc = RdpAccountant(DEFAULT_RDP_ORDERS, ADD_OR_REMOVE)
    return float(acc.compose(event).get_epsilon(DELTA))


def _opacus_rdp(sigma: float, q: float, steps: int) -> float:
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = [(sigma, q, steps)]  # what `steps` calls of .step() record
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "optimal order is the largest alpha"
        return float(accountant.get_epsilon(delta=DELTA))


@pytest.fixture(scope="module")
def grid() -> dict[tuple[float, float, int], dict[str, float]]:
    """Every accountant's epsilon on the grid, computed once for the module's tests."""
    logging.disable(logging.WARNING)
    values = {}
    for sigma, q, steps in GRID:
        event = dpsgd_event(sigma, q, steps)
        rdp = epsilon(event, DELTA, "rdp")
        values[(sigma, q, steps)] = {
            "rdp": rdp,
            "opacus": _opacus_rdp(sigma, q, steps),
            # PLD where the comparisons apply (epsilon <= 20): it is the slow one.
            "pld": epsilon(event, DELTA, "pld") if rdp <= 20 else math.nan,
        }
    logging.disable(logging.NOTSET)
    return values


def test_settings_are_the_documented_ones() -> None:
    from opacus.accountants import RDPAccountant

    assert PLD_DISCRETIZATION == 1e-4
    assert list(RDP_ORDERS) == list(DEFAULT_RDP_ORDERS)
    assert set(RDPAccountant.DEFAULT_ALPHAS) <= set(RDP_ORDERS)


@pytest.mark.parametrize("accountant", ["pld", "rdp"])
@pytest.mark.parametrize(
    "event",
    [
        dpsgd_event(1.1, 0.01, 100),
        dpsgd_event(0.8, 0.05, 30),
        dpsgd_event(3.0, 1.0, 10),
        dpa.GaussianDpEvent(2.0),
        dpa.LaplaceDpEvent(5.0),
        dpa.ComposedDpEvent(
            [dpsgd_event(1.0, 0.02, 20), dpa.GaussianDpEvent(4.0), dpa.NoOpDpEvent()]
        ),
    ],
    ids=["dpsgd", "dpsgd-high-q", "full-batch", "gaussian", "laplace", "composed"],
)
def test_epsilon_equals_dp_accounting_called_directly(event: dpa.DpEvent, accountant: str) -> None:
    ours = epsilon(event, DELTA, "pld" if accountant == "pld" else "rdp")
    assert ours == pytest.approx(_direct(event, accountant), rel=1e-6, abs=1e-6)


def test_a_ledger_of_events_is_their_composition() -> None:
    a = dpsgd_event(1.0, 0.01, 50)
    b = dpa.PoissonSampledDpEvent(0.05, dpa.GaussianDpEvent(2.0))
    c = dpa.LaplaceDpEvent(20.0)
    events = [a, b, c, a, dpa.NoOpDpEvent(), b, b]
    for accountant in ("pld", "rdp"):
        direct = _direct(dpa.ComposedDpEvent(events), accountant)
        ours = epsilon_of_events(events, DELTA, "pld" if accountant == "pld" else "rdp")
        assert ours == pytest.approx(direct, rel=1e-6, abs=1e-6)


def test_non_private_is_infinite_and_no_op_is_free() -> None:
    for accountant in ("pld", "rdp"):
        which = "pld" if accountant == "pld" else "rdp"
        assert epsilon(dpa.NonPrivateDpEvent(), DELTA, which) == math.inf
        assert (
            epsilon_of_events([dpsgd_event(1.0, 0.01, 10), dpa.NonPrivateDpEvent()], DELTA, which)
            == math.inf
        )
        assert epsilon(dpa.NoOpDpEvent(), DELTA, which) == 0
        assert epsilon_of_events([], DELTA, which) == 0


def test_rdp_is_within_one_percent_of_opacus(
    grid: dict[tuple[float, float, int], dict[str, float]],
) -> None:
    checked = 0
    worst = 0.0
    for point, eps in grid.items():
        if eps["opacus"] > 20:
            continue
        relative = abs(eps["rdp"] - eps["opacus"]) / eps["opacus"]
        worst = max(worst, relative)
        assert relative <= 0.01, (point, eps)
        checked += 1
    assert checked >= 24  # all but the loosest corners of the grid
    print(f"worst relative difference to Opacus's RDP: {worst:.2e}")


def test_pld_is_never_above_rdp(grid: dict[tuple[float, float, int], dict[str, float]]) -> None:
    for point, eps in grid.items():
        if eps["rdp"] <= 20:
            assert eps["pld"] <= eps["rdp"], (point, eps)


@pytest.mark.parametrize("accountant", ["pld", "rdp"])
def test_epsilon_never_decreases_with_steps(accountant: str) -> None:
    which = "pld" if accountant == "pld" else "rdp"
    steps = [1, 2, 3, 10, 99, 100, 101, 500, 2000]
    values = [epsilon(dpsgd_event(1.0, 0.01, t), DELTA, which) for t in steps]
    assert all(a <= b for a, b in itertools.pairwise(values)), list(zip(steps, values, strict=True))
    assert values[0] < values[-1]


def test_dpsgd_event_shapes() -> None:
    assert dpsgd_event(1.5, 0.01, 7) == dpa.SelfComposedDpEvent(
        dpa.PoissonSampledDpEvent(0.01, dpa.GaussianDpEvent(1.5)), 7
    )
    assert dpsgd_event(1.5, 1.0, 7) == dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(1.5), 7)
    assert dpsgd_event(1.5, 0.2, 1) == dpa.PoissonSampledDpEvent(0.2, dpa.GaussianDpEvent(1.5))


@pytest.mark.parametrize(
    ("sigma", "q", "steps"),
    [
        (0.0, 0.1, 10),
        (-1.0, 0.1, 10),
        (math.nan, 0.1, 10),
        (math.inf, 0.1, 10),
        (1.0, 0.0, 10),
        (1.0, 1.5, 10),
        (1.0, math.nan, 10),
        (1.0, 0.1, 0),
        (1.0, 0.1, -3),
    ],
)
def test_dpsgd_event_refuses_bad_values(sigma: float, q: float, steps: int) -> None:
    with pytest.raises(InputError):
        dpsgd_event(sigma, q, steps)


def test_pld_support_picks_the_accountant() -> None:
    dpsgd = dpsgd_event(1.0, 0.01, 10)
    zcdp = dpa.ZCDpEvent(0.05)  # RDP supports it, PLD does not
    assert supports_pld([dpsgd, dpa.LaplaceDpEvent(1.0), dpa.NonPrivateDpEvent()])
    assert best_accountant([dpsgd, dpa.NoOpDpEvent()]) == "pld"
    assert not supports_pld([dpsgd, zcdp])
    assert best_accountant([dpsgd, zcdp]) == "rdp"
    assert best_accountant([dpa.UnsupportedDpEvent()]) == "rdp"
    assert epsilon_of_events([dpsgd, zcdp], DELTA, "rdp") == pytest.approx(
        _direct(dpa.ComposedDpEvent([dpsgd, zcdp]), "rdp"), rel=1e-6
    )
    with pytest.raises(InputError, match="pld accountant does not support"):
        epsilon_of_events([dpsgd, zcdp], DELTA, "pld")
    # Sampling without replacement is a replace-one notion: neither accepts it here.
    without_replacement = dpa.SampledWithoutReplacementDpEvent(1000, 10, dpa.GaussianDpEvent(1.0))
    for accountant in ("pld", "rdp"):
        with pytest.raises(InputError, match="does not support"):
            epsilon(without_replacement, DELTA, "pld" if accountant == "pld" else "rdp")
    with pytest.raises(InputError):
        epsilon(dpa.UnsupportedDpEvent(), DELTA, "rdp")


@pytest.mark.parametrize("accountant", ["pld", "rdp"])
def test_calibrate_meets_the_target_within_one_percent(accountant: str) -> None:
    which = "pld" if accountant == "pld" else "rdp"
    target, q, steps = 1.0, 0.01, 100
    sigma = calibrate_noise(target, DELTA, q, steps, which)
    achieved = epsilon(dpsgd_event(sigma, q, steps), DELTA, which)
    assert 0.99 * target <= achieved <= target
    # Seven significant digits, and the next value down on that grid misses the target.
    digits = Decimal(repr(sigma))
    assert len(digits.as_tuple().digits) <= 7
    one_lower = float(digits - Decimal(1).scaleb(digits.adjusted() - 6))
    assert epsilon(dpsgd_event(one_lower, q, steps), DELTA, which) > target


def test_calibrate_on_a_full_batch_gaussian() -> None:
    sigma = calibrate_noise(2.0, 1e-6, 1.0, 5, "pld")
    achieved = epsilon(dpsgd_event(sigma, 1.0, 5), 1e-6, "pld")
    assert 0.99 * 2.0 <= achieved <= 2.0


@pytest.mark.parametrize(
    ("target", "delta", "q", "steps"),
    [
        (0.0, DELTA, 0.01, 10),
        (-1.0, DELTA, 0.01, 10),
        (math.nan, DELTA, 0.01, 10),
        (math.inf, DELTA, 0.01, 10),
        (1.0, 0.0, 0.01, 10),
        (1.0, 1.0, 0.01, 10),
        (1.0, -0.1, 0.01, 10),
        (1.0, DELTA, 0.0, 10),
        (1.0, DELTA, 1.01, 10),
        (1.0, DELTA, 0.01, 0),
    ],
)
def test_calibrate_refuses_impossible_inputs(
    target: float, delta: float, q: float, steps: int
) -> None:
    with pytest.raises(InputError):
        calibrate_noise(target, delta, q, steps)


def test_calibrate_refuses_an_absurd_target() -> None:
    with pytest.raises(InputError, match="too large a target"):
        calibrate_noise(1e6, DELTA, 1.0, 1, "rdp")


@pytest.mark.parametrize(
    ("value", "rounded"),
    [
        (1.2345671, 1.234568),
        (1.234567, 1.234567),
        (0.00012345671, 0.0001234568),
        (123456789.0, 123456800.0),
        (9.9999991, 10.0),
        (2.0, 2.0),
    ],
)
def test_round_up_significant(value: float, rounded: float) -> None:
    assert round_up_significant(value) == rounded


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0001234567, "0.0001234567"),
        (123.4567, "123.4567"),
        (1.5, "1.500000"),
        (3.0, "3.000000"),
        (1e-10, "0.0000000001000000"),
        (12345678.9, "12345680"),
        (2.00000001, "2.000001"),
        (9.99999999, "10.00000"),
        (0.0, "0.000000"),
        (math.inf, "inf"),
    ],
)
def test_plain_decimal(value: float, text: str) -> None:
    assert plain_decimal(value) == text


# --- the CLI ---------------------------------------------------------------------------------

_NUMBER = r"(\d+\.\d+|\d{7,})"


def _significant_digits(text: str) -> int:
    return len(text.replace(".", "").lstrip("0"))


@pytest.mark.parametrize("accountant", ["pld", "rdp"])
def test_cli_epsilon_prints_the_value_then_how(invoke: Invoke, accountant: str) -> None:
    result = invoke(
        "privacy", "epsilon", "--noise-multiplier", "1.1", "--sample-rate", "0.01",
        "--steps", "100", "--delta", "1e-5", "--accountant", accountant,
    )  # fmt: skip
    assert result.code == 0, result.err
    first, second = result.out.splitlines()[:2]
    match = re.fullmatch(rf"epsilon {_NUMBER}", first)
    assert match, first
    assert _significant_digits(match.group(1)) >= 7
    expected = epsilon(dpsgd_event(1.1, 0.01, 100), DELTA, "pld" if accountant == "pld" else "rdp")
    assert float(match.group(1)) == pytest.approx(expected, rel=1e-6)
    assert float(match.group(1)) >= expected  # rounded up, never down
    assert f"{accountant} accountant" in second
    assert "PoissonSampledDpEvent" in second and "count=100" in second


def test_cli_epsilon_defaults_to_pld(invoke: Invoke) -> None:
    result = invoke(
        "privacy", "epsilon", "--noise-multiplier", "4", "--sample-rate", "1",
        "--steps", "3", "--delta", "1e-6",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert "pld accountant" in result.out.splitlines()[1]


@pytest.mark.parametrize("accountant", ["pld", "rdp"])
def test_cli_calibrate_prints_the_noise_then_the_epsilon(invoke: Invoke, accountant: str) -> None:
    which = "pld" if accountant == "pld" else "rdp"
    result = invoke(
        "privacy", "calibrate", "--epsilon", "2", "--delta", "1e-5", "--sample-rate", "1",
        "--steps", "4", "--accountant", accountant,
    )  # fmt: skip
    assert result.code == 0, result.err
    first, second = result.out.splitlines()[:2]
    match = re.fullmatch(rf"noise_multiplier {_NUMBER}", first)
    assert match, first
    assert _significant_digits(match.group(1)) == 7
    sigma = float(match.group(1))
    assert sigma == calibrate_noise(2.0, DELTA, 1.0, 4, which)
    achieved = epsilon(dpsgd_event(sigma, 1.0, 4), DELTA, which)
    assert 0.99 * 2.0 <= achieved <= 2.0
    assert second.startswith("epsilon ") and f"{accountant} accountant" in second


EPSILON_ARGS = {
    "--noise-multiplier": "1",
    "--sample-rate": "0.1",
    "--steps": "10",
    "--delta": "1e-5",
}
CALIBRATE_ARGS = {"--epsilon": "1", "--delta": "1e-5", "--sample-rate": "0.1", "--steps": "10"}


@pytest.mark.parametrize(
    ("command", "changes"),
    [
        ("epsilon", {"--sample-rate": "1.5"}),
        ("epsilon", {"--noise-multiplier": "0"}),
        ("epsilon", {"--noise-multiplier": "nan"}),
        ("epsilon", {"--noise-multiplier": "x"}),
        ("epsilon", {"--steps": "0"}),
        ("epsilon", {"--steps": "2.5"}),
        ("epsilon", {"--delta": "1"}),
        ("epsilon", {"--delta": None}),
        ("epsilon", {"--accountant": "gdp"}),
        ("calibrate", {"--epsilon": "0"}),
        ("calibrate", {"--delta": "0"}),
        ("calibrate", {"--sample-rate": "0"}),
        ("calibrate", {"--steps": "-1"}),
    ],
)
def test_cli_refuses_bad_input_with_exit_2(
    invoke: Invoke, command: str, changes: dict[str, str | None]
) -> None:
    options = {**(EPSILON_ARGS if command == "epsilon" else CALIBRATE_ARGS), **changes}
    args = [part for key, value in options.items() if value is not None for part in (key, value)]
    result = invoke("privacy", command, *args)
    assert result.code == 2
    assert result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("accord: error:"), result.err
