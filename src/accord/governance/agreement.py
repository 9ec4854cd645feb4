"""A signed data-sharing agreement: reading it, its canonical form, signatures, revocations.

An agreement is a TOML file (terms: :mod:`accord.governance.agreement_terms`). Its
signatures are detached, in the file beside it with the suffix ``.sig``
(``heart.toml`` -> ``heart.sig``)::

    [[signatures]]
    party = "cleveland"
    key_id = "1a2b 3c4d 5e6f 7a8b"       # fingerprint of the signing key
    signature = "<base64 Ed25519 signature of SHA-256(canonical form)>"

    [[revocations]]                       # a signed withdrawal (accord agreement revoke)
    party = "cleveland"
    key_id = "1a2b 3c4d 5e6f 7a8b"
    revoked_at = "2026-12-01T09:00:00+00:00"
    reason = "ethics approval withdrawn"
    signature = "<base64 Ed25519 signature of SHA-256(canonical revocation)>"

The canonical form is the RFC 8785 JSON of the terms *as written*: TOML datetimes become
RFC 3339 strings, and no schema default is filled in, so that a newer schema does not void
old signatures. Comments and whitespace are not terms: editing them keeps every
signature. The agreement is in force only when every listed party, the coordinator
included, has signed it, no signatory has revoked it, and the time is inside its window.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import rfc8785
import tomli_w
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from accord.config_errors import read_toml, validation_line
from accord.errors import AgreementFileError, AgreementRefusedError, AgreementRevokedError
from accord.fileio import write_bytes_atomic
from accord.governance.agreement_terms import Terms
from accord.governance.identity import (
    PartyIdentity,
    b64_bytes,
    b64_text,
    fingerprint,
    parse_public_key_line,
    verify_signature,
)

SIGNATURES_SUFFIX = ".sig"
NODE_AGREEMENT_FILE = "agreement.toml"
"""A node's own copy of its agreement, in its home (signatures beside it, ``agreement.sig``)."""
_REVOCATION_KIND = "accord-agreement-revocation-v1"


def signatures_path(agreement: Path) -> Path:
    """Where the detached signatures of ``agreement`` live: same name, suffix ``.sig``."""
    return agreement.with_suffix(SIGNATURES_SUFFIX)


def canonical_form(raw: dict[str, Any]) -> bytes:
    """RFC 8785 JSON of the terms as written (TOML datetimes as RFC 3339 strings)."""
    return rfc8785.dumps(_jsonable(raw))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    # Numbers need nothing: RFC 8785 writes 3.0 and 3 alike (JSON has one number type).
    return value


# --- the signature file ----------------------------------------------------------------------


class SignatureEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    party: str
    key_id: str
    signature: str


class RevocationEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    party: str
    key_id: str
    revoked_at: str
    reason: str = ""
    signature: str

    def payload(self, digest: str) -> bytes:
        """What the revoking party signs: SHA-256 of this revocation's canonical JSON."""
        body = {
            "kind": _REVOCATION_KIND,
            "agreement": digest,
            "party": self.party,
            "revoked_at": self.revoked_at,
            "reason": self.reason,
        }
        return hashlib.sha256(rfc8785.dumps(body)).digest()


class SignatureFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    signatures: list[SignatureEntry] = Field(default_factory=list)
    revocations: list[RevocationEntry] = Field(default_factory=list)


# --- the agreement ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    """An agreement file read and checked against the schema, with its signature file."""

    path: Path
    raw: dict[str, Any]
    terms: Terms
    signature_file: SignatureFile

    @property
    def canonical(self) -> bytes:
        return canonical_form(self.raw)

    @property
    def digest(self) -> str:
        """SHA-256 of the canonical form, hex: what signatures cover and jobs name."""
        return hashlib.sha256(self.canonical).hexdigest()

    @property
    def label(self) -> str:
        """``heart-2026 v3``."""
        return f"{self.terms.agreement.id} v{self.terms.agreement.version}"

    def roster_keys(self) -> dict[str, Ed25519PublicKey]:
        """The identity keys of every party but the coordinator: the roster it binds."""
        return {
            p.name: parse_public_key_line(p.key, f"{self.path}: parties.{p.name}.key")
            for p in self.terms.parties
            if p.role != "coordinator"
        }

    def status(self) -> AgreementStatus:
        return _status(self)

    def check_in_force(self, now: datetime | None = None) -> AgreementStatus:
        """The status, if the agreement is in force at ``now``; else AgreementRefusedError
        (AgreementRevokedError for a withdrawal), naming what is missing."""
        status = self.status()
        status.raise_unless_in_force(now or datetime.now(UTC))
        return status


def load_agreement(path: Path) -> Agreement:
    """Read ``path`` and its ``.sig`` file (absent: no signatures yet). Bad TOML, an unknown
    clause or a bad value: :class:`AgreementFileError` (exit 2), naming the file and key."""
    try:
        raw = read_toml(path, AgreementFileError, "agreement")
    except FileNotFoundError:
        raise AgreementFileError(f"{path}: agreement not found") from None
    try:
        terms = Terms.model_validate(raw)
    except ValidationError as exc:
        raise AgreementFileError(f"{path}: {validation_line(exc, Terms)}") from None
    return Agreement(path, raw, terms, read_signature_file(signatures_path(path)))


def read_signature_file(path: Path) -> SignatureFile:
    try:
        raw = read_toml(path, AgreementFileError, "signature file")
    except FileNotFoundError:
        return SignatureFile()
    try:
        return SignatureFile.model_validate(raw)
    except ValidationError as exc:
        raise AgreementFileError(f"{path}: {validation_line(exc, SignatureFile)}") from None


def write_signature_file(path: Path, signatures: SignatureFile) -> None:
    header = (
        "# Detached signatures of the agreement beside this file "
        "(accord agreement sign / verify / revoke).\n"
    )
    body = tomli_w.dumps(signatures.model_dump(mode="json"))
    write_bytes_atomic(path, (header + body).encode("utf-8"), mode=0o644, sync_dir=True)


# --- signing, revoking -----------------------------------------------------------------------


def _party_for_key(agreement: Agreement, identity: PartyIdentity) -> str:
    line = identity.public_key_line
    for party in agreement.terms.parties:
        if party.key == line:
            return party.name
    raise AgreementRefusedError(
        f"{agreement.path}: the key {identity.fingerprint} is not the key of any party of "
        f"{agreement.label}"
    )


def sign_agreement(agreement: Agreement, identity: PartyIdentity) -> str:
    """Add (or replace) this party's signature; returns the party's name."""
    party = _party_for_key(agreement, identity)
    entry = SignatureEntry(
        party=party,
        key_id=identity.fingerprint,
        signature=b64_text(identity.sign(bytes.fromhex(agreement.digest))),
    )
    others = [s for s in agreement.signature_file.signatures if s.party != party]
    updated = agreement.signature_file.model_copy(update={"signatures": [*others, entry]})
    write_signature_file(signatures_path(agreement.path), updated)
    return party


def make_revocation(
    agreement: Agreement, identity: PartyIdentity, reason: str, now: datetime | None = None
) -> RevocationEntry:
    """A signed withdrawal of ``agreement`` by the key's party."""
    party = _party_for_key(agreement, identity)
    at = (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")
    unsigned = RevocationEntry(
        party=party, key_id=identity.fingerprint, revoked_at=at, reason=reason, signature=""
    )
    signature = identity.sign(unsigned.payload(agreement.digest))
    return unsigned.model_copy(update={"signature": b64_text(signature)})


def record_revocation(agreement: Agreement, revocation: RevocationEntry) -> bool:
    """Add a verified revocation to the agreement's ``.sig`` file; False if already there.
    Refused (AgreementRefusedError) when the revocation does not verify."""
    problem = _revocation_problem(agreement, revocation)
    if problem is not None:
        raise AgreementRefusedError(f"{agreement.path}: {problem}")
    if revocation in agreement.signature_file.revocations:
        return False
    revocations = [*agreement.signature_file.revocations, revocation]
    updated = agreement.signature_file.model_copy(update={"revocations": revocations})
    write_signature_file(signatures_path(agreement.path), updated)
    return True


# --- status ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgreementStatus:
    """Who signed, who did not, what is wrong, who withdrew."""

    label: str
    digest: str
    signed: tuple[str, ...]
    unsigned: tuple[str, ...]
    problems: tuple[str, ...]
    """Signature entries that do not verify, or are not by the listed party's key."""
    revocations: tuple[RevocationEntry, ...]
    valid_from: datetime
    valid_until: datetime

    def refusal(self, now: datetime) -> str | None:
        """Why the agreement is not in force at ``now`` (None: it is)."""
        if self.problems:
            return f"agreement {self.label} has a bad signature: {self.problems[0]}"
        if self.revocations:
            first = self.revocations[0]
            reason = f" ({first.reason})" if first.reason else ""
            return (
                f"agreement {self.label} was revoked by {first.party} at {first.revoked_at}{reason}"
            )
        if self.unsigned:
            return (
                f"agreement {self.label} is not in force: not signed by {', '.join(self.unsigned)}"
            )
        if now < self.valid_from:
            return f"agreement {self.label} is not valid before {self.valid_from.isoformat()}"
        if now >= self.valid_until:
            return f"agreement {self.label} expired at {self.valid_until.isoformat()}"
        return None

    def raise_unless_in_force(self, now: datetime) -> None:
        refusal = self.refusal(now)
        if refusal is None:
            return
        if self.revocations and not self.problems:
            raise AgreementRevokedError(refusal, self.revocations[0])
        raise AgreementRefusedError(refusal)


def _status(agreement: Agreement) -> AgreementStatus:
    terms = agreement.terms
    digest = bytes.fromhex(agreement.digest)
    signed: list[str] = []
    problems: list[str] = []
    for entry in agreement.signature_file.signatures:
        party = terms.party(entry.party)
        if party is None:
            problems.append(f"a signature names {entry.party!r}, who is not a party")
            continue
        key = parse_public_key_line(party.key, f"parties.{party.name}.key")
        if entry.key_id != fingerprint(key):
            problems.append(f"the signature of {entry.party!r} is by a key not in the agreement")
        elif entry.party in signed:
            problems.append(f"{entry.party!r} signed twice")
        elif not verify_signature(key, b64_bytes(entry.signature), digest):
            problems.append(
                f"the signature of {entry.party!r} does not verify (the terms changed since "
                "it was made, or it was altered)"
            )
        else:
            signed.append(entry.party)
    revocations: list[RevocationEntry] = []
    for revocation in agreement.signature_file.revocations:
        problem = _revocation_problem(agreement, revocation)
        if problem is None:
            revocations.append(revocation)
        else:
            problems.append(problem)
    header = terms.agreement
    return AgreementStatus(
        label=agreement.label,
        digest=agreement.digest,
        signed=tuple(signed),
        unsigned=tuple(p.name for p in terms.parties if p.name not in signed),
        problems=tuple(problems),
        revocations=tuple(revocations),
        valid_from=header.valid_from,
        valid_until=header.valid_until,
    )


def _revocation_problem(agreement: Agreement, revocation: RevocationEntry) -> str | None:
    party = agreement.terms.party(revocation.party)
    if party is None:
        return f"a revocation names {revocation.party!r}, who is not a party"
    key = parse_public_key_line(party.key, f"parties.{party.name}.key")
    if revocation.key_id != fingerprint(key) or not verify_signature(
        key, b64_bytes(revocation.signature), revocation.payload(agreement.digest)
    ):
        return f"the revocation by {revocation.party!r} does not verify"
    return None
