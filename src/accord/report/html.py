"""``report.html``: a plain summary of a run and its plots, in one self-contained file."""

from __future__ import annotations

import base64
import html
import tomllib
from typing import Any

from accord.fileio import write_bytes_atomic, write_text_atomic
from accord.fl.run_dir import RunDir, headline_metrics
from accord.report.plots import metric_plots
from accord.report.privacy import (
    ADVERSARY_WORDS,
    PRIVACY_HEADER,
    epsilon_plot,
    privacy_rows,
    read_privacy_summary,
)
from accord.report.receipts import read_receipts, receipts_section

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1040px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
.note { color: #666; font-size: 0.9em; }
"""


def _fmt(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else html.escape(str(value))


def privacy_line(privacy: dict[str, Any] | None) -> str:
    if privacy is None:
        return "none: this run releases updates without DP noise"
    worst = max(f["epsilon"] for f in privacy["parties"].values())
    adversaries = sorted({ADVERSARY_WORDS[f["adversary"]] for f in privacy["parties"].values()})
    return (
        f"{privacy['mechanism']}; epsilon at most {worst:.4f} per party at delta "
        f"{privacy['delta']:g}, against {' / '.join(adversaries)}"
    )


def protection_line(job: dict[str, Any], records: list[dict[str, Any]]) -> str:
    """Which protection ran, what it cost per party, and its overhead over training."""
    protection = job.get("protection", {})
    if protection.get("mode", "none") == "none":
        return "none: each update reaches the coordinator as float32"
    ran = [r for r in records if r.get("protection") == protection["mode"]]
    train = sum(r["seconds"].get("train", 0.0) for r in ran)
    protocol = sum(r["seconds"].get("protocol", 0.0) for r in ran)
    # Per party contacted: the bytes include those of parties that dropped out.
    counted = [r for r in ran if r["bytes_up"] is not None and r.get("contacted")]
    per_party = (
        sum((r["bytes_down"] + r["bytes_up"]) / r["contacted"] for r in counted) / len(counted)
        if counted
        else None
    )
    text = (
        "secure aggregation (SecAgg+ masking): the coordinator learned only each round's sum; "
        f"protocol {protocol:.2f} s beside {train:.2f} s of training and advertising"
    )
    if per_party is not None:
        text += f"; {per_party:,.0f} bytes per party per round (down and up)"
    return text


def privacy_section(privacy: dict[str, Any]) -> list[str]:
    parts = [
        "<h2>Privacy</h2>",
        f"<p>{html.escape(privacy['mechanism'])}; adjacency: "
        f"{html.escape(privacy['adjacency'])}. Each figure comes from that party's own "
        "ledger and counts only the rounds it charged (in simulation, read from every node "
        "home; in a deployment, each node's <code>accord budget show</code>).</p><table><tr>",
        *(f"<th>{html.escape(h)}</th>" for h in PRIVACY_HEADER),
        "</tr>",
    ]
    for row in privacy_rows(privacy):
        parts.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
    encoded = base64.b64encode(epsilon_plot(privacy)).decode("ascii")
    parts.append("</table>")
    parts += [f"<p>{html.escape(note)}.</p>" for note in privacy.get("notes", [])]
    parts.append(f"<img alt='epsilon per round' src='data:image/png;base64,{encoded}'>")
    parts.append("<p class='note'>The table uses PLD (the ledger's accountant); the curve uses "
                 "RDP, an upper bound that is faster to draw round by round.</p>")  # fmt: skip
    return parts


def summary_lines(
    job: dict[str, Any], records: list[dict[str, Any]], privacy: dict[str, Any] | None = None
) -> list[tuple[str, str]]:
    last_eval = next((r for r in reversed(records) if "federated" in r or "server_test" in r), None)
    rows = [
        ("job", job["job"]["name"]),
        ("rounds completed", f"{len(records)} of {job['job']['rounds']}"),
        ("strategy", job.get("strategy", {}).get("name", "fedavg")),
        ("model", job["model"]["kind"]),
        (
            "data",
            f"{job['data']['source']} "
            f"({job['data'].get('partition', {}).get('kind', 'iid')} partition)",
        ),
        ("differential privacy", privacy_line(privacy)),
        ("protection", protection_line(job, records)),
    ]
    if last_eval is not None and "accuracy" in last_eval.get("federated", {}):
        fed = last_eval["federated"]
        rows.append(
            ("federated test accuracy", f"{fed['accuracy']:.4f} on {int(fed['num_examples'])} rows")
        )
        rows.append(("federated test loss", f"{fed['loss']:.4f}"))
    if last_eval is not None and "server_test" in last_eval:
        rows.append(
            (
                "coordinator test accuracy (simulation only)",
                f"{last_eval['server_test']['accuracy']:.4f}",
            )
        )
    if all(r["bytes_down"] is not None for r in records):
        total_bytes = sum(
            r["bytes_down"] + r["bytes_up"] + r.get("eval_bytes_down", 0)
            + r.get("eval_bytes_up", 0)
            for r in records
        )  # fmt: skip
        rows.append(("bytes that would cross the network", f"{total_bytes:,}"))
    else:  # DP-FedAvg: the bytes would count the sampled parties
        rows.append(("bytes that would cross the network", "not recorded (DP-FedAvg)"))
    return rows


def render_report(
    job: dict[str, Any],
    records: list[dict[str, Any]],
    plots: dict[str, bytes],
    privacy: dict[str, Any] | None = None,
    receipts: dict[str, Any] | None = None,
) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Accord run {html.escape(job['job']['name'])}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Accord run <code>{html.escape(job['job']['name'])}</code></h1>",
        "<h2>Summary</h2><table>",
    ]
    parts += [
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
        for k, v in summary_lines(job, records, privacy)
    ]
    parts.append("</table>")
    if privacy is not None:
        parts += privacy_section(privacy)
    if receipts:
        parts += receipts_section(receipts)
    for name, png in plots.items():
        encoded = base64.b64encode(png).decode("ascii")
        parts.append(f"<h2>{html.escape(name.removesuffix('.png').title())}</h2>")
        parts.append(f"<img alt='{html.escape(name)}' src='data:image/png;base64,{encoded}'>")
    parts.append(
        "<h2>Rounds</h2><table><tr><th>round</th><th>parties</th><th>train loss</th>"
        "<th>test loss</th><th>test accuracy</th><th>bytes</th><th>seconds</th></tr>"
    )
    for r in records:
        fed = headline_metrics(r)
        seconds = sum(r.get("seconds", {}).values())
        train_loss = r.get("train_loss")
        # A DP-FedAvg run does not record who was sampled (hidden from recipients).
        parties = "hidden" if r["sampled"] is None else str(len(r["sampled"]))
        bytes_cell = "hidden" if r["bytes_down"] is None else f"{r['bytes_down'] + r['bytes_up']:,}"
        parts.append(
            f"<tr><td>{r['round']}</td><td>{parties}</td>"
            f"<td>{_fmt('–' if train_loss is None else train_loss)}</td>"
            f"<td>{_fmt(fed.get('loss', '–'))}</td><td>{_fmt(fed.get('accuracy', '–'))}</td>"
            f"<td>{bytes_cell}</td><td>{seconds:.3f}</td></tr>"
        )
    parts.append(
        "</table><p class='note'>Test metrics are sample-weighted over the parties' own test "
        "splits (federated evaluation), unless only the simulation's coordinator test set "
        "exists. Every value here was released by a node's release gate, except the "
        "coordinator test set's metrics, which the coordinator computes itself "
        "(simulation only).</p></body></html>"
    )
    return "\n".join(parts)


def write_report(run_dir: RunDir) -> None:
    """Write ``report.html`` (plots embedded) and the plots as PNG files beside it."""
    job = tomllib.loads(run_dir.job_file.read_text(encoding="utf-8"))
    records = run_dir.read_metrics()
    plots = metric_plots(records)
    for name, png in plots.items():
        write_bytes_atomic(run_dir.path / name, png)
    privacy = read_privacy_summary(run_dir)
    receipts = read_receipts(run_dir)
    write_text_atomic(run_dir.report_file, render_report(job, records, plots, privacy, receipts))
