"""Score a linear or logistic model on encrypted features (issue "Protected aggregation", 4).

A data owner encrypts its feature matrix under its own key set (:func:`encrypt_features`,
preset :data:`~accord.protect.ckks.SCORING`) and sends it, with the public context, to a
model owner. The model owner computes ``X w + b`` on the ciphertexts without seeing the
features (:func:`score_encrypted`) and returns the encrypted scores; only the data owner
can decrypt them (:func:`decrypt_scores`). A logistic model returns the encrypted *logit*:
the data owner applies the sigmoid itself after decryption (:func:`sigmoid`).

Packing: column by column. Ciphertext ``(j, c)`` holds feature ``j`` of rows
``c*N/2 .. (c+1)*N/2 - 1``, so the score of a chunk is ``sum_j w_j ct_jc + Enc(b)``: plain
scalar products and additions only, no rotations and no Galois keys. Weights are encoded
at the scale ``2^70`` and the product stays at ``2^140`` (no rescaling, so no rescaling
error); the bias enters as a fresh public-key encryption at that scale, which also
re-randomizes the returned ciphertext.

What each side learns (semi-honest parties; see docs/guides/encrypted-computation.md):
the model owner learns the number of rows and features, nothing else. The data owner
learns the scores, hence from ``d + 1`` linearly independent rows a linear model exactly;
the returned ciphertext is *not* flooded, so its decryption error also reveals the weights
to a data owner who inspects it. (Model-side flooding is not offered: TenSEAL encodes real
slot values only, so a model owner could not add noise to the imaginary half of the
decrypted polynomial, where the weights would remain readable.) When the data owner
releases scores to someone who is not a key holder, :func:`decrypt_scores_flooded` floods
them first (Li and Micciancio 2021), exactly as for aggregation.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

import numpy as np
import numpy.typing as npt

from accord.errors import InputError, RefusedError
from accord.protect import ckks_noise
from accord.protect.ckks import (
    SCORING,
    CkksKeySet,
    FloodedRelease,
    FloodingPlan,
    PublicContext,
    encrypt_chunks,
    flood,
    pack_frame,
    unpack_frame,
)
from accord.secure_random import SecureGenerator

__all__ = [
    "FEATURE_LIMIT",
    "EncryptedFeatures",
    "EncryptedScores",
    "LinearModel",
    "decrypt_scores",
    "decrypt_scores_flooded",
    "encrypt_features",
    "score_encrypted",
    "scoring_flooding",
    "sigmoid",
]

FEATURE_LIMIT = 2.0**16
"""Largest |feature| accepted; with ``||w||_1 * FEATURE_LIMIT + |b| <= 2^38`` no score can
overflow the scoring modulus (scale 2^140 in 180 bits, one bit of margin)."""

_SCORE_LIMIT = 2.0 ** (SCORING.data_modulus_bits - 2 - 2 * SCORING.scale_bits)

ModelKind = Literal["linear", "logistic"]


@dataclass(frozen=True)
class LinearModel:
    """``score = x . weights + bias``; for ``logistic`` the score is the logit."""

    kind: ModelKind
    weights: tuple[float, ...]
    bias: float
    features: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("linear", "logistic"):
            raise InputError(f"model kind must be 'linear' or 'logistic', not {self.kind!r}")
        values = [*self.weights, self.bias]
        if not self.weights or not all(math.isfinite(v) for v in values):
            raise InputError("the model needs at least one weight, and finite numbers")
        if self.features is not None and len(self.features) != len(self.weights):
            raise InputError(
                f"the model names {len(self.features)} features but has {len(self.weights)} weights"
            )
        if sum(abs(w) for w in self.weights) * FEATURE_LIMIT + abs(self.bias) > _SCORE_LIMIT:
            raise InputError("the model's weights are too large for the scoring parameters")

    @property
    def weight_norm(self) -> float:
        return float(np.linalg.norm(np.asarray(self.weights)))

    def scores(self, x: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Plaintext scores (logits for ``logistic``): the reference for tests."""
        matrix = np.asarray(x, dtype=np.float64)
        result: npt.NDArray[np.float64] = matrix @ np.asarray(self.weights) + self.bias
        return result

    @classmethod
    def load(cls, path: Path) -> LinearModel:
        """A model from ``.json`` (kind, weights, bias, optional features) or
        ``.safetensors`` (tensors ``weight`` and ``bias``; metadata ``kind`` and optional
        comma-separated ``features``)."""
        if path.suffix == ".safetensors":
            return _load_safetensors(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: not a JSON model ({exc})") from None
        allowed = {"kind", "weights", "bias", "features"}
        if not isinstance(data, dict) or not {"kind", "weights", "bias"} <= set(data):
            raise InputError(f"{path}: a model needs 'kind', 'weights' and 'bias'")
        if set(data) - allowed:
            raise InputError(f"{path}: unknown model keys {sorted(set(data) - allowed)}")
        try:
            features = data.get("features")
            return cls(
                kind=data["kind"],
                weights=tuple(float(w) for w in data["weights"]),
                bias=float(data["bias"]),
                features=None if features is None else tuple(str(f) for f in features),
            )
        except (TypeError, ValueError) as exc:
            raise InputError(f"{path}: {exc}") from None


def _load_safetensors(path: Path) -> LinearModel:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="np") as handle:
            meta = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, SafetensorError) as exc:
        raise InputError(f"{path}: not a safetensors model ({exc})") from None
    if set(tensors) != {"weight", "bias"}:
        raise InputError(f"{path}: needs exactly the tensors 'weight' and 'bias'")
    weight = np.asarray(tensors["weight"], dtype=np.float64)
    bias = np.asarray(tensors["bias"], dtype=np.float64).ravel()
    if weight.ndim == 2 and weight.shape[0] == 1:
        weight = weight[0]
    if weight.ndim != 1 or bias.size != 1:
        raise InputError(f"{path}: 'weight' must be (d,) or (1, d) and 'bias' one number")
    names = meta.get("features")
    return LinearModel(
        kind=cast(ModelKind, meta.get("kind", "")),
        weights=tuple(float(w) for w in weight),
        bias=float(bias[0]),
        features=None if not names else tuple(names.split(",")),
    )


def sigmoid(logits: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """The logistic function, applied by the data owner after decryption."""
    z = np.asarray(logits, dtype=np.float64)
    out: npt.NDArray[np.float64] = 0.5 * (1.0 + np.tanh(0.5 * z))
    return out


@dataclass(frozen=True)
class EncryptedFeatures:
    """What the data owner sends: its public context and the encrypted columns."""

    public_context: bytes
    key_id: str
    rows: int
    features: tuple[str, ...]
    columns: tuple[tuple[bytes, ...], ...]

    def to_bytes(self) -> bytes:
        header = {"key_id": self.key_id, "rows": self.rows, "features": list(self.features)}
        blobs = [self.public_context] + [blob for column in self.columns for blob in column]
        return pack_frame("features", header, blobs)

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "encrypted features") -> EncryptedFeatures:
        header, blobs = unpack_frame(data, "features", what)
        key_id, rows, names = header.get("key_id"), header.get("rows"), header.get("features")
        if not isinstance(key_id, str) or not isinstance(rows, int) or rows < 1:
            raise InputError(f"{what}: damaged header")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise InputError(f"{what}: damaged feature names")
        chunks = math.ceil(rows / SCORING.slots)
        if len(blobs) != 1 + len(names) * chunks:
            raise InputError(f"{what}: expected {len(names) * chunks} ciphertexts")
        columns = tuple(
            tuple(blobs[1 + j * chunks : 1 + (j + 1) * chunks]) for j in range(len(names))
        )
        return cls(blobs[0], key_id, rows, tuple(names), columns)


@dataclass(frozen=True)
class EncryptedScores:
    """What the model owner returns: the encrypted scores and what the flooding needs."""

    key_id: str
    rows: int
    kind: ModelKind
    features: int
    weight_norm: float
    chunks: tuple[bytes, ...]

    def to_bytes(self) -> bytes:
        header = {
            "key_id": self.key_id,
            "rows": self.rows,
            "model_kind": self.kind,
            "features": self.features,
            "weight_norm": self.weight_norm,
        }
        return pack_frame("scores", header, self.chunks)

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "encrypted scores") -> EncryptedScores:
        header, blobs = unpack_frame(data, "scores", what)
        try:
            made = cls(
                key_id=str(header["key_id"]),
                rows=int(header["rows"]),
                kind=cast(ModelKind, str(header["model_kind"])),
                features=int(header["features"]),
                weight_norm=float(header["weight_norm"]),
                chunks=tuple(blobs),
            )
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{what}: damaged header") from None
        if made.kind not in ("linear", "logistic") or made.rows < 1 or made.features < 1:
            raise InputError(f"{what}: damaged header")
        if len(blobs) != math.ceil(made.rows / SCORING.slots):
            raise InputError(f"{what}: wrong number of ciphertexts")
        return made


def encrypt_features(
    keys: CkksKeySet, x: npt.ArrayLike, feature_names: tuple[str, ...] | list[str]
) -> EncryptedFeatures:
    """Encrypt the rows of ``x`` (rows x features) column by column."""
    if keys.params != SCORING:
        raise InputError(f"encrypted scoring needs a key set of preset {SCORING.name!r}")
    matrix = np.asarray(x, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] < 1 or matrix.shape[1] < 1:
        raise InputError("the features must be a non-empty table (rows x features)")
    if matrix.shape[1] != len(feature_names):
        raise InputError(f"{matrix.shape[1]} columns but {len(feature_names)} feature names")
    if not np.all(np.isfinite(matrix)):
        raise InputError("the features must be finite numbers (no missing values)")
    if np.max(np.abs(matrix)) > FEATURE_LIMIT:
        raise InputError(f"|feature| must be at most {FEATURE_LIMIT:g}; rescale the data")
    columns = tuple(
        tuple(encrypt_chunks(keys.context, matrix[:, j], SCORING.slots))
        for j in range(matrix.shape[1])
    )
    return EncryptedFeatures(
        keys.public_bytes(), keys.key_id, matrix.shape[0], tuple(feature_names), columns
    )


def score_encrypted(model: LinearModel, enc: EncryptedFeatures) -> EncryptedScores:
    """The model owner's side: encrypted ``X w + b``, computed with the public context only."""
    import tenseal as ts

    pub = PublicContext.from_bytes(enc.public_context, "the encrypted features' context")
    if pub.params != SCORING or pub.key_id != enc.key_id:
        raise InputError("the encrypted features do not match their public context")
    if len(model.weights) != len(enc.features):
        raise InputError(
            f"the model has {len(model.weights)} weights but the data {len(enc.features)} features"
        )
    if model.features is not None and model.features != enc.features:
        raise InputError(
            f"the model's features {list(model.features)} differ from the data's "
            f"{list(enc.features)} (names and order must match)"
        )
    slots, out = SCORING.slots, []
    for c in range(len(enc.columns[0])):
        used = min(slots, enc.rows - c * slots)
        bias = np.zeros(slots)
        bias[:used] = model.bias
        total = ts.ckks_vector(pub.context, bias.tolist(), scale=SCORING.scale**2)
        for j, weight in enumerate(model.weights):
            if weight == 0.0:
                continue  # a product with zero would be a transparent ciphertext
            try:
                column = ts.ckks_vector_from(pub.context, enc.columns[j][c])
                total += column * float(weight)
            except Exception as exc:
                raise InputError(f"feature {enc.features[j]!r}, chunk {c}: {exc}") from None
        out.append(cast(bytes, total.serialize()))
    return EncryptedScores(
        enc.key_id, enc.rows, model.kind, len(model.weights), model.weight_norm, tuple(out)
    )


def decrypt_scores(keys: CkksKeySet, scores: EncryptedScores) -> npt.NDArray[np.float64]:
    """The data owner's side: the scores (logits for a logistic model)."""
    import tenseal as ts

    if scores.key_id != keys.key_id:
        raise InputError(f"the scores are under key set {scores.key_id}, not {keys.key_id}")
    parts = []
    for i, blob in enumerate(scores.chunks):
        try:
            parts.append(np.asarray(ts.ckks_vector_from(keys.context, blob).decrypt()))
        except Exception as exc:
            raise InputError(
                f"score chunk {i}: not a ciphertext under these keys ({exc})"
            ) from None
    return np.concatenate(parts).astype(np.float64)[: scores.rows]


def scoring_flooding(
    *,
    rows: int,
    features: int,
    weight_norm: float,
    score_bound: float,
    releases: int = 1,
    security_bits: float = ckks_noise.DEFAULT_SECURITY_BITS,
) -> FloodingPlan:
    """The flooding for releasing ``rows`` decrypted scores (each at most ``score_bound``
    in absolute value) of a model with ``||w||_2 = weight_norm`` over ``features``."""
    if rows < 1 or features < 1 or releases < 1 or not score_bound > 0 or weight_norm < 0:
        raise ValueError("rows, features, releases >= 1; score_bound > 0; weight_norm >= 0")
    n, chunks = SCORING.poly_modulus_degree, math.ceil(rows / SCORING.slots)
    fail = ckks_noise.tail_bits(security_bits, releases, 3 * chunks + 2)
    error = ckks_noise.public_key_linear_bound(
        n, SCORING.scale, weight_norm, features, chunks, fail
    )
    rounding = 2.0 * ckks_noise.decode_rounding_bound(n, math.sqrt(rows) * score_bound + error)
    shift = error + rounding
    sigma = ckks_noise.flooding_sigma(shift, releases, security_bits)
    return FloodingPlan(sigma, shift, error, rounding, security_bits, releases)


def decrypt_scores_flooded(
    keys: CkksKeySet,
    scores: EncryptedScores,
    *,
    score_bound: float,
    generator: SecureGenerator,
    releases: int = 1,
    security_bits: float = ckks_noise.DEFAULT_SECURITY_BITS,
) -> FloodedRelease:
    """Decrypt and flood scores for release to someone who is not a key holder. Refuses
    when a score exceeds ``score_bound`` (the plan's bound would not hold)."""
    plan = scoring_flooding(
        rows=scores.rows,
        features=scores.features,
        weight_norm=scores.weight_norm,
        score_bound=score_bound,
        releases=releases,
        security_bits=security_bits,
    )
    values = decrypt_scores(keys, scores)
    largest = float(np.max(np.abs(values)))
    if largest > score_bound:
        raise RefusedError(
            f"a score has |value| {largest:.6g} > --score-bound {score_bound:g}; not released"
        )
    return FloodedRelease(flood(values, plan.sigma, generator), plan)
