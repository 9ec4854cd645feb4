"""CKKS homomorphic encryption (TenSEAL) for protected aggregation: keys, packing, sums.

Protocol (issue "Protected aggregation", part 3)
-----------------------------------------------
One key-holder party named in the job calls :meth:`CkksKeySet.generate` once per job. It
sends :meth:`CkksKeySet.secret_bytes` to every other party inside an end-to-end envelope
(:func:`seal_secret_key`: X25519 + HKDF-SHA256 + ChaCha20-Poly1305, bound to sender,
recipient and job) and only :meth:`CkksKeySet.public_bytes` to the coordinator. Each party
encrypts its clipped, weighted update (:func:`encrypt_vector`); the coordinator adds the
ciphertexts with a :class:`PublicContext`, which refuses to hold a secret key
(:func:`add_ciphertexts`); every party decrypts the sum (:func:`decrypt_sum`) and applies the
strategy's server step itself. A party that releases a decrypted sum to anyone who is not a
key holder floods it first (:func:`decrypt_sum_flooded`, ``accord.protect.ckks_noise``).

Parameters (128-bit security by the HE standard; SEAL refuses anything weaker)
-----------------------------------------------------------------------------
======================  =====  ===================  =====  ===============  ==========
preset                  N      moduli (bits)        scale  limit (bits)     |sum| max
======================  =====  ===================  =====  ===============  ==========
``aggregation``         8192   60 | 40 (special)    2^40   100 of 218       2^18
``aggregation-flooded`` 8192   60, 40 | 60          2^70   160 of 218       2^28
``scoring``             16384  60, 60, 60 | 60      2^70   240 of 438       2^38 (*)
======================  =====  ===================  =====  ===============  ==========

(*) the scoring product lives at scale 2^140 in the 180-bit data modulus. The last modulus
is SEAL's special prime, used only for key switching; ciphertexts carry the others.

Precision. A fresh symmetric encryption's slot error has standard deviation
``sqrt(N/2 * (10.5 + 1/12)) / scale``: 1.9e-10 per value at 2^40 (``aggregation``), so a
sum of 100 parties is within about 1.9e-9 per value (standard deviation; the L2 bound that
tests check is :func:`aggregate_error_bound`). With flooding, the precision is the flooding
noise itself: for 100 parties, 2^20 values and an aggregate of L2 norm at most 1, one
release at 30 bits needs sigma = 1.3e-5 per value (``aggregation-flooded``; 1.3e-4 for 100
releases); float64 decoding, not CKKS, dominates that bound (see ``ckks_noise``). The same
release from ``aggregation`` would need sigma of about 1.5e3: hence a separate preset.

Packing: each ciphertext holds ``N/2`` real values, one per slot (4096 at N = 8192); the
last chunk is zero-padded. Aggregation encrypts with the secret key (every encrypting party
is a key holder): it is twice as fast as public-key encryption and its error is ten times
smaller. Keys and encryption randomness come from SEAL's own generator (seeded from the OS).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from accord.errors import InputError, RefusedError
from accord.protect import ckks_noise
from accord.protect.ckks_noise import (
    FloodedRelease,
    FloodingPlan,
    aggregate_error_bound,
    aggregate_flooding,
    flood,
)
from accord.protect.ckks_params import (
    AGGREGATION,
    AGGREGATION_FLOODED,
    PRESETS,
    SCORING,
    CkksParams,
    pack_frame,
    unpack_frame,
)
from accord.protect.envelope import Envelope, open_envelope, seal
from accord.secure_random import SecureGenerator

__all__ = [
    "AGGREGATION",
    "AGGREGATION_FLOODED",
    "PRESETS",
    "SCORING",
    "CkksKeySet",
    "CkksParams",
    "EncryptedVector",
    "FloodedRelease",
    "FloodingPlan",
    "PublicContext",
    "add_ciphertexts",
    "aggregate_error_bound",
    "aggregate_flooding",
    "decrypt_sum",
    "decrypt_sum_flooded",
    "encrypt_chunks",
    "encrypt_vector",
    "flood",
    "open_secret_key",
    "pack_frame",
    "seal_secret_key",
    "unpack_frame",
]

# --- contexts and keys -----------------------------------------------------------------


def _ts() -> Any:
    import tenseal  # imported lazily: `import accord` must stay cheap

    return tenseal


def _configure(context: Any, params: CkksParams) -> Any:
    context.global_scale = params.scale
    context.auto_rescale = False  # scoring keeps its product at scale^2: no rescale error
    context.auto_relin = False
    return context


def _load_context(data: bytes, params: CkksParams, what: str) -> Any:
    try:
        context = _ts().context_from(data, n_threads=1)
        key_level = context.seal_context().data.key_context_data()
        degree = key_level.parms().poly_modulus_degree()
        bits = key_level.total_coeff_modulus_bit_count()
    except Exception as exc:  # TenSEAL raises bare ValueError/RuntimeError on bad bytes
        raise InputError(f"{what}: not a TenSEAL context ({exc})") from None
    if (degree, bits) != (params.poly_modulus_degree, params.total_modulus_bits):
        raise InputError(f"{what}: the TenSEAL context does not match the stated parameters")
    return _configure(context, params)


class PublicContext:
    """What the coordinator (or a model owner) holds: parameters and public keys, never the
    secret key. Construction refuses a context that has one, so code given only a
    ``PublicContext`` cannot decrypt."""

    def __init__(self, params: CkksParams, key_id: str, context: Any) -> None:
        if context.has_secret_key():
            raise RefusedError("a public CKKS context must not hold the secret key")
        self.params = params
        self.key_id = key_id
        self.context = context
        self._bytes: bytes | None = None

    def has_secret_key(self) -> bool:
        return bool(self.context.has_secret_key())

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "public CKKS context") -> PublicContext:
        header, blobs = unpack_frame(data, "public-context", what)
        params = CkksParams.from_json(header.get("params"), what)
        if len(blobs) != 1 or not isinstance(header.get("key_id"), str):
            raise InputError(f"{what}: damaged public context")
        context = _load_context(blobs[0], params, what)
        if context.has_secret_key():
            raise RefusedError(f"{what} holds a secret key; a public context must not")
        made = cls(params, header["key_id"], context)
        made._bytes = data
        return made

    def to_bytes(self) -> bytes:
        if self._bytes is None:
            raw = self.context.serialize(
                save_public_key=self.params.encryption == "public-key",
                save_secret_key=False,
                save_galois_keys=False,
                save_relin_keys=False,
            )
            header = {"params": self.params.to_json(), "key_id": self.key_id}
            self._bytes = pack_frame("public-context", header, [raw])
        return self._bytes

    def __repr__(self) -> str:
        return f"PublicContext({self.params.name}, key_id={self.key_id})"


class CkksKeySet:
    """A job's CKKS keys, secret key included. Generated fresh per job by the key holder;
    every party that decrypts holds a copy; the coordinator never does."""

    def __init__(self, params: CkksParams, key_id: str, context: Any) -> None:
        if not context.has_secret_key():
            raise InputError("a CKKS key set needs the secret key")
        self.params = params
        self.key_id = key_id
        self.context = context

    @classmethod
    def generate(cls, params: CkksParams) -> CkksKeySet:
        ts = _ts()
        kind = ts.ENCRYPTION_TYPE.SYMMETRIC
        if params.encryption == "public-key":
            kind = ts.ENCRYPTION_TYPE.ASYMMETRIC
        context = ts.context(
            ts.SCHEME_TYPE.CKKS,
            poly_modulus_degree=params.poly_modulus_degree,
            coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes),
            encryption_type=kind,
            n_threads=1,
        )
        return cls(params, secrets.token_hex(16), _configure(context, params))

    def public_context(self) -> PublicContext:
        return PublicContext.from_bytes(self.public_bytes())

    def public_bytes(self) -> bytes:
        """The public context (parameters, public key for ``public-key``): safe to send."""
        return self._frame("public-context", with_secret_key=False)

    def secret_bytes(self) -> bytes:
        """The whole key set with the secret key: only ever inside :func:`seal_secret_key`
        or a mode-600 file of a key holder."""
        return self._frame("secret-key-set", with_secret_key=True)

    def _frame(self, kind: str, *, with_secret_key: bool) -> bytes:
        raw = self.context.serialize(
            save_public_key=self.params.encryption == "public-key",
            save_secret_key=with_secret_key,
            save_galois_keys=False,
            save_relin_keys=False,
        )
        header = {"params": self.params.to_json(), "key_id": self.key_id}
        return pack_frame(kind, header, [raw])

    @classmethod
    def from_secret_bytes(cls, data: bytes, what: str = "CKKS key set") -> CkksKeySet:
        header, blobs = unpack_frame(data, "secret-key-set", what)
        params = CkksParams.from_json(header.get("params"), what)
        if len(blobs) != 1 or not isinstance(header.get("key_id"), str):
            raise InputError(f"{what}: damaged key set")
        return cls(params, header["key_id"], _load_context(blobs[0], params, what))

    def __repr__(self) -> str:  # never show key material
        return f"CkksKeySet({self.params.name}, key_id={self.key_id})"


# --- vectors -----------------------------------------------------------------------------


@dataclass(frozen=True)
class EncryptedVector:
    """A float vector of ``length`` values under key set ``key_id``, ``N/2`` per chunk."""

    key_id: str
    length: int
    chunks: tuple[bytes, ...]

    @property
    def nbytes(self) -> int:
        return sum(len(c) for c in self.chunks)

    def to_bytes(self) -> bytes:
        header = {"key_id": self.key_id, "length": self.length}
        return pack_frame("vector", header, self.chunks)

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "encrypted vector") -> EncryptedVector:
        header, blobs = unpack_frame(data, "vector", what)
        key_id, length = header.get("key_id"), header.get("length")
        if not isinstance(key_id, str) or not isinstance(length, int) or length < 1:
            raise InputError(f"{what}: damaged header")
        return cls(key_id, length, tuple(blobs))


def _as_values(values: npt.ArrayLike, params: CkksParams, what: str) -> npt.NDArray[np.float64]:
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise InputError(f"{what}: nothing to encrypt")
    if not np.all(np.isfinite(x)):
        raise InputError(f"{what}: values must be finite")
    largest = float(np.max(np.abs(x)))
    if largest > params.max_abs_value:
        raise InputError(
            f"{what}: |value| {largest:g} exceeds {params.max_abs_value:g}, the most that "
            f"preset {params.name!r} can hold"
        )
    return x


def encrypt_chunks(context: Any, x: npt.NDArray[np.float64], slots: int) -> list[bytes]:
    """Serialized ciphertexts of ``x``, ``slots`` values each, the last one zero-padded."""
    ts = _ts()
    out = []
    for start in range(0, x.size, slots):
        part = x[start : start + slots]
        if part.size < slots:
            part = np.pad(part, (0, slots - part.size))
        out.append(cast(bytes, ts.ckks_vector(context, part.tolist()).serialize()))
    return out


def encrypt_vector(keys: CkksKeySet | PublicContext, values: npt.ArrayLike) -> EncryptedVector:
    """Encrypt ``values`` (flattened to float64) in chunks of ``N/2`` slots.

    Symmetric presets encrypt with the secret key, so they need the :class:`CkksKeySet`.
    """
    params = keys.params
    if isinstance(keys, PublicContext) and params.encryption == "symmetric":
        raise InputError(
            f"preset {params.name!r} encrypts with the secret key: pass the key set, not the "
            "public context"
        )
    x = _as_values(values, params, "encrypt_vector")
    return EncryptedVector(
        keys.key_id, x.size, tuple(encrypt_chunks(keys.context, x, params.slots))
    )


def _load_vector(context: Any, blob: bytes, what: str) -> Any:
    try:
        return _ts().ckks_vector_from(context, blob)
    except Exception as exc:
        raise InputError(f"{what}: not a ciphertext under these parameters ({exc})") from None


def add_ciphertexts(ctx: PublicContext, vectors: Sequence[EncryptedVector]) -> EncryptedVector:
    """The coordinator's side: the encrypted sum of ``vectors``. Needs no secret key."""
    if not vectors:
        raise InputError("add_ciphertexts: no ciphertexts to add")
    first = vectors[0]
    for i, v in enumerate(vectors):
        if v.key_id != ctx.key_id:
            raise InputError(f"ciphertext {i} is under key set {v.key_id}, not {ctx.key_id}")
        if (v.length, len(v.chunks)) != (first.length, len(first.chunks)):
            raise InputError(f"ciphertext {i} has another length than ciphertext 0")
    sums = []
    for c in range(len(first.chunks)):
        total = _load_vector(ctx.context, first.chunks[c], "ciphertext 0")
        for i, v in enumerate(vectors[1:], start=1):
            try:
                total += _load_vector(ctx.context, v.chunks[c], f"ciphertext {i}")
            except ValueError as exc:  # scale or level mismatch
                raise InputError(f"ciphertext {i} cannot be added: {exc}") from None
        sums.append(cast(bytes, total.serialize()))
    return EncryptedVector(ctx.key_id, first.length, tuple(sums))


def decrypt_sum(keys: CkksKeySet, enc: EncryptedVector) -> npt.NDArray[np.float64]:
    """The decrypted values (float64, ``enc.length`` of them). Key holders only."""
    if enc.key_id != keys.key_id:
        raise InputError(f"the ciphertext is under key set {enc.key_id}, not {keys.key_id}")
    parts = [
        np.asarray(_load_vector(keys.context, blob, f"chunk {i}").decrypt(), dtype=np.float64)
        for i, blob in enumerate(enc.chunks)
    ]
    values = np.concatenate(parts)
    if values.size < enc.length:
        raise InputError("the ciphertext has fewer values than its header states")
    return values[: enc.length]


# --- errors and flooding -----------------------------------------------------------------


def decrypt_sum_flooded(
    keys: CkksKeySet,
    enc: EncryptedVector,
    *,
    parties: int,
    value_norm_bound: float,
    generator: SecureGenerator,
    releases: int = 1,
    security_bits: float = ckks_noise.DEFAULT_SECURITY_BITS,
) -> FloodedRelease:
    """Decrypt a sum and flood it for release (see :func:`aggregate_flooding`). Refuses
    when the decrypted sum is larger than ``value_norm_bound`` allows: the plan's bound
    would not hold."""
    plan = aggregate_flooding(
        keys.params,
        parties=parties,
        length=enc.length,
        value_norm_bound=value_norm_bound,
        releases=releases,
        security_bits=security_bits,
    )
    values = decrypt_sum(keys, enc)
    slack = aggregate_error_bound(
        keys.params, parties=parties, length=enc.length, party_norm_bound=value_norm_bound
    )
    norm = float(np.linalg.norm(values))
    if norm > value_norm_bound + slack:
        raise RefusedError(
            f"the decrypted sum has L2 norm {norm:.6g}, above the declared bound "
            f"{value_norm_bound:g}; it is not released"
        )
    return FloodedRelease(flood(values, plan.sigma, generator), plan)


# --- end-to-end envelope for the secret key ----------------------------------------------

KEY_ENVELOPE_ROUND = 0
"""The round an envelope carrying a job's key set is bound to: the job's setup, before
round 1 (the same envelope as secure aggregation's shares, :mod:`accord.protect.envelope`)."""


def seal_secret_key(
    secret: bytes,
    *,
    job_id: str,
    sender: str,
    recipient: str,
    sender_key: X25519PrivateKey,
    recipient_public: X25519PublicKey,
    generator: SecureGenerator,
) -> Envelope:
    """Encrypt ``secret`` (:meth:`CkksKeySet.secret_bytes`) end to end for ``recipient``:
    X25519 + HKDF-SHA256 + ChaCha20-Poly1305, bound to job, sender and recipient, so only
    the recipient can open it and only the holder of ``sender_key`` can have made it.
    ``sender_key`` is the key holder's X25519 key for this job."""
    return seal(
        secret, job_id=job_id, round_=KEY_ENVELOPE_ROUND, sender=sender, recipient=recipient,
        sender_key=sender_key, recipient_public=recipient_public, rng=generator,
    )  # fmt: skip


def open_secret_key(
    envelope: Envelope,
    *,
    job_id: str,
    sender: str,
    recipient: str,
    recipient_key: X25519PrivateKey,
    sender_public: X25519PublicKey,
) -> bytes:
    """The secret bytes, if ``envelope`` was made by ``sender`` for ``recipient`` in this
    job; :class:`~accord.errors.EnvelopeError` (exit code 3) otherwise."""
    return open_envelope(
        envelope, job_id=job_id, round_=KEY_ENVELOPE_ROUND, sender=sender,
        recipient=recipient, recipient_key=recipient_key, sender_public=sender_public,
    )  # fmt: skip
