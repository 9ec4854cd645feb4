"""SCAFFOLD (Karimireddy et al. 2020), option II control variates.

The node corrects every local gradient by (c - c_i), then releases its model delta and
its control-variate delta; c_i never leaves the node (it is checkpointed in the node
home). The server applies
    x <- x + lr * mean_w(delta_y)
    c <- c + (|S| / N) * mean(delta_c)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from accord.fl.strategies.base import ClientUpdate, LocalObjective, Strategy
from accord.job import StrategyConfig


class Scaffold(Strategy):
    name = "scaffold"
    objective = LocalObjective.SCAFFOLD

    def __init__(self, config: StrategyConfig, num_parties: int) -> None:
        super().__init__(config, num_parties)
        self.control: torch.Tensor | None = None

    def configure_round(
        self, round_number: int, global_params: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        if self.control is None:
            self.control = torch.zeros_like(global_params)
        return {"control": self.control}

    def server_step(
        self, global_params: torch.Tensor, mean_delta: torch.Tensor, updates: Sequence[ClientUpdate]
    ) -> torch.Tensor:
        if self.control is None:
            self.control = torch.zeros_like(global_params)
        control_sum = torch.zeros_like(self.control)
        for update in updates:
            control_sum.add_(update.extras["control_delta"])
        # mean over S times |S|/N is the sum over S divided by N.
        self.control = self.control + control_sum / self.num_parties
        return global_params + self.server_lr * mean_delta

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {} if self.control is None else {"control": self.control.clone()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.control = state["control"].clone() if "control" in state else None
