"""End-to-end rounds: the sum is exact for any dropouts the thresholds allow, and below
them every stage fails cleanly with SecAggTooFewError."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from accord.errors import SecAggAbortedError, SecAggParameterError, SecAggTooFewError
from accord.protect import (
    SecAggParams,
    choose_ring_bits,
    dequantize_sum,
    quantization_error_bound,
    quantize,
)
from accord.secure_random import SecureGenerator
from tests.protect.harness import STAGES, Federation, run_round


def complete8() -> Federation:
    """Complete graph, n = 8: t = 5 of 8 holders, m = 5 signatures: up to 3 may drop."""
    fed = Federation(8, delta=0.25, min_parties=5, allow_sparse=False)
    graph = fed.params.graph_params_for(8)
    assert (graph.complete, graph.threshold, graph.min_signatures) == (True, 5, 5)
    return fed


def assert_exact(fed: Federation, drop: dict[str, set[str]]) -> tuple[str, ...]:
    inputs = fed.inputs()
    result = run_round(fed, inputs, drop=drop)
    # Parties that dropped after sending their masked input are still in the sum.
    before_input = ("advertise", "confirm", "share_keys", "masked_input")
    gone = set().union(*(drop.get(stage, set()) for stage in before_input))
    assert set(result.survivors) == set(fed.names) - gone
    assert np.array_equal(
        result.total.astype(np.uint64), fed.expected_sum(inputs, result.survivors)
    )
    return result.survivors


def test_no_dropout_gives_the_exact_sum_and_one_graph_for_all() -> None:
    fed = complete8()
    inputs = fed.inputs()
    result = run_round(fed, inputs)
    assert result.survivors == fed.names
    assert np.array_equal(result.total.astype(np.uint64), fed.expected_sum(inputs, fed.names))
    assert all(node.graph == result.server.graph for node in result.nodes.values())


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("count", [1, 3])
def test_complete_graph_tolerates_dropouts_at_every_stage(stage: str, count: int) -> None:
    fed = complete8()
    dropped = set(fed.names[2 : 2 + count])
    survivors = assert_exact(fed, {stage: dropped})
    # Parties that sent their masked input before dropping are in the sum.
    in_sum = stage in ("sign", "unmask")
    assert dropped <= set(survivors) if in_sum else not dropped & set(survivors)


@pytest.mark.parametrize("stage", STAGES)
def test_below_the_threshold_every_stage_fails_cleanly(stage: str) -> None:
    fed = complete8()
    with pytest.raises(SecAggTooFewError):
        run_round(fed, fed.inputs(), drop={stage: set(fed.names[:4])})


def test_dropouts_spread_over_stages() -> None:
    fed = complete8()
    assert_exact(fed, {"share_keys": {"p001"}, "masked_input": {"p004"}, "unmask": {"p006"}})


@pytest.mark.parametrize("stage", ["share_keys", "masked_input", "sign", "unmask"])
def test_sparse_graph_tolerates_delta_dropouts(stage: str) -> None:
    fed = Federation(20, gamma=0.1, delta=0.1)
    graph = fed.params.graph_params_for(20)
    assert (graph.complete, graph.degree, graph.threshold, graph.dropouts) == (False, 8, 6, 2)
    assert_exact(fed, {stage: {"p003", "p011"}})


def test_sparse_graph_after_advertise_dropout_is_smaller_round() -> None:
    fed = Federation(20, gamma=0.1, delta=0.1)
    survivors = assert_exact(fed, {"advertise": {"p000"}})
    assert len(survivors) == 19


def test_sparse_graph_stops_when_an_advertised_party_does_not_confirm() -> None:
    fed = Federation(20, gamma=0.1, delta=0.1)
    with pytest.raises(SecAggTooFewError, match="did not confirm"):
        run_round(fed, fed.inputs(), drop={"confirm": {"p005"}})


def test_sparse_round_of_60_parties() -> None:
    fed = Federation(60, gamma=0.05, delta=0.05, length=200)
    inputs = fed.inputs()
    result = run_round(fed, inputs, drop={"masked_input": {"p001", "p030"}, "unmask": {"p045"}})
    graph = result.server.graph
    assert graph is not None and not graph.complete
    assert (graph.params.degree, graph.threshold) == (10, 7)
    assert all(len(graph.neighbours(p)) == 10 for p in fed.names)
    assert len(result.survivors) == 58
    assert np.array_equal(
        result.total.astype(np.uint64), fed.expected_sum(inputs, result.survivors)
    )


def test_quantized_float_updates_sum_within_n_over_scale() -> None:
    n, clip, scale = 5, 1.0, 2.0**16
    bits = choose_ring_bits(clip, scale, n)
    fed = Federation(n, delta=0.2, ring_bits=bits, length=100_000)
    rng = np.random.default_rng(7)  # test data only
    updates = {p: rng.normal(0, 0.5, fed.length).astype(np.float32) for p in fed.names}
    inputs = {
        p: quantize(u, clip, scale, bits, SecureGenerator.fresh()) for p, u in updates.items()
    }
    result = run_round(fed, inputs, drop={"masked_input": {"p002"}})
    decoded = dequantize_sum(result.total, scale, bits)
    expected = sum(np.clip(updates[p].astype(np.float64), -clip, clip) for p in result.survivors)
    assert np.max(np.abs(decoded - expected)) < quantization_error_bound(
        len(result.survivors), scale
    )


def test_rings_wider_than_32_bits_use_64_bit_words() -> None:
    fed = Federation(5, delta=0.2, ring_bits=40, length=300)
    survivors = assert_exact(fed, {"masked_input": {"p000"}})
    assert len(survivors) == 4


# --- using the API wrongly --------------------------------------------------------------


def test_stages_out_of_order_are_refused() -> None:
    fed = Federation(5, delta=0.2)
    node = fed.node("p000")
    with pytest.raises(SecAggAbortedError, match="out of order"):
        node.unmask(None)  # type: ignore[arg-type]
    node = fed.node("p000")
    node.advertise()
    with pytest.raises(SecAggAbortedError, match="out of order"):
        node.advertise()


def test_node_refuses_keys_that_are_not_its_roster_entry() -> None:
    fed = Federation(5, delta=0.2)
    with pytest.raises(SecAggParameterError, match="roster key"):
        fed.node("p000", identity_key=Ed25519PrivateKey.generate())
    with pytest.raises(SecAggParameterError, match="cover exactly"):
        fed.node("p000", roster_keys={"p000": fed.identities["p000"].public_key()})
    with pytest.raises(SecAggParameterError, match="not on the round's roster"):
        fed.node("p000", party="stranger")


def test_inputs_outside_the_ring_are_refused_before_masking() -> None:
    fed = Federation(5, delta=0.2, ring_bits=16, length=10)
    nodes = fed.nodes()
    server = fed.server()
    for p in fed.names:
        server.receive_advertisement(nodes[p].advertise())
    ad_set = server.advertisement_set()
    for p in fed.names:
        server.receive_confirmation(nodes[p].confirm(ad_set))
    confirmations = server.confirmation_set()
    for p in fed.names:
        server.receive_key_shares(nodes[p].share_keys(confirmations))
    delivery = server.share_deliveries()["p000"]
    with pytest.raises(SecAggParameterError, match="outside"):
        nodes["p000"].masked_input(delivery, np.full(10, 2**16, dtype=np.uint32))
    with pytest.raises(SecAggParameterError, match="10 integers"):
        nodes["p000"].masked_input(delivery, np.zeros(9, dtype=np.uint32))
    # A caller's mistake does not cost the round: the right input still goes through.
    nodes["p000"].masked_input(delivery, np.zeros(10, dtype=np.uint32))


def test_params_validate_the_job_settings() -> None:
    base = {
        "job_id": "j",
        "round": 0,
        "roster": ("a", "b", "c", "d", "e"),
        "min_parties": 2,
        "gamma": 0.0,
        "delta": 0.2,
        "ring_bits": 24,
        "vector_length": 10,
    }
    SecAggParams(**base)  # type: ignore[arg-type]
    for change in (
        {"roster": ("a", "a", "b")},
        {"min_parties": 6},
        {"ring_bits": 63},
        {"delta": 0.6},
        {"round": -1},
        {"job_id": ""},
    ):
        with pytest.raises(SecAggParameterError):
            SecAggParams(**{**base, **change})  # type: ignore[arg-type]
