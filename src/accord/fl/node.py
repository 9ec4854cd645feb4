"""A node: one party's side of a job. It trains and evaluates on its own data only.

Whatever the node sends back leaves through its :class:`ReleaseGate`. The same object
serves simulation (in-process transport) and deployment (network transport).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from accord.data.federation import PartyData
from accord.errors import InputError, RefusedError
from accord.fl.gate import GatePrivacy, ReleaseGate, SealedRelease
from accord.fl.local_training import (
    LocalPlan,
    train_local,
)
from accord.fl.messages import (
    COORDINATOR,
    EvaluateRequest,
    ProtocolRequest,
    Release,
    ReleaseKind,
    Request,
    TrainRequest,
)
from accord.fl.node_agreement import NodeAgreement
from accord.fl.node_audit import NodeAudit
from accord.fl.node_ckks import NodeCkks, ckks_model_path
from accord.fl.node_governance import NodeGovernance
from accord.fl.node_home import NodeHome
from accord.fl.node_metrics import (
    CustomEvaluate,
    exact_metrics,
    metrics_event,
    noisy_metrics_of,
)
from accord.fl.node_privacy import (
    TRAIN_DATASET,
    ClientDpNodePlan,
    DpSgdNodePlan,
    NodeDpPlan,
    metrics_dataset,
)
from accord.fl.node_secagg import NodeSecAgg
from accord.fl.node_training import CustomTrain, NodeTraining, start_model
from accord.fl.sealed_releases import request_digest as sealed_digest
from accord.fl.strategies.base import LocalObjective
from accord.models.flat import FlatModel
from accord.node_secrets import open_node_generator
from accord.privacy.events import Adversary
from accord.secure_random import SecureGenerator
from accord.transport.base import NodeEndpoint

if TYPE_CHECKING:
    from dp_accounting import DpEvent


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """What a node takes from its own copy of the job. From each request it takes only the
    global model, the round's learning rate and the strategy's tensors (see
    docs/threat-model.md for what a dishonest coordinator can do with those)."""

    job_id: str
    seed: int
    party_index: int
    plan: LocalPlan
    shuffle: bool
    metrics_epsilon: float | None = None
    """Release metrics with DP noise at this epsilon (None: exact metrics)."""
    metrics_loss_bound: float = 10.0


class Node(NodeTraining, NodeGovernance):
    """Answers train and evaluate requests through its release gate."""

    def __init__(
        self,
        party: str,
        data: PartyData,
        model: FlatModel,
        home: NodeHome,
        config: NodeConfig,
        custom_train: CustomTrain | None = None,
        custom_evaluate: CustomEvaluate | None = None,
        privacy: GatePrivacy | None = None,
        dp_plan: NodeDpPlan | None = None,
        secagg: NodeSecAgg | None = None,
        ckks: NodeCkks | None = None,
        agreement: NodeAgreement | None = None,
        audit: NodeAudit | None = None,
    ) -> None:
        if len(data.y_train) == 0:
            raise InputError(f"party {party!r} has no training rows; check its data")
        self.party = party
        self.home = home
        self.config = config
        self.model = model
        self.gate = ReleaseGate(party, privacy, agreement, audit)
        self.agreement = agreement
        self.dp_plan = dp_plan
        self.secagg = secagg
        self.ckks = ckks
        # The open secure round's update: (round, request digest, tensors, scalars, plan).
        self._kept_update: tuple[int, bytes, Any, Any, NodeDpPlan | None] | None = None
        if isinstance(dp_plan, ClientDpNodePlan) and not dp_plan.per_round:
            # Accepting a DP-FedAvg job charges all its rounds (sampled or not) at once.
            self.gate.charge_job(
                dp_plan.settings.rounds, ReleaseKind.UPDATE, dp_plan.dataset,
                dp_plan.round_event, dp_plan.adversary,
            )  # fmt: skip
        self._secure_random: SecureGenerator | None = None
        self.x_train = torch.from_numpy(np.ascontiguousarray(data.x_train))
        self.y_train = torch.from_numpy(np.ascontiguousarray(data.y_train))
        self.x_test = torch.from_numpy(np.ascontiguousarray(data.x_test))
        self.y_test = torch.from_numpy(np.ascontiguousarray(data.y_test))
        self.custom_train = custom_train
        self.custom_evaluate = custom_evaluate
        if custom_train is not None and config.plan.objective is not LocalObjective.PLAIN:
            raise InputError(
                f"strategy needs the {config.plan.objective.value} local objective, which a "
                "task's own train() cannot apply; use fedavg, fedavgm or an adaptive strategy"
            )

    @property
    def secure_random(self) -> SecureGenerator:
        """This node's secure generator, for everything a privacy or security property rests
        on. Opened from the node home on first use: a job with neither DP nor secure
        aggregation never creates a key.
        """
        if self._secure_random is None:
            self._secure_random = open_node_generator(self.home.path)
        return self._secure_random

    def endpoint(self) -> NodeEndpoint:
        return NodeEndpoint(self.party, self.handle, self.gate.unseal)

    def handle(self, request: Request) -> SealedRelease:
        governed = self._governance(request)
        if governed is not None:
            return governed
        if isinstance(request, TrainRequest):
            return self._train(request)
        if isinstance(request, EvaluateRequest):
            return self._evaluate(request)
        if isinstance(request, ProtocolRequest):
            return self._protocol(request)
        raise InputError(f"node {self.party!r}: unknown request {type(request).__name__}")

    def _check_job(self, job_id: str) -> None:
        if job_id != self.config.job_id:
            raise InputError(
                f"node {self.party!r}: request for job {job_id}, "
                f"this node runs {self.config.job_id}"
            )

    def _train(self, request: TrainRequest) -> SealedRelease:
        self._check_job(request.job_id)
        if self.ckks is not None:
            # Under CKKS the coordinator has no model: train from this node's own copy.
            if request.global_params is not None:
                raise InputError(
                    f"node {self.party!r}: a CKKS job's train request carries no model; "
                    "this node trains from its own copy"
                )
            request = dataclasses.replace(request, global_params=self.ckks.current_model())
        if request.global_params is None:
            raise InputError(f"node {self.party!r}: the train request carries no model")
        again = self._secure_retry(request)
        if again is not None:
            return again
        self.model.load(request.global_params)
        tensors: dict[str, torch.Tensor] = {}
        plan = self.dp_plan
        if isinstance(plan, DpSgdNodePlan):
            self._train_dpsgd(request, plan, tensors)
            return self._release_update(request, tensors, {}, plan)
        if isinstance(plan, ClientDpNodePlan):
            return self._train_client_dp(request, plan)
        # A node with a ledger records even a release without DP (refused where capped).
        self.gate.charge(request.round, ReleaseKind.UPDATE, TRAIN_DATASET, None, None)
        mean_loss, steps = self._train_locally(request, tensors)
        scalars = {
            "num_examples": float(len(self.y_train)),
            "train_loss": mean_loss,
            "steps": float(steps),
        }
        return self._release_update(request, tensors, scalars, None)

    def _release_update(
        self,
        request: TrainRequest,
        tensors: dict[str, torch.Tensor],
        scalars: dict[str, float],
        plan: NodeDpPlan | None,
    ) -> SealedRelease:
        """The update, or under secure aggregation the round's signed key advertisement:
        the update itself then leaves only masked, at the protocol's masked-input stage.
        Under CKKS the update leaves encrypted, with nothing in the clear beside it."""
        if self.ckks is not None:
            encrypted = self.ckks.encrypt(tensors["delta"])
            return self.gate.release(
                Release(
                    kind=ReleaseKind.UPDATE, job_id=self.config.job_id, round=request.round,
                    sender=self.party, recipient=COORDINATOR, payload=encrypted,
                    payload_nbytes=encrypted.nbytes,
                    dataset=plan.dataset if plan else None,
                    dp_event=plan.round_event if plan else None,
                    adversary=plan.adversary.value if plan else None,
                )
            )  # fmt: skip
        if self.secagg is not None:
            # Asked for this round again: a fresh session around the same charged update.
            self._kept_update = (request.round, sealed_digest(request), tensors, scalars, plan)
            advertisement = self.secagg.advertise(
                request.round, start_model(request), tensors["delta"], self.secure_random
            )
            return self._release_protocol(request.round, advertisement)
        return self.gate.release(
            Release(
                kind=ReleaseKind.UPDATE, job_id=self.config.job_id, round=request.round,
                sender=self.party, recipient=COORDINATOR, tensors=tensors, scalars=scalars,
                dataset=plan.dataset if plan else None,
                dp_event=plan.round_event if plan else None,
                adversary=plan.adversary.value if plan else None,
            )
        )  # fmt: skip

    def _secure_retry(self, request: TrainRequest) -> SealedRelease | None:
        """The same secure round asked again (a restarted coordinator): fresh keys, coins
        and masks around the update charged once; never a second charge or training."""
        kept = self._kept_update
        # The round first: hash the model only when the round really comes again.
        if kept is None or kept[0] != request.round or kept[1] != sealed_digest(request):
            return None
        _, _, tensors, scalars, plan = kept
        self.gate.readmit(request.round, ReleaseKind.UPDATE)
        return self._release_update(request, tensors, scalars, plan)

    def _train_locally(
        self, request: TrainRequest, tensors: dict[str, torch.Tensor]
    ) -> tuple[float, int]:
        """Local training as the strategy asks; puts the update in ``tensors["delta"]``."""
        if self.custom_train is not None:
            mean_loss, steps = self._train_custom(request), 0
        elif self.config.plan.objective is LocalObjective.SCAFFOLD:
            return self._train_scaffold(request, tensors)
        else:
            result = train_local(
                self.model, self.x_train, self.y_train, self.config.plan, request.lr,
                global_params=start_model(request), shuffle_rng=self._shuffle_rng(request.round),
            )  # fmt: skip
            mean_loss, steps = result.mean_loss, result.steps
        tensors["delta"] = self.model.flat - start_model(request)
        return mean_loss, steps

    def _train_client_dp(self, request: TrainRequest, plan: ClientDpNodePlan) -> SealedRelease:
        """DP-FedAvg: train as usual, clip the update to the round's norm, release only it
        (and, with adaptive clipping, whether it was within the norm). The job's charge was
        made when the node accepted it; the gate admits one release per round."""
        from accord.privacy.client_dp import clip_update

        if request.clip_norm is None:
            raise InputError(
                f"node {self.party!r}: a DP-FedAvg train request must carry the round's "
                "clipping norm"
            )
        if plan.per_round:
            # Distributed noise: the coordinator knows who takes part, so each round this
            # node takes part in is charged, when it does, without amplification.
            self.gate.charge(
                request.round, ReleaseKind.UPDATE, plan.dataset, plan.round_event, plan.adversary
            )
        else:
            self.gate.charge_prepaid(
                request.round, plan.settings.rounds, ReleaseKind.UPDATE, plan.dataset,
                plan.adversary,
            )  # fmt: skip
        tensors: dict[str, torch.Tensor] = {}
        self._train_locally(request, tensors)
        clip_norm = request.clip_norm
        if self.secagg is not None:
            # Stochastic rounding may move each coordinate by up to one quantization step,
            # the whole vector by sqrt(P) / scale: clip that much tighter, so that what
            # enters the secure sum still has norm at most the round's clip norm.
            clip_norm -= self.secagg.rounding_slack(tensors["delta"].numel())
            if clip_norm <= 0:
                raise InputError(
                    f"node {self.party!r}: privacy.clip_norm {request.clip_norm:g} is below the "
                    "quantization's rounding slack; raise protection.scale_bits or clip_norm"
                )
        clipped, within = clip_update(tensors["delta"], clip_norm)
        tensors["delta"] = clipped
        # No row count, loss or step count: none is covered by epsilon.
        scalars = {"within_clip": float(within)} if plan.settings.adaptive else {}
        return self._release_update(request, tensors, scalars, plan)

    def _protocol(self, request: ProtocolRequest) -> SealedRelease:
        """One later stage of a secure-aggregation round, or of a CKKS job."""
        self._check_job(request.job_id)
        if self.ckks is not None:
            return self._ckks_protocol(request)
        if self.secagg is None:
            raise RefusedError(f"node {self.party!r}: this job runs no secure aggregation")
        answer = self.secagg.step(request.round, request.stage, request.payload)
        if request.stage != "masked_input":
            return self._release_protocol(request.round, answer)
        plan = None if self._kept_update is None else self._kept_update[4]
        return self.gate.release(
            Release(
                kind=ReleaseKind.UPDATE, job_id=self.config.job_id, round=request.round,
                sender=self.party, recipient=COORDINATOR, payload=answer,
                payload_nbytes=answer.packed_nbytes(self.secagg.ring_bits()),
                dataset=plan.dataset if plan else None,
                dp_event=plan.round_event if plan else None,
                adversary=plan.adversary.value if plan else None,
            )
        )  # fmt: skip

    def _ckks_protocol(self, request: ProtocolRequest) -> SealedRelease:
        """The CKKS key setup, or applying a round's encrypted sum to this node's model."""
        ckks = self.ckks
        assert ckks is not None
        if request.stage != "ckks_apply":
            answer = ckks.step(request.stage, request.payload, self.secure_random)
            return self._release_protocol(request.round, answer)
        answer = ckks.apply(request.round, request.payload)
        if ckks.is_key_holder:
            # The recipient that holds the key keeps the model: the coordinator never does.
            from accord.fileio import save_tensors_atomic

            save_tensors_atomic(
                ckks_model_path(self.home.path, self.config.job_id),
                self.model.state_dict(ckks.current_model()),
                {"job_id": self.config.job_id, "rounds": str(request.round)},
                mode=0o600,
            )
        return self._release_protocol(request.round, answer)

    def _release_protocol(self, round_number: int, message: Any) -> SealedRelease:
        return self.gate.release(
            Release(
                kind=ReleaseKind.PROTOCOL, job_id=self.config.job_id, round=round_number,
                sender=self.party, recipient=COORDINATOR, payload=message,
                payload_nbytes=int(message.nbytes),
            )
        )  # fmt: skip

    def _metrics_dataset(self) -> str:
        privacy = self.gate.privacy
        return TRAIN_DATASET if privacy is None else metrics_dataset(privacy.settings)

    def _evaluate(self, request: EvaluateRequest) -> SealedRelease:
        self._check_job(request.job_id)
        dataset = self._metrics_dataset()
        params = request.params
        if self.ckks is not None:
            if params is not None:
                raise InputError(
                    f"node {self.party!r}: a CKKS job's evaluate request carries no model"
                )
            params = self.ckks.current_model()
        if params is None:
            raise InputError(f"node {self.party!r}: the evaluate request carries no model")
        self.model.load(params)
        epsilon = self.config.metrics_epsilon
        module, x, y = self.model.module, self.x_test, self.y_test
        event: DpEvent | None = None
        if epsilon is not None:
            # Charged before the test split is read: the event does not depend on it.
            planned = metrics_event(epsilon)
            self.gate.charge(
                request.round, ReleaseKind.METRICS, dataset, planned,
                Adversary.COORDINATOR_AND_RECIPIENTS,
            )  # fmt: skip
            scalars, event = noisy_metrics_of(module, x, y, epsilon, self.config.metrics_loss_bound)
            assert event == planned, "the metrics released differ from the ones charged"
        else:
            # Exact metrics carry no DP mechanism: refused on a capped dataset unless
            # node.toml exempts the "metrics" kind (then stored as not covered by epsilon).
            self.gate.charge(request.round, ReleaseKind.METRICS, dataset, None, None)
            scalars = exact_metrics(module, x, y, self.custom_evaluate)
        release = Release(
            kind=ReleaseKind.METRICS,
            job_id=self.config.job_id,
            round=request.round,
            sender=self.party,
            recipient=COORDINATOR,
            scalars=scalars,
            dataset=dataset,
            dp_event=event,
            adversary=Adversary.COORDINATOR_AND_RECIPIENTS.value if event else None,
        )
        return self.gate.release(release)
