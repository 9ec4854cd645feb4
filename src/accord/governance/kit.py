"""A party's provisioning kit: what the federation operator hands each party.

A kit is a folder with no private key in it::

    kit.toml        party = "...", coordinator_address = "host:port"
    cert.pem        the party's certificate (its TLS key stays at the party)
    ca.pem          the federation CA's certificate: the only CA the party trusts
    crl.pem         the revocation list, signed by the CA (replaced when one is revoked)
    agreement.toml  the agreement the federation runs under
    agreement.sig   its signatures

A kit that holds any private key is refused: a key that travelled is no longer private.
A node takes its roster only from a kit agreement that is in force and that lists the
node's own identity key (:func:`kit_agreement`): the kit comes from the operator, and only
the node's own signature, checked with its own key, shows the roster is the one it signed.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import tomli_w
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, ValidationError

from accord.config_errors import read_toml, validation_line
from accord.errors import AgreementRefusedError, InputError
from accord.fileio import write_bytes_atomic
from accord.governance.agreement import (
    NODE_AGREEMENT_FILE,
    Agreement,
    load_agreement,
    signatures_path,
)
from accord.governance.identity import public_key_line
from accord.governance.tls_binding import common_name, public_key_der, split_host_port

KIT_FILE = "kit.toml"
CERT_FILE = "cert.pem"
CA_FILE = "ca.pem"
CRL_FILE = "crl.pem"
AGREEMENT_SIG_FILE = signatures_path(Path(NODE_AGREEMENT_FILE)).name
KIT_FILES = (KIT_FILE, CERT_FILE, CA_FILE, CRL_FILE, NODE_AGREEMENT_FILE, AGREEMENT_SIG_FILE)
PRIVATE_KEY_MARK = b"PRIVATE KEY"
"""Every PEM private key (PKCS8, SEC1, RSA, encrypted or not) has it in its header."""


class KitFile(BaseModel):
    """``kit.toml``: who the kit is for and where the coordinator listens."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    party: str
    coordinator_address: str


@dataclass(frozen=True)
class Kit:
    """A loaded kit; the certificates parse and the party's certificate is the CA's."""

    party: str
    role: str
    """The party's role in the kit's agreement."""
    coordinator_address: str
    folder: Path
    cert_pem: bytes
    ca_pem: bytes
    crl_pem: bytes
    agreement_path: Path

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    @property
    def ca_certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.ca_pem)

    @property
    def crl(self) -> x509.CertificateRevocationList:
        return x509.load_pem_x509_crl(self.crl_pem)


def load_kit(folder: Path) -> Kit:
    """The kit in ``folder``. InputError (exit 2) names a missing or malformed file, a
    certificate that is not the kit's CA's or not the kit party's, and any private key."""
    if not folder.is_dir():
        raise InputError(f"{folder}: no such kit folder")
    _refuse_private_keys(folder)
    files: dict[str, bytes] = {}
    for name in KIT_FILES:
        path = folder / name
        try:
            files[name] = path.read_bytes()
        except FileNotFoundError:
            raise InputError(f"{folder}: the kit has no {name}; ask the operator for it") from None
        except OSError as exc:
            raise InputError(f"{path}: cannot read it ({exc.strerror})") from None
    kit_path = folder / KIT_FILE
    try:
        settings = KitFile.model_validate(read_toml(kit_path, InputError, "kit file"))
    except ValidationError as exc:
        raise InputError(f"{kit_path}: {validation_line(exc, KitFile)}") from None
    split_host_port(settings.coordinator_address)
    cert = _certificate(files[CERT_FILE], folder / CERT_FILE)
    ca = _certificate(files[CA_FILE], folder / CA_FILE)
    verify_crl(files[CRL_FILE], ca, folder / CRL_FILE)
    if common_name(cert.subject) != settings.party:
        raise InputError(f"{folder / CERT_FILE}: the certificate is not {settings.party!r}'s")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise InputError(f"{folder / CERT_FILE}: not issued by the kit's CA ({CA_FILE})") from None
    agreement = load_agreement(folder / NODE_AGREEMENT_FILE)
    party = agreement.terms.party(settings.party)
    if party is None:
        raise InputError(f"{kit_path}: {settings.party!r} is not a party of {agreement.label}")
    return Kit(
        party=settings.party,
        role=party.role,
        coordinator_address=settings.coordinator_address,
        folder=folder,
        cert_pem=files[CERT_FILE],
        ca_pem=files[CA_FILE],
        crl_pem=files[CRL_FILE],
        agreement_path=folder / NODE_AGREEMENT_FILE,
    )


def _refuse_private_keys(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file() and PRIVATE_KEY_MARK in path.read_bytes():
            raise InputError(
                f"{path}: this kit contains a private key; a kit must hold none (each party "
                "keeps its own keys). Delete the kit, make the key again, and ask for a new "
                "certificate"
            )


def _certificate(data: bytes, path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise InputError(f"{path}: not a PEM X.509 certificate") from None


def verify_crl(
    data: bytes, ca: x509.Certificate, path: Path | str
) -> x509.CertificateRevocationList:
    """The revocation list ``data``, if it is a PEM CRL of ``ca`` whose signature verifies;
    InputError naming ``path`` otherwise."""
    try:
        crl = x509.load_pem_x509_crl(data)
    except ValueError:
        raise InputError(f"{path}: not a PEM revocation list") from None
    public_key = ca.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise InputError(f"{path}: the CA's key is not an ECDSA key")
    if crl.issuer != ca.subject or not crl.is_signature_valid(public_key):
        raise InputError(f"{path}: the revocation list is not signed by the federation CA")
    return crl


def crl_number(crl: x509.CertificateRevocationList) -> int:
    """The CRL's number (0 without one): it grows by one with each revocation."""
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return 0


def current_crl(kit: Kit) -> x509.CertificateRevocationList:
    """The newest revocation list the node has: the kit's as loaded, or ``crl.pem`` as it is
    now on disk when that is newer. Re-reading the file on each check is how a node picks up
    a refreshed list without a restart; taking the higher CRL number means an older file put
    back cannot un-revoke a certificate. A file that does not verify: InputError."""
    ca = kit.ca_certificate
    loaded = verify_crl(kit.crl_pem, ca, kit.folder / CRL_FILE)
    try:
        on_disk = (kit.folder / CRL_FILE).read_bytes()
    except FileNotFoundError:
        return loaded
    if on_disk == kit.crl_pem:
        return loaded
    fresh = verify_crl(on_disk, ca, kit.folder / CRL_FILE)
    return fresh if crl_number(fresh) > crl_number(loaded) else loaded


def install_crl(kit: Kit, crl_pem: bytes) -> Kit:
    """Replace the kit's ``crl.pem`` with a newer list from the operator (it must verify
    under the kit's CA and not be older than the current one); returns the updated kit."""
    ca = kit.ca_certificate
    new = verify_crl(crl_pem, ca, "the new revocation list")
    old = current_crl(kit)
    if crl_number(new) < crl_number(old):
        raise InputError(
            f"the new revocation list (number {crl_number(new)}) is older than the kit's "
            f"(number {crl_number(old)}); not installed"
        )
    write_bytes_atomic(kit.folder / CRL_FILE, crl_pem, mode=0o644, sync_dir=True)
    return dataclasses.replace(kit, crl_pem=crl_pem)


def kit_agreement(kit: Kit, own_key: Ed25519PublicKey, now: datetime | None = None) -> Agreement:
    """The kit's agreement, if it is in force at ``now`` and lists ``own_key`` (the node's
    identity key, from its home) as the kit party's key: then the node's own signature is
    among those that verified. AgreementRefusedError (exit 3) otherwise."""
    agreement = load_agreement(kit.agreement_path)
    party = agreement.terms.party(kit.party)
    if party is None or party.key != public_key_line(own_key):
        raise AgreementRefusedError(
            f"{kit.agreement_path}: the agreement lists another key for {kit.party!r} than "
            "this node's identity key, so it does not carry this node's signature; the node "
            "takes no roster from it"
        )
    status = agreement.check_in_force(now or datetime.now(UTC))
    if kit.party not in status.signed:  # in force implies it; said again for the reader
        raise AgreementRefusedError(f"{kit.agreement_path}: not signed by {kit.party}")
    return agreement


def read_tls_key(path: Path, kit: Kit) -> bytes:
    """The PEM TLS private key at ``path`` (mode 0600 or stricter), if it is the key of the
    kit's certificate: what gRPC's credentials take."""
    try:
        mode = path.stat().st_mode & 0o777
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(
            f"{path}: no TLS key here; make one with `accord provision request`"
        ) from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the TLS key ({exc.strerror})") from None
    if mode & 0o077:
        raise InputError(f"{path}: the TLS key is accessible to others; run `chmod 600 {path}`")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise InputError(f"{path}: not an unencrypted PEM private key") from None
    cert_key = kit.certificate.public_key()
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(
        cert_key, ec.EllipticCurvePublicKey
    ):
        raise InputError(f"{path}: not an ECDSA P-256 key")
    if public_key_der(key.public_key()) != public_key_der(cert_key):
        raise InputError(f"{path}: not the key of the certificate in {kit.folder / CERT_FILE}")
    return data


def write_kit(
    folder: Path,
    party: str,
    coordinator_address: str,
    cert_pem: bytes,
    ca_pem: bytes,
    crl_pem: bytes,
    agreement_path: Path,
) -> Path:
    """Write a new kit folder (it must not exist); the agreement and its ``.sig`` copied."""
    for data in (cert_pem, ca_pem, crl_pem):
        if PRIVATE_KEY_MARK in data:  # a bug upstream: never let one out
            raise InputError(f"{folder}: refusing to write a private key into a kit")
    folder.mkdir(parents=True)
    header = "# Accord provisioning kit: no private key belongs here.\n"
    body = tomli_w.dumps(KitFile(party=party, coordinator_address=coordinator_address).model_dump())
    files = {
        KIT_FILE: (header + body).encode("utf-8"),
        CERT_FILE: cert_pem,
        CA_FILE: ca_pem,
        CRL_FILE: crl_pem,
        NODE_AGREEMENT_FILE: agreement_path.read_bytes(),
        AGREEMENT_SIG_FILE: signatures_path(agreement_path).read_bytes(),
    }
    for name, data in files.items():
        write_bytes_atomic(folder / name, data, mode=0o644)
    return folder


def sha256_fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate's DER, hex in groups of four (for people comparing)."""
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    return " ".join(digest[i : i + 4] for i in range(0, len(digest), 4))
