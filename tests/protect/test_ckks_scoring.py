"""Encrypted scoring: equals plaintext scoring within the error; the model owner's side."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from accord.errors import InputError, RefusedError
from accord.protect import ckks_noise
from accord.protect.ckks import AGGREGATION, SCORING, CkksKeySet, PublicContext
from accord.protect.encrypted_scoring import (
    EncryptedFeatures,
    EncryptedScores,
    LinearModel,
    decrypt_scores,
    decrypt_scores_flooded,
    encrypt_features,
    score_encrypted,
    scoring_flooding,
    sigmoid,
)
from accord.secure_random import SecureGenerator

NAMES = ("age", "chol", "bp", "hr")


@pytest.fixture(scope="module")
def keys() -> CkksKeySet:
    return CkksKeySet.generate(SCORING)


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return np.random.default_rng(7).normal(size=(300, len(NAMES)))


def _accuracy_bound(model: LinearModel, x: np.ndarray) -> float:
    """CKKS error and decoding (the flooding plan's terms), plus the float64 encoding of
    the features and the weights' rounding to multiples of 2^-70."""
    plan = scoring_flooding(
        rows=x.shape[0],
        features=x.shape[1],
        weight_norm=model.weight_norm,
        score_bound=float(np.max(np.abs(model.scores(x)))),
    )
    encode = sum(
        abs(w) * ckks_noise.decode_rounding_bound(SCORING.poly_modulus_degree, np.linalg.norm(col))
        for w, col in zip(model.weights, x.T, strict=True)
    )
    weights = float(np.linalg.norm(x)) * 2.0**-70 * math.sqrt(x.shape[1])
    return plan.error_bound + plan.rounding_bound + encode + weights


@pytest.mark.parametrize("kind", ["linear", "logistic"])
def test_encrypted_scores_equal_plaintext_scores_within_error(
    keys: CkksKeySet, data: np.ndarray, kind: str
) -> None:
    model = LinearModel(kind, (0.5, -1.25, 0.0, 2.0), 0.3)  # type: ignore[arg-type]
    enc = EncryptedFeatures.from_bytes(encrypt_features(keys, data, NAMES).to_bytes())
    scores = EncryptedScores.from_bytes(score_encrypted(model, enc).to_bytes())
    assert scores.kind == kind and scores.rows == data.shape[0]
    got = decrypt_scores(keys, scores)
    assert float(np.linalg.norm(got - model.scores(data))) <= _accuracy_bound(model, data)
    if kind == "logistic":  # the data owner applies the sigmoid to the decrypted logit
        assert np.allclose(sigmoid(got), 1 / (1 + np.exp(-model.scores(data))), atol=1e-12)


def test_scoring_spans_several_chunks(keys: CkksKeySet) -> None:
    x = np.random.default_rng(2).uniform(-3, 3, size=(SCORING.slots + 5, 2))
    model = LinearModel("linear", (1.5, -0.5), -2.0, ("a", "b"))
    enc = encrypt_features(keys, x, ["a", "b"])
    assert len(enc.columns[0]) == 2
    got = decrypt_scores(keys, score_encrypted(model, enc))
    assert float(np.max(np.abs(got - model.scores(x)))) < 1e-9


def test_the_model_owner_holds_no_secret_key(keys: CkksKeySet, data: np.ndarray) -> None:
    enc = encrypt_features(keys, data[:3], NAMES)
    public = PublicContext.from_bytes(enc.public_context)
    assert not public.has_secret_key()
    assert public.key_id == keys.key_id


def test_an_all_zero_model_returns_its_bias(keys: CkksKeySet, data: np.ndarray) -> None:
    model = LinearModel("linear", (0.0, 0.0, 0.0, 0.0), 1.5)
    got = decrypt_scores(keys, score_encrypted(model, encrypt_features(keys, data[:5], NAMES)))
    assert np.allclose(got, 1.5, atol=1e-9)


def test_mismatched_models_and_data_are_refused(keys: CkksKeySet, data: np.ndarray) -> None:
    enc = encrypt_features(keys, data[:4], NAMES)
    with pytest.raises(InputError, match="weights"):
        score_encrypted(LinearModel("linear", (1.0, 2.0), 0.0), enc)
    with pytest.raises(InputError, match="names and order"):
        score_encrypted(LinearModel("linear", (1.0,) * 4, 0.0, ("bp", "age", "chol", "hr")), enc)
    with pytest.raises(InputError):
        encrypt_features(keys, np.full((2, 4), 1e9), NAMES)
    with pytest.raises(InputError):
        encrypt_features(keys, [[1.0, float("nan"), 0.0, 0.0]], NAMES)
    with pytest.raises(InputError, match="preset"):
        encrypt_features(CkksKeySet.generate(AGGREGATION), data[:2], NAMES)
    other = CkksKeySet.generate(SCORING)
    scores = score_encrypted(LinearModel("linear", (1.0,) * 4, 0.0), enc)
    with pytest.raises(InputError, match="key set"):
        decrypt_scores(other, scores)


def test_flooded_scores_have_the_stated_noise(keys: CkksKeySet, data: np.ndarray) -> None:
    model = LinearModel("logistic", (0.5, -1.25, 0.25, 2.0), 0.3)
    scores = score_encrypted(model, encrypt_features(keys, data, NAMES))
    exact = decrypt_scores(keys, scores)
    release = decrypt_scores_flooded(
        keys, scores, score_bound=16.0, generator=SecureGenerator.fresh()
    )
    plan = release.plan
    assert math.sqrt(plan.releases) * plan.shift_bound / (2 * plan.sigma) <= 2.0**-30
    noise = release.values - exact
    # 300 draws: the sample std is within 15% of sigma (about 3.7 standard errors).
    assert float(np.std(noise)) == pytest.approx(plan.sigma, rel=0.15)
    assert float(np.max(np.abs(noise))) < 6 * plan.sigma
    assert plan.sigma < 0.01  # useful for logits
    with pytest.raises(RefusedError, match="score-bound"):
        decrypt_scores_flooded(keys, scores, score_bound=0.1, generator=SecureGenerator.fresh())


def test_models_load_from_json_and_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"kind": "logistic", "weights": [1, -2], "bias": 0.5}))
    assert LinearModel.load(path) == LinearModel("logistic", (1.0, -2.0), 0.5)
    path.write_text(json.dumps({"kind": "logistic", "weights": [1], "bias": 0, "extra": 1}))
    with pytest.raises(InputError, match="unknown"):
        LinearModel.load(path)
    path.write_text(json.dumps({"kind": "tree", "weights": [1], "bias": 0}))
    with pytest.raises(InputError, match="kind"):
        LinearModel.load(path)
    st = tmp_path / "m.safetensors"
    save_file(
        {"weight": np.array([[0.5, 0.25]], dtype=np.float32), "bias": np.array([1.0])},
        str(st),
        metadata={"kind": "linear", "features": "a,b"},
    )
    assert LinearModel.load(st) == LinearModel("linear", (0.5, 0.25), 1.0, ("a", "b"))
    with pytest.raises(InputError):
        LinearModel.load(tmp_path / "missing.json")
