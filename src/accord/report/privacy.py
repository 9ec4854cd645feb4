"""The privacy section of a run: epsilon per party, whom it holds against, and over rounds.

The figures come from each node's own ledger, never from the coordinator's word: only the
rounds a node actually charged count. In simulation the runner reads every node's ledger
and plan (it runs every node); in a deployment each node reports its own with
``accord budget show``. Per-party epsilons depend on each party's sampling rate, hence on
its row count: they describe the guarantee to that party and are shown only to whoever
reads this run folder.
"""

from __future__ import annotations

import io
import json
from typing import Any

from accord.fileio import write_text_atomic
from accord.fl.run_dir import RunDir
from accord.privacy.events import Adversary

PRIVACY_FILE = "privacy.json"

ADVERSARY_WORDS = {
    Adversary.COORDINATOR_AND_RECIPIENTS.value: "coordinator and recipients",
    Adversary.RECIPIENTS_ONLY.value: "recipients only, coordinator trusted",
}


def write_privacy_summary(run_dir: RunDir, summary: dict[str, Any] | None) -> None:
    path = run_dir.path / PRIVACY_FILE
    if summary is None:
        path.unlink(missing_ok=True)
        return
    write_text_atomic(path, json.dumps(summary, indent=2, sort_keys=True))


def read_privacy_summary(run_dir: RunDir) -> dict[str, Any] | None:
    path = run_dir.path / PRIVACY_FILE
    if not path.exists():
        return None
    summary: dict[str, Any] = json.loads(path.read_text())
    return summary


def epsilon_plot(summary: dict[str, Any]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axis = plt.subplots(figsize=(6.4, 3.4), dpi=100)
    for party, figures in summary["parties"].items():
        points = figures["epsilon_by_round_rdp"]
        if points:
            axis.plot(*zip(*points, strict=True), marker=".", label=party)
    axis.set_title(f"epsilon spent by this job, per party (delta {summary['delta']:g}, RDP)")
    axis.set_xlabel("round")
    axis.set_ylabel("epsilon")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.grid(alpha=0.3)
    if len(summary["parties"]) <= 12 and axis.get_legend_handles_labels()[0]:
        axis.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


PRIVACY_HEADER = (
    "party", "epsilon (record-level)", "epsilon (party-level)", "metrics epsilon (dataset)",
    "holds against", "delta",
    "noise multiplier", "clip norm", "accountant", "rounds charged", "not covered by epsilon",
)  # fmt: skip


def _noise_multiplier(figures: dict[str, Any]) -> str:
    """z; for DP-FedAvg also the record-level z / 2 that the ledger's epsilon uses."""
    text = f"{figures['noise_multiplier']:.4g}"
    if "party_epsilon" in figures:
        text += f" (record-level {figures['noise_multiplier'] / 2:.4g})"
    return text


def privacy_rows(summary: dict[str, Any]) -> list[list[str]]:
    """Table rows under :data:`PRIVACY_HEADER`: party, record-level epsilon, party-level
    epsilon (client-level DP only), the noisy metrics' epsilon alone and its dataset,
    adversary, delta, sigma, clipping, accountant, rounds,
    and the kinds of release not covered by epsilon (exempt in the node's node.toml)."""
    rows = []
    for party, f in summary["parties"].items():
        party_epsilon, metrics_epsilon = f.get("party_epsilon"), f.get("metrics_epsilon")
        rows.append([
            party, f"{f['epsilon']:.4f}",
            "–" if party_epsilon is None else f"{party_epsilon:.4f}",
            "–" if metrics_epsilon is None else f"{metrics_epsilon:.4f} ({f['metrics_dataset']})",
            ADVERSARY_WORDS.get(f["adversary"], f["adversary"]),
            f"{summary['delta']:g}", _noise_multiplier(f), f"{summary['clip_norm']:g}",
            f["accountant"], str(f["rounds_charged"]),
            ", ".join(f.get("not_covered_by_epsilon", [])) or "none",
        ])  # fmt: skip
    return rows
