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

import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

import numpy as np
import numpy.typing as npt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from accord.errors import InputError, RefusedError
from accord.protect import ckks_noise
from accord.protect.ckks_noise import (
    FloodedRelease,
    FloodingPlan,
    aggregate_error_bound,
    aggregate_flooding,
    flood,
)
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

Encryption = Literal["symmetric", "public-key"]


@dataclass(frozen=True)
class CkksParams:
    """CKKS parameters: ring degree ``N``, coefficient modulus bit sizes (the last one is
    SEAL's special prime), the scale ``2^scale_bits`` and how values are encrypted."""

    name: str
    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]
    scale_bits: int
    encryption: Encryption

    def __post_init__(self) -> None:
        limit = ckks_noise.HE_STANDARD_MAX_MODULUS_BITS.get(self.poly_modulus_degree)
        if limit is None:
            raise ValueError(f"N = {self.poly_modulus_degree} is not a supported ring degree")
        if len(self.coeff_mod_bit_sizes) < 2 or not all(
            isinstance(b, int) and 20 <= b <= 60 for b in self.coeff_mod_bit_sizes
        ):
            raise ValueError("coeff_mod_bit_sizes needs at least two primes of 20 to 60 bits")
        if self.total_modulus_bits > limit:
            raise ValueError(
                f"{self.total_modulus_bits} modulus bits at N = {self.poly_modulus_degree} "
                f"is below 128-bit security (at most {limit})"
            )
        if self.max_abs_value < 1.0:
            raise ValueError("the scale leaves no room for values in the data modulus")
        if self.encryption not in ("symmetric", "public-key"):
            raise ValueError(f"unknown encryption {self.encryption!r}")

    @property
    def slots(self) -> int:
        return self.poly_modulus_degree // 2

    @property
    def scale(self) -> float:
        return 2.0**self.scale_bits

    @property
    def data_modulus_bits(self) -> int:
        """Bits of the modulus that fresh ciphertexts carry (all primes but the special one)."""
        return sum(self.coeff_mod_bit_sizes[:-1])

    @property
    def total_modulus_bits(self) -> int:
        return sum(self.coeff_mod_bit_sizes)

    @property
    def max_abs_value(self) -> float:
        """Largest |value| a decrypted sum may hold (one bit of margin below q/2)."""
        return 2.0 ** (self.data_modulus_bits - 2 - self.scale_bits)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: object, what: str) -> CkksParams:
        fields = {"name", "poly_modulus_degree", "coeff_mod_bit_sizes", "scale_bits", "encryption"}
        if not isinstance(data, dict) or set(data) != fields:
            raise InputError(f"{what}: the CKKS parameters must have exactly {sorted(fields)}")
        try:
            return cls(
                name=str(data["name"]),
                poly_modulus_degree=int(data["poly_modulus_degree"]),
                coeff_mod_bit_sizes=tuple(int(b) for b in data["coeff_mod_bit_sizes"]),
                scale_bits=int(data["scale_bits"]),
                encryption=data["encryption"],
            )
        except (TypeError, ValueError) as exc:
            raise InputError(f"{what}: invalid CKKS parameters ({exc})") from None


AGGREGATION = CkksParams("aggregation", 8192, (60, 40), 40, "symmetric")
AGGREGATION_FLOODED = CkksParams("aggregation-flooded", 8192, (60, 40, 60), 70, "symmetric")
SCORING = CkksParams("scoring", 16384, (60, 60, 60, 60), 70, "public-key")
PRESETS = {p.name: p for p in (AGGREGATION, AGGREGATION_FLOODED, SCORING)}


# --- framing: a small, non-executable container for headers and TenSEAL's bytes --------

_FRAME_MAGIC = b"ACCORD-CKKS1\n"


def pack_frame(kind: str, header: Mapping[str, Any], blobs: Sequence[bytes]) -> bytes:
    """``magic | u32 header length | JSON header | (u64 length | blob)*``."""
    head = json.dumps({**header, "kind": kind, "blobs": len(blobs)}, sort_keys=True).encode()
    parts = [_FRAME_MAGIC, len(head).to_bytes(4, "big"), head]
    for blob in blobs:
        parts += [len(blob).to_bytes(8, "big"), blob]
    return b"".join(parts)


def unpack_frame(data: bytes, kind: str, what: str) -> tuple[dict[str, Any], list[bytes]]:
    """The header and blobs of a :func:`pack_frame` container of ``kind``; InputError if not."""
    bad = InputError(f"{what}: not an Accord CKKS {kind} file (or it is damaged)")
    if not data.startswith(_FRAME_MAGIC) or len(data) < len(_FRAME_MAGIC) + 4:
        raise bad
    at = len(_FRAME_MAGIC)
    size = int.from_bytes(data[at : at + 4], "big")
    at += 4
    try:
        header = json.loads(data[at : at + size].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise bad from None
    at += size
    if not isinstance(header, dict) or header.get("kind") != kind:
        raise bad
    count = header.get("blobs")
    if not isinstance(count, int) or count < 0:
        raise bad
    blobs = []
    for _ in range(count):
        if at + 8 > len(data):
            raise bad
        n = int.from_bytes(data[at : at + 8], "big")
        at += 8
        if at + n > len(data):
            raise bad
        blobs.append(data[at : at + n])
        at += n
    if at != len(data):
        raise bad
    return header, blobs


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
        raw = self.context.serialize(
            save_public_key=self.params.encryption == "public-key",
            save_secret_key=False,
            save_galois_keys=False,
            save_relin_keys=False,
        )
        header = {"params": self.params.to_json(), "key_id": self.key_id}
        return pack_frame("public-context", header, [raw])

    def secret_bytes(self) -> bytes:
        """The whole key set with the secret key: only ever inside :func:`seal_secret_key`
        or a mode-600 file of a key holder."""
        raw = self.context.serialize(
            save_public_key=self.params.encryption == "public-key",
            save_secret_key=True,
            save_galois_keys=False,
            save_relin_keys=False,
        )
        header = {"params": self.params.to_json(), "key_id": self.key_id}
        return pack_frame("secret-key-set", header, [raw])

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

_ENVELOPE_MAGIC = b"ACKKSKEY1"
_ENVELOPE_PURPOSE = b"accord/ckks-secret-key-envelope/v1"
_NONCE_BYTES = 12


def _raw(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _envelope_ad(job_id: str, sender: str, recipient: str, *keys: bytes) -> bytes:
    fields = [_ENVELOPE_PURPOSE, job_id.encode(), sender.encode(), recipient.encode(), *keys]
    return b"".join(len(f).to_bytes(4, "big") + f for f in fields)


def _envelope_key(shared: bytes, ephemeral: bytes, ad: bytes) -> bytes:
    kdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral, info=ad)
    return kdf.derive(shared)


def seal_secret_key(
    secret: bytes,
    *,
    job_id: str,
    sender: str,
    recipient: str,
    sender_key: X25519PrivateKey,
    recipient_public: X25519PublicKey,
    generator: SecureGenerator,
) -> bytes:
    """Encrypt ``secret`` (:meth:`CkksKeySet.secret_bytes`) end to end for ``recipient``.

    Key: HKDF-SHA256 over X25519(ephemeral, recipient) || X25519(sender, recipient), so
    only the recipient can open it and only the sender can have made it; the associated
    data binds purpose, job, sender, recipient and all three public keys.
    """
    ephemeral = X25519PrivateKey.from_private_bytes(generator.random_bytes(32))
    eph = _raw(ephemeral.public_key())
    recipient_raw = _raw(recipient_public)
    ad = _envelope_ad(job_id, sender, recipient, _raw(sender_key.public_key()), recipient_raw, eph)
    try:
        shared = ephemeral.exchange(recipient_public) + sender_key.exchange(recipient_public)
    except ValueError:
        raise InputError(f"{recipient!r}'s X25519 public key is invalid") from None
    nonce = generator.random_bytes(_NONCE_BYTES)
    sealed = ChaCha20Poly1305(_envelope_key(shared, eph, ad)).encrypt(nonce, secret, ad)
    return _ENVELOPE_MAGIC + eph + nonce + sealed


def open_secret_key(
    envelope: bytes,
    *,
    job_id: str,
    sender: str,
    recipient: str,
    recipient_key: X25519PrivateKey,
    sender_public: X25519PublicKey,
) -> bytes:
    """The secret bytes, if ``envelope`` was made by ``sender`` for ``recipient`` in this
    job; :class:`RefusedError` otherwise (wrong recipient, sender or job, or altered)."""
    head = len(_ENVELOPE_MAGIC)
    refused = RefusedError(
        f"the CKKS key envelope does not open for {recipient!r} from {sender!r} in job "
        f"{job_id!r}: wrong recipient, sender or job, or altered"
    )
    if not envelope.startswith(_ENVELOPE_MAGIC) or len(envelope) < head + 32 + _NONCE_BYTES:
        raise refused
    eph = envelope[head : head + 32]
    nonce = envelope[head + 32 : head + 32 + _NONCE_BYTES]
    own = _raw(recipient_key.public_key())
    ad = _envelope_ad(job_id, sender, recipient, _raw(sender_public), own, eph)
    try:
        ephemeral = X25519PublicKey.from_public_bytes(eph)
        shared = recipient_key.exchange(ephemeral) + recipient_key.exchange(sender_public)
        key = _envelope_key(shared, eph, ad)
        return ChaCha20Poly1305(key).decrypt(nonce, envelope[head + 32 + _NONCE_BYTES :], ad)
    except (InvalidTag, ValueError):
        raise refused from None
