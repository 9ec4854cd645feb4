"""A node asked the same thing twice sends the same bytes again: no retraining, no new
charge, one audit entry "resent"; a different request for a released round is refused."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from accord.errors import RefusedError
from accord.fl.messages import TrainRequest
from accord.fl.sealed_releases import SealedReleases
from accord.fl.simulation import build_simulation
from accord.governance.audit import read_audit
from accord.job import load_job
from tests.conftest import SMALL_JOB, JobWriter

DPSGD = '\n[privacy]\nmode = "dpsgd"\nnoise_multiplier = 1.0\nclip_norm = 1.0\ndelta = 1e-5\n'


def test_a_repeated_request_is_answered_with_the_kept_release(
    write_job: JobWriter, tmp_path: Path
) -> None:
    text = SMALL_JOB.format(
        seed=0, rounds=2, model="logreg", strategy="fedavg", sampling="all"
    ).replace("standardize = true", "standardize = false")
    simulation = build_simulation(load_job(write_job(text + DPSGD, name="dp.toml")), tmp_path,
                                  tmp_path / "homes")  # fmt: skip
    node = simulation.nodes[0]
    sealed = SealedReleases(node.home.path, simulation.job_id, simulation.run_id)
    request = TrainRequest(simulation.job_id, 1, simulation.initial, 0.05)
    assert sealed.load(request) is None
    first = node.gate.unseal(node.handle(request))
    sealed.keep(request, first)
    kept = sealed.load(request)
    assert kept is not None
    again = node.gate.unseal(node.gate.reseal(kept))
    assert torch.equal(again.tensors["delta"], first.tensors["delta"])
    assert again.dp_event == first.dp_event and again.scalars == first.scalars
    assert node.gate.privacy is not None
    charges = node.gate.privacy.ledger.charges()
    assert [(c.round, c.release_kind) for c in charges] == [(1, "update")]
    kinds = [e.kind for e in read_audit(node.home.path)]
    assert kinds.count("release") == 1 and kinds.count("resent") == 1
    # Round 1 again, from another model: a round is released once.
    other = dataclasses.replace(request, global_params=simulation.initial + 1.0)
    with pytest.raises(RefusedError, match="already released for another request"):
        sealed.load(other)
