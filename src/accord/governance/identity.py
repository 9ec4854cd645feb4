"""Party identities: each party's long-term Ed25519 key, its files and its text forms.

Files (see ``docs/guides/identities.md``; the roster is :mod:`accord.governance.roster`):

* ``NAME.key``: the private key, PKCS8 PEM, unencrypted, mode 0600. In a node home it is
  ``secrets/identity.key`` (the folder 0700). A key file that others can read is refused.
* ``NAME.pub``: one line, ``ed25519:<base64 of the 32 raw public-key bytes>``. It is what
  a party sends to the others, out of band.

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
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from accord.config_errors import read_toml
from accord.errors import InputError
from accord.fileio import fsync_dir

PARTY_NAME_PATTERN = r"[A-Za-z0-9._-]{1,64}"
KEY_PREFIX = "ed25519:"
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


def b64_text(data: bytes) -> str:
    """``data`` as standard base64 text (how signatures are written in files)."""
    return base64.b64encode(data).decode("ascii")


def b64_bytes(text: str) -> bytes:
    """The bytes of strict base64 ``text``; empty for anything else (a signature that
    is not base64 then simply fails to verify)."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return b""


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


def read_any_public_key(path: Path) -> Ed25519PublicKey:
    """The public key of a ``.pub`` file or of a private ``.key`` file."""
    try:
        head = path.read_bytes()[:64]
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read it ({exc.strerror})") from None
    if b"-----BEGIN" in head:
        return load_private_key(path).public_key()
    return read_public_key_file(path)


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
    create_file_exclusive(key_path, identity.private_pem(), 0o600)
    try:
        create_file_exclusive(pub_path, (identity.public_key_line + "\n").encode("ascii"), 0o644)
    except BaseException:
        key_path.unlink(missing_ok=True)
        raise
    return key_path, pub_path


def create_file_exclusive(path: Path, data: bytes, mode: int) -> None:
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
    create_file_exclusive(path, identity.private_pem(), 0o600)
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


def home_party(home: Path) -> str | None:
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
    owner = home_party(home)
    if owner is not None and owner != party:
        raise InputError(
            f"{home / NODE_FILE}: this node home belongs to party {owner!r}, not {party!r}"
        )
