"""PNG plots of a run's metrics: global and per-party accuracy and loss per round."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any


def _figure_png(records: Sequence[dict[str, Any]], metric: str, title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=100)
    evaluated = [r for r in records if "federated" in r or "server_test" in r]
    rounds = [r["round"] for r in evaluated]
    fed = [
        (r["round"], r["federated"][metric]) for r in evaluated if metric in r.get("federated", {})
    ]
    if fed:
        left.plot(*zip(*fed, strict=True), marker="o", label="federated (parties' test splits)")
    server = [(r["round"], r["server_test"][metric]) for r in evaluated if "server_test" in r]
    if server:
        left.plot(
            *zip(*server, strict=True), marker="s", label="coordinator test set (simulation only)"
        )
    if metric == "loss":
        train = [(r["round"], r["train_loss"]) for r in records if r.get("train_loss") is not None]
        if train:
            left.plot(*zip(*train, strict=True), linestyle="--", label="training loss (released)")
    left.set_title(f"global {title}")
    left.set_xlabel("round")
    if left.get_legend_handles_labels()[0]:
        left.legend(fontsize=8)
    left.grid(alpha=0.3)
    parties = sorted({p for r in evaluated for p in r.get("per_party", {})})
    for party in parties:
        points = [
            (r["round"], r["per_party"][party][metric])
            for r in evaluated
            if party in r.get("per_party", {}) and r["per_party"][party]["num_examples"] > 0
        ]
        if points:
            right.plot(*zip(*points, strict=True), marker=".", label=party)
    right.set_title(f"per-party {title} (each party's own test split)")
    right.set_xlabel("round")
    if 0 < len(parties) <= 12 and right.get_legend_handles_labels()[0]:
        right.legend(fontsize=8)
    right.grid(alpha=0.3)
    from matplotlib.ticker import MaxNLocator

    for axis in (left, right):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        if rounds:
            axis.set_xlim(min(rounds) - 0.5, max(rounds) + 0.5)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def metric_plots(records: Sequence[dict[str, Any]]) -> dict[str, bytes]:
    """``{"accuracy.png": ..., "loss.png": ...}``."""
    return {
        "accuracy.png": _figure_png(records, "accuracy", "accuracy"),
        "loss.png": _figure_png(records, "loss", "loss"),
    }
