"""``accord agreement show``: who may do what, in plain words, every clause labelled."""

from __future__ import annotations

from datetime import datetime

from accord.governance.agreement import Agreement
from accord.governance.agreement_check import CONTRACTUAL, clause_labels
from accord.governance.identity import fingerprint, parse_public_key_line

_ROLES = {"data_owner": "data owner", "model_owner": "model owner", "coordinator": "coordinator"}


def describe(agreement: Agreement, now: datetime) -> str:
    terms = agreement.terms
    status = agreement.status()
    head = terms.agreement
    out = [
        f"{agreement.label}: {head.title}",
        f"terms {agreement.digest}",
        "",
        "Parties:",
    ]
    for party in terms.parties:
        key = parse_public_key_line(party.key, f"parties.{party.name}.key")
        signed = "signed" if party.name in status.signed else "NOT signed"
        out.append(f"  {party.name:<16} {_ROLES[party.role]:<12} key {fingerprint(key)}  {signed}")
    if terms.datasets:
        out += ["", "Datasets:"]
        for d in terms.datasets:
            cap = (
                f"; DP cap epsilon {d.dp_cap.epsilon:g} at delta {d.dp_cap.delta:g} against "
                f"{d.dp_cap.adversary.value}"
                if d.dp_cap is not None
                else "; no DP cap"
            )
            description = f" ({d.description})" if d.description else ""
            out.append(f"  {d.owner}/{d.name}{description}: {d.sensitivity}{cap}")
            if d.columns:
                out.append(f"    columns: {', '.join(d.columns)}")
    out += ["", "Clauses (enforced: every node checks it before each release; contractual: "
            "a node cannot verify it):"]  # fmt: skip
    rows = clause_labels(terms)
    width = max(len(clause) for clause, _, _ in rows)
    for clause, says, how in rows:
        flag = "CONTRACTUAL" if how == CONTRACTUAL else "enforced"
        out.append(f"  {clause:<{width}}  {flag:<11}  {says}")
    out += ["", _standing(agreement, now)]
    return "\n".join(out)


def _standing(agreement: Agreement, now: datetime) -> str:
    status = agreement.status()
    refusal = status.refusal(now)
    if refusal is None:
        return f"In force now (every party signed; valid until {status.valid_until.isoformat()})."
    return f"NOT in force: {refusal}."
