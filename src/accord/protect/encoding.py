"""Canonical, unambiguous byte strings for everything that is signed, hashed or fed to a KDF.

Signatures, commitments, digests and HKDF ``info`` strings must never let two different
tuples of fields encode to the same bytes; otherwise a signature over one message could be
presented as a signature over another. Every encoding therefore starts with a fixed domain
tag and the purpose, and every field is typed and length-prefixed.
"""

from __future__ import annotations

import hashlib

__all__ = ["DOMAIN", "digest", "encode"]

DOMAIN = b"accord/secagg/v1"
"""Version tag of the protocol's encodings; change it when the encodings change."""

Field = bytes | str | int


def encode(purpose: str, *fields: Field) -> bytes:
    """The canonical bytes of ``purpose`` and ``fields`` (typed, length-prefixed)."""
    parts = [DOMAIN, _framed(b"p", purpose.encode("utf-8"))]
    for value in fields:
        # bool is an int subclass; a stray True must not encode like the integer 1.
        if isinstance(value, bool):
            raise TypeError("booleans are not valid fields; encode them as 0 or 1")
        if isinstance(value, int):
            if value < 0:
                raise ValueError("integer fields must be non-negative")
            parts.append(_framed(b"i", value.to_bytes(8, "big")))
        elif isinstance(value, str):
            parts.append(_framed(b"s", value.encode("utf-8")))
        elif isinstance(value, bytes):
            parts.append(_framed(b"b", value))
        else:
            raise TypeError(f"cannot encode a field of type {type(value).__name__}")
    return b"".join(parts)


def digest(purpose: str, *fields: Field) -> bytes:
    """SHA-256 of :func:`encode` (32 bytes)."""
    return hashlib.sha256(encode(purpose, *fields)).digest()


def _framed(tag: bytes, payload: bytes) -> bytes:
    return tag + len(payload).to_bytes(4, "big") + payload
