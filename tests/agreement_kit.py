"""A federation under a signed agreement, for tests: keys in node homes, terms, signatures."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import tomli_w

from accord.governance.agreement import load_agreement, sign_agreement
from accord.governance.identity import PartyIdentity, generate_identity, write_node_identity

OWNERS = [f"party-{i}" for i in range(1, 5)]
PURPOSE = "cancer-research"


def base_terms(keys: dict[str, str]) -> dict[str, Any]:
    """Terms that SMALL_JOB (plus ``AGREED``) keeps; tests change one clause at a time."""
    now = datetime.now(UTC).replace(microsecond=0)
    return {
        "agreement": {
            "id": "test-agreement",
            "version": 1,
            "title": "Tests",
            "purposes": [PURPOSE],
            "valid_from": now - timedelta(days=1),
            "valid_until": now + timedelta(days=30),
        },
        "parties": [
            {"name": "coordinator", "role": "coordinator", "key": keys["coordinator"]},
            *({"name": o, "role": "data_owner", "key": keys[o]} for o in OWNERS),
        ],
        "datasets": [{"owner": o, "name": "train", "sensitivity": "confidential"} for o in OWNERS],
        "operations": {
            "train": {"model_kinds": ["mlp", "logreg"], "strategies": ["fedavg"]},
            "evaluate": {},
        },
        "protections": {"aggregation": "none"},
        "outputs": {"final_model": ["coordinator", *OWNERS], "metrics": ["coordinator"]},
        "code": {"allowed": "builtin"},
        "retention": {"run_artifacts_days": 30},
    }


AGREED = f'purpose = "{PURPOSE}"\nagreement = "agreement.toml"\n'
"""Lines for the [job] section of a job that runs under the kit's agreement."""


@dataclass
class Federation:
    root: Path
    homes: Path
    identities: dict[str, PartyIdentity]
    agreement: Path

    def write_terms(self, terms: dict[str, Any], sign: bool = True) -> Path:
        self.agreement.write_text(tomli_w.dumps(terms))
        self.agreement.with_suffix(".sig").unlink(missing_ok=True)
        if sign:
            for identity in self.identities.values():
                sign_agreement(load_agreement(self.agreement), identity)
        return self.agreement

    def terms(self) -> dict[str, Any]:
        keys = {name: i.public_key_line for name, i in self.identities.items()}
        return copy.deepcopy(base_terms(keys))


def make_federation(root: Path) -> Federation:
    """Identity keys in four node homes (``root/homes/party-i``) and a coordinator key; the
    base terms written to ``root/agreement.toml`` and signed by every party."""
    homes = root / "homes"
    identities = {"coordinator": generate_identity("coordinator")}
    for owner in OWNERS:
        identities[owner] = generate_identity(owner)
        write_node_identity(identities[owner], homes / owner)
    federation = Federation(root, homes, identities, root / "agreement.toml")
    federation.write_terms(federation.terms())
    return federation


def agreed_job(job_text: str) -> str:
    """SMALL_JOB's text with the [job] lines that put it under the kit's agreement."""
    return job_text.replace("[job]\n", "[job]\n" + AGREED, 1)
