"""Adaptive server optimizers of Reddi et al. 2021: FedAdagrad, FedAdam, FedYogi.

The mean update is a pseudo-gradient (with the sign of a descent step):
    m <- beta1 m + (1 - beta1) delta
    v <- v + delta^2                                   (FedAdagrad)
    v <- beta2 v + (1 - beta2) delta^2                 (FedAdam)
    v <- v - (1 - beta2) delta^2 sign(v - delta^2)     (FedYogi)
    x <- x + lr m / (sqrt(v) + tau)
as in the paper's Algorithm 2: no bias correction; v starts at tau^2.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from accord.fl.strategies.base import ClientUpdate, Strategy
from accord.job import StrategyConfig


class _AdaptiveStrategy(Strategy):
    default_server_lr = 0.1

    def __init__(self, config: StrategyConfig, num_parties: int) -> None:
        super().__init__(config, num_parties)
        self.m: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def update_v(self, v: torch.Tensor, squared: torch.Tensor) -> None:
        raise NotImplementedError

    def server_step(
        self, global_params: torch.Tensor, mean_delta: torch.Tensor, updates: Sequence[ClientUpdate]
    ) -> torch.Tensor:
        cfg = self.config
        if self.m is None or self.v is None:
            self.m = torch.zeros_like(mean_delta)
            self.v = torch.full_like(mean_delta, cfg.tau**2)
        self.m.mul_(cfg.beta1).add_(mean_delta, alpha=1 - cfg.beta1)
        self.update_v(self.v, mean_delta * mean_delta)
        return global_params + self.server_lr * self.m / (self.v.sqrt() + cfg.tau)

    def state_dict(self) -> dict[str, torch.Tensor]:
        if self.m is None or self.v is None:
            return {}
        return {"m": self.m.clone(), "v": self.v.clone()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.m = state["m"].clone() if "m" in state else None
        self.v = state["v"].clone() if "v" in state else None


class FedAdagrad(_AdaptiveStrategy):
    name = "fedadagrad"

    def update_v(self, v: torch.Tensor, squared: torch.Tensor) -> None:
        v.add_(squared)


class FedAdam(_AdaptiveStrategy):
    name = "fedadam"

    def update_v(self, v: torch.Tensor, squared: torch.Tensor) -> None:
        v.mul_(self.config.beta2).add_(squared, alpha=1 - self.config.beta2)


class FedYogi(_AdaptiveStrategy):
    name = "fedyogi"

    def update_v(self, v: torch.Tensor, squared: torch.Tensor) -> None:
        v.sub_((1 - self.config.beta2) * squared * torch.sign(v - squared))
