"""A job against an agreement's terms, as one data owner's node sees it.

:func:`job_violations` lists every clause a job departs from, each with the clause's name
and, for a clause that protects one owner's data, that owner (part of an approval may one
day relax it). A node refuses a job with any violation. What a node cannot see (who really
receives an output, how many parties an aggregate holds without secure aggregation) is
checked against what the job *declares* and labelled contractual in ``accord agreement
show`` (:func:`clause_labels`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from accord.governance.agreement_terms import Terms
from accord.job import Job

_Refuse = Callable[[str, str], None]


@dataclass(frozen=True, slots=True)
class Violation:
    """A clause the job departs from, and how."""

    clause: str
    message: str
    owner: str | None = None
    """The data owner whose data the clause protects (None: a clause of all parties)."""

    def line(self) -> str:
        return f"clause {self.clause}: {self.message}"


def job_violations(
    terms: Terms,
    job: Job,
    party: str,
    node_min_colluding: int = 0,
    statistics: Sequence[str] | None = None,
) -> list[Violation]:
    """Every clause of ``terms`` that ``job`` departs from, seen from ``party``'s node.

    ``statistics``: the query kinds of an ``accord stats`` run on the job's data (each
    party releases them with DP noise, per party); None: the job trains.
    """
    found: list[Violation] = []

    def refuse(clause: str, message: str, owner: str | None = None) -> None:
        found.append(Violation(clause, message, owner))

    me = terms.party(party)
    if me is None or me.role != "data_owner":
        refuse("parties", f"{party!r} is not a data owner of agreement {terms.agreement.id}")
    purpose = job.job.purpose
    if purpose not in terms.agreement.purposes:
        stated = "states no purpose" if purpose is None else f"states purpose {purpose!r}"
        refuse(
            "agreement.purposes",
            f"the job {stated}; permitted: {', '.join(terms.agreement.purposes)} "
            "(set [job] purpose)",
        )
    if statistics is not None:
        _check_statistics(terms, statistics, refuse)
        return found
    _check_operations(terms, job, refuse)
    _check_code(terms, job, refuse)
    _check_protections(terms, job, node_min_colluding, refuse)
    _check_recipients(terms, job, party, refuse)
    return found


def _check_statistics(terms: Terms, kinds: Sequence[str], refuse: _Refuse) -> None:
    allowed = terms.operations.statistics
    if allowed is None:
        refuse("operations.statistics", "statistics are not a permitted operation")
        return
    others = sorted(set(kinds) - set(allowed.queries))
    if others:
        refuse(
            "operations.statistics.queries",
            f"queries {', '.join(others)} are not permitted "
            f"(permitted: {', '.join(allowed.queries)})",
        )
    if terms.coordinator not in terms.outputs.statistics:
        refuse(
            "outputs.statistics",
            f"the statistics go to the coordinator {terms.coordinator!r}, which is not listed "
            "as a recipient of statistics",
        )


def scoring_violations(terms: Terms, party: str, model_kind: str | None) -> list[Violation]:
    """Clauses an encrypted-scoring step departs from: the data owner encrypting its
    features (``model_kind`` None) or the model owner scoring them with ``model_kind``."""
    role = "data_owner" if model_kind is None else "model_owner"
    listed = terms.party(party)
    found: list[Violation] = []
    if listed is None or listed.role != role:
        found.append(Violation("parties", f"{party!r} is not a {role.replace('_', ' ')} of "
                               f"agreement {terms.agreement.id}"))  # fmt: skip
    allowed = terms.operations.encrypted_scoring
    if allowed is None:
        found.append(Violation("operations.encrypted_scoring",
                               "encrypted scoring is not a permitted operation"))  # fmt: skip
    elif model_kind is not None and model_kind not in allowed.models:
        found.append(Violation(
            "operations.encrypted_scoring.models",
            f"a {model_kind} model is not permitted (permitted: {', '.join(allowed.models)})",
        ))  # fmt: skip
    return found


def _check_operations(terms: Terms, job: Job, refuse: _Refuse) -> None:
    train = terms.operations.train
    if train is None:
        refuse("operations.train", "training is not a permitted operation")
    else:
        if job.model.kind not in train.model_kinds:
            refuse(
                "operations.train.model_kinds",
                f"model kind {job.model.kind!r} is not permitted "
                f"(permitted: {', '.join(train.model_kinds)})",
            )
        if job.strategy.name not in train.strategies:
            refuse(
                "operations.train.strategies",
                f"strategy {job.strategy.name!r} is not permitted "
                f"(permitted: {', '.join(train.strategies)})",
            )
    if job.evaluation.federated and terms.operations.evaluate is None:
        refuse(
            "operations.evaluate",
            "federated evaluation is not a permitted operation (set [evaluation] federated = "
            "false)",
        )


def _check_code(terms: Terms, job: Job, refuse: _Refuse) -> None:
    if job.model.kind != "custom":
        return
    code = terms.code
    if code.allowed == "builtin":
        refuse("code.allowed", "only built-in models are permitted; the job runs task code")
    elif job.model.task_hash not in code.task_hashes:
        refuse(
            "code.task_hashes",
            f"task code {job.model.task_hash} is not among the approved hashes",
        )


def _check_protections(terms: Terms, job: Job, node_min_colluding: int, refuse: _Refuse) -> None:
    protections = terms.protections
    mode = job.protection.mode
    required = protections.aggregation
    allowed = {"none": {"none", "secagg", "ckks"}, "secagg": {"secagg"}, "ckks": {"ckks"},
               "secagg_or_ckks": {"secagg", "ckks"}}[required]  # fmt: skip
    if mode not in allowed:
        refuse(
            "protections.aggregation",
            f"the agreement requires {required.replace('_or_', ' or ')}; the job's "
            f"protection.mode is {mode!r}",
        )
    wanted = protections.min_parties
    if wanted > 1:
        if job.sampling.min_parties < wanted:
            refuse(
                "protections.min_parties",
                f"the job's sampling.min_parties = {job.sampling.min_parties} is below the "
                f"agreement's {wanted}",
            )
        elif mode != "secagg" and not protections.min_parties_trust_coordinator:
            refuse(
                "protections.min_parties",
                f"under protection.mode = {mode!r} a node cannot count the parties in an "
                "aggregate (only secure aggregation's signed survivor list shows it); use "
                'protection.mode = "secagg", or mark the clause min_parties_trust_coordinator',
            )
    if protections.dp_required and not job.privacy.enabled:
        refuse("protections.dp_required", "the agreement requires differential privacy")
    floor = max(protections.min_colluding_parties, node_min_colluding)
    if job.privacy.distributed_noise and job.privacy.colluding_parties < floor:
        whose = (
            "the agreement's protections.min_colluding_parties"
            if protections.min_colluding_parties >= node_min_colluding
            else "this node's min_colluding_parties (node.toml)"
        )
        refuse(
            "protections.min_colluding_parties",
            f"privacy.colluding_parties = {job.privacy.colluding_parties} is below {whose} "
            f"= {floor}",
        )
    if job.protection.ckks and terms.party(job.protection.key_holder or "") is None:
        refuse(
            "parties",
            f"protection.key_holder {job.protection.key_holder!r} is not a party of the agreement",
        )


def _check_recipients(terms: Terms, job: Job, party: str, refuse: _Refuse) -> None:
    outputs = terms.outputs
    coordinator = terms.coordinator
    if job.protection.ckks:
        # Every party decrypts the aggregate and holds the model; the key holder writes it.
        for holder in dict.fromkeys([party, job.protection.key_holder or ""]):
            if holder not in outputs.final_model:
                refuse(
                    "outputs.final_model",
                    f"under CKKS {holder!r} holds the final model but is not listed as a recipient",
                )
    elif coordinator not in outputs.final_model:
        refuse(
            "outputs.final_model",
            f"the coordinator {coordinator!r} builds the final model from the updates but is "
            "not listed as a recipient",
        )
    if job.evaluation.federated and coordinator not in outputs.metrics:
        refuse(
            "outputs.metrics",
            f"federated evaluation sends metrics to the coordinator {coordinator!r}, which is "
            "not listed as a recipient of metrics",
        )


ENFORCED = "enforced"
CONTRACTUAL = "contractual"


def clause_labels(terms: Terms) -> list[tuple[str, str, str]]:
    """(clause, what it says, enforced | contractual) for ``accord agreement show``."""
    t, p, o = terms.agreement, terms.protections, terms.outputs
    rows: list[tuple[str, str, str]] = [
        ("agreement.valid_from/until", f"{t.valid_from.isoformat()} to {t.valid_until.isoformat()}",
         ENFORCED),
        ("agreement.purposes", ", ".join(t.purposes), ENFORCED),
    ]  # fmt: skip
    ops = terms.operations
    if ops.train is not None:
        rows.append((
            "operations.train",
            f"models {', '.join(ops.train.model_kinds)}; strategies "
            f"{', '.join(ops.train.strategies)}",
            ENFORCED,
        ))  # fmt: skip
    if ops.evaluate is not None:
        rows.append(("operations.evaluate", "federated evaluation", ENFORCED))
    if ops.statistics is not None:
        rows.append(("operations.statistics", ", ".join(ops.statistics.queries), ENFORCED))
    if ops.encrypted_scoring is not None:
        rows.append((
            "operations.encrypted_scoring", ", ".join(ops.encrypted_scoring.models), ENFORCED
        ))  # fmt: skip
    code = "built-in models only" if terms.code.allowed == "builtin" else (
        f"built-in models and {len(terms.code.task_hashes)} approved task hash(es)"
    )  # fmt: skip
    rows.append(("code", code, ENFORCED))
    rows.append(("protections.aggregation", p.aggregation, ENFORCED))
    if p.min_parties > 1:
        how = CONTRACTUAL if p.min_parties_trust_coordinator else ENFORCED
        note = " (secure aggregation: counted from the signed survivor list" + (
            "; other modes trust the coordinator)" if how == CONTRACTUAL else ")"
        )
        rows.append(("protections.min_parties", f"{p.min_parties}{note}", how))
    rows.append(("protections.dp_required", "yes" if p.dp_required else "no", ENFORCED))
    if p.min_colluding_parties:
        rows.append(("protections.min_colluding_parties", str(p.min_colluding_parties), ENFORCED))
    for d in terms.datasets:
        if d.dp_cap is not None:
            rows.append((
                f"datasets.{d.owner}.{d.name}.dp_cap",
                f"epsilon {d.dp_cap.epsilon:g} at delta {d.dp_cap.delta:g} against "
                f"{d.dp_cap.adversary.value}",
                ENFORCED,
            ))  # fmt: skip
    rows += [
        ("outputs.final_model", ", ".join(o.final_model) or "nobody", CONTRACTUAL),
        ("outputs.metrics", ", ".join(o.metrics) or "nobody", CONTRACTUAL),
        ("outputs.statistics", ", ".join(o.statistics) or "nobody", CONTRACTUAL),
        ("outputs.intermediate_models", "may be released" if o.intermediate_models
         else "not to be kept or passed on", CONTRACTUAL),
        ("retention", f"run artefacts kept {terms.retention.run_artifacts_days} days, then "
         f"{terms.retention.on_expiry}", CONTRACTUAL),
    ]  # fmt: skip
    return rows
