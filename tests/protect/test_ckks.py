"""CKKS aggregation: sums, the coordinator's public context, the key envelope, flooding."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import tenseal as ts
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from accord.errors import InputError, RefusedError
from accord.protect import ckks, ckks_noise
from accord.protect.ckks import (
    AGGREGATION,
    AGGREGATION_FLOODED,
    CkksKeySet,
    EncryptedVector,
    PublicContext,
)
from accord.secure_random import SecureGenerator


@pytest.fixture(scope="module")
def keys() -> CkksKeySet:
    return CkksKeySet.generate(AGGREGATION)


@pytest.fixture(scope="module")
def flood_keys() -> CkksKeySet:
    return CkksKeySet.generate(AGGREGATION_FLOODED)


def _updates(parties: int, length: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(scale=0.05, size=length) for _ in range(parties)]


def test_sum_of_parties_equals_plaintext_sum_within_the_stated_error(keys: CkksKeySet) -> None:
    length = 2 * AGGREGATION.slots + 17  # three chunks, the last one padded
    updates = _updates(4, length)
    public = keys.public_context()
    encrypted = [ckks.encrypt_vector(keys, u) for u in updates]
    assert all(len(e.chunks) == 3 for e in encrypted)
    total = ckks.add_ciphertexts(public, encrypted)
    decrypted = ckks.decrypt_sum(keys, total)
    exact = np.sum(updates, axis=0)
    bound = ckks.aggregate_error_bound(
        AGGREGATION,
        parties=4,
        length=length,
        party_norm_bound=max(float(np.linalg.norm(u)) for u in updates),
    )
    assert decrypted.shape == (length,)
    assert float(np.linalg.norm(decrypted - exact)) <= bound
    assert bound < 1e-6  # the bound itself is useful, not vacuous


def test_decryption_error_has_the_magnitude_of_the_noise_model(keys: CkksKeySet) -> None:
    # One fresh symmetric encryption: slot error std sqrt(N/2 (10.5 + 1/12)) / scale, where
    # 10.5 is SEAL's error variance and 1/12 the encoder's rounding.
    values = _updates(1, 4 * AGGREGATION.slots, seed=3)[0]
    error = ckks.decrypt_sum(keys, ckks.encrypt_vector(keys, values)) - values
    n = AGGREGATION.poly_modulus_degree
    predicted = math.sqrt(n / 2 * (10.5 + 1 / 12)) / AGGREGATION.scale
    assert float(np.std(error)) == pytest.approx(predicted, rel=0.1)
    # The bounds hold and are tight: the noise bound covers the slots' real and imaginary
    # parts, twice the energy of the real parts measured here, and is within 20% of that.
    measured = float(np.linalg.norm(error))
    noise_bound = ckks_noise.fresh_symmetric_sum_bound(n, AGGREGATION.scale, 1, 4, 40)
    assert noise_bound < 1.2 * math.sqrt(2) * measured
    norm = float(np.linalg.norm(values))
    full = ckks.aggregate_error_bound(
        AGGREGATION, parties=1, length=values.size, party_norm_bound=norm
    )
    assert measured <= full


def test_the_coordinators_context_has_no_secret_key(keys: CkksKeySet) -> None:
    public = keys.public_context()
    assert not public.has_secret_key()
    assert not public.context.has_secret_key()
    assert len(keys.public_bytes()) < 1000 < len(keys.secret_bytes())  # parameters only
    enc = ckks.encrypt_vector(keys, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="secret"):
        ts.ckks_vector_from(public.context, enc.chunks[0]).decrypt()
    # A context with the secret key cannot pass for a public one, however it is handed over.
    with pytest.raises(RefusedError):
        PublicContext(AGGREGATION, keys.key_id, keys.context)
    with pytest.raises(InputError):
        PublicContext.from_bytes(keys.secret_bytes())


def test_a_smuggled_secret_context_is_refused(keys: CkksKeySet) -> None:
    # Secret bytes relabelled as a public context: the loader looks inside and refuses.
    header, blobs = ckks.unpack_frame(keys.secret_bytes(), "secret-key-set", "test")
    relabelled = ckks.pack_frame("public-context", header, blobs)
    with pytest.raises(RefusedError, match="secret key"):
        PublicContext.from_bytes(relabelled)


def test_key_set_round_trips_through_its_secret_bytes(keys: CkksKeySet) -> None:
    enc = ckks.encrypt_vector(keys, np.arange(10.0))
    again = CkksKeySet.from_secret_bytes(keys.secret_bytes())
    assert again.key_id == keys.key_id
    assert np.allclose(ckks.decrypt_sum(again, enc), np.arange(10.0), atol=1e-8)
    assert repr(again) == f"CkksKeySet(aggregation, key_id={keys.key_id})"  # no key material


def test_coordinator_refuses_mismatched_ciphertexts(keys: CkksKeySet) -> None:
    public = keys.public_context()
    a = ckks.encrypt_vector(keys, np.ones(10))
    b = ckks.encrypt_vector(keys, np.ones(11))
    with pytest.raises(InputError, match="length"):
        ckks.add_ciphertexts(public, [a, b])
    other = CkksKeySet.generate(AGGREGATION)
    with pytest.raises(InputError, match="key set"):
        ckks.add_ciphertexts(public, [a, ckks.encrypt_vector(other, np.ones(10))])
    with pytest.raises(InputError):
        ckks.add_ciphertexts(public, [])
    garbage = EncryptedVector(keys.key_id, 10, (b"not a ciphertext",))
    with pytest.raises(InputError, match="ciphertext 1"):
        ckks.add_ciphertexts(public, [a, garbage])


def test_encryption_refuses_bad_values(keys: CkksKeySet) -> None:
    for bad in ([], [float("nan")], [AGGREGATION.max_abs_value * 2]):
        with pytest.raises(InputError):
            ckks.encrypt_vector(keys, bad)
    with pytest.raises(InputError, match="secret key"):
        ckks.encrypt_vector(keys.public_context(), [1.0])


def test_encrypted_vectors_round_trip_and_damage_is_caught(keys: CkksKeySet) -> None:
    enc = ckks.encrypt_vector(keys, np.arange(5.0))
    data = enc.to_bytes()
    assert EncryptedVector.from_bytes(data) == enc
    for damaged in (data[:-1], b"x" + data, data.replace(b'"vector"', b'"vectox"')):
        with pytest.raises(InputError):
            EncryptedVector.from_bytes(damaged)


# --- the secret key's envelope ------------------------------------------------------------


def _parties() -> dict[str, X25519PrivateKey]:
    return {name: X25519PrivateKey.generate() for name in ("keyholder", "north", "south")}


def test_envelope_delivers_the_key_set_to_its_recipient(keys: CkksKeySet) -> None:
    p = _parties()
    sealed = ckks.seal_secret_key(
        keys.secret_bytes(),
        job_id="job-1",
        sender="keyholder",
        recipient="north",
        sender_key=p["keyholder"],
        recipient_public=p["north"].public_key(),
        generator=SecureGenerator.fresh(),
    )
    assert keys.secret_bytes() not in sealed.ciphertext
    opened = ckks.open_secret_key(
        sealed,
        job_id="job-1",
        sender="keyholder",
        recipient="north",
        recipient_key=p["north"],
        sender_public=p["keyholder"].public_key(),
    )
    assert CkksKeySet.from_secret_bytes(opened).key_id == keys.key_id


@pytest.mark.parametrize("change", ["recipient key", "recipient name", "job", "sender", "bytes"])
def test_envelope_refuses_wrong_recipient_job_sender_or_tampering(change: str) -> None:
    p = _parties()
    secret = b"ckks secret key set"
    sealed = ckks.seal_secret_key(
        secret,
        job_id="job-1",
        sender="keyholder",
        recipient="north",
        sender_key=p["keyholder"],
        recipient_public=p["north"].public_key(),
        generator=SecureGenerator.fresh(),
    )
    expected = {
        "job_id": "job-1",
        "sender": "keyholder",
        "recipient": "north",
        "recipient_key": p["north"],
        "sender_public": p["keyholder"].public_key(),
    }
    if change == "recipient key":
        expected["recipient_key"] = p["south"]
    elif change == "recipient name":
        expected["recipient"] = "south"
    elif change == "job":
        expected["job_id"] = "job-2"
    elif change == "sender":
        expected["sender_public"] = p["south"].public_key()
    else:
        flipped = sealed.ciphertext[:-1] + bytes([sealed.ciphertext[-1] ^ 1])
        sealed = dataclasses.replace(sealed, ciphertext=flipped)
    with pytest.raises(RefusedError, match="envelope"):
        ckks.open_secret_key(sealed, **expected)  # type: ignore[arg-type]


# --- flooding -------------------------------------------------------------------------------


def test_flooded_sum_stays_within_bound_and_its_noise_has_the_stated_scale(
    flood_keys: CkksKeySet,
) -> None:
    parties, length = 3, 5 * AGGREGATION_FLOODED.slots
    updates = _updates(parties, length, seed=5)
    exact = np.sum(updates, axis=0)
    bound = float(np.linalg.norm(exact)) * 1.01
    public = flood_keys.public_context()
    total = ckks.add_ciphertexts(public, [ckks.encrypt_vector(flood_keys, u) for u in updates])
    release = ckks.decrypt_sum_flooded(
        flood_keys,
        total,
        parties=parties,
        value_norm_bound=bound,
        generator=SecureGenerator.fresh(),
    )
    plan = release.plan
    # The plan: 30 bits by Pinsker, from a shift bound that covers the measured error.
    assert math.sqrt(plan.releases) * plan.shift_bound / (2 * plan.sigma) <= 2.0**-30
    decrypted = ckks.decrypt_sum(flood_keys, total)
    assert float(np.linalg.norm(decrypted - exact)) <= plan.error_bound + plan.rounding_bound
    noise = release.values - decrypted
    assert float(np.std(noise)) == pytest.approx(plan.sigma, rel=0.03)
    assert abs(float(np.mean(noise))) < 4 * plan.sigma / math.sqrt(length)
    # Within the stated bound: error bound plus 6 sigma per value.
    assert float(np.max(np.abs(release.values - exact))) <= plan.shift_bound + 6 * plan.sigma


def test_flooding_is_refused_when_the_declared_bound_is_wrong(flood_keys: CkksKeySet) -> None:
    total = ckks.encrypt_vector(flood_keys, np.full(100, 1.0))  # L2 norm 10
    with pytest.raises(RefusedError, match="not released"):
        ckks.decrypt_sum_flooded(
            flood_keys, total, parties=1, value_norm_bound=1.0, generator=SecureGenerator.fresh()
        )


def test_documented_flooding_figures() -> None:
    # docs/guides/encrypted-computation.md: 100 parties, 2^20 values, L2 norm <= 1.
    one = ckks.aggregate_flooding(
        AGGREGATION_FLOODED, parties=100, length=2**20, value_norm_bound=1.0
    )
    hundred = ckks.aggregate_flooding(
        AGGREGATION_FLOODED, parties=100, length=2**20, value_norm_bound=1.0, releases=100
    )
    assert one.sigma == pytest.approx(1.33e-5, rel=0.01)
    assert hundred.sigma == pytest.approx(1.33e-4, rel=0.01)
    plain = ckks.aggregate_flooding(AGGREGATION, parties=100, length=2**20, value_norm_bound=1.0)
    assert plain.sigma > 1e3  # why flooding needs its own preset
    with pytest.raises(ValueError):
        ckks.aggregate_flooding(ckks.SCORING, parties=1, length=1, value_norm_bound=1.0)
