"""CKKS parameter sets (the presets and the table in :mod:`accord.protect.ckks`) and the
small, non-executable container that carries headers and TenSEAL's bytes (no executable format)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from accord.errors import InputError
from accord.protect import ckks_noise

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
