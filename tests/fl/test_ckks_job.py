"""CKKS rounds in the engine: the coordinator adds ciphertexts and never decrypts; every
party decrypts the sum, steps the strategy itself and ends with the same model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from accord.errors import InputError, JobFileError, RefusedError
from accord.fileio import load_tensors
from accord.fl.messages import TrainRequest
from accord.fl.node_ckks import ckks_model_path
from accord.fl.simulation import build_simulation
from accord.job import load_job
from accord.protect.ckks import CkksKeySet
from tests.conftest import Invoke, JobWriter

CKKS = '\n[protection]\nmode = "ckks"\nkey_holder = "party-2"\n'


def ckks_job(
    write_job: JobWriter, extra: str = "", protection: str = CKKS, **fields: object
) -> Path:
    fields.setdefault("rounds", 2)
    return write_job(write_job(**fields).read_text() + protection + extra, name="ckks.toml")


def equal_weight_fedavg(write_job: JobWriter, tmp_path: Path, rounds: int) -> torch.Tensor:
    """What FedAvg with equal weights gives without protection (same seed, same parties)."""
    simulation = build_simulation(load_job(write_job(rounds=rounds, name="plain.toml")),
                                  tmp_path, tmp_path / "plain")  # fmt: skip
    coordinator = simulation.coordinator
    params = coordinator.params.clone()
    for r in range(1, rounds + 1):
        request = TrainRequest(simulation.job_id, r, params, 0.05)
        done = coordinator.transport.exchange({p: request for p in coordinator.parties})
        deltas = [done.replies[p].tensors["delta"] for p in coordinator.parties]
        params = params + torch.stack(deltas).mean(dim=0)
    return params


def test_every_party_ends_with_the_same_model_equal_to_plain_equal_weight_fedavg(
    write_job: JobWriter, tmp_path: Path
) -> None:
    expected = equal_weight_fedavg(write_job, tmp_path, 2)
    simulation = build_simulation(load_job(ckks_job(write_job)), tmp_path, tmp_path / "homes")
    coordinator = simulation.coordinator
    initial = coordinator.params.clone()
    result = coordinator.run()
    assert result.params is None
    models = [node.ckks.current_model() for node in simulation.nodes if node.ckks is not None]
    assert len(models) == 4
    for model in models[1:]:
        assert torch.equal(model, models[0])  # bit for bit: decryption is deterministic
    assert float((models[0] - expected).abs().max()) <= 1e-5
    assert not torch.equal(models[0], initial)
    # The coordinator's model never moved: it never saw a decryption.
    assert torch.equal(coordinator.params, initial)
    records = result.records
    assert [r["protection"] for r in records] == ["ckks", "ckks"]
    assert records[0]["sampled"] == coordinator.parties
    assert "server_test" not in records[-1]
    assert records[-1]["federated"]["num_examples"] > 0


def test_the_coordinator_holds_only_the_public_context(
    write_job: JobWriter, tmp_path: Path
) -> None:
    simulation = build_simulation(load_job(ckks_job(write_job, rounds=1)), tmp_path,
                                  tmp_path / "homes")  # fmt: skip
    coordinator = simulation.coordinator
    record = coordinator.run().records[0]
    public = coordinator.ckks_public
    assert public is not None and not public.has_secret_key()
    assert not any(isinstance(v, CkksKeySet) for v in vars(coordinator).values())
    keys = [node.ckks.keys for node in simulation.nodes if node.ckks is not None]
    assert all(k is not None and k.key_id == public.key_id for k in keys)
    # Bytes: the setup's and the round's, ciphertexts included (one 4096-slot chunk per
    # ciphertext for this model, each well over 64 KiB at N = 8192).
    assert record["key_setup_bytes_up"] > 0 and record["key_setup_bytes_down"] > 0
    assert record["bytes_up"] > 4 * 64 * 1024 and record["bytes_down"] > 4 * 64 * 1024


def test_a_forged_key_holder_signature_is_refused(write_job: JobWriter, tmp_path: Path) -> None:
    homes = tmp_path / "homes"
    job = load_job(ckks_job(write_job, rounds=1))
    build_simulation(job, tmp_path, homes)  # provisions keys and rosters
    # party-3's owner has another key for the key holder (as a coordinator that replaced
    # the key holder's hello would cause): party-3 refuses the keys and the run stops.
    from accord.governance import generate_identity
    from accord.governance.roster import roster_entry

    roster = (homes / "party-3" / "roster.toml").read_text().splitlines()
    forged = roster_entry("party-2", generate_identity("party-2").public_key)
    (homes / "party-3" / "roster.toml").write_text(
        "\n".join(forged if line.startswith("party-2 ") else line for line in roster) + "\n"
    )
    simulation = build_simulation(job, tmp_path, homes)
    with pytest.raises(RefusedError, match=r"key setup stopped: .*party-3: .*signature"):
        simulation.coordinator.run()
    assert simulation.coordinator.completed_rounds == 0


def test_ckks_jobs_refuse_what_they_cannot_run(write_job: JobWriter, tmp_path: Path) -> None:
    with pytest.raises(JobFileError, match="key_holder"):
        load_job(ckks_job(write_job, protection='\n[protection]\nmode = "ckks"\n'))
    with pytest.raises(JobFileError, match="not a party"):
        outsider = CKKS.replace("party-2", "party-9")
        build_simulation(load_job(ckks_job(write_job, protection=outsider)), tmp_path)
    with pytest.raises(InputError, match="scaffold"):
        build_simulation(load_job(ckks_job(write_job, strategy="scaffold")), tmp_path)
    dp = '\n[privacy]\nmode = "dpfedavg"\nnoise_multiplier = 1.0\n'
    text = write_job().read_text().replace("standardize = true", "standardize = false")
    dp_job = write_job(text + CKKS + dp, name="dp.toml")
    with pytest.raises(InputError, match="dpfedavg"):
        build_simulation(load_job(dp_job), tmp_path)


def test_the_run_folder_holds_no_model_the_key_holder_does(
    write_job: JobWriter, tmp_path: Path, invoke: Invoke
) -> None:
    job_file = ckks_job(write_job, rounds=1)
    run, homes = tmp_path / "run", tmp_path / "homes"
    result = invoke("run", str(job_file), "--out", str(run), "--quiet", "--node-homes", str(homes))
    assert result.code == 0, result.err
    assert (run / "metrics.jsonl").exists() and (run / "report.html").exists()
    assert not (run / "model.safetensors").exists()
    job_id = load_job(job_file).job_id()
    model_file = ckks_model_path(homes / "party-2", job_id)
    assert f"model: {model_file}" in result.out
    assert load_tensors(model_file)
    # The key holder writes its own run folder and report, private in its node home.
    own = model_file.parent / "run"
    assert (own / "report.html").exists()
    held, written = load_tensors(model_file), load_tensors(own / "model.safetensors")
    assert held.keys() == written.keys()
    assert all(torch.equal(held[name], written[name]) for name in held)
    assert str(own / "report.html") in (run / "summary.json").read_text()
    resumed = invoke("run", str(job_file), "--out", str(run), "--resume", "--quiet",
                     "--node-homes", str(homes))  # fmt: skip
    assert resumed.code == 2 and "cannot be resumed" in resumed.err


def test_unsampled_parties_and_stateful_strategies_stay_in_step(
    write_job: JobWriter, tmp_path: Path
) -> None:
    # FedAdam keeps server state on every party; with half the parties sampled each round,
    # the others still apply every sum, so all four end with the same model and state.
    text = write_job(rounds=3, strategy="fedadam").read_text()
    text = text.replace('mode = "all"\nrate = 0.75', 'mode = "count"\ncount = 2')
    job_file = write_job(text + CKKS, name="sampled.toml")
    simulation = build_simulation(load_job(job_file), tmp_path, tmp_path / "homes")
    records = simulation.coordinator.run().records
    assert all(len(r["sampled"]) == 2 for r in records)
    nodes = [node.ckks for node in simulation.nodes if node.ckks is not None]
    first = nodes[0]
    for other in nodes[1:]:
        assert torch.equal(other.current_model(), first.current_model())
        state, expected = other.strategy.state_dict(), first.strategy.state_dict()
        assert state.keys() == expected.keys()
        assert all(torch.equal(state[k], expected[k]) for k in state)


def test_ckks_composes_with_dp_sgd(write_job: JobWriter, tmp_path: Path) -> None:
    text = write_job(rounds=1).read_text().replace("standardize = true", "standardize = false")
    dp = '\n[privacy]\nmode = "dpsgd"\nnoise_multiplier = 1.0\n'
    job_file = write_job(text + CKKS + dp, name="dpsgd.toml")
    simulation = build_simulation(load_job(job_file), tmp_path, tmp_path / "homes")
    record = simulation.coordinator.run().records[0]
    assert record["protection"] == "ckks"
    from accord.privacy.ledger import PrivacyLedger

    charges = PrivacyLedger(tmp_path / "homes" / "party-1").charges()
    assert [c.round for c in charges if c.release_kind == "update"] == [1]


def test_the_gate_lets_an_encrypted_update_leave_alone_and_only_from_its_party() -> None:
    from accord.errors import RefusedError as Refused
    from accord.fl.gate import ReleaseGate
    from accord.fl.messages import COORDINATOR, Release, ReleaseKind
    from accord.fl.node_ckks import CkksUpdate
    from accord.protect.ckks import AGGREGATION, encrypt_vector

    keys = CkksKeySet.generate(AGGREGATION)
    gate = ReleaseGate("party-1")

    def update(payload: object, **extra: Any) -> Release:
        return Release(kind=ReleaseKind.UPDATE, job_id="j", round=1, sender="party-1",
                       recipient=COORDINATOR, payload=payload, **extra)  # fmt: skip

    mine = CkksUpdate("party-1", encrypt_vector(keys, [0.5, -0.25]))
    assert gate.release(update(mine)).release.payload is mine
    with pytest.raises(Refused, match="names another sender"):
        gate.release(update(CkksUpdate("party-2", mine.vector)))
    with pytest.raises(Refused, match="may carry nothing else"):
        gate.release(update(mine, scalars={"num_examples": 10.0}))
