"""Federated strategies: one small protocol (configure a round, aggregate it).

Shared options live in one :class:`accord.job.StrategyConfig`; each strategy reads the
ones it needs instead of repeating them as constructor parameters.
"""

from accord.fl.strategies.adaptive import FedAdagrad, FedAdam, FedYogi
from accord.fl.strategies.averaging import FedAvg, FedAvgM, FedProx
from accord.fl.strategies.base import ClientUpdate, LocalObjective, Strategy, weighted_mean_delta
from accord.fl.strategies.scaffold import Scaffold
from accord.job import StrategyConfig

_STRATEGIES: dict[str, type[Strategy]] = {
    "fedavg": FedAvg,
    "fedavgm": FedAvgM,
    "fedprox": FedProx,
    "fedadam": FedAdam,
    "fedyogi": FedYogi,
    "fedadagrad": FedAdagrad,
    "scaffold": Scaffold,
}


def build_strategy(config: StrategyConfig, num_parties: int) -> Strategy:
    """The strategy named in the job."""
    return _STRATEGIES[config.name](config, num_parties)


__all__ = [
    "ClientUpdate",
    "FedAdagrad",
    "FedAdam",
    "FedAvg",
    "FedAvgM",
    "FedProx",
    "FedYogi",
    "LocalObjective",
    "Scaffold",
    "Strategy",
    "build_strategy",
    "weighted_mean_delta",
]
