"""How a node trains in each setting other than plain local SGD: a task's own ``train()``,
SCAFFOLD's corrected gradients (its control variate kept in the node home) and DP-SGD
(charged once per round before training). A mixin of :class:`accord.fl.node.Node`, split
out so that each file stays readable; it uses the node's own attributes."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from accord.fl.local_training import train_local
from accord.fl.messages import ReleaseKind, TrainRequest
from accord.seeds import SeedTag, seeded

if TYPE_CHECKING:
    from accord.fl.gate import ReleaseGate
    from accord.fl.node import NodeConfig
    from accord.fl.node_home import NodeHome
    from accord.fl.node_privacy import DpSgdNodePlan
    from accord.models.flat import FlatModel
    from accord.secure_random import SecureGenerator


def start_model(request: TrainRequest) -> torch.Tensor:
    """The model a train request starts from (a CKKS node fills in its own copy first)."""
    assert request.global_params is not None, "checked when the request arrived"
    return request.global_params


CustomTrain = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, dict[str, Any]], float]


class NodeTraining:
    """The node's training variants (see the module docstring)."""

    config: NodeConfig
    model: FlatModel
    home: NodeHome
    gate: ReleaseGate
    x_train: torch.Tensor
    y_train: torch.Tensor
    custom_train: (
        Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, dict[str, Any]], float] | None
    )

    @property
    def secure_random(self) -> SecureGenerator:
        raise NotImplementedError  # the node's own, opened lazily from its home

    def _shuffle_rng(self, round_number: int) -> np.random.Generator | None:
        cfg = self.config
        if not cfg.shuffle:
            return None
        return seeded(cfg.seed, SeedTag.SHUFFLE, cfg.party_index, round_number)

    def _train_custom(self, request: TrainRequest) -> float:
        """The task's own train(); it gets the model and this round's settings."""
        plan = self.config.plan
        settings = {
            "lr": request.lr,
            "epochs": plan.epochs,
            "steps": plan.steps,
            "batch_size": plan.batch_size,
            "round": request.round,
        }
        assert self.custom_train is not None
        # The task's own randomness (dropout, its own shuffling) is then reproducible too.
        cfg = self.config
        rng = seeded(cfg.seed, SeedTag.TORCH, cfg.party_index, request.round)
        settings["seed"] = torch_seed = int(rng.integers(2**62))
        torch.manual_seed(torch_seed)
        mean_loss = float(
            self.custom_train(self.model.module, self.x_train, self.y_train, settings)
        )
        self.model.restore_grad_views()
        return mean_loss

    def _train_scaffold(
        self, request: TrainRequest, tensors: dict[str, torch.Tensor]
    ) -> tuple[float, int]:
        """SCAFFOLD: gradients corrected by (c - c_i); c_i is updated and kept here."""
        server_control = request.extras["control"]
        own_control = self._own_control(request.round, start_model(request))
        result = train_local(
            self.model, self.x_train, self.y_train, self.config.plan, request.lr,
            global_params=start_model(request), shuffle_rng=self._shuffle_rng(request.round),
            correction=server_control - own_control,
        )  # fmt: skip
        delta = self.model.flat - start_model(request)
        # c_i+ is the mean uncorrected local gradient. With plain SGD this equals option II,
        # c_i - c + (x - y_i) / (K lr); unlike that formula it stays right with momentum,
        # which moves the model about 1 / (1 - momentum) times further.
        assert result.mean_gradient is not None
        new_control = result.mean_gradient
        self.home.save_round_state(self.config.job_id, request.round, {"control": new_control})
        tensors["delta"] = delta
        tensors["control_delta"] = new_control - own_control
        return result.mean_loss, result.steps

    def _train_dpsgd(
        self, request: TrainRequest, plan: DpSgdNodePlan, tensors: dict[str, torch.Tensor]
    ) -> None:
        """DP-SGD: charge the round's event first (once, never per step), then train.

        Nothing else is released with the update: no row count (weights are fixed in a DP
        job), no loss, no step count; each is data-derived and not covered by epsilon.
        """
        from accord.privacy.dpsgd import DpSgdPlan, train_dpsgd

        self.gate.charge(
            request.round, ReleaseKind.UPDATE, plan.dataset, plan.round_event, plan.adversary
        )
        training = self.config.plan
        train_dpsgd(
            self.model, self.x_train, self.y_train,
            DpSgdPlan(plan.noise_multiplier, plan.clip_norm, plan.sample_rate,
                      plan.steps_per_round, training.momentum, training.weight_decay),
            request.lr, self.secure_random,
        )  # fmt: skip
        tensors["delta"] = self.model.flat - start_model(request)

    def _own_control(self, round_number: int, like: torch.Tensor) -> torch.Tensor:
        """SCAFFOLD's c_i as of the round before this one (zero at first)."""
        state = self.home.load_state_before(self.config.job_id, round_number)
        if state is None:
            return torch.zeros_like(like)
        return state["control"]
