"""Secure aggregation in the engine: the coordinator steps with the survivors' mean only,
every protocol message passes the node's gate, and dropouts and tampering end safely."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from accord.errors import InputError, RefusedError, SecAggAbortedError
from accord.fl.gate import ReleaseGate
from accord.fl.messages import COORDINATOR, Release, ReleaseKind, TrainRequest
from accord.fl.simulation import build_simulation
from accord.job import load_job
from accord.protect import quantization_error_bound
from tests.conftest import Invoke, JobWriter

PROTECTED = '\n[protection]\nmode = "secagg"\n'


PARTIES = [f"party-{i}" for i in range(1, 7)]


def six_parties(write_job: JobWriter, **fields: object) -> str:
    # Six parties: with the default fractions (one may be corrupt, one may drop) the
    # graph is sparse, k = 4 neighbours and t = 3 shares: one dropout is tolerated.
    return write_job(**fields).read_text().replace("parties = 4", "parties = 6")


def secagg_job(write_job: JobWriter, extra: str = "", **fields: object) -> Path:
    return write_job(six_parties(write_job, **fields) + PROTECTED + extra, name="secagg.toml")


def plain_deltas(write_job: JobWriter, tmp_path: Path) -> list[torch.Tensor]:
    """Each party's round-1 update without protection (the same seed, so the same ones)."""
    job_file = write_job(six_parties(write_job, rounds=1), name="plain.toml")
    simulation = build_simulation(load_job(job_file), tmp_path, tmp_path / "plain")
    coordinator = simulation.coordinator
    request = TrainRequest(simulation.job_id, 1, coordinator.params, 0.05)
    exchange = coordinator.transport.exchange({p: request for p in coordinator.parties})
    return [exchange.replies[p].tensors["delta"] for p in coordinator.parties]


def test_the_coordinator_learns_the_mean_of_the_updates_within_the_stated_error(
    write_job: JobWriter, tmp_path: Path
) -> None:
    deltas = plain_deltas(write_job, tmp_path)
    simulation = build_simulation(load_job(secagg_job(write_job, rounds=1)), tmp_path,
                                  tmp_path / "homes")  # fmt: skip
    before = simulation.coordinator.params.clone()
    record = simulation.coordinator.run().records[0]
    assert record["sampled"] == PARTIES
    step = simulation.coordinator.params - before  # FedAvg, server_lr 1: the mean
    expected = torch.stack(deltas).double().mean(dim=0)
    bound = quantization_error_bound(6, 2.0**24) / 6
    assert float((step.double() - expected).abs().max()) <= bound + 1e-6
    assert record["quantization_error_bound"] == quantization_error_bound(6, 2.0**24)


def test_a_party_that_drops_after_masking_leaves_the_sum_of_the_others(
    write_job: JobWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deltas = plain_deltas(write_job, tmp_path)
    simulation = build_simulation(load_job(secagg_job(write_job, rounds=1)), tmp_path,
                                  tmp_path / "homes")  # fmt: skip
    dropped = simulation.nodes[2]
    assert dropped.secagg is not None
    step_of = dropped.secagg.step

    def drop_at_signing(round_number: int, stage: str, payload: object) -> object:
        if stage == "sign_survivors":
            raise RefusedError("party-3 went offline")
        return step_of(round_number, stage, payload)

    monkeypatch.setattr(dropped.secagg, "step", drop_at_signing)
    before = simulation.coordinator.params.clone()
    record = simulation.coordinator.run().records[0]
    # party-3 masked its input, so it is in the sum (its self mask is unmasked by the
    # others), though it signed nothing afterwards.
    assert record["sampled"] == PARTIES
    assert "party-3" in record["refused"]
    expected = torch.stack(deltas).double().mean(dim=0)
    step = simulation.coordinator.params - before
    assert float((step.double() - expected).abs().max()) <= 1e-6


def test_a_node_whose_roster_disagrees_refuses_and_the_round_stops_safely(
    write_job: JobWriter, tmp_path: Path
) -> None:
    homes = tmp_path / "homes"
    job = load_job(secagg_job(write_job, rounds=1))
    build_simulation(job, tmp_path, homes)  # provisions keys and rosters
    # party-2's owner has another key for party-1 (as a coordinator that swapped party-1's
    # keys would cause): party-2 refuses party-1's signed advertisement. The round's sparse
    # graph needs every party's nonce, so the round stops and nobody learns anything.
    from accord.governance import generate_identity
    from accord.governance.roster import roster_entry

    roster = (homes / "party-2" / "roster.toml").read_text().splitlines()
    forged = roster_entry("party-1", generate_identity("party-1").public_key)
    (homes / "party-2" / "roster.toml").write_text(
        "\n".join(forged if line.startswith("party-1 ") else line for line in roster) + "\n"
    )
    simulation = build_simulation(job, tmp_path, homes)
    with pytest.raises(SecAggAbortedError, match=r"round 1: .*party-2: .*signature"):
        simulation.coordinator.run()
    assert simulation.coordinator.completed_rounds == 0


def test_protected_jobs_refuse_what_they_cannot_protect(
    write_job: JobWriter, tmp_path: Path, invoke: Invoke
) -> None:
    with pytest.raises(InputError, match="scaffold"):
        build_simulation(load_job(secagg_job(write_job, strategy="scaffold")), tmp_path)
    # Four parties, one of which may be corrupt: a complete graph needs all four shares,
    # so the asked-for dropout tolerance cannot be met. Refused before anything runs.
    four = write_job(write_job().read_text() + PROTECTED, name="four.toml")
    result = invoke("run", str(four), "--out", str(tmp_path / "run"), "--quiet")
    assert result.code == 2 and "tolerates 0 dropouts" in result.err
    assert not (tmp_path / "run").exists()


def test_the_gate_seals_only_protocol_messages_from_this_party() -> None:
    gate = ReleaseGate("party-1")

    def protocol(payload: object) -> Release:
        return Release(kind=ReleaseKind.PROTOCOL, job_id="j", round=1, sender="party-1",
                       recipient=COORDINATOR, payload=payload)  # fmt: skip

    with pytest.raises(RefusedError, match="may not carry a Tensor"):
        gate.release(protocol(torch.zeros(3)))
    with pytest.raises(RefusedError, match="is empty"):
        gate.release(protocol(None))


@pytest.mark.parametrize(
    "privacy",
    ['mode = "dpsgd"\nnoise_multiplier = 1.0', 'mode = "dpfedavg"\nnoise_multiplier = 1.0'],
)
def test_secure_aggregation_composes_with_differential_privacy(
    write_job: JobWriter, tmp_path: Path, privacy: str
) -> None:
    text = six_parties(write_job, rounds=1).replace("standardize = true", "standardize = false")
    job_file = write_job(text + PROTECTED + f"\n[privacy]\n{privacy}\n", name="dp.toml")
    simulation = build_simulation(load_job(job_file), tmp_path, tmp_path / "homes")
    before = simulation.coordinator.params.clone()
    record = simulation.coordinator.run().records[0]
    assert record["protection"] == "secagg"
    assert not torch.equal(simulation.coordinator.params, before)
    from accord.privacy.ledger import PrivacyLedger

    charges = PrivacyLedger(tmp_path / "homes" / "party-1").charges()
    assert [c.round for c in charges if c.release_kind == "update" and c.round > 0] == [1]
    if "dpfedavg" in privacy:  # the sum is noised by the coordinator; who took part is hidden
        assert record["sampled"] is None and record["clip_norm"] == 1.0


DISTRIBUTED = (
    '\n[privacy]\nmode = "dpfedavg"\ntarget_epsilon = 4.0\nnoise_placement = "parties"\n'
    "colluding_parties = 1\n"
)


def test_distributed_noise_runs_and_charges_zcdp_against_the_coordinator(
    write_job: JobWriter, tmp_path: Path
) -> None:
    from dp_accounting import ZCDpEvent

    from accord.fl.node_privacy import privacy_summary
    from accord.privacy.client_dp import PartiesNoise
    from accord.privacy.ledger import PrivacyLedger

    text = six_parties(write_job, rounds=2).replace("standardize = true", "standardize = false")
    text = text.replace("min_parties = 1", "min_parties = 4")  # t = 4, c = 1: 3 honest
    text += PROTECTED.replace('"secagg"\n', '"secagg"\nscale_bits = 16\n') + DISTRIBUTED
    job = load_job(write_job(text, name="ddp.toml"))
    simulation = build_simulation(job, tmp_path, tmp_path / "homes")
    coordinator = simulation.coordinator
    assert coordinator.client_dp is not None
    assert isinstance(coordinator.client_dp.noise, PartiesNoise)  # it adds nothing
    before = coordinator.params.clone()
    records = coordinator.run().records
    assert [r["protection"] for r in records] == ["secagg", "secagg"]
    assert bool(torch.isfinite(coordinator.params).all())
    assert not torch.equal(coordinator.params, before)
    charges = PrivacyLedger(tmp_path / "homes" / "party-1").charges()
    updates = [c for c in charges if c.release_kind == "update"]
    # Charged per round taken part in (no charge of the whole job at acceptance).
    assert [c.round for c in updates] == [1, 2]
    assert all(isinstance(c.event, ZCDpEvent) for c in updates)
    assert {c.adversary.value for c in updates} == {"coordinator_and_recipients"}
    summary = privacy_summary(simulation.nodes)
    assert summary is not None
    figures = summary["parties"]["party-1"]
    assert figures["adversary"] == "coordinator_and_recipients"
    assert figures["accountant"] == "rdp"
    assert figures["rounds_charged"] == 2
    assert 0 < figures["epsilon"] <= 4.0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("", 'needs protection.mode = "secagg"'),
        (PROTECTED + "[privacy]\ncolluding_parties = 9\n", "colluding_parties"),
    ],
)
def test_distributed_noise_is_refused_where_it_cannot_hold(
    write_job: JobWriter, tmp_path: Path, extra: str, message: str
) -> None:
    from accord.errors import AccordError

    text = six_parties(write_job, rounds=1).replace("standardize = true", "standardize = false")
    privacy = DISTRIBUTED.replace("colluding_parties = 1\n", "")
    if "colluding_parties = 9" in extra:
        text += PROTECTED + privacy + "colluding_parties = 9\n"
    else:
        text += privacy
    with pytest.raises((AccordError, ValueError), match=message):
        job = load_job(write_job(text, name="refused.toml"))
        build_simulation(job, tmp_path, tmp_path / "homes")


def test_the_honest_parties_never_exceed_what_a_lying_coordinator_can_isolate(
    write_job: JobWriter,
) -> None:
    from accord.privacy.skellam import isolated_sum_floor, skellam_settings

    text = six_parties(write_job, rounds=1).replace("standardize = true", "standardize = false")
    text = text.replace("min_parties = 1", "min_parties = 4")
    job = load_job(write_job(text + PROTECTED + DISTRIBUTED, name="floor.toml"))
    # Six parties: t - c = 3, and the graph's floor is 3 too (see the threat model).
    assert isolated_sum_floor(job, 6) == 3
    assert skellam_settings(job, 6).honest_parties == 3
    # Twenty: a sparse graph where a lying coordinator can isolate 2 honest inputs.
    assert isolated_sum_floor(job, 20) == 2
    small, large = skellam_settings(job, 6), skellam_settings(job, 20)
    assert large.honest_parties == 2
    assert large.honest_variance == pytest.approx(small.honest_variance)
    assert large.party_variance > small.party_variance


def test_each_party_adds_its_skellam_share_in_the_ring(write_job: JobWriter) -> None:
    import math

    import numpy as np

    from accord.fl.node_secagg import add_noise_share
    from accord.privacy.skellam import skellam_settings
    from accord.protect import dequantize_sum
    from accord.secure_random import SecureGenerator

    text = six_parties(write_job, rounds=1).replace("standardize = true", "standardize = false")
    text = text.replace("min_parties = 1", "min_parties = 4")
    text += PROTECTED.replace('"secagg"\n', '"secagg"\nscale_bits = 8\n')
    text += DISTRIBUTED.replace("target_epsilon = 4.0", "noise_multiplier = 0.05")
    job = load_job(write_job(text, name="share.toml"))
    mu = skellam_settings(job, 6).party_variance
    assert mu == pytest.approx((0.05 * 256) ** 2 / 3)  # (z S s)^2 over 3 honest parties
    n, ring_bits = 100_000, 40
    zero = np.zeros(n, dtype=np.uint64)
    noisy = add_noise_share(job, 6, zero, ring_bits, SecureGenerator(bytes(32)))
    x = dequantize_sum(noisy, 1.0, ring_bits)  # the centred lift: the noise itself
    z = 4.8916  # two-sided, false alarm 1e-6
    assert abs(x.mean()) <= z * math.sqrt(mu / n)
    assert abs(x.var() - mu) <= z * math.sqrt((2 * mu**2 + mu) / n)


def test_a_dpfedavg_round_sampled_too_small_for_a_secure_sum_is_skipped(
    write_job: JobWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = six_parties(write_job, rounds=2).replace("standardize = true", "standardize = false")
    text += PROTECTED + '\n[privacy]\nmode = "dpfedavg"\nnoise_multiplier = 1.0\n'
    simulation = build_simulation(load_job(write_job(text, name="small.toml")), tmp_path,
                                  tmp_path / "homes")  # fmt: skip
    coordinator = simulation.coordinator
    # Poisson sampling drew two parties in round 1: no secure sum is possible with two.
    draws = {1: PARTIES[:2], 2: PARTIES}
    monkeypatch.setattr(coordinator, "sample", lambda round_number: draws[round_number])
    before = coordinator.params.clone()
    first = coordinator.run_round(1)
    assert first["skipped"] == "too few parties sampled for a secure sum"
    assert first["sampled"] is None and torch.equal(coordinator.params, before)
    second = coordinator.run_round(2)
    assert "skipped" not in second and not torch.equal(coordinator.params, before)


def test_a_secure_round_asked_again_starts_fresh_around_the_charged_update(
    write_job: JobWriter, tmp_path: Path
) -> None:
    """As after a coordinator restart: the same train request twice. The node opens a new
    session (fresh keys) around the update it trained and charged once; the round then
    completes with the expected sum, and the ledger holds one charge."""
    dp = '\n[privacy]\nmode = "dpsgd"\nnoise_multiplier = 1.0\nclip_norm = 1.0\n'
    text = six_parties(write_job, rounds=1).replace("standardize = true", "standardize = false")
    job_file = write_job(text + PROTECTED + dp, name="secagg-dp.toml")
    simulation = build_simulation(load_job(job_file), tmp_path, tmp_path / "homes")
    node = simulation.nodes[0]
    request = TrainRequest(simulation.job_id, 1, simulation.coordinator.params, 0.05)
    first = node.gate.unseal(node.handle(request)).payload
    again = node.gate.unseal(node.handle(request)).payload
    assert first.c_public != again.c_public and first.s_public != again.s_public
    assert node.gate.privacy is not None
    updates = [c for c in node.gate.privacy.ledger.charges() if c.release_kind == "update"]
    assert [c.round for c in updates] == [1]
    # The coordinator's (restarted) round: every node, this one included, answers it.
    record = simulation.coordinator.run_round(1)
    assert record["sampled"] == PARTIES
    updates = [c for c in node.gate.privacy.ledger.charges() if c.release_kind == "update"]
    assert [c.round for c in updates] == [1]
