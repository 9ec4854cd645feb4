"""The release gate is the only exit: the transport refuses anything else."""

from __future__ import annotations

import pytest
import torch

from accord.errors import GateBypassError, RefusedError
from accord.fl.gate import ReleaseGate, SealedRelease
from accord.fl.messages import COORDINATOR, EvaluateRequest, Release, ReleaseKind, Request
from accord.transport.base import NodeEndpoint
from accord.transport.inprocess import InProcessTransport

REQUEST = EvaluateRequest("job", 1, torch.zeros(3))


def metrics_release(sender: str = "a", **scalars: float) -> Release:
    values = scalars or {"num_examples": 10.0, "loss": 0.5, "accuracy": 0.9}
    return Release(ReleaseKind.METRICS, "job", 1, sender, COORDINATOR, scalars=values)


def transport_for(gate: ReleaseGate, reply: object) -> InProcessTransport:
    def handle(request: Request) -> object:
        return reply

    return InProcessTransport([NodeEndpoint(gate.party, handle, gate.unseal)])


def test_sealed_release_passes_once_and_bytes_are_counted() -> None:
    gate = ReleaseGate("a")
    sealed = gate.release(metrics_release())
    exchange = transport_for(gate, sealed).exchange({"a": REQUEST})
    assert exchange.replies["a"].scalars["accuracy"] == 0.9
    assert exchange.bytes_up == 24 and exchange.bytes_down == 12
    with pytest.raises(GateBypassError, match="already sent"):
        transport_for(gate, sealed).exchange({"a": REQUEST})


def test_unsealed_release_is_refused() -> None:
    gate = ReleaseGate("a")
    with pytest.raises(GateBypassError, match="not a release sealed"):
        transport_for(gate, metrics_release()).exchange({"a": REQUEST})


def test_forged_seal_is_refused() -> None:
    gate = ReleaseGate("a")
    forged = SealedRelease(metrics_release())
    with pytest.raises(GateBypassError, match="did not seal"):
        transport_for(gate, forged).exchange({"a": REQUEST})


def test_release_sealed_by_another_node_is_refused() -> None:
    other = ReleaseGate("a")
    sealed = other.release(metrics_release())
    with pytest.raises(GateBypassError):
        transport_for(ReleaseGate("a"), sealed).exchange({"a": REQUEST})


def test_gate_refuses_wrong_sender_unknown_content_and_non_finite() -> None:
    gate = ReleaseGate("a")
    with pytest.raises(RefusedError, match="claims sender"):
        gate.release(metrics_release(sender="b"))
    with pytest.raises(RefusedError, match="may not carry"):
        gate.release(metrics_release(raw_rows=3.0))
    bad = Release(
        ReleaseKind.UPDATE,
        "job",
        1,
        "a",
        COORDINATOR,
        tensors={"delta": torch.tensor([float("nan")])},
        scalars={"num_examples": 1.0},
    )
    with pytest.raises(RefusedError, match="not finite"):
        gate.release(bad)
