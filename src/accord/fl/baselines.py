"""Reference points for a federation, in simulation only: each party alone, and pooled.

"Alone" trains the job's model on one party's training split only; "pooled" trains it
on the union of all parties' training splits, each prepared by its own party (as if the
data had been moved to one place, which is what federated learning avoids). Both use the
same local training, rounds and evaluation code as the federated run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from accord.data.federation import PartyData
from accord.fl.coordinator import Coordinator
from accord.fl.node import Node, NodeConfig
from accord.fl.node_home import NodeHome
from accord.fl.simulation import Simulation, local_plan
from accord.fl.strategies import build_strategy
from accord.protect.config import ProtectionConfig
from accord.transport.inprocess import InProcessTransport

POOLED = "pooled"


def _train_single(sim: Simulation, party: PartyData, home: NodeHome, tag: str) -> torch.Tensor:
    """Run the job's rounds with one party that holds ``party``'s data."""
    job = sim.job.model_copy(
        update={
            "sampling": sim.job.sampling.model_copy(update={"mode": "all", "min_parties": 1}),
            "evaluation": sim.job.evaluation.model_copy(update={"federated": False}),
            # One party alone: nothing to aggregate, so nothing to protect.
            "protection": ProtectionConfig(),
        }
    )
    job_id = f"{sim.job_id}-{tag}"
    strategy = build_strategy(job.strategy, 1)
    plan = local_plan(job, strategy.objective)
    node = Node(
        party.name,
        party,
        sim.model,
        home,
        NodeConfig(job_id, job.job.seed, 0, plan, job.training.shuffle),
        sim.spec.custom_train,
        sim.spec.custom_evaluate,
    )
    coordinator = Coordinator(
        job, job_id, [party.name], InProcessTransport([node.endpoint()]), strategy, sim.initial
    )
    params = coordinator.run().params
    assert params is not None  # an unprotected run ends with the coordinator's model
    return params


def train_alone(sim: Simulation, party_name: str) -> torch.Tensor:
    """The job's model trained on one party's data alone."""
    index = [p.name for p in sim.data.parties].index(party_name)
    node = sim.nodes[index]
    return _train_single(sim, sim.data.parties[index], node.home, f"alone-{party_name}")


def pooled_party(sim: Simulation) -> PartyData:
    parties = sim.data.parties
    return PartyData(
        name=POOLED,
        x_train=np.concatenate([p.x_train for p in parties]),
        y_train=np.concatenate([p.y_train for p in parties]),
        x_test=np.concatenate([p.x_test for p in parties]),
        y_test=np.concatenate([p.y_test for p in parties]),
    )


def train_pooled(sim: Simulation) -> torch.Tensor:
    """The job's model trained on all parties' training splits pooled in one place."""
    with tempfile.TemporaryDirectory(prefix="accord-pooled-") as home:
        return _train_single(sim, pooled_party(sim), NodeHome(Path(home), POOLED), POOLED)


def evaluate_on_parties(sim: Simulation, params: torch.Tensor) -> dict[str, Any]:
    """Federated evaluation of any model over every party's own test split."""
    return sim.coordinator.evaluate(0, params)
