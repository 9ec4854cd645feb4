"""How stored and new releases count against a cap, and what they compose to.

Against a cap whose adversary is ``coordinator_and_recipients``, a release whose noise the
coordinator added counts as ``NonPrivateDpEvent`` (it protects nothing against the
coordinator); a ``NoOpDpEvent`` costs nothing against anyone. Events are flattened to
(event, times) and composed by ``dp-accounting`` (never by us), with one accountant per
dataset: PLD where it supports every event, else RDP.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from dp_accounting import (
    ComposedDpEvent,
    DpEvent,
    NonPrivateDpEvent,
    NoOpDpEvent,
    SelfComposedDpEvent,
)

from accord.privacy.accounting import Accountant, best_accountant, epsilon_of_events
from accord.privacy.caps import Cap
from accord.privacy.events import Adversary, event_to_json


def count_against(releases: Sequence[tuple[DpEvent, Adversary]], cap: Cap) -> list[DpEvent]:
    """Each release's event as it counts against ``cap``'s adversary."""
    return events_against(releases, cap.adversary)


def events_against(
    releases: Sequence[tuple[DpEvent, Adversary]], against: Adversary
) -> list[DpEvent]:
    """Each release's event as it counts against the adversary ``against``."""
    counted: list[DpEvent] = []
    for event, adversary in releases:
        if (
            against is Adversary.COORDINATOR_AND_RECIPIENTS
            and adversary is not Adversary.COORDINATOR_AND_RECIPIENTS
            and not isinstance(event, NoOpDpEvent)
        ):
            # The coordinator added this noise: it protects nothing against the coordinator.
            counted.append(NonPrivateDpEvent())
        else:
            counted.append(event)
    return counted


def composed_leaves(events: Sequence[DpEvent]) -> list[tuple[DpEvent, int]]:
    """Composition flattened: (event, times) for each distinct non-composed event, in order
    of first appearance."""
    counts: dict[str, int] = {}
    firsts: dict[str, DpEvent] = {}

    def walk(event: DpEvent, times: int) -> None:
        if isinstance(event, ComposedDpEvent):
            for inner in event.events:
                walk(inner, times)
        elif isinstance(event, SelfComposedDpEvent):
            walk(event.event, times * event.count)
        elif times > 0:
            key = event_to_json(event)
            firsts.setdefault(key, event)
            counts[key] = counts.get(key, 0) + times

    for event in events:
        walk(event, 1)
    return [(firsts[key], times) for key, times in counts.items()]


def accountant_for_events(events: Sequence[DpEvent]) -> Accountant:
    leaves = [leaf for leaf, _ in composed_leaves(events)]
    return best_accountant(leaves) if leaves else "pld"


def composed_epsilon(events: Sequence[DpEvent], delta: float, accountant: Accountant) -> float:
    """Epsilon at ``delta`` of ``events`` composed (``accounting`` groups equal events)."""
    leaves = [leaf for leaf, _ in composed_leaves(events) if not isinstance(leaf, NoOpDpEvent)]
    if not leaves:
        return 0.0
    if any(isinstance(leaf, NonPrivateDpEvent) for leaf in leaves):
        return math.inf
    return float(epsilon_of_events(events, delta, accountant))


def why_infinite(epsilon: float, adversary: Adversary, cap: Cap) -> str:
    if not math.isinf(epsilon):
        return ""
    if (
        cap.adversary is Adversary.COORDINATOR_AND_RECIPIENTS
        and adversary is not Adversary.COORDINATOR_AND_RECIPIENTS
    ):
        return (
            "; the coordinator adds this noise (adversary recipients_only) and the cap does not "
            'trust the coordinator (a cap with adversary = "recipients_only" would)'
        )
    return (
        "; a stored release counts as non-private against this cap (coordinator-noised "
        "or without a DP mechanism)"
    )
