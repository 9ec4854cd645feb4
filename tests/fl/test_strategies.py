"""One contract test class, run against every strategy, with hand-computed aggregates."""

from __future__ import annotations

import math

import pytest
import torch

from accord.fl.strategies import ClientUpdate, Strategy, build_strategy
from accord.job import STRATEGY_NAMES, StrategyConfig

GLOBAL = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
# Party A: delta (1, 0, -1), 3 rows; party B: delta (-1, 2, 1), 1 row.
# Sample-weighted mean delta: (3 * A + B) / 4 = (0.5, 0.5, -0.5).
MEAN = [0.5, 0.5, -0.5]
TAU, B1, B2 = 1e-3, 0.9, 0.99


def updates(num_parties: int = 2) -> list[ClientUpdate]:
    control = {"control_delta": torch.tensor([0.2, -0.4, 0.0], dtype=torch.float64)}
    return [
        ClientUpdate("a", torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64), 3.0, control),
        ClientUpdate("b", torch.tensor([-1.0, 2.0, 1.0], dtype=torch.float64), 1.0, control),
    ]


def adaptive(v_after_round_1: float, lr: float = 0.1) -> list[float]:
    """x + lr * m / (sqrt(v) + tau) after one round, m = (1 - beta1) * mean."""
    return [
        x + lr * (1 - B1) * d / (math.sqrt(v_after_round_1) + TAU)
        for x, d in zip(GLOBAL.tolist(), MEAN, strict=True)
    ]


# Hand-computed results of one round from GLOBAL with the default options.
# For adaptive strategies mean^2 = 0.25 in every coordinate and v starts at tau^2:
#   FedAdagrad: v = tau^2 + 0.25
#   FedAdam:    v = beta2 tau^2 + (1 - beta2) 0.25
#   FedYogi:    v = tau^2 - (1 - beta2) 0.25 sign(tau^2 - 0.25) = tau^2 + (1 - beta2) 0.25
ROUND_ONE = {
    "fedavg": [1.5, -1.5, 0.0],
    "fedprox": [1.5, -1.5, 0.0],
    "fedavgm": [1.5, -1.5, 0.0],
    "scaffold": [1.5, -1.5, 0.0],
    "fedadagrad": adaptive(TAU**2 + 0.25),
    "fedadam": adaptive(B2 * TAU**2 + (1 - B2) * 0.25),
    "fedyogi": adaptive(TAU**2 + (1 - B2) * 0.25),
}


class StrategyContract:
    """What every strategy must do. Subclasses name the strategy."""

    name: str

    def make(self, num_parties: int = 2) -> Strategy:
        return build_strategy(StrategyConfig(name=self.name), num_parties)  # type: ignore[arg-type]

    def test_round_one_matches_hand_computation(self) -> None:
        strategy = self.make()
        strategy.configure_round(1, GLOBAL)
        result = strategy.aggregate(1, GLOBAL, updates())
        assert result.tolist() == pytest.approx(ROUND_ONE[self.name], abs=1e-12)

    def test_does_not_modify_its_inputs(self) -> None:
        strategy = self.make()
        before = GLOBAL.clone()
        given = updates()
        strategy.configure_round(1, GLOBAL)
        strategy.aggregate(1, GLOBAL, given)
        assert torch.equal(GLOBAL, before)
        assert given[0].delta.tolist() == [1.0, 0.0, -1.0]

    def test_state_round_trip_gives_the_same_second_round(self) -> None:
        straight = self.make()
        straight.configure_round(1, GLOBAL)
        x1 = straight.aggregate(1, GLOBAL, updates())
        straight.configure_round(2, x1)
        x2 = straight.aggregate(2, x1, updates())

        first = self.make()
        first.configure_round(1, GLOBAL)
        y1 = first.aggregate(1, GLOBAL, updates())
        resumed = self.make()
        resumed.load_state_dict(first.state_dict())
        resumed.configure_round(2, y1)
        y2 = resumed.aggregate(2, y1, updates())
        assert torch.equal(x2, y2)

    def test_weights_scale_invariant(self) -> None:
        scaled = [ClientUpdate(u.party, u.delta, u.weight * 10, u.extras) for u in updates()]
        a, b = self.make(), self.make()
        a.configure_round(1, GLOBAL)
        b.configure_round(1, GLOBAL)
        assert torch.allclose(a.aggregate(1, GLOBAL, updates()), b.aggregate(1, GLOBAL, scaled))


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_every_strategy_has_a_contract_class(name: str) -> None:
    assert any(cls.name == name for cls in StrategyContract.__subclasses__())


class TestFedAvg(StrategyContract):
    name = "fedavg"


class TestFedProx(StrategyContract):
    name = "fedprox"


class TestFedAvgM(StrategyContract):
    name = "fedavgm"

    def test_momentum_accumulates(self) -> None:
        strategy = self.make()
        x1 = strategy.aggregate(1, GLOBAL, updates())
        x2 = strategy.aggregate(2, x1, updates())
        # v2 = 0.9 * mean + mean = 1.9 * mean
        expected = [x + 1.9 * d for x, d in zip(x1.tolist(), MEAN, strict=True)]
        assert x2.tolist() == pytest.approx(expected, abs=1e-12)


class TestFedAdam(StrategyContract):
    name = "fedadam"


class TestFedYogi(StrategyContract):
    name = "fedyogi"


class TestFedAdagrad(StrategyContract):
    name = "fedadagrad"


class TestScaffold(StrategyContract):
    name = "scaffold"

    def test_server_control_variate(self) -> None:
        strategy = self.make(num_parties=4)
        assert strategy.configure_round(1, GLOBAL)["control"].tolist() == [0.0, 0.0, 0.0]
        strategy.aggregate(1, GLOBAL, updates())
        # c <- c + (|S| / N) mean(delta_c) = sum(delta_c) / N = 2 * (0.2, -0.4, 0) / 4
        control = strategy.configure_round(2, GLOBAL)["control"]
        assert control.tolist() == pytest.approx([0.1, -0.2, 0.0], abs=1e-12)
