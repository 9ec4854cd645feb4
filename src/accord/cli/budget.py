"""``accord budget``: what a node's privacy ledger has spent against its caps."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click

_LAST_CHARGES = 10


@click.group(help="A node's privacy budget: its caps (node.toml) and what its ledger charged.")
def budget() -> None:
    pass


@budget.command()
@click.option(
    "--node-home",
    "node_home",
    type=click.Path(path_type=Path),
    required=True,
    help="The node's home directory (holds node.toml and state/ledger.sqlite3).",
)
@click.option(
    "--last",
    type=click.IntRange(min=0),
    default=_LAST_CHARGES,
    show_default=True,
    help="How many of the latest charges to list.",
)
def show(node_home: Path, last: int) -> None:
    """Per dataset and cap: the accountant, epsilon spent at the cap's delta, what remains."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from accord.errors import InputError
    from accord.privacy.caps import NODE_FILE, load_node_settings
    from accord.privacy.ledger import PrivacyLedger

    if not node_home.is_dir():
        raise InputError(f"{node_home}: node home not found (give an existing --node-home)")
    if not (node_home / NODE_FILE).is_file():
        raise InputError(f"{node_home}: not a node home (it has no {NODE_FILE})")
    settings = load_node_settings(node_home)
    ledger = PrivacyLedger(node_home)
    charges = ledger.charges()
    console = Console()
    console.print(
        f"Privacy budget of party {ledger.party!r} (node home {node_home}); adjacency: add or "
        "remove one record.",
        highlight=False,
        soft_wrap=True,
    )
    datasets = list(dict.fromkeys([*settings.datasets, *(c.dataset for c in charges)]))
    if not datasets:
        console.print("No caps in node.toml and no charges in the ledger.")
    for dataset in datasets:
        mine = [c for c in charges if c.dataset == dataset]
        uncovered = sum(1 for c in mine if not c.covered)
        accountant, why = ledger.accountant_choice(dataset)
        console.print(
            f"\ndataset {dataset!r}: accountant {accountant} ({why}); {len(mine)} "
            f"charge{'' if len(mine) == 1 else 's'}, {uncovered} not covered by epsilon "
            "(releases without a DP mechanism: exempt, or from an uncapped dataset)",
            highlight=False,
            soft_wrap=True,
        )
        caps = settings.caps_for(dataset)
        if not caps:
            console.print("  no cap in node.toml: releases are recorded, not limited")
            continue
        table = Table(show_edge=True)
        for name in ("epsilon cap", "delta", "adversary", "spent", "remaining"):
            numeric = name != "adversary"
            table.add_column(name, justify="right" if numeric else "left", no_wrap=numeric)
        for cap in caps:
            spent = ledger.spent(dataset, cap)
            table.add_row(
                _number(cap.epsilon),
                f"{cap.delta:g}",
                cap.adversary.value,
                _number(spent),
                _number(max(cap.epsilon - spent, 0.0)),
            )
        console.print(table)
    if charges and last:
        table = Table(
            title=f"Last {min(last, len(charges))} of {len(charges)} charges",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
            padding=(0, 1),
            collapse_padding=True,
        )
        for name in ("#", "job", "round", "kind", "dataset", "event", "noise by"):
            table.add_column(name, no_wrap=name in ("#", "job", "round"))
        for charge in charges[-last:]:
            table.add_row(
                str(charge.id),
                charge.job_id,
                str(charge.round),
                charge.release_kind,
                charge.dataset,
                _describe_event(charge.event) if charge.covered else "none: not covered",
                "node" if charge.adversary.value == "coordinator_and_recipients" else "coordinator",
            )
        console.print(table)


def _number(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.6f}"


def _describe_event(event: Any) -> str:
    """``PoissonSampled(0.01, Gaussian(1.1))``: an event's class and fields, compactly."""
    import attr

    name = type(event).__name__.removesuffix("DpEvent").replace("PoissonSampled", "Poisson")
    try:
        fields = attr.fields(type(event))
    except (TypeError, attr.exceptions.NotAnAttrsClassError):
        return name
    parts: list[str] = []
    for field in fields:
        value = getattr(event, field.name)
        if isinstance(value, list | tuple):
            parts.append("[" + ", ".join(_describe_event(item) for item in value) + "]")
        elif hasattr(value, "__attrs_attrs__"):
            parts.append(_describe_event(value))
        else:
            parts.append(f"{value:g}" if isinstance(value, float) else str(value))
    return f"{name}({', '.join(parts)})" if parts else name
