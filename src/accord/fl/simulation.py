"""Simulation: every party's node, the coordinator and an in-process transport.

The coordinator and node objects are the ones a deployment uses; only the transport
differs. Nodes in one process run one at a time, so they share one scratch model (each
request loads the parameters it carries); their data, gate and home stay their own.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from accord.data.federation import FederatedData, PartyData, build_federated_data
from accord.errors import (
    AgreementRevokedError,
    ApprovalNeededError,
    InputError,
    JobFileError,
    TaskCodeError,
)
from accord.fileio import load_tensors
from accord.fl.acceptance import accept_job, accepted
from accord.fl.coordinator import Coordinator, ServerEvaluator
from accord.fl.coordinator_inbox import CoordinatorInbox
from accord.fl.gate import GatePrivacy
from accord.fl.local_training import LocalPlan, evaluate_model
from accord.fl.node import Node, NodeConfig
from accord.fl.node_ckks import NodeCkks
from accord.fl.node_home import NodeHome, default_home
from accord.fl.node_metrics import CustomEvaluate
from accord.fl.node_privacy import NodeDpPlan, plan_node_privacy
from accord.fl.node_secagg import NodeSecAgg
from accord.fl.node_training import CustomTrain
from accord.fl.provision import coordinator_agreement, provision_identities, relay_withdrawal
from accord.fl.run_dir import RunDir
from accord.fl.strategies import build_strategy
from accord.fl.strategies.base import LocalObjective
from accord.job import Job, resolve_path
from accord.models.builtin import build_builtin_model
from accord.models.flat import FlatModel
from accord.privacy.caps import NodePrivacySettings
from accord.transport.inprocess import InProcessTransport


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """How to build the job's model, with the user's task code where it has one."""

    build: Callable[[], torch.nn.Module]
    custom_train: CustomTrain | None
    custom_evaluate: CustomEvaluate | None


def model_spec(
    job: Job, base_dir: Path, input_shape: tuple[int, ...], num_classes: int
) -> ModelSpec:
    cfg = job.model
    if cfg.kind == "custom":
        from accord.models.task_code import load_task

        assert cfg.task_dir is not None and cfg.task_hash is not None
        task = load_task(resolve_path(cfg.task_dir, base_dir), cfg.task_hash)
        return ModelSpec(
            lambda: task.build_model(input_shape, num_classes), task.train, task.evaluate
        )
    hidden, channels, groups = tuple(cfg.hidden), tuple(cfg.channels), cfg.groups
    return ModelSpec(
        lambda: build_builtin_model(
            cfg.kind, input_shape, num_classes, hidden=hidden, channels=channels, groups=groups
        ),
        None,
        None,
    )


def initial_model(job: Job, base_dir: Path, spec: ModelSpec) -> FlatModel:
    """The model initialised from the job seed, or from ``model.initial``."""
    with torch.random.fork_rng():
        torch.manual_seed(job.job.seed)
        module = spec.build()
    buffers = [name for name, _ in module.named_buffers()]
    if buffers:
        # Buffers (batch norm's running statistics) are neither federated nor private.
        raise TaskCodeError(
            f"the model has buffers ({', '.join(buffers[:3])}), e.g. batch norm's running "
            "statistics, which federated averaging does not carry and DP-SGD cannot make "
            "private; use GroupNorm or LayerNorm"
        )
    model = FlatModel(module)
    if job.model.initial is not None:
        path = resolve_path(job.model.initial, base_dir)
        if not path.exists():
            raise JobFileError(f"model.initial: {path} not found")
        try:
            state = load_tensors(path)
        except Exception as exc:  # safetensors raises its own error types
            raise JobFileError(f"model.initial: {path} is not a safetensors file ({exc})") from None
        model.load(model.vector_from_state_dict(state, f"model.initial {path}"))
    return model


def local_plan(job: Job, objective: LocalObjective) -> LocalPlan:
    t = job.training
    return LocalPlan(
        epochs=t.local_epochs,
        steps=t.local_steps,
        batch_size=t.batch_size,
        momentum=t.momentum,
        weight_decay=t.weight_decay,
        objective=objective,
        proximal_mu=job.strategy.proximal_mu,
    )


def node_home_path(job: Job, party: str, homes_root: Path | None, base_dir: Path) -> Path:
    settings = job.nodes.get(party)
    if settings is not None and settings.home is not None:
        return resolve_path(settings.home, base_dir)
    if homes_root is not None:
        return homes_root / party
    return default_home(party)


def check_homes_outside(homes: Sequence[Path], run_dir: RunDir | None) -> None:
    """A node home belongs to its data owner; it is never inside the coordinator's folder."""
    if run_dir is None:
        return
    target = run_dir.path.resolve()
    for home in homes:
        resolved = home.resolve()
        if resolved == target or target in resolved.parents:
            raise InputError(f"node home {resolved} is inside the run folder {target}; move it out")


@dataclass
class Simulation:
    job: Job
    job_id: str
    data: FederatedData
    coordinator: Coordinator
    nodes: list[Node]
    model: FlatModel
    spec: ModelSpec
    initial: torch.Tensor
    run_id: str


def make_server_evaluator(model: FlatModel, data: FederatedData) -> ServerEvaluator | None:
    """The simulation-only coordinator test set, evaluated on the coordinator's side."""
    if data.server_test is None:
        return None
    x = torch.from_numpy(np.ascontiguousarray(data.server_test[0]))
    y = torch.from_numpy(np.ascontiguousarray(data.server_test[1]))

    def evaluate(params: torch.Tensor) -> dict[str, float]:
        model.load(params)
        result = evaluate_model(model.module, x, y)
        return {
            "num_examples": float(result.num_examples),
            "loss": result.loss_sum / max(result.num_examples, 1),
            "accuracy": result.correct / max(result.num_examples, 1),
        }

    return evaluate


def build_nodes(
    job: Job,
    job_id: str,
    parties: Sequence[PartyData],
    model: FlatModel,
    spec: ModelSpec,
    plan: LocalPlan,
    homes_root: Path | None,
    base_dir: Path,
    run_id: str,
    agreement_digest: str | None = None,
    only: tuple[str, Path] | None = None,
) -> list[Node]:
    """Every party's node; with ``only`` = (party, home), that party's node alone (a
    deployed node process), in its own home."""
    if job.privacy.mode == "dpsgd":
        # Client-level DP clips the whole update, so any local training may run under it.
        from accord.privacy.dpsgd import check_private_module

        check_private_module(model.module)
        if spec.custom_train is not None:
            raise InputError(
                "privacy.mode = \"dpsgd\" trains with Accord's DP-SGD; a task's own train() "
                "cannot be made private: remove train() from the task"
            )
    if job.evaluation.dp_epsilon is not None and spec.custom_evaluate is not None:
        raise InputError(
            "evaluation.dp_epsilon releases noisy per-example sums, which a task's own "
            "evaluate() does not give: remove evaluate() from the task or dp_epsilon"
        )
    names = [party.name for party in parties]
    nodes = []
    pending: list[ApprovalNeededError] = []
    for index, party in enumerate(parties):
        if only is not None and party.name != only[0]:
            continue
        path = (
            only[1] if only is not None else node_home_path(job, party.name, homes_root, base_dir)
        )
        home = NodeHome(path, party.name)
        run_key = f"{job_id}.{run_id}"
        try:
            acceptance = accept_job(
                home, job, job_id, run_key, agreement_digest,
                functools.partial(node_privacy, job, run_key, party, len(parties), home),
            )  # fmt: skip
        except ApprovalNeededError as waiting:
            # Every owner whose approval the job needs files its request in one go.
            pending.append(waiting)
            continue
        build = functools.partial(
            Node,
            party=party.name,
            data=party,
            model=model,
            home=home,
            config=NodeConfig(
                job_id,
                job.job.seed,
                index,
                plan,
                job.training.shuffle,
                job.evaluation.dp_epsilon,
                job.evaluation.dp_loss_bound,
            ),
            custom_train=spec.custom_train,
            custom_evaluate=spec.custom_evaluate,
            privacy=acceptance.privacy,
            dp_plan=acceptance.dp_plan,
            secagg=(
                NodeSecAgg(job, job_id, party.name, home.path, names)
                if job.protection.secagg
                else None
            ),
            ckks=(
                NodeCkks(job, job_id, party.name, home.path, names) if job.protection.ckks else None
            ),
            agreement=acceptance.agreement,
            audit=acceptance.audit,
        )
        nodes.append(accepted(build, acceptance))
    if pending:
        ids = [i for waiting in pending for i in waiting.approval_ids]
        more = f" (and {len(pending) - 1} more owners: ids {', '.join(ids[1:])})" if ids[1:] else ""
        raise ApprovalNeededError(f"{pending[0]}{more}", ids)
    return nodes


def node_privacy(
    job: Job,
    run_key: str,
    party: PartyData,
    num_parties: int,
    home: NodeHome,
    settings: NodePrivacySettings,
) -> tuple[GatePrivacy | None, NodeDpPlan | None]:
    """A node's ledger and DP plan. The plan is checked against the node's caps (its
    node.toml's and its agreement's) before any record is read for training; a job over a
    cap is refused (exit 3)."""
    if not (job.privacy.enabled or settings.caps):
        return None, None
    from accord.privacy.ledger import PrivacyLedger

    ledger = PrivacyLedger(home.path)
    plan = plan_node_privacy(
        job, run_key, party.name, len(party.y_train), num_parties, settings, ledger
    )
    return GatePrivacy(run_key, ledger, settings), plan


def check_protection(job: Job, job_id: str, parties: Sequence[str]) -> None:
    """Refuse a protected job that secure aggregation or CKKS cannot run (exit code 2)."""
    from accord.fl.node_secagg import secagg_params

    if job.protection.ckks:
        check_ckks(job, parties)
        return
    if job.strategy.name == "scaffold":
        raise InputError(
            'protection.mode = "secagg" with strategy "scaffold": its control variates '
            "are per party and would leave unprotected; use another strategy"
        )
    if job.privacy.adaptive_clipping:
        raise InputError(
            'protection.mode = "secagg" with privacy.adaptive_clipping: the clipped-count '
            "bit is not carried under secure aggregation yet; use a fixed clip_norm"
        )
    # The settings must give the stated security and dropout tolerance for the roster.
    secagg_params(job, job_id, 1, parties, 1)


def check_ckks(job: Job, parties: Sequence[str]) -> None:
    """Refuse a CKKS job that this release cannot run (exit code 2)."""
    key_holder = job.protection.key_holder
    if key_holder not in parties:
        raise JobFileError(
            f"protection.key_holder = {key_holder!r} is not a party of this job "
            f"(parties: {list(parties)})"
        )
    if job.strategy.name == "scaffold":
        raise InputError(
            'protection.mode = "ckks" with strategy "scaffold": its control variates are per '
            "party and would leave unprotected; use another strategy"
        )
    if job.privacy.mode == "dpfedavg":
        raise InputError(
            'protection.mode = "ckks" with privacy.mode = "dpfedavg" is not supported yet: '
            "the coordinator cannot add the noise to a sum it never decrypts; use "
            '"dpsgd" or protection.mode = "secagg"'
        )


def build_simulation(
    job: Job,
    base_dir: Path,
    homes_root: Path | None = None,
    run_dir: RunDir | None = None,
    data: FederatedData | None = None,
    run_id: str | None = None,
) -> Simulation:
    """Load every party's data, build the nodes and the coordinator (writes nothing).

    ``run_id`` names this run in the nodes' ledgers (a fresh one by default; a resumed run
    passes its own), so a second run of the same job file is charged as a new run.
    """
    run_id = run_id or secrets.token_hex(4)
    if job.job.threads is not None:
        torch.set_num_threads(job.job.threads)
    if data is None:
        data = build_federated_data(job.data, job.job.seed, base_dir)
    names = [p.name for p in data.parties]
    unknown = sorted(set(job.nodes) - set(names))
    if unknown:
        raise JobFileError(f"nodes: {unknown} are not parties of this job (parties: {names})")
    if job.sampling.min_parties > len(names):
        raise JobFileError(
            f"sampling.min_parties = {job.sampling.min_parties} but the job has "
            f"{len(names)} parties"
        )
    check_homes_outside([node_home_path(job, n, homes_root, base_dir) for n in names], run_dir)
    spec = model_spec(job, base_dir, data.input_shape, data.num_classes)
    job_id = job.job_id()
    model = initial_model(job, base_dir, spec)
    initial = model.flat.clone()
    strategy = build_strategy(job.strategy, len(names))
    homes = {n: node_home_path(job, n, homes_root, base_dir) for n in names}
    agreement = coordinator_agreement(job, base_dir, homes)
    roster_keys = None
    if job.protection.enabled:
        check_protection(job, job_id, names)
        roster_keys = provision_identities(homes) if agreement is None else agreement.roster_keys()
    try:
        nodes = build_nodes(
            job,
            job_id,
            data.parties,
            model,
            spec,
            local_plan(job, strategy.objective),
            homes_root,
            base_dir,
            run_id,
            None if agreement is None else agreement.digest,
        )
    except AgreementRevokedError as revoked:
        if agreement is None:
            raise
        raise relay_withdrawal(agreement, homes, revoked) from None
    transport = CoordinatorInbox(
        InProcessTransport(node.endpoint() for node in nodes), job_id, names,
        None if agreement is None else agreement.path,
    )  # fmt: skip
    coordinator = Coordinator(
        job,
        job_id,
        names,
        transport,
        strategy,
        initial,
        run_dir,
        make_server_evaluator(model, data),
        roster_keys,
    )
    return Simulation(job, job_id, data, coordinator, nodes, model, spec, initial, run_id)
