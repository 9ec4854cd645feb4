"""DP events as canonical JSON for the ledger, and the adversary names."""

from __future__ import annotations

import json

import attr
import dp_accounting as dpa
import pytest

from accord.privacy.events import (
    STORABLE_EVENT_TYPES,
    Adversary,
    event_from_json,
    event_to_json,
)

GAUSSIAN = dpa.GaussianDpEvent(1.1)

EVENTS = [
    dpa.NoOpDpEvent(),
    dpa.NonPrivateDpEvent(),
    dpa.GaussianDpEvent(0.1 + 0.2),  # 0.30000000000000004: every bit must survive
    dpa.LaplaceDpEvent(1e-300),
    dpa.dp_event.DiscreteLaplaceDpEvent(0.5, 3),
    dpa.PoissonSampledDpEvent(256 / 60000, GAUSSIAN),
    dpa.PoissonSampledDpEvent(1.0, dpa.LaplaceDpEvent(2.5)),
    dpa.SampledWithoutReplacementDpEvent(60000, 256, GAUSSIAN),
    dpa.SampledWithReplacementDpEvent(1000, 10, GAUSSIAN),
    dpa.ZCDpEvent(0.125),
    dpa.ZCDpEvent(0.5, 0.25),
    dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(0.01, GAUSSIAN), 2350),
    dpa.SelfComposedDpEvent(dpa.NoOpDpEvent(), 0),
    dpa.ComposedDpEvent([]),
    dpa.ComposedDpEvent(
        [
            dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(0.05, dpa.GaussianDpEvent(0.5)), 3),
            dpa.ComposedDpEvent([dpa.NonPrivateDpEvent(), dpa.LaplaceDpEvent(7.0)]),
            dpa.NoOpDpEvent(),
        ]
    ),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda event: type(event).__name__)
def test_round_trip_is_exact(event: dpa.DpEvent) -> None:
    text = event_to_json(event)
    back = event_from_json(text)
    assert back == event
    assert type(back) is type(event)
    assert event_to_json(back) == text
    assert repr(back) == repr(event)


def test_json_is_canonical() -> None:
    event = dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(0.01, GAUSSIAN), 100)
    text = event_to_json(event)
    assert text == (
        '{"count":100,"event":{"event":{"noise_multiplier":1.1,"type":"GaussianDpEvent"},'
        '"sampling_probability":0.01,"type":"PoissonSampledDpEvent"},'
        '"type":"SelfComposedDpEvent"}'
    )
    assert " " not in text
    # An integer noise multiplier is written as a float: equal events, equal text.
    assert event_to_json(dpa.GaussianDpEvent(2)) == event_to_json(dpa.GaussianDpEvent(2.0))


def test_every_storable_type_is_covered() -> None:
    assert {type(event).__name__ for event in EVENTS} == set(STORABLE_EVENT_TYPES)
    assert "UnsupportedDpEvent" not in STORABLE_EVENT_TYPES


@pytest.mark.parametrize(
    "event",
    [
        dpa.UnsupportedDpEvent(),
        dpa.ComposedDpEvent([GAUSSIAN, dpa.UnsupportedDpEvent()]),
        dpa.SelfComposedDpEvent(dpa.UnsupportedDpEvent(), 2),
        dpa.RandomizedResponseDpEvent(0.5, 2),  # a real event, but not one the ledger stores
        dpa.GaussianDpEvent(float("nan")),
        dpa.GaussianDpEvent(float("inf")),
        dpa.GaussianDpEvent(-1.0),
        dpa.PoissonSampledDpEvent(1.5, GAUSSIAN),
        dpa.SelfComposedDpEvent(GAUSSIAN, -1),
        dpa.SelfComposedDpEvent(GAUSSIAN, 2.5),  # type: ignore[arg-type]
        dpa.GaussianDpEvent(True),
    ],
    ids=repr,
)
def test_refuses_to_store(event: dpa.DpEvent) -> None:
    with pytest.raises(ValueError, match="DP event"):
        event_to_json(event)


def test_refuses_a_subclass() -> None:
    @attr.s(frozen=True, slots=True, auto_attribs=True)
    class LookAlike(dpa.GaussianDpEvent):  # type: ignore[misc]
        pass

    LookAlike.__name__ = "GaussianDpEvent"
    with pytest.raises(ValueError, match="cannot store"):
        event_to_json(LookAlike(1.0))


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        "{}",
        '{"type": "UnsupportedDpEvent"}',
        '{"type": "FancyNewDpEvent"}',
        '{"type": 3}',
        '{"type": "GaussianDpEvent"}',
        '{"type": "GaussianDpEvent", "noise_multiplier": 1.0, "note": "extra"}',
        '{"type": "GaussianDpEvent", "noise_multiplier": "1.0"}',
        '{"type": "GaussianDpEvent", "noise_multiplier": true}',
        '{"type": "GaussianDpEvent", "noise_multiplier": NaN}',
        '{"type": "GaussianDpEvent", "noise_multiplier": Infinity}',
        '{"type": "GaussianDpEvent", "noise_multiplier": -0.5}',
        '{"type": "GaussianDpEvent", "noise_multiplier": 1e999}',
        '{"type": "NoOpDpEvent", "count": 1}',
        '{"type": "SelfComposedDpEvent", "count": 3.0, "event": {"type": "NoOpDpEvent"}}',
        '{"type": "SelfComposedDpEvent", "count": 3, "event": "NoOpDpEvent"}',
        '{"type": "PoissonSampledDpEvent", "sampling_probability": 2, '
        '"event": {"type": "NoOpDpEvent"}}',
        '{"type": "ComposedDpEvent", "events": {"type": "NoOpDpEvent"}}',
        '{"type": "ComposedDpEvent", "events": [{"type": "Mystery"}]}',
    ],
)
def test_refuses_to_read(text: str) -> None:
    with pytest.raises(ValueError, match="DP event"):
        event_from_json(text)


def test_reads_integers_for_floats_and_any_key_order() -> None:
    text = json.dumps({"noise_multiplier": 2, "type": "GaussianDpEvent"}, indent=2)
    assert event_from_json(text) == dpa.GaussianDpEvent(2.0)


def test_adversary_names() -> None:
    assert Adversary("coordinator_and_recipients") is Adversary.COORDINATOR_AND_RECIPIENTS
    assert Adversary("recipients_only") is Adversary.RECIPIENTS_ONLY
    assert str(Adversary.RECIPIENTS_ONLY) == "recipients_only"
    assert [a.value for a in Adversary] == ["coordinator_and_recipients", "recipients_only"]
    with pytest.raises(ValueError):
        Adversary("nobody")
