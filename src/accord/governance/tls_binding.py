"""A party's TLS key and its certificate request, bound to the party's identity key.

gRPC's TLS cannot negotiate Ed25519, so each party makes a second key for the transport:
ECDSA P-256, created where it is used (``secrets/tls.key`` in a node home) and never sent.
What the federation operator receives is a certificate request (CSR) whose subject is the
party's name and which carries an *identity binding*: the party's Ed25519 identity key's
signature over the TLS public key. The operator issues a certificate only when the binding
verifies under that party's key in the signed agreement, and every receiver checks it
again after the handshake (:mod:`accord.governance.peer_check`). A CA operator who issues a
certificate for a name on its own therefore still cannot impersonate a party: it cannot
forge the binding without the party's identity key.

The binding lives in a non-critical X.509 extension under :data:`BINDING_OID`, an OID in a
private arc (``1.3.6.1.4.1.59999``, an enterprise number reserved for Accord's own use in
its federations; nothing outside Accord interprets it). Its value is the DER OCTET STRING
of the 64-byte signature. Non-critical, so that TLS stacks that do not know it (gRPC's
BoringSSL) still accept the certificate; Accord checks it itself.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from accord.errors import InputError
from accord.fileio import write_bytes_atomic
from accord.governance.identity import PartyIdentity, create_file_exclusive

TLS_KEY_FILE = Path("secrets") / "tls.key"
"""A node's TLS private key, in its home (mode 0600, beside its identity key)."""
BINDING_OID = x509.ObjectIdentifier("1.3.6.1.4.1.59999.1.1")
"""The identity-binding extension: a private-arc OID that only Accord interprets."""
BINDING_KIND = b"accord-tls-binding-v1"
_SIGNATURE_BYTES = 64
_OCTET_STRING_HEADER = bytes([0x04, _SIGNATURE_BYTES])  # DER: tag 4, definite length 64
_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


def framed(*parts: bytes) -> bytes:
    """Each part prefixed by its 4-byte big-endian length: no two lists encode alike.

    Signed payloads start with the framed kind, so their first byte is 0: never the first
    byte of the canonical JSON that agreement, revocation, audit and approval signatures
    cover. A signature made for one purpose therefore never verifies for another.
    """
    return b"".join(len(part).to_bytes(4, "big") + part for part in parts)


def binding_payload(party: str, tls_public_key_der: bytes) -> bytes:
    """What a party's identity key signs to bind its TLS key: SHA-256 of the framed kind,
    the party's name and the TLS key's SubjectPublicKeyInfo DER."""
    return hashlib.sha256(framed(BINDING_KIND, party.encode("utf-8"), tls_public_key_der)).digest()


def public_key_der(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """The SubjectPublicKeyInfo DER of a TLS public key (what the binding covers)."""
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def binding_extension_value(signature: bytes) -> bytes:
    return _OCTET_STRING_HEADER + signature


def read_binding(extensions: x509.Extensions) -> bytes | None:
    """The binding signature in ``extensions``; None when absent or malformed."""
    try:
        value = extensions.get_extension_for_oid(BINDING_OID).value
    except x509.ExtensionNotFound:
        return None
    if not isinstance(value, x509.UnrecognizedExtension):
        return None
    raw = value.value
    if len(raw) != len(_OCTET_STRING_HEADER) + _SIGNATURE_BYTES:
        return None
    if not raw.startswith(_OCTET_STRING_HEADER):
        return None
    return raw[len(_OCTET_STRING_HEADER) :]


def common_name(name: x509.Name) -> str | None:
    """The one common name of ``name`` (None when there is none or more than one)."""
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(values) != 1 or not isinstance(values[0].value, str):
        return None
    return values[0].value


# --- addresses --------------------------------------------------------------------------------


def san_entry(address: str) -> x509.GeneralName:
    """An address nodes dial, as a SubjectAltName entry: an IP address or a DNS name."""
    try:
        return x509.IPAddress(ipaddress.ip_address(address))
    except ValueError:
        pass
    labels = address.split(".")
    if len(address) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise InputError(
            f"{address!r} is not an IP address or a DNS name (no wildcards, no port: the "
            "port goes in --coordinator-address)"
        )
    return x509.DNSName(address.lower())


def split_host_port(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for an IPv6 address) -> (host, port); InputError else."""
    host, sep, port_text = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InputError(
            f"{address!r} is not an address HOST:PORT (e.g. coordinator.example.org:50051)"
        )
    san_entry(host)  # the host must be a name a certificate can carry
    return host, int(port_text)


def san_matches(entry: x509.GeneralName, host: str) -> bool:
    """Whether SubjectAltName ``entry`` names ``host`` (IPs compared as addresses)."""
    wanted = san_entry(host)
    if isinstance(entry, x509.DNSName) and isinstance(wanted, x509.DNSName):
        return entry.value.lower() == wanted.value
    return entry == wanted


# --- the request ------------------------------------------------------------------------------


def tls_request(
    identity: PartyIdentity, tls_key_path: Path, out: Path, addresses: Sequence[str] = ()
) -> Path:
    """Create an ECDSA P-256 TLS key at ``tls_key_path`` (0600, never over an existing file)
    and write to ``out`` a PEM certificate request: CN = the party's name, SubjectAltName =
    the name plus ``addresses`` (the coordinator passes the addresses nodes dial), and the
    identity binding. Returns ``out``. The TLS key never leaves ``tls_key_path``."""
    names: list[x509.GeneralName] = [x509.DNSName(identity.name)]
    for address in addresses:
        entry = san_entry(address)
        if entry not in names:
            names.append(entry)
    if out.exists() or out.is_symlink():
        raise InputError(f"{out} already exists; choose another name for the request")
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,  # gRPC's BoringSSL reads PKCS8 EC keys
        serialization.NoEncryption(),
    )
    create_private_file(tls_key_path, pem)
    try:
        signature = identity.sign(binding_payload(identity.name, public_key_der(key.public_key())))
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity.name)]))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(
                x509.UnrecognizedExtension(BINDING_OID, binding_extension_value(signature)),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        write_bytes_atomic(out, csr.public_bytes(serialization.Encoding.PEM), mode=0o644)
    except BaseException:
        # A key without a request is useless and would block the next attempt.
        tls_key_path.unlink(missing_ok=True)
        raise
    return out


def create_private_file(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 (its folder 0700 if new); never over a file or link."""
    try:
        if not path.parent.exists():
            path.parent.mkdir(parents=True, mode=0o700)
            os.chmod(path.parent, 0o700)  # mkdir's mode is filtered by the umask
    except OSError as exc:
        raise InputError(f"{path.parent}: cannot create the folder ({exc.strerror})") from None
    create_file_exclusive(path, data, 0o600)
