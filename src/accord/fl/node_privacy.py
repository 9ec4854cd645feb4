"""A node's privacy for one job: its plan, checked against its caps before training.

The node decides everything here from its own copy of the job and its own ``node.toml``
caps. For DP-SGD it also uses its own row count (which it never releases): the sampling
rate q = batch / rows, the steps per round, the noise multiplier (given, or calibrated for
the job's target epsilon over all its planned steps), and the DpEvent each round's update
will carry. For client-level DP-FedAvg the plan depends on the job alone
(:mod:`accord.privacy.client_dp`). A plan that would exceed a cap is refused when the job
is accepted, before any record is read for training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from accord.errors import InputError, RefusedError
from accord.fl.gate import JOB_CHARGE_ROUND
from accord.job import Job
from accord.privacy.accounting import Accountant
from accord.privacy.caps import NodePrivacySettings
from accord.privacy.events import Adversary

if TYPE_CHECKING:
    from dp_accounting import DpEvent

    from accord.fl.node import Node
    from accord.privacy.client_dp import ClientDpSettings
    from accord.privacy.ledger import Charge, PrivacyLedger


TRAIN_DATASET = "train"
"""A node's training data, as its node.toml caps name it."""
TEST_DATASET = "test"
"""A node's test split, when node.toml declares it as a dataset of its own."""


@dataclass(frozen=True, slots=True)
class DpSgdNodePlan:
    """What a DP-SGD job costs on this node, per round and in all."""

    dataset: str
    noise_multiplier: float
    clip_norm: float
    sample_rate: float
    steps_per_round: int
    round_event: DpEvent
    adversary: Adversary
    delta: float


@dataclass(frozen=True, slots=True)
class ClientDpNodePlan:
    """What a DP-FedAvg job costs on this node: the same event every round of the job,
    sampled or not, charged in full when the node accepts the job."""

    dataset: str
    settings: ClientDpSettings
    round_event: DpEvent
    adversary: Adversary
    delta: float

    @property
    def noise_multiplier(self) -> float:
        return self.settings.noise_multiplier

    @property
    def per_round(self) -> bool:
        """Distributed noise: charged per round taken part in, not for the whole job."""
        return self.settings.skellam is not None

    @property
    def clip_norm(self) -> float:
        return self.settings.clip_norm


NodeDpPlan = DpSgdNodePlan | ClientDpNodePlan


def steps_per_round(job: Job, rows: int) -> int:
    training = job.training
    if training.local_steps is not None:
        return training.local_steps
    return (training.local_epochs or 1) * math.ceil(rows / training.batch_size)


def plan_node_privacy(
    job: Job,
    run_key: str,
    party: str,
    rows: int,
    num_parties: int,
    settings: NodePrivacySettings,
    ledger: PrivacyLedger | None,
) -> NodeDpPlan | None:
    """This node's DP plan (``None`` for a job without DP), refused if over a cap."""
    privacy = job.privacy
    # The node, not the job, says which of its datasets training reads: a job cannot
    # choose a name that has no cap.
    caps = settings.caps_for(TRAIN_DATASET)
    plan: NodeDpPlan | None = None
    if not privacy.enabled:
        if caps:
            raise RefusedError(
                f"party {party!r}: dataset {TRAIN_DATASET!r} is capped in node.toml "
                f"({caps[0].describe()}) and this job has no differential privacy "
                '(privacy.mode = "none"); run it with privacy.mode = "dpsgd" (or "dpfedavg", '
                'where the cap trusts the coordinator: adversary = "recipients_only")'
            )
    elif privacy.client_level:
        plan = _plan_client_dp(job, num_parties)
    else:
        plan = _plan_dpsgd(job, rows)
    if ledger is not None:
        _check_plan_against_caps(job, run_key, plan, settings, ledger)
    return plan


def _plan_dpsgd(job: Job, rows: int) -> DpSgdNodePlan:
    from accord.privacy.accounting import calibrate_noise, dpsgd_event

    if job.strategy.name in ("fedprox", "scaffold"):
        raise InputError(
            f'privacy.mode = "dpsgd" with strategy {job.strategy.name!r}: its local term is '
            "not part of the private gradient; use fedavg, fedavgm, fedadam, fedyogi or fedadagrad"
        )

    privacy = job.privacy
    sample_rate = min(1.0, job.training.batch_size / rows)
    steps = steps_per_round(job, rows)
    if privacy.noise_multiplier is not None:
        sigma = privacy.noise_multiplier
    else:
        assert privacy.target_epsilon is not None
        sigma = calibrate_noise(
            privacy.target_epsilon, privacy.delta, sample_rate, steps * job.job.rounds,
            privacy.accountant,
        )  # fmt: skip
    return DpSgdNodePlan(
        dataset=TRAIN_DATASET,
        noise_multiplier=sigma,
        clip_norm=privacy.clip_norm,
        sample_rate=sample_rate,
        steps_per_round=steps,
        round_event=dpsgd_event(sigma, sample_rate, steps),
        # The noise is added on the node, before the release: it holds against everyone.
        adversary=Adversary.COORDINATOR_AND_RECIPIENTS,
        delta=privacy.delta,
    )


def _plan_client_dp(job: Job, num_parties: int) -> ClientDpNodePlan:
    from accord.privacy.client_dp import client_dp_settings

    if job.strategy.name == "scaffold":
        raise InputError(
            'privacy.mode = "dpfedavg" with strategy "scaffold": its control variates would '
            "leave the node unclipped and un-noised; use fedavg, fedprox, fedavgm, fedadam, "
            "fedyogi or fedadagrad"
        )
    settings = client_dp_settings(job, num_parties)
    return ClientDpNodePlan(
        dataset=TRAIN_DATASET,
        settings=settings,
        round_event=settings.record_event(),
        # The coordinator adds the noise: it holds against the recipients only. With
        # distributed noise the parties add it before masking: against everyone.
        adversary=(
            Adversary.COORDINATOR_AND_RECIPIENTS
            if settings.skellam is not None
            else Adversary.RECIPIENTS_ONLY
        ),
        delta=job.privacy.delta,
    )


def metrics_dataset(settings: NodePrivacySettings) -> str:
    """The test split is its own dataset only where node.toml declares it ("test")."""
    return TEST_DATASET if settings.caps_for(TEST_DATASET) else TRAIN_DATASET


def evaluation_rounds(job: Job) -> list[int]:
    """The rounds after which nodes release metrics (every N rounds, and the last)."""
    if not job.evaluation.federated:
        return []
    last = job.job.rounds
    return [r for r in range(1, last + 1) if r % job.evaluation.every == 0 or r == last]


def _check_plan_against_caps(
    job: Job,
    run_key: str,
    plan: NodeDpPlan | None,
    settings: NodePrivacySettings,
    ledger: PrivacyLedger,
) -> None:
    """Refuse the job if what it will still release (updates, noisy metrics) would take
    any dataset over a cap. On resume, what this run already charged is in the ledger and
    counts there: only the rest is planned."""
    charges = ledger.charges(run_key)
    planned: dict[str, list[tuple[DpEvent, Adversary]]] = {}
    if isinstance(plan, DpSgdNodePlan) or (isinstance(plan, ClientDpNodePlan) and plan.per_round):
        # Charged per round: plan the rounds not yet charged (the node may take part in all).
        charged = {c.round for c in charges if c.release_kind == "update"}
        remaining = job.job.rounds - len(charged)
        planned[plan.dataset] = [(plan.round_event, plan.adversary)] * remaining
    elif isinstance(plan, ClientDpNodePlan) and not any(
        c.round == JOB_CHARGE_ROUND for c in charges
    ):
        planned[plan.dataset] = [(plan.round_event, plan.adversary)] * plan.settings.rounds
    epsilon = job.evaluation.dp_epsilon
    if epsilon is not None:
        from accord.privacy.dp_metrics import metrics_event

        done = {c.round for c in charges if c.release_kind == "metrics"}
        rounds = [r for r in evaluation_rounds(job) if r not in done]
        planned.setdefault(metrics_dataset(settings), []).extend(
            [(metrics_event(epsilon), Adversary.COORDINATOR_AND_RECIPIENTS)] * len(rounds)
        )
    for dataset, releases in planned.items():
        caps = settings.caps_for(dataset)
        if releases and caps:
            fits, why = ledger.plan_fits(dataset, releases, caps)
            if not fits:
                raise RefusedError(why)


def job_epsilon(plan: DpSgdNodePlan, rounds: int, accountant: Accountant) -> float:
    """Epsilon of ``rounds`` of this plan's round event at the plan's delta."""
    if rounds == 0:
        return 0.0
    from accord.privacy.accounting import dpsgd_event, epsilon

    event = dpsgd_event(plan.noise_multiplier, plan.sample_rate, plan.steps_per_round * rounds)
    return epsilon(event, plan.delta, accountant)


def client_dp_epsilon(
    plan: ClientDpNodePlan, rounds: int, accountant: Accountant, *, party_level: bool = False
) -> float:
    """Record-level (what the ledger charges) or party-level epsilon of ``rounds`` rounds."""
    if rounds == 0:
        return 0.0
    from accord.privacy.accounting import dpsgd_event, epsilon

    s = plan.settings
    if s.skellam is not None:
        from dp_accounting import SelfComposedDpEvent

        event = (
            s.party_event(rounds) if party_level else SelfComposedDpEvent(s.record_event(), rounds)
        )
        return epsilon(event, plan.delta, "rdp")  # zCDP events: RDP only
    sigma = s.noise_multiplier if party_level else s.noise_multiplier / 2
    return epsilon(dpsgd_event(sigma, s.sample_rate, rounds), plan.delta, accountant)


def _run_epsilon(charges: Sequence[Charge], plan: NodeDpPlan) -> tuple[float, Accountant]:
    """Epsilon at the plan's delta of ``charges`` composed, and the accountant used (PLD
    where it supports every event, as the ledger chooses)."""
    from accord.privacy.cap_accounting import accountant_for_events, composed_epsilon

    events = [c.event for c in charges]
    accountant = accountant_for_events(events)
    return composed_epsilon(events, plan.delta, accountant), accountant


def privacy_summary(nodes: Sequence[Node]) -> dict[str, Any] | None:
    """For the report: epsilon per party at the job's delta, from its ledger (None: no DP).

    DP-SGD counts only the rounds a node actually charged; DP-FedAvg charges the whole job
    when the node accepts it, so its epsilon is the planned one from the start. In
    simulation the runner reads every node's ledger and plan; in a deployment each node
    reports its own (``accord budget show``). Per-party DP-SGD epsilons depend on each
    party's row count, through its sampling rate: they are for whoever reads the run folder.
    """
    planned = [n for n in nodes if n.dp_plan is not None and n.gate.privacy is not None]
    if not planned:
        return None
    parties: dict[str, Any] = {}
    for node in planned:
        plan, privacy = node.dp_plan, node.gate.privacy
        assert plan is not None and privacy is not None
        charges = privacy.ledger.charges(privacy.run_key)
        uncovered = sorted({c.release_kind for c in charges if not c.covered})
        figures: dict[str, Any] = {
            "adversary": plan.adversary.value,
            "noise_multiplier": plan.noise_multiplier,
            # Exact releases that node.toml exempts: outside every epsilon above.
            "not_covered_by_epsilon": uncovered,
        }
        updates = sorted(
            c.round for c in charges if c.release_kind == "update" and c.round != JOB_CHARGE_ROUND
        )
        # Everything this run charged to the training dataset (updates, and metrics where
        # the test split is not a dataset of its own), composed as the ledger composes it.
        figures["epsilon"], figures["accountant"] = _run_epsilon(
            [c for c in charges if c.dataset == plan.dataset], plan
        )
        dp_metrics = [c for c in charges if c.release_kind == "metrics" and c.covered]
        if dp_metrics:
            figures["metrics_dataset"] = dp_metrics[0].dataset
            figures["metrics_epsilon"] = _run_epsilon(dp_metrics, plan)[0]
        if isinstance(plan, DpSgdNodePlan):
            figures.update({
                "rounds_charged": len(updates),
                # The curve uses RDP: one conversion per round instead of one PLD per round.
                "epsilon_by_round_rdp": [
                    [r, job_epsilon(plan, i + 1, "rdp")] for i, r in enumerate(updates)
                ],
            })  # fmt: skip
        elif plan.per_round:
            # Distributed noise: no amplification by sampling is credited, so the rounds
            # the node took part in are no secret to account for.
            figures.update({
                "rounds_charged": len(updates),
                "party_epsilon": client_dp_epsilon(plan, len(updates), "rdp", party_level=True),
                "epsilon_by_round_rdp": [
                    [r, client_dp_epsilon(plan, i + 1, "rdp")] for i, r in enumerate(updates)
                ],
            })  # fmt: skip
        else:
            rounds = plan.settings.rounds
            # Not how often the party was sampled: whoever reads the run folder is a
            # recipient, and the amplification by sampling holds only if they never learn it.
            figures.update({
                "rounds_charged": rounds,
                "party_epsilon": client_dp_epsilon(plan, rounds, "pld", party_level=True),
                "epsilon_by_round_rdp": [
                    [r, client_dp_epsilon(plan, r, "rdp")] for r in range(1, rounds + 1)
                ],
            })  # fmt: skip
        parties[node.party] = figures
    first = planned[0].dp_plan
    assert first is not None
    summary: dict[str, Any] = {
        "mode": "dpsgd",
        "mechanism": "DP-SGD: Poisson-sampled Gaussian, per-example clipping",
        "adjacency": "add or remove one record",
        "delta": first.delta,
        "clip_norm": first.clip_norm,
        "parties": parties,
    }
    if isinstance(first, ClientDpNodePlan):
        s = first.settings
        summary.update({
            "mode": "dpfedavg",
            "mechanism": (
                f"DP-FedAvg: parties Poisson-sampled at q = {s.sample_rate:g}, each update "
                "clipped on its node, Gaussian noise added to the sum by the coordinator"
                + (" (adaptive clipping)" if s.adaptive else "")
            ),
            "sample_rate": s.sample_rate,
            "notes": [
                "epsilon is record-level (one record added or removed): the ledger charges "
                f"noise multiplier {s.noise_multiplier / 2:.4g} (z / 2, since one record moves "
                "a clipped update by up to twice the clip norm) for every round of the job, "
                "sampled or not, in full when the node accepted the job",
                "party-level epsilon: one whole party added or removed (noise multiplier "
                f"{s.noise_multiplier:.4g})",
                "both hold against the recipients of the model only: the coordinator adds "
                "the noise, sees the clipped updates un-noised and knows who was sampled "
                "(amplification by sampling is credited against recipients only)",
            ],
        })  # fmt: skip
        if s.skellam is not None:
            k = s.skellam
            summary.update({
                "mechanism": (
                    f"DP-FedAvg with distributed Skellam noise (Agarwal, Kairouz and Liu 2021): "
                    "each update clipped, quantized and noised on its node before secure "
                    f"aggregation; noise calibrated for {k.honest_parties} honest survivors "
                    "(sampling.min_parties minus privacy.colluding_parties)"
                ),
                "notes": [
                    "epsilon is record-level (one record added or removed: sensitivity twice "
                    "the clip norm, in quantized units 2 s S); each round a node takes part "
                    f"in is charged ZCDpEvent(rho = {k.rho:.4g}) when it takes part, "
                    "without amplification by sampling, composed with RDP",
                    f"party-level epsilon: one whole party added or removed (rho = "
                    f"{k.party_rho:.4g} per round)",
                    "both hold against the coordinator and the recipients, as long as at "
                    "most privacy.colluding_parties parties collude with the coordinator",
                ],
            })  # fmt: skip
    return summary
