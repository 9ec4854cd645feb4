"""The annotated agreement that ``accord agreement init`` writes: cautious defaults.

Secure aggregation is required, every aggregate holds at least min(3, owners) parties,
only built-in models run, each owner's training data is "confidential" with no DP cap yet
(a commented example shows one), the coordinator and every party receive the final model
and the metrics, and run artefacts are kept 90 days.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime


def _q(text: str) -> str:
    # JSON string syntax is valid TOML basic-string syntax.
    return json.dumps(text)


def _list(items: Sequence[str]) -> str:
    return "[" + ", ".join(_q(i) for i in items) + "]"


def agreement_template(
    agreement_id: str,
    title: str,
    purposes: Sequence[str],
    parties: Sequence[tuple[str, str, str]],
    valid_from: datetime,
    valid_until: datetime,
) -> str:
    """TOML text of a new agreement; ``parties`` are (name, role, key line)."""
    owners = [name for name, role, _ in parties if role == "data_owner"]
    names = [name for name, _, _ in parties]
    coordinator = next(name for name, role, _ in parties if role == "coordinator")
    lines = [
        "# A data-sharing agreement (docs/agreements.md). Every party signs the terms below;",
        "# comments and whitespace are not terms, so editing them keeps the signatures.",
        "",
        "[agreement]",
        f"id = {_q(agreement_id)}",
        "version = 1",
        f"title = {_q(title)}",
        f"purposes = {_list(purposes)}     # a job states one of these in [job] purpose",
        f"valid_from = {valid_from.isoformat().replace('+00:00', 'Z')}",
        f"valid_until = {valid_until.isoformat().replace('+00:00', 'Z')}",
        "",
    ]
    for name, role, key in parties:
        lines += ["[[parties]]", f"name = {_q(name)}", f"role = {_q(role)}", f"key = {_q(key)}",
                  ""]  # fmt: skip
    for owner in owners:
        lines += [
            "[[datasets]]",
            f"owner = {_q(owner)}",
            'name = "train"                # what the owner\'s node calls its training rows',
            'description = ""',
            "columns = []",
            'sensitivity = "confidential"  # public | internal | confidential | special_category',
            '# dp_cap = { epsilon = 3.0, delta = 1e-5, adversary = "coordinator_and_recipients" }',
            "",
        ]
    lines += [
        "[operations.train]",
        'model_kinds = ["logreg", "mlp"]',
        'strategies = ["fedavg", "fedprox"]',
        "",
        "[operations.evaluate]",
        "",
        "[protections]",
        'aggregation = "secagg"         # none | secagg | ckks | secagg_or_ckks',
        f"min_parties = {min(3, len(owners))}",
        "dp_required = false",
        "",
        "[outputs]                      # contractual: a node cannot see who receives",
        f"final_model = {_list(names)}",
        f"metrics = {_list(names)}",
        f"statistics = {_list([coordinator])}",
        "intermediate_models = false",
        "",
        "[code]",
        'allowed = "builtin"            # or "approved", with task_hashes = [...]',
        "",
        "[retention]                    # contractual",
        "run_artifacts_days = 90",
        'on_expiry = "delete"',
        "",
    ]
    return "\n".join(lines)
