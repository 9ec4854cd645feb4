"""Privacy receipts and audit heads in the run folder, and the receipts in the report.

``receipts.json``: one privacy receipt per party, as each node drew it from its own audit
log and ledger at the end of the run (which protections ran, epsilon per dataset and per
adversary, the code hash, the agreement version, the approvals it used, its audit head).
``audit-heads.json``: the latest signed audit head each party's releases carried. Keep it:
``accord audit verify --node-home HOME --against audit-heads.json`` later shows whether a
node's log still holds everything it had logged by then (nothing edited, cut or rolled back).
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any

from accord.fileio import write_text_atomic
from accord.fl.run_dir import RunDir
from accord.report.privacy import ADVERSARY_WORDS

RECEIPTS_FILE = "receipts.json"
AUDIT_HEADS_FILE = "audit-heads.json"


def write_audit_heads(run_dir: RunDir, heads: Mapping[str, Mapping[str, object]]) -> None:
    if heads:
        body = {"heads": [dict(heads[party]) for party in sorted(heads)]}
        write_text_atomic(run_dir.path / AUDIT_HEADS_FILE, json.dumps(body, indent=2))


def write_receipts(run_dir: RunDir, receipts: Mapping[str, Mapping[str, Any]]) -> None:
    if receipts:
        body = {party: dict(receipts[party]) for party in sorted(receipts)}
        write_text_atomic(run_dir.path / RECEIPTS_FILE, json.dumps(body, indent=2))


def read_receipts(run_dir: RunDir) -> dict[str, Any] | None:
    path = run_dir.path / RECEIPTS_FILE
    if not path.exists():
        return None
    receipts: dict[str, Any] = json.loads(path.read_text())
    return receipts


def receipts_section(receipts: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The report's "Privacy receipts" section: one row per party and dataset."""
    parts = [
        "<h2>Privacy receipts</h2>",
        "<p>Each party's own account of this run, drawn from its signed audit log and its "
        "privacy ledger (not from the coordinator's records).</p>",
        "<table><tr><th>party</th><th>agreement</th><th>protection</th><th>privacy</th>"
        "<th>code</th><th>releases</th><th>dataset</th><th>epsilon against</th>"
        "<th>approvals</th><th>audit head</th></tr>",
    ]
    for party, receipt in receipts.items():
        releases = ", ".join(f"{k} {v}" for k, v in receipt.get("releases", {}).items())
        epsilon_by_dataset: dict[str, list[str]] = {}
        for line in receipt.get("epsilon", []):
            value = line["epsilon"]
            shown = "not protected" if value is None else f"{value:.4f}"
            who = ADVERSARY_WORDS.get(line["adversary"], line["adversary"])
            epsilon_by_dataset.setdefault(line["dataset"], []).append(f"{who}: {shown}")
        datasets = epsilon_by_dataset or {"–": ["no DP charges"]}
        head = receipt.get("audit_head", {})
        head_text = f"entry {head.get('seq')}, {str(head.get('entry_hash', ''))[:16]}"
        code = receipt.get("task_hash") or "built-in model"
        for index, (dataset, lines) in enumerate(datasets.items()):
            cells = [
                party, receipt.get("agreement") or "none", receipt.get("protection", ""),
                receipt.get("privacy", ""), code[:16], releases,
            ] if index == 0 else [""] * 6  # fmt: skip
            tail = [", ".join(receipt.get("approvals", [])) or "none", head_text]
            tail = tail if index == 0 else ["", ""]
            row = [*cells, dataset, "; ".join(lines), *tail]
            parts.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>")
        if receipt.get("not_covered"):
            kinds = ", ".join(receipt["not_covered"])
            parts.append(
                f"<tr><td></td><td colspan='9'>{html.escape(party)}: released {html.escape(kinds)}"
                " without a DP mechanism (not covered by epsilon)</td></tr>"
            )
    parts.append("</table>")
    return parts
