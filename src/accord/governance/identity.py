"""Party identities: each party's long-term Ed25519 key, and the roster that names them all.

Files (see ``docs/guides/identities.md``):

* ``NAME.key``: the private key, PKCS8 PEM, unencrypted, mode 0600. In a node home it is
  ``secrets/identity.key`` (the folder 0700). A key file that others can read is refused.
* ``NAME.pub``: one line, ``ed25519:<base64 of the 32 raw public-key bytes>``. It is what
  a party sends to the others, out of band.
* ``roster.toml`` in each node home: party name -> public key line, under ``[parties]``.
  Every node reads its roster from its own home, never from the coordinator. Unknown keys,
  bad names, bad key lines and one key under two names are refused; a roster that others
  may write is refused (whoever can write it can impersonate any party).

A fingerprint is for people comparing keys by phone or on paper: the first 16 hex digits
(64 bits) of the SHA-256 of the raw public key, in groups of four. Rosters store the whole
key, never a fingerprint.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, ValidationError

from accord.config_errors import read_toml, validation_line
from accord.errors import InputError, RefusedError
from accord.fileio import fsync_dir

PARTY_NAME_PATTERN = r"[A-Za-z0-9._-]{1,64}"
KEY_PREFIX = "ed25519:"
ROSTER_FILE = "roster.toml"
NODE_FILE = "node.toml"
NODE_IDENTITY_FILE = Path("secrets") / "identity.key"
KEY_SUFFIX = ".key"
PUBLIC_SUFFIX = ".pub"

_NAME = re.compile(PARTY_NAME_PATTERN)
_RAW_KEY_BYTES = 32


def check_party_name(name: str) -> str:
    """``name`` if it is a party name: 1 to 64 of ``A-Z a-z 0-9 . _ -``, not only dots."""
    if not _NAME.fullmatch(name) or set(name) == {"."}:
        raise InputError(
            f"{name!r} is not a party name: use 1 to 64 letters, digits, '.', '_' or '-' "
            "(not only dots)"
        )
    return name


# --- public keys ---------------------------------------------------------------------------


def raw_public_bytes(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_line(public_key: Ed25519PublicKey) -> str:
    """``ed25519:<base64>``: the one-line text form of a public key."""
    return KEY_PREFIX + base64.b64encode(raw_public_bytes(public_key)).decode("ascii")


def parse_public_key_line(text: str, where: str = "public key") -> Ed25519PublicKey:
    """The key of an ``ed25519:<base64>`` line (surrounding whitespace allowed).

    Only the canonical base64 of exactly 32 bytes is accepted, so that one key has one
    line. ``where`` names the file or roster entry in the error.
    """
    line = text.strip()
    if not line.startswith(KEY_PREFIX):
        raise InputError(f"{where}: not a public key line; expected {KEY_PREFIX}<base64>")
    encoded = line.removeprefix(KEY_PREFIX)
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{where}: the text after {KEY_PREFIX} is not base64") from None
    if len(raw) != _RAW_KEY_BYTES:
        raise InputError(
            f"{where}: an Ed25519 public key has {_RAW_KEY_BYTES} bytes, this one {len(raw)}"
        )
    if base64.b64encode(raw).decode("ascii") != encoded:
        raise InputError(f"{where}: the base64 is not in its canonical form")
    return Ed25519PublicKey.from_public_bytes(raw)


def fingerprint(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of SHA-256(raw key), in groups of four: ``1a2b 3c4d 5e6f 7a8b``."""
    digest = hashlib.sha256(raw_public_bytes(public_key)).hexdigest()[:16]
    return " ".join(digest[i : i + 4] for i in range(0, 16, 4))


def verify_signature(public_key: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    """Whether ``signature`` is ``public_key``'s Ed25519 signature of ``data``."""
    try:
        public_key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


# --- private keys ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PartyIdentity:
    """A party's name and its long-term Ed25519 private key."""

    name: str
    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def public_key_line(self) -> str:
        return public_key_line(self.public_key)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``.

        Callers sign bytes that say what they are (an agreement's canonical form names its
        kind), so that a signature made for one purpose cannot be replayed for another.
        """
        return self.private_key.sign(data)

    def private_pem(self) -> bytes:
        """The private key as unencrypted PKCS8 PEM (what a key file holds)."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def __repr__(self) -> str:  # never print key material
        return f"PartyIdentity(name={self.name!r}, fingerprint={self.fingerprint!r})"


def generate_identity(name: str) -> PartyIdentity:
    """A new identity for party ``name``, from the operating system's secure source."""
    return PartyIdentity(check_party_name(name), Ed25519PrivateKey.generate())


def load_identity(path: Path, name: str | None = None) -> PartyIdentity:
    """The identity in key file ``path`` (PKCS8 PEM, unencrypted, mode 0600 or stricter).

    ``name`` defaults to the file's stem: ``alice.key`` is party ``alice``.
    """
    party = check_party_name(name if name is not None else path.stem)
    return PartyIdentity(party, load_private_key(path))


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 key of key file ``path`` (PKCS8 PEM, unencrypted, mode 0600 or stricter)."""
    data = _read_private_file(path)
    if b"ENCRYPTED" in data:
        raise InputError(
            f"{path}: the key is encrypted with a passphrase; Accord reads unencrypted keys "
            "and protects them with file permissions (mode 600)"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InputError(f"{path}: not a PEM private key (PKCS8)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(f"{path}: not an Ed25519 key; create one with `accord keys new`")
    return key


def _read_private_file(path: Path) -> bytes:
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        raise InputError(f"{path}: no such key file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the key file ({exc.strerror})") from None
    if mode & 0o077:
        raise InputError(
            f"{path}: the private key is accessible to others (mode {mode:o}); "
            f"run `chmod 600 {path}`"
        )
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the key file ({exc.strerror})") from None


def read_public_key_file(path: Path) -> Ed25519PublicKey:
    """The key of a ``.pub`` file (one ``ed25519:<base64>`` line)."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the public key file ({exc})") from None
    return parse_public_key_line(text, where=str(path))


def write_identity_files(identity: PartyIdentity, directory: Path) -> tuple[Path, Path]:
    """Write ``directory/NAME.key`` (0600) and ``NAME.pub`` (0644); overwrite nothing.

    ``directory`` must exist. Returns the two paths.
    """
    if not directory.is_dir():
        raise InputError(f"{directory}: no such directory")
    key_path = directory / f"{identity.name}{KEY_SUFFIX}"
    pub_path = directory / f"{identity.name}{PUBLIC_SUFFIX}"
    for path in (key_path, pub_path):
        if path.exists() or path.is_symlink():
            raise InputError(f"{path} already exists; Accord never overwrites a key file")
    _create_file(key_path, identity.private_pem(), 0o600)
    try:
        _create_file(pub_path, (identity.public_key_line + "\n").encode("ascii"), 0o644)
    except BaseException:
        key_path.unlink(missing_ok=True)
        raise
    return key_path, pub_path


def _create_file(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` (``O_EXCL``: never over an existing file or link)."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, mode)
    except FileExistsError:
        raise InputError(f"{path} already exists; Accord never overwrites a key file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot create the file ({exc.strerror})") from None
    try:
        os.fchmod(fd, mode)  # the mode given to open() is filtered by the umask
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    fsync_dir(path.parent)


# --- a node's own identity ---------------------------------------------------------------------


def node_identity_path(home: Path) -> Path:
    return home / NODE_IDENTITY_FILE


def write_node_identity(identity: PartyIdentity, home: Path) -> Path:
    """Write ``home/secrets/identity.key`` (0600, folders 0700); overwrite nothing.

    A home whose ``node.toml`` names another party is refused. Nothing else is written.
    """
    _check_home_party(home, identity.name)
    secrets = home / NODE_IDENTITY_FILE.parent
    try:
        if not home.exists():
            home.mkdir(parents=True, mode=0o700)
            os.chmod(home, 0o700)  # mkdir's mode is filtered by the umask
        secrets.mkdir(exist_ok=True, mode=0o700)
        os.chmod(secrets, 0o700)
    except OSError as exc:
        raise InputError(f"{secrets}: cannot create the folder ({exc.strerror})") from None
    path = node_identity_path(home)
    if path.exists() or path.is_symlink():
        raise InputError(f"{path} already exists; Accord never overwrites a key file")
    _create_file(path, identity.private_pem(), 0o600)
    return path


def node_identity(home: Path, party: str) -> PartyIdentity:
    """Party ``party``'s identity, from its node home (``secrets/identity.key``)."""
    check_party_name(party)
    _check_home_party(home, party)
    path = node_identity_path(home)
    if not path.exists():
        raise InputError(
            f"{path}: this node home has no identity key; create one with "
            f"`accord keys new {party} --node-home {home}`"
        )
    return load_identity(path, party)


def _home_party(home: Path) -> str | None:
    """The ``party`` line of ``home/node.toml`` (None without the file or the line)."""
    path = home / NODE_FILE
    try:
        raw = read_toml(path, InputError, "node file")
    except FileNotFoundError:
        return None
    party = raw.get("party")
    if party is not None and not isinstance(party, str):
        raise InputError(f"{path}: party: must be a string (got {party!r})")
    return party


def _check_home_party(home: Path, party: str) -> None:
    owner = _home_party(home)
    if owner is not None and owner != party:
        raise InputError(
            f"{home / NODE_FILE}: this node home belongs to party {owner!r}, not {party!r}"
        )


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


def parse_roster(raw: Mapping[str, object], where: str = ROSTER_FILE) -> Roster:
    """A roster from the parsed TOML of a roster file (refusals name ``where``)."""
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
                "must be distinct without it"
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
    """The roster of the node whose home is ``home``: ``home/roster.toml``.

    When ``node.toml`` names the home's party, that party has an identity key in the home
    and the roster lists it, the roster's key must be the identity's: a mismatch means the
    others would check this party's signatures against a key it does not hold.
    """
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
    roster = parse_roster(raw, str(path))
    own = _home_party(home)
    if own is not None and own in roster and node_identity_path(home).exists():
        identity = node_identity(home, own)
        if raw_public_bytes(identity.public_key) != raw_public_bytes(roster[own]):
            raise InputError(
                f"{path}: parties.{own}: this is not the key of this node's own identity "
                f"({node_identity_path(home)}, fingerprint {identity.fingerprint}; the "
                f"roster has {roster.fingerprint(own)}); fix the roster line"
            )
    return roster
