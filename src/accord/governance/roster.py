"""The roster: party name -> Ed25519 public key, read from the node's own home.

``roster.toml`` in each node home lists every party of the consortium under ``[parties]``,
each as its public key line (see ``docs/guides/identities.md``)::

    [parties]
    cleveland = "ed25519:O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik="
    "st.mary" = "ed25519:..."     # a name with a dot is quoted (TOML would nest it)

Every node reads its roster from its own home, never from the coordinator: it is the
node's trust anchor. Unknown keys, bad names, bad key lines, names that differ only in case
and one key under two names are refused; so is a roster that others may write (whoever can
write it can impersonate any party), and one whose entry for the home's own party is not
the home's own identity key.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, ValidationError

from accord.config_errors import read_toml, validation_line
from accord.errors import InputError, RefusedError
from accord.governance.identity import (
    check_party_name,
    fingerprint,
    home_party,
    node_identity,
    node_identity_path,
    parse_public_key_line,
    public_key_line,
    raw_public_bytes,
    verify_signature,
)

ROSTER_FILE = "roster.toml"


# --- the roster --------------------------------------------------------------------------------


class _RosterFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    parties: dict[str, str]


class Roster(Mapping[str, Ed25519PublicKey]):
    """Party name -> Ed25519 public key, as the node's own ``roster.toml`` lists them."""

    def __init__(self, parties: Mapping[str, Ed25519PublicKey], path: Path | None = None) -> None:
        self._parties = dict(parties)
        self.path = path

    def __getitem__(self, party: str) -> Ed25519PublicKey:
        return self._parties[party]

    def __iter__(self) -> Iterator[str]:
        return iter(self._parties)

    def __len__(self) -> int:
        return len(self._parties)

    def __repr__(self) -> str:
        return f"Roster({', '.join(self._parties)})"

    def fingerprint(self, party: str) -> str:
        return fingerprint(self._parties[party])

    def party_of(self, public_key: Ed25519PublicKey) -> str | None:
        """The party whose key is ``public_key``, or None."""
        raw = raw_public_bytes(public_key)
        return next((p for p, k in self._parties.items() if raw_public_bytes(k) == raw), None)

    def verify(self, party: str, signature: bytes, data: bytes) -> None:
        """Refuse (``RefusedError``) unless ``signature`` is ``party``'s signature of ``data``."""
        key = self._parties.get(party)
        if key is None:
            raise RefusedError(f"party {party!r} is not in the roster ({self._where()})")
        if not verify_signature(key, signature, data):
            raise RefusedError(
                f"the signature is not party {party!r}'s (key {fingerprint(key)} in "
                f"{self._where()})"
            )

    def _where(self) -> str:
        return str(self.path) if self.path is not None else ROSTER_FILE


def roster_entry(name: str, public_key: Ed25519PublicKey) -> str:
    """The roster line of a party: ``alice = "ed25519:..."`` (a name with a dot quoted)."""
    key = name if re.fullmatch(r"[A-Za-z0-9_-]+", check_party_name(name)) else f'"{name}"'
    return f'{key} = "{public_key_line(public_key)}"'


def parse_roster(raw: Mapping[str, object], where: str = ROSTER_FILE) -> Roster:
    """A roster from the parsed TOML of a roster file (refusals name ``where``)."""
    parties_raw = raw.get("parties")
    if isinstance(parties_raw, dict):
        for name, value in parties_raw.items():
            if isinstance(value, dict) and value:
                # TOML reads `st.mary = "..."` as a table `st` with a key `mary`.
                inner = next(iter(value))
                raise InputError(
                    f"{where}: parties.{name}: a table, not a key line; quote a name with a "
                    f'dot: "{name}.{inner}" = "ed25519:..."'
                )
    try:
        parsed = _RosterFile.model_validate(raw)
    except ValidationError as exc:
        raise InputError(f"{where}: {validation_line(exc, _RosterFile)}") from None
    if not parsed.parties:
        raise InputError(f"{where}: [parties] lists no party")
    parties: dict[str, Ed25519PublicKey] = {}
    by_folded_name: dict[str, str] = {}
    by_key: dict[bytes, str] = {}
    for name, line in parsed.parties.items():
        try:
            check_party_name(name)
        except InputError as exc:
            raise InputError(f"{where}: parties: {exc}") from None
        other = by_folded_name.setdefault(name.casefold(), name)
        if other != name:
            raise InputError(
                f"{where}: parties: {other!r} and {name!r} differ only in case; party names "
                "must differ in more than case"
            )
        key = parse_public_key_line(line, where=f"{where}: parties.{name}")
        raw_key = raw_public_bytes(key)
        holder = by_key.setdefault(raw_key, name)
        if holder != name:
            raise InputError(
                f"{where}: parties {holder!r} and {name!r} have the same public key; each "
                "party needs its own"
            )
        parties[name] = key
    return Roster(parties, Path(where))


def load_roster(home: Path) -> Roster:
    """The roster of the node whose home is ``home``: the parties of the agreement in the
    home (``agreement.toml``) where there is one, else ``home/roster.toml``.

    When ``node.toml`` names the home's party, that party has an identity key in the home
    and the roster lists it, the roster's key must be the identity's: a mismatch means the
    others would check this party's signatures against a key it does not hold.
    """
    from accord.governance.agreement import NODE_AGREEMENT_FILE, load_agreement

    if (home / NODE_AGREEMENT_FILE).exists():
        # The signed agreement binds the roster: its parties and keys, nothing else.
        agreement = load_agreement(home / NODE_AGREEMENT_FILE)
        return _own_key_checked(
            home, Roster(agreement.roster_keys(), agreement.path), agreement.path
        )
    path = home / ROSTER_FILE
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        raise InputError(
            f"{path}: no roster in this node home; write one from the parties' public key "
            "lines (see docs/guides/identities.md)"
        ) from None
    if mode & 0o022:
        raise InputError(
            f"{path}: others may write the roster (mode {mode:o}), and so replace a party's "
            f"key; run `chmod 644 {path}`"
        )
    try:
        raw = read_toml(path, InputError, "roster")
    except FileNotFoundError:
        raise InputError(f"{path}: no roster in this node home") from None
    return _own_key_checked(home, parse_roster(raw, str(path)), path)


def _own_key_checked(home: Path, roster: Roster, path: Path) -> Roster:
    own = home_party(home)
    if own is not None and own in roster and node_identity_path(home).exists():
        identity = node_identity(home, own)
        if raw_public_bytes(identity.public_key) != raw_public_bytes(roster[own]):
            raise InputError(
                f"{path}: parties.{own}: this is not the key of this node's own identity "
                f"({node_identity_path(home)}, fingerprint {identity.fingerprint}; the "
                f"roster has {roster.fingerprint(own)}); fix the roster line"
            )
    return roster
