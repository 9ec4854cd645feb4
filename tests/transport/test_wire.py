"""The wire codec: real messages round-trip exactly (three whole jobs run over it), values
of every allowed kind and dtype come back as they went, and large tensors cross in chunks."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dp_accounting
import numpy as np
import pytest
import torch

from accord.errors import AgreementRevokedError
from accord.fl.messages import COORDINATOR, ProtocolRequest, Release, ReleaseKind, Request
from accord.fl.simulation import Simulation, build_simulation
from accord.governance.agreement import load_agreement, make_revocation, record_revocation
from accord.governance.audit import AuditHead
from accord.job import load_job
from accord.privacy.events import Adversary
from accord.transport.base import Exchange, Transport
from accord.transport.wire import Chunk, Reassembler, chunks, decode, encode
from accord.transport.wire_types import UncheckableAnnotation, conforms, registry
from accord.transport.wire_values import INLINE_BYTES_MAX
from tests.agreement_kit import agreed_job, make_federation
from tests.conftest import SMALL_JOB
from tests.transport.wire_kit import assert_same, joined, through_chunks


def wire_names(obj: Any, found: set[str]) -> set[str]:
    """The registered wire names of every record inside ``obj``."""
    record = registry().by_class.get(type(obj))
    if record is not None:
        found.add(record.name)
        values = (
            obj.model_dump() if record.is_model else {f: getattr(obj, f) for f in record.fields}
        )
        wire_names(values, found)
    elif isinstance(obj, Mapping):
        for value in obj.values():
            wire_names(value, found)
    elif isinstance(obj, tuple | list):
        for value in obj:
            wire_names(value, found)
    return found


class WireTransport:
    """The in-process transport with every request and release sent through the codec (in
    64 KiB chunks), checked equal to the original, and the decoded copy delivered."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.sent = 0
        self.names: set[str] = set()
        self.stages: set[str] = set()

    def through_wire(self, obj: Any) -> Any:
        self.sent += 1
        got = through_chunks(obj, self.sent)
        assert_same(obj, got)
        wire_names(obj, self.names)
        return got

    def exchange(self, requests: Mapping[str, Request]) -> Exchange:
        for request in requests.values():
            if isinstance(request, ProtocolRequest):
                self.stages.add(request.stage)
        done = self.inner.exchange({p: self.through_wire(r) for p, r in requests.items()})
        done.replies = {p: self.through_wire(r) for p, r in done.replies.items()}
        return done


def job_text(parties: int = 4, rounds: int = 1, model: str = "mlp") -> str:
    text = SMALL_JOB.format(seed=0, rounds=rounds, model=model, strategy="fedavg", sampling="all")
    return text.replace("parties = 4", f"parties = {parties}")


def simulate(
    tmp_path: Path, text: str, homes: Path | None = None
) -> tuple[Simulation, WireTransport]:
    job_file = tmp_path / "job.toml"
    job_file.write_text(text)
    simulation = build_simulation(load_job(job_file), tmp_path, homes or tmp_path / "homes")
    inbox: Any = simulation.coordinator.transport
    wire = WireTransport(inbox.inner)
    inbox.inner = wire
    return simulation, wire


# --- real messages, round trip ---------------------------------------------------------------

SECAGG_NAMES = {
    "fl.TrainRequest", "fl.EvaluateRequest", "fl.ProtocolRequest", "fl.Release",
    "secagg.Advertisement", "secagg.AdvertisementSet", "secagg.Confirmation",
    "secagg.ConfirmationSet", "secagg.KeyShares", "secagg.ShareDelivery", "envelope.Envelope",
    "secagg.MaskAttestation", "secagg.MaskedInput", "secagg.SurvivorList",
    "secagg.SurvivorSignature", "secagg.UnmaskRequest", "secagg.UnmaskResponse",
}  # fmt: skip
CKKS_NAMES = {
    "ckks.CkksHello", "ckks.CkksKeyDelivery", "ckks.CkksKeyRelay", "ckks.CkksAck",
    "ckks.CkksUpdate", "ckks.CkksAggregate", "ckks.EncryptedVector", "envelope.Envelope",
}  # fmt: skip
GOVERNANCE_NAMES = {"audit.AuditHead", "receipt.PrivacyReceipt", "agreement.RevocationEntry"}


def test_the_scenarios_below_cover_every_registered_type() -> None:
    assert set(registry().records) == SECAGG_NAMES | CKKS_NAMES | GOVERNANCE_NAMES


def test_every_registered_field_has_an_annotation_the_wire_can_check() -> None:
    for record in registry().records.values():
        for name, hint in record.hints.items():
            try:
                conforms(object(), hint)
            except UncheckableAnnotation:
                pytest.fail(f"{record.name}.{name}: {hint!r}")


def test_a_secure_aggregation_round_runs_over_the_wire(tmp_path: Path) -> None:
    text = job_text(parties=6) + '\n[protection]\nmode = "secagg"\n'
    simulation, wire = simulate(tmp_path, text)
    record = simulation.coordinator.run().records[0]
    assert record["sampled"] == [f"party-{i}" for i in range(1, 7)]
    assert wire.names >= SECAGG_NAMES
    assert {"confirm", "share_keys", "masked_input", "sign_survivors", "unmask"} <= wire.stages


def test_a_ckks_job_runs_over_the_wire(tmp_path: Path) -> None:
    text = job_text() + '\n[protection]\nmode = "ckks"\nkey_holder = "party-2"\n'
    simulation, wire = simulate(tmp_path, text)
    simulation.coordinator.run()
    models = [n.ckks.current_model() for n in simulation.nodes if n.ckks is not None]
    assert len(models) == 4 and all(torch.equal(m, models[0]) for m in models)
    assert wire.names >= CKKS_NAMES | {"fl.TrainRequest", "fl.Release", "fl.ProtocolRequest"}


def test_dp_releases_receipts_and_a_revocation_run_over_the_wire(tmp_path: Path) -> None:
    federation = make_federation(tmp_path)
    dpsgd = '\n[privacy]\nmode = "dpsgd"\nnoise_multiplier = 1.0\nclip_norm = 1.0\ndelta = 1e-5\n'
    text = agreed_job(
        job_text(rounds=2, model="logreg").replace("standardize = true", "standardize = false")
    )
    simulation, wire = simulate(tmp_path, text + dpsgd, federation.homes)
    simulation.coordinator.run_round(1)
    inbox: Any = simulation.coordinator.transport
    receipts = inbox.collect_receipts(1)
    assert sorted(receipts) == [f"party-{i}" for i in range(1, 5)]
    home_copy = load_agreement(federation.homes / "party-2" / "agreement.toml")
    revocation = make_revocation(home_copy, federation.identities["party-2"], "consent withdrawn")
    record_revocation(home_copy, revocation)
    with pytest.raises(AgreementRevokedError, match="3 of 3"):
        simulation.coordinator.run_round(2)
    assert wire.names >= GOVERNANCE_NAMES
    assert {"receipt", "agreement_revoked"} <= wire.stages


def test_values_of_every_allowed_kind_round_trip_exactly() -> None:
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(0.01, dp_accounting.GaussianDpEvent(1.1)), 100
    )
    value = {
        "none": None, "flags": [True, False], "ints": (0, -1, 2**63 - 1, -(2**63) + 1),
        "floats": [0.1, -0.0, 1e-300, 1.7976931348623157e308], "text": "é ∑ 🔐",
        "small": b"\x00\xff" * 10, "large": bytes(range(256)) * 20, "event": event,
        "kinds": [ReleaseKind.UPDATE, Adversary.RECIPIENTS_ONLY],
        "head": AuditHead("party-1", 3, "ab" * 32, "c2lnbmF0dXJl"), "nested": {"deep": [()]},
    }  # fmt: skip
    assert_same(value, decode(*joined(encode(value, 5))))
    assert_same(value, through_chunks(value, 9, 100))
    assert decode(*joined(encode(None, 0))) is None


TORCH_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64,
                torch.int32, torch.int16, torch.int8, torch.uint8, torch.uint32, torch.uint64,
                torch.bool]  # fmt: skip


@pytest.mark.parametrize("dtype", TORCH_DTYPES, ids=str)
def test_tensors_of_every_allowed_dtype_round_trip_as_torch_and_as_numpy(
    dtype: torch.dtype,
) -> None:
    generator = torch.Generator().manual_seed(0)
    base = (torch.randn(3, 5, generator=generator) * 50).to(torch.int64)
    tensor = (base % 2 == 0) if dtype == torch.bool else base.abs().to(dtype)
    shapes = [tensor, tensor.t(), tensor[0, 0], tensor[:0], tensor.reshape(5, 3, 1)]
    for t in shapes:  # contiguous, transposed, 0-d, empty, 3-d
        assert_same(t, decode(*joined(encode(t, 1))))
    if dtype not in (torch.bfloat16, torch.uint32, torch.uint64):
        array = tensor.numpy()
        for a in (
            array,
            array.T,
            array[0, 0, ...],
            array[:0],
            array.astype(array.dtype.newbyteorder(">")),
        ):
            got = decode(*joined(encode(a, 1)))
            assert isinstance(got, np.ndarray) and np.array_equal(got, a) and got.shape == a.shape
    for a in (np.arange(7, dtype=np.uint32), np.arange(7, dtype=np.uint64)):
        assert_same(a, decode(*joined(encode(a, 1))))


def test_a_tensor_larger_than_a_chunk_is_split_and_reassembled_exactly() -> None:
    big = torch.randn(10_000, generator=torch.Generator().manual_seed(1))
    blob = bytes(range(256)) * 13  # out of band too: more than INLINE_BYTES_MAX
    other = np.arange(333, dtype=np.float64)
    message = Release(ReleaseKind.UPDATE, "job", 1, "party-1", COORDINATOR, {"delta": big},
                      payload=(blob, other))  # fmt: skip
    _, views = encode(message, 4)
    total = sum(v.nbytes for v in views)
    assert total == 40_000 + len(blob) + 333 * 8 and len(blob) > INLINE_BYTES_MAX
    stream = list(chunks(message, 4, 1000))
    assert len(stream) == 1 + math.ceil(total / 1000)
    parsed = [Chunk.FromString(c) for c in stream]
    assert [c.index for c in parsed] == list(range(len(stream)))
    assert all(len(c.data) <= 1000 for c in parsed[1:])
    assert [c.last for c in parsed] == [False] * (len(stream) - 1) + [True]
    reassembler = Reassembler()
    results = [reassembler.feed(c) for c in stream]
    assert results[:-1] == [None] * (len(stream) - 1)
    assert_same(message, results[-1])
    # Zero copy: the views are the tensor's own memory.
    big[0] = 123.0
    assert np.frombuffer(views[0], dtype=np.float32)[0] == 123.0
