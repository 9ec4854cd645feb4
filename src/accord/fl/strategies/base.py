"""The strategy protocol and what every strategy shares."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import torch

from accord.job import StrategyConfig


class LocalObjective(StrEnum):
    """What a node's local training optimises, as the strategy requires."""

    PLAIN = "plain"
    PROXIMAL = "proximal"
    """FedProx: loss + mu/2 * ||w - w_global||^2."""
    SCAFFOLD = "scaffold"
    """SCAFFOLD: gradients corrected by (c - c_i); the node keeps c_i."""


@dataclass(frozen=True, slots=True)
class ClientUpdate:
    """One party's released update, as the coordinator received it."""

    party: str
    delta: torch.Tensor
    weight: float
    extras: Mapping[str, torch.Tensor] = field(default_factory=dict)


def weighted_mean_delta(updates: Sequence[ClientUpdate]) -> torch.Tensor:
    """Sum of weight_i * delta_i / sum of weights, accumulated in the order given.

    The coordinator passes updates in party order, never arrival order, so the float
    sum, and with it the model, does not depend on which node answered first.
    """
    total = sum(u.weight for u in updates)
    if total <= 0:
        raise ValueError("aggregate weights must sum to a positive number")
    acc = torch.zeros_like(updates[0].delta)
    for update in updates:
        acc.add_(update.delta, alpha=update.weight / total)
    return acc


class Strategy:
    """Configure a round, aggregate its updates, and checkpoint any server state.

    Subclasses override :meth:`server_step` (and, for extra state, the state methods).
    """

    name = "strategy"
    objective = LocalObjective.PLAIN
    default_server_lr = 1.0

    def __init__(self, config: StrategyConfig, num_parties: int) -> None:
        self.config = config
        self.num_parties = num_parties
        self.server_lr = (
            config.server_lr if config.server_lr is not None else self.default_server_lr
        )

    def configure_round(
        self, round_number: int, global_params: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Extra tensors every sampled node receives with the global model."""
        return {}

    def aggregate(
        self, round_number: int, global_params: torch.Tensor, updates: Sequence[ClientUpdate]
    ) -> torch.Tensor:
        """The next global model from this round's updates (in party order)."""
        return self.server_step(global_params, weighted_mean_delta(updates), updates)

    def server_step(
        self, global_params: torch.Tensor, mean_delta: torch.Tensor, updates: Sequence[ClientUpdate]
    ) -> torch.Tensor:
        return global_params + self.server_lr * mean_delta

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        if state:
            raise ValueError(f"{self.name} keeps no server state, got {sorted(state)}")
