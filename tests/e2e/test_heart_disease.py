"""The four real hospitals of UCI Heart Disease: federated vs. pooled vs. each alone.

Every model is scored on the union of the four hospitals' test splits (the
sample-weighted federated evaluation over all four), averaged over split seeds 0-4.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from accord.fl.baselines import evaluate_on_parties, train_alone, train_pooled
from accord.fl.runner import absolutize
from accord.fl.simulation import build_simulation
from accord.job import load_job
from tests.conftest import REPO, shared_data

JOB = REPO / "examples" / "heart_disease" / "job.toml"


def test_fedavg_matches_pooled_and_beats_each_hospital_alone(tmp_path: Path) -> None:
    shared_data("heart-disease")
    base = load_job(JOB)
    federated, pooled, alone = [], [], []
    for seed in range(5):
        job = absolutize(base, JOB.parent)
        job = job.model_copy(update={"job": job.job.model_copy(update={"seed": seed})})
        sim = build_simulation(job, JOB.parent, tmp_path / f"homes-{seed}")
        assert [p.name for p in sim.data.parties] == [
            "cleveland",
            "hungary",
            "switzerland",
            "long-beach",
        ]
        params = sim.coordinator.run().params
        federated.append(evaluate_on_parties(sim, params)["federated"]["accuracy"])
        pooled.append(evaluate_on_parties(sim, train_pooled(sim))["federated"]["accuracy"])
        alone.append(
            np.mean(
                [
                    evaluate_on_parties(sim, train_alone(sim, p.name))["federated"]["accuracy"]
                    for p in sim.data.parties
                ]
            )
        )
    fed, pool, solo = float(np.mean(federated)), float(np.mean(pooled)), float(np.mean(alone))
    print(
        f"heart disease, union of test splits, seeds 0-4: "
        f"fedavg {fed:.4f} pooled {pool:.4f} alone {solo:.4f}"
    )
    assert abs(fed - pool) <= 0.02
    assert fed >= solo + 0.05
    # FLamby's preprocessing keeps 740 rows; the union of the test splits is about a third.
    assert sum(len(p.y_test) for p in sim.data.parties) == pytest.approx(740 * 0.34, abs=8)
