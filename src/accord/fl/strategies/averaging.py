"""Averaging strategies: FedAvg, FedAvgM and FedProx."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from accord.fl.strategies.base import ClientUpdate, LocalObjective, Strategy
from accord.job import StrategyConfig


class FedAvg(Strategy):
    """McMahan et al. 2017: x <- x + lr * sum_i w_i delta_i / sum_i w_i."""

    name = "fedavg"


class FedProx(FedAvg):
    """Li et al. 2020: FedAvg's aggregate; nodes add mu/2 ||w - x||^2 to their loss."""

    name = "fedprox"
    objective = LocalObjective.PROXIMAL


class FedAvgM(Strategy):
    """Hsu et al. 2019: server momentum v <- beta v + mean delta; x <- x + lr v."""

    name = "fedavgm"

    def __init__(self, config: StrategyConfig, num_parties: int) -> None:
        super().__init__(config, num_parties)
        self.velocity: torch.Tensor | None = None

    def server_step(
        self, global_params: torch.Tensor, mean_delta: torch.Tensor, updates: Sequence[ClientUpdate]
    ) -> torch.Tensor:
        if self.velocity is None:
            self.velocity = torch.zeros_like(mean_delta)
        self.velocity.mul_(self.config.server_momentum).add_(mean_delta)
        return global_params + self.server_lr * self.velocity

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {} if self.velocity is None else {"velocity": self.velocity.clone()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.velocity = state["velocity"].clone() if "velocity" in state else None
