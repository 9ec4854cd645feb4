"""Whom an epsilon protects against, and DP events as canonical JSON for the ledger.

Every release that leaves a node states its privacy cost as a ``dp-accounting``
:class:`~dp_accounting.DpEvent` (a small frozen record: "a Gaussian mechanism with noise
multiplier 1.1, Poisson-sampled at rate 0.01, 1000 times"). The ledger stores each one as
the JSON text of :func:`event_to_json` and reads it back with :func:`event_from_json`; the
accountant (:mod:`accord.privacy.accounting`) composes them.

Adjacency: every event is meant under one relation, used everywhere in Accord: two
datasets are neighbours when one is the other with one record added or removed
(``NeighboringRelation.ADD_OR_REMOVE_ONE`` in ``dp-accounting``).

``dp_accounting`` is imported inside the functions that need it, so that importing this
module (the CLI, the node settings) stays cheap.
"""

from __future__ import annotations

import json
import math
from enum import StrEnum
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from dp_accounting import DpEvent


class Adversary(StrEnum):
    """Against whom an epsilon holds: who could see the output before the noise was added.

    Every epsilon Accord stores or reports names one of these; a guarantee without its
    adversary is not printed.

    ``COORDINATOR_AND_RECIPIENTS``
        The noise was added on the data owner's node, before the release left it
        (DP-SGD's per-step noise, a node's local noise on an update or a statistic).
        Nobody outside the node ever sees the un-noised value: the coordinator, the other
        parties and every recipient of the outputs are all covered. The stronger promise,
        and the default a cap asks for.

    ``RECIPIENTS_ONLY``
        The coordinator is trusted: it receives the clipped but un-noised contributions and
        adds the noise itself before anything is published (central DP-FedAvg). The epsilon
        holds against the recipients of the coordinator's outputs (the other parties, the
        model's users), not against the coordinator. Amplification by client sampling is
        credited only here, since recipients do not see who was sampled.

    How a release counts against a cap (the ledger applies this; it is stated here so that
    it lives next to the names): against a ``RECIPIENTS_ONLY`` cap every release counts
    with its own event. Against a ``COORDINATOR_AND_RECIPIENTS`` cap a release whose noise
    is added on the node counts with its event, while a coordinator-noised
    (``RECIPIENTS_ONLY``) release counts as ``NonPrivateDpEvent``: the coordinator saw it
    without noise, so it costs an infinite epsilon against that adversary, and a node whose
    cap does not trust the coordinator refuses it.
    """

    COORDINATOR_AND_RECIPIENTS = "coordinator_and_recipients"
    RECIPIENTS_ONLY = "recipients_only"


# --- DpEvent <-> JSON -----------------------------------------------------------------------

FieldKind = Literal["float", "int", "event", "events"]

# The event classes the ledger can store, with each field's kind. Fields are exactly the
# class's attrs fields; the JSON object has these keys plus "type" (the class name).
# UnsupportedDpEvent is deliberately absent: an event with no privacy description must be
# refused, never stored as if it had one.
_FIELDS: dict[str, dict[str, FieldKind]] = {
    "NoOpDpEvent": {},
    "NonPrivateDpEvent": {},
    "GaussianDpEvent": {"noise_multiplier": "float"},
    "LaplaceDpEvent": {"noise_multiplier": "float"},
    "DiscreteLaplaceDpEvent": {"noise_parameter": "float", "sensitivity": "int"},
    "PoissonSampledDpEvent": {"sampling_probability": "float", "event": "event"},
    "SampledWithoutReplacementDpEvent": {
        "source_dataset_size": "int",
        "sample_size": "int",
        "event": "event",
    },
    "SampledWithReplacementDpEvent": {
        "source_dataset_size": "int",
        "sample_size": "int",
        "event": "event",
    },
    "ZCDpEvent": {"rho": "float", "xi": "float"},
    "SelfComposedDpEvent": {"event": "event", "count": "int"},
    "ComposedDpEvent": {"events": "events"},
}

STORABLE_EVENT_TYPES: tuple[str, ...] = tuple(_FIELDS)
"""Names of the ``dp_accounting`` event classes that :func:`event_to_json` can store."""

_TYPE_KEY = "type"


def event_to_json(event: DpEvent) -> str:
    """The canonical JSON text of ``event`` (sorted keys, no spaces), for the ledger.

    Floats are written with Python's shortest round-trip representation, so
    ``event_from_json(event_to_json(e)) == e`` exactly, and two equal events give the same
    text (an integer noise multiplier is written as a float). Raises :class:`ValueError`
    for an event that cannot be stored: ``UnsupportedDpEvent`` (it has no privacy
    description), an event class not in :data:`STORABLE_EVENT_TYPES`, or a bad value (a
    non-finite or negative number, a probability outside [0, 1]).
    """
    return json.dumps(_encode(event), sort_keys=True, separators=(",", ":"), allow_nan=False)


def event_from_json(text: str) -> DpEvent:
    """The event that :func:`event_to_json` wrote as ``text``.

    Unknown → refused: an unknown ``type``, a missing or extra key, a value of the wrong
    kind or out of range raise :class:`ValueError` naming it.
    """
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(f"DP event: not valid JSON ({exc})") from None
    return _decode(data, "event")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"DP event: {name} is not a valid number")


def _encode(event: Any) -> dict[str, Any]:
    import dp_accounting

    name = type(event).__name__
    if name == "UnsupportedDpEvent":
        raise ValueError(
            "DP event: UnsupportedDpEvent has no privacy description and cannot be stored"
        )
    fields = _FIELDS.get(name)
    # The exact class, not a subclass: a subclass may mean something else.
    if fields is None or type(event) is not getattr(dp_accounting.dp_event, name):
        raise ValueError(
            f"DP event: cannot store {type(event).__module__}.{type(event).__qualname__}; "
            f"storable types: {', '.join(STORABLE_EVENT_TYPES)}"
        )
    out: dict[str, Any] = {_TYPE_KEY: name}
    for key, kind in fields.items():
        where = f"{name}.{key}"
        value = getattr(event, key)
        if kind == "event":
            out[key] = _encode(value)
        elif kind == "events":
            if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
                raise ValueError(f"DP event: {where} must be a list of events")
            out[key] = [_encode(item) for item in value]
        else:
            out[key] = _number(value, kind, where)
            _check_range(name, key, out[key])
    return out


def _decode(data: Any, where: str) -> Any:
    import dp_accounting

    if not isinstance(data, dict):
        raise ValueError(f"DP event: {where} must be a JSON object")
    name = data.get(_TYPE_KEY)
    if not isinstance(name, str):
        raise ValueError(f"DP event: {where} has no {_TYPE_KEY!r} naming its class")
    fields = _FIELDS.get(name)
    if fields is None:
        raise ValueError(
            f"DP event: {where} has unknown type {name!r}; "
            f"known types: {', '.join(STORABLE_EVENT_TYPES)}"
        )
    keys = set(data) - {_TYPE_KEY}
    if keys != set(fields):
        extra = sorted(keys - set(fields))
        missing = sorted(set(fields) - keys)
        problem = f"unknown key(s) {extra}" if extra else f"missing key(s) {missing}"
        raise ValueError(f"DP event: {where} ({name}) has {problem}")
    values: dict[str, Any] = {}
    for key, kind in fields.items():
        inner = f"{where}.{key}"
        raw = data[key]
        if kind == "event":
            values[key] = _decode(raw, inner)
        elif kind == "events":
            if not isinstance(raw, list):
                raise ValueError(f"DP event: {inner} must be a list of events")
            values[key] = [_decode(item, f"{inner}[{i}]") for i, item in enumerate(raw)]
        else:
            if kind == "int" and not isinstance(raw, int):
                # JSON 3.0 is a float: a count must be written as an integer.
                raise ValueError(f"DP event: {inner} must be an integer (got {raw!r})")
            values[key] = _number(raw, kind, inner)
            _check_range(name, key, values[key])
    return getattr(dp_accounting.dp_event, name)(**values)


def _number(value: Any, kind: FieldKind, where: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"DP event: {where} must be a number (got {value!r})")
    if kind == "int":
        if not isinstance(value, Integral):
            raise ValueError(f"DP event: {where} must be an integer (got {value!r})")
        return int(value)
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"DP event: {where} must be finite (got {value!r})")
    return number


def _check_range(name: str, key: str, value: float | int) -> None:
    if value < 0:
        raise ValueError(f"DP event: {name}.{key} must not be negative (got {value!r})")
    if key == "sampling_probability" and value > 1:
        raise ValueError(f"DP event: {name}.{key} must be at most 1 (got {value!r})")
