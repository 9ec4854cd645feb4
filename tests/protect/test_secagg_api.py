"""The public surface of secure aggregation: names, exception tree, message sizes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import accord.errors as errors
import accord.protect as protect
from accord.protect import MaskedInput
from tests.protect.harness import Federation, RecordingServer, RoundDriver

SECAGG_NAMES = {
    "SecAggParams",
    "SecAggNode",
    "SecAggServer",
    "Advertisement",
    "AdvertisementSet",
    "Confirmation",
    "ConfirmationSet",
    "KeyShares",
    "MaskAttestation",
    "ShareDelivery",
    "MaskedInput",
    "SurvivorList",
    "SurvivorSignature",
    "UnmaskRequest",
    "UnmaskResponse",
    "Envelope",
    "GraphParams",
    "NeighbourGraph",
    "choose_graph_params",
    "choose_ring_bits",
    "quantize",
    "dequantize_sum",
    "quantization_error_bound",
    "packed_bytes",
    "seal",
    "open_envelope",
}


def test_public_names_resolve() -> None:
    assert set(protect.__all__) >= SECAGG_NAMES
    for name in protect.__all__:
        assert getattr(protect, name) is not None, name


def test_secagg_errors_sit_in_the_tree_with_their_exit_codes() -> None:
    assert issubclass(errors.SecAggParameterError, errors.InputError)
    assert errors.SecAggParameterError.exit_code == 2
    for cls in (
        errors.SecAggAbortedError,
        errors.SecAggTooFewError,
        errors.SecAggTamperError,
        errors.EnvelopeError,
    ):
        assert issubclass(cls, errors.RefusedError) and cls.exit_code == 3
    assert issubclass(errors.EnvelopeError, errors.SecAggTamperError)
    assert issubclass(errors.SecAggTooFewError, errors.SecAggAbortedError)
    assert issubclass(errors.SecAggTamperError, errors.SecAggAbortedError)


def test_messages_are_frozen_and_state_their_size() -> None:
    fed = Federation(5, delta=0.2, ring_bits=24, length=1000, allow_sparse=False)
    driver = RoundDriver(fed)
    driver.mask(driver.share(driver.confirm(driver.advertise())))
    assert isinstance(driver.server, RecordingServer)
    masked = next(m for m in driver.server.view if isinstance(m, MaskedInput))
    with pytest.raises(dataclasses.FrozenInstanceError):
        masked.sender = "p001"  # type: ignore[misc]
    attestation = masked.attestation.nbytes
    assert masked.attestation.masked_with == tuple(p for p in fed.names if p != masked.sender)
    assert masked.nbytes == 4000 + attestation
    assert masked.packed_nbytes(24) == 3000 + attestation


def test_the_server_refuses_a_bad_message_and_the_round_goes_on() -> None:
    fed = Federation(5, delta=0.2, allow_sparse=False)
    driver = RoundDriver(fed, server=fed.server())
    deliveries = driver.share(driver.confirm(driver.advertise()))
    server = driver.server
    for p in fed.names[:4]:
        server.receive_masked_input(driver.nodes[p].masked_input(deliveries[p], driver.inputs[p]))
    bad = driver.nodes["p004"].masked_input(deliveries["p004"], driver.inputs["p004"])
    with pytest.raises(errors.SecAggTamperError, match="malformed"):
        server.receive_masked_input(dataclasses.replace(bad, values=bad.values[:10]))
    with pytest.raises(errors.SecAggTamperError, match="repeated"):
        server.receive_masked_input(dataclasses.replace(bad, sender="p000"))
    lying = dataclasses.replace(bad.attestation, masked_with=fed.names[:2])
    with pytest.raises(errors.SecAggTamperError, match="attestation"):
        server.receive_masked_input(dataclasses.replace(bad, attestation=lying))
    total = driver.unmask(driver.sign(server.survivor_list()))
    assert np.array_equal(total.astype(np.uint64), fed.expected_sum(driver.inputs, fed.names[:4]))


def test_a_broadcast_out_of_its_stage_is_refused() -> None:
    fed = Federation(5, delta=0.2)
    server = fed.server()
    with pytest.raises(errors.SecAggAbortedError, match="current stage"):
        server.survivor_list()
