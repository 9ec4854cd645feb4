"""Deployment over gRPC with mutual TLS, on 127.0.0.1: who gets in, and who is refused.

A real gRPC server with the coordinator's kit and a real node connection with each party's
kit, as ``accord coordinator`` and ``accord node`` set them up; the federation (keys, signed
agreement, requests, CA, kits) is made the way ``accord demo --network`` makes it.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import tomli_w
import torch

from accord.cli.demo_network import _set_up
from accord.errors import TransportError
from accord.fl.deploy_coordinator import serve_coordinator
from accord.fl.deploy_node import authenticate_peer, serve_node
from accord.fl.messages import EvaluateRequest, Release, ReleaseKind
from accord.governance.agreement import load_agreement
from accord.governance.federation_ca import revoke
from accord.governance.identity import load_identity
from accord.governance.provisioning import TLS_KEY_FILE, check_challenge, load_kit
from accord.transport.grpc_coordinator import CoordinatorServer, NetworkTransport
from accord.transport.grpc_link import CHANNEL_OPTIONS, METHOD
from accord.transport.grpc_node import NodeConnection
from accord.transport.wire import chunks


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("federation") / "work"
    _set_up(folder)
    return folder


@pytest.fixture
def server(work: Path) -> Iterator[CoordinatorServer]:
    kit = load_kit(work / "kits" / "coordinator")
    agreement = load_agreement(kit.agreement_path)
    identity = load_identity(work / "keys" / "coordinator.key")
    tls_key = (work / "keys" / "coordinator.tls.key").read_bytes()
    # On the kit's address: the real node loop (serve_node) dials it.
    running = CoordinatorServer(kit.coordinator_address, kit.cert_pem, tls_key, kit.ca_pem,
                                authenticate_peer(kit, agreement, identity),
                                hello_timeout_s=5.0)  # fmt: skip
    running.start()
    yield running
    running.stop()


def dial(
    work: Path, server: CoordinatorServer, party: str, timeout: float = 10.0
) -> NodeConnection:
    kit = load_kit(work / "kits" / party)
    key = (work / "homes" / party / TLS_KEY_FILE).read_bytes()
    return NodeConnection(f"127.0.0.1:{server.port}", kit.cert_pem, key, kit.ca_pem,
                          "coordinator", timeout)  # fmt: skip


def hello(connection: NodeConnection, party: str) -> object:
    nonce = secrets.token_bytes(32)
    connection.link.send({"hello": party, "nonce": nonce})
    reply = connection.link.receive(10.0)
    return nonce, reply


def test_a_party_of_the_agreement_gets_in_and_the_coordinator_proves_its_identity(
    work: Path, server: CoordinatorServer
) -> None:
    connection = dial(work, server, "hospital-a")
    try:
        nonce, reply = hello(connection, "hospital-a")
        assert isinstance(reply, dict)
        agreement = load_agreement(work / "agreement.toml")
        check_challenge(agreement, nonce, "hospital-a", reply["challenge"])
        server.wait_for(["hospital-a"], 5.0)
        # The challenge is bound to this nonce and this party: no other passes.
        with pytest.raises(Exception, match="challenge"):
            check_challenge(agreement, secrets.token_bytes(32), "hospital-a", reply["challenge"])
    finally:
        connection.close()


def test_a_hello_in_another_partys_name_is_refused_and_logged(
    work: Path, server: CoordinatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    connection = dial(work, server, "hospital-b")
    with caplog.at_level(logging.WARNING, logger="accord.coordinator"):
        connection.link.send({"hello": "hospital-c", "nonce": secrets.token_bytes(32)})
        with pytest.raises(TransportError):
            connection.link.receive(10.0)
    connection.close()
    assert any("'hospital-b''s but the hello names 'hospital-c'" in r for r in server.refusals)
    assert "refused" in caplog.text


def test_a_revoked_certificate_is_refused_right_after_the_handshake(
    work: Path, server: CoordinatorServer
) -> None:
    revoke(work / "federation" / "ca", "hospital-d", work / "kits")
    connection = dial(work, server, "hospital-d")
    try:
        with pytest.raises(TransportError):
            hello(connection, "hospital-d")
    finally:
        connection.close()
    assert any("revoked" in line for line in server.refusals), server.refusals


def test_a_replayed_message_is_refused_and_closes_the_link(
    work: Path, server: CoordinatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    connection = dial(work, server, "hospital-c")
    try:
        hello(connection, "hospital-c")
        server.wait_for(["hospital-c"], 5.0)
        with caplog.at_level(logging.WARNING, logger="accord.link"):
            # Message 1 (the hello) again, as an attacker replaying captured bytes would.
            for chunk in chunks({"hello": "hospital-c", "nonce": bytes(32)}, 1):
                connection.link.outbound.put(chunk)
            link = server.links["hospital-c"]
            assert link.closed.wait(10.0)
        assert "replayed" in str(link.error) and "replayed" in caplog.text
    finally:
        connection.close()


def test_a_certificate_from_another_ca_or_none_fails_the_handshake(
    work: Path, server: CoordinatorServer, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    _set_up(other)
    with pytest.raises(TransportError, match="no TLS connection"):
        dial(other, server, "hospital-a", timeout=2.0)
    # No client certificate at all: gRPC's handshake (require_client_auth) refuses it.
    kit = load_kit(work / "kits" / "hospital-a")
    channel = grpc.secure_channel(
        f"127.0.0.1:{server.port}", grpc.ssl_channel_credentials(root_certificates=kit.ca_pem),
        options=[*CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", "coordinator")],
    )  # fmt: skip
    try:
        call = channel.stream_stream(METHOD)(iter([b""]), timeout=5.0)
        with pytest.raises(grpc.RpcError):
            list(call)
    finally:
        channel.close()
    assert "hospital-a" not in server.links


def test_a_secure_aggregation_job_runs_over_the_network_with_receipts(tmp_path: Path) -> None:
    """Four node threads and the coordinator, each with its own kit, home and TLS key."""
    work = tmp_path / "work"
    job = _set_up(work)
    raw = tomllib.loads(job.read_text())
    raw["job"]["rounds"] = 2
    raw["protection"] = {"mode": "secagg", "max_dropout_fraction": 0.0}
    job.write_text(tomli_w.dumps(raw))
    answered: dict[str, int] = {}

    def node(party: str) -> None:
        answered[party] = serve_node(work / "kits" / party, work / "homes" / party)

    threads = [threading.Thread(target=node, args=(p,)) for p in
               ("hospital-a", "hospital-b", "hospital-c", "hospital-d")]  # fmt: skip
    for thread in threads:
        thread.start()
    outcome = serve_coordinator(work / "kits" / "coordinator", job,
                                work / "keys" / "coordinator.key", tmp_path / "run")  # fmt: skip
    for thread in threads:
        thread.join(timeout=60)
    records = outcome.result.records
    assert [r["round"] for r in records] == [1, 2]
    assert all(r["protection"] == "secagg" for r in records)
    receipts = json.loads((tmp_path / "run" / "receipts.json").read_text())
    assert sorted(receipts) == ["hospital-a", "hospital-b", "hospital-c", "hospital-d"]
    assert {r["protection"] for r in receipts.values()} == {"secagg"}
    assert all(n > 0 for n in answered.values()) and len(answered) == 4


def test_a_late_reply_is_discarded_not_taken_for_the_next_one(
    work: Path, server: CoordinatorServer
) -> None:
    connection = dial(work, server, "hospital-a")
    try:
        hello(connection, "hospital-a")
        server.wait_for(["hospital-a"], 5.0)
        transport = NetworkTransport(server, timeout_s=0.5)

        def metrics(round_number: int) -> Release:
            return Release(kind=ReleaseKind.METRICS, job_id="job", round=round_number,
                           sender="hospital-a", recipient="coordinator",
                           scalars={"accuracy": float(round_number)})  # fmt: skip

        first = transport.exchange({"hospital-a": EvaluateRequest("job", 1, None)})
        assert "within" in first.failed["hospital-a"]  # the straggler missed round 1
        connection.link.receive(5.0)  # the node gets request 1 ...
        connection.link.send(metrics(1))  # ... and answers it late
        second_request = EvaluateRequest("job", 2, None)
        sender = threading.Thread(
            target=lambda: (connection.link.receive(5.0), connection.link.send(metrics(2)))
        )
        sender.start()
        second = transport.exchange({"hospital-a": second_request})
        sender.join()
        assert second.replies["hospital-a"].round == 2
    finally:
        connection.close()


def test_malformed_traffic_never_brings_down_the_coordinator_or_a_node(
    work: Path, server: CoordinatorServer
) -> None:
    """Garbage on many connections, then thousands of well-formed but wrong requests to a
    live node: every one refused, and both ends still work afterwards."""
    import random

    rng = random.Random(7)
    # Garbage chunks after a good hello: the server closes that link and carries on.
    for attempt in range(30):
        connection = dial(work, server, "hospital-b")
        try:
            hello(connection, "hospital-b")
            server.wait_for(["hospital-b"], 5.0)
            garbage = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 4000)))
            connection.link.outbound.put(garbage)
            assert server.links["hospital-b"].closed.wait(10.0), attempt
        finally:
            connection.close()
    # A live node (the real serve_node loop, with its real Node): two thousand requests it
    # cannot use, each refused, then a good one answered through its gate.
    from accord.fl.deploy_coordinator import offered_job
    from accord.fl.messages import ProtocolRequest, TrainRequest

    job, text = offered_job(work / "demo.toml")
    answered: dict[str, int] = {}
    thread = threading.Thread(target=lambda: answered.update(
        n=serve_node(work / "kits" / "hospital-c", work / "homes" / "hospital-c")))  # fmt: skip
    thread.start()
    server.wait_for(["hospital-c"], 30.0)
    transport = NetworkTransport(server, timeout_s=30.0)
    (accepted,) = transport.ask_all(
        {"job": text, "job_id": job.job_id(), "run_id": "fuzz"}, ["hospital-c"]
    ).values()
    assert isinstance(accepted, dict) and accepted.get("accepted"), accepted
    wrong: list[object] = []
    for i in range(2000):
        kind = i % 4
        if kind == 0:
            wrong.append(TrainRequest("another-job", 1, torch.zeros(3), 0.1))
        elif kind == 1:
            wrong.append(EvaluateRequest(job.job_id(), 1, torch.zeros(rng.randint(0, 50))))
        elif kind == 2:
            wrong.append(ProtocolRequest(job.job_id(), 1, "no-such-stage", {"x": i}, 8))
        else:
            wrong.append(ProtocolRequest(job.job_id(), 1, "agreement_revoked", "junk", 4))
    for request in wrong:
        outcome = transport.exchange({"hospital-c": request})  # type: ignore[dict-item]
        assert "hospital-c" in outcome.failed and not outcome.replies
    good = transport.exchange({"hospital-c": EvaluateRequest(job.job_id(), 1, None)})
    assert "hospital-c" in good.failed  # a plain job's evaluate request carries a model
    transport.send_all({"done": True}, ["hospital-c"])
    thread.join(60)
    assert answered == {"n": 0}  # nothing usable was asked: nothing was released

    # The coordinator still lets a good node in.
    final = dial(work, server, "hospital-a")
    try:
        _, reply = hello(final, "hospital-a")
        assert isinstance(reply, dict) and "challenge" in reply
    finally:
        final.close()
