"""The federation CA: its certificate, the certificates it issues, its revocation list.

An ECDSA P-256 CA that signs end-entity certificates only (path length 0), made fresh for
one federation by :func:`accord.governance.provisioning.provision`. Its key stays in the
operator's ``ca/`` folder (mode 0600) and is in no kit. A certificate copies the request's
name, addresses and identity binding; the CA adds no trust of its own to the binding,
which every receiver verifies under the agreement.

The revocation list carries a CRL number that grows by one with each revocation, so that a
node can tell a newer list from an older one put back
(:func:`accord.governance.kit.current_crl`).
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from accord.errors import AccordError, InputError
from accord.fileio import write_bytes_atomic
from accord.governance.agreement import Agreement
from accord.governance.kit import (
    CA_FILE,
    CRL_FILE,
    KIT_FILE,
    Kit,
    crl_number,
    install_crl,
    load_kit,
    sha256_fingerprint,
    verify_crl,
)
from accord.governance.tls_binding import BINDING_OID, common_name

CA_KEY_FILE = "ca.key"
ISSUED_FILE = "issued.json"
CLOCK_SKEW = timedelta(minutes=5)
"""Certificates start this long before they are issued, so that a node whose clock is a
little behind the operator's does not refuse a fresh one as not yet valid."""


def utc_seconds(now: datetime | None) -> datetime:
    """``now`` (default: the current time) in UTC, to the second.

    X.509 times have whole seconds; rounding here keeps what is written what is checked.
    """
    return (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    # The CA's key signs certificates and revocation lists only; a party's TLS key signs
    # handshakes only.
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(
    key: ec.EllipticCurvePrivateKey, agreement: Agreement, start: datetime, until: datetime
) -> x509.Certificate:
    # A random suffix: two federations under the same agreement label are different CAs.
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Accord federation"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{agreement.label} CA {secrets.token_hex(4)}"),
        ]
    )
    public_key = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - CLOCK_SKEW)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )


def issue_certificate(
    ca_key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    csr: x509.CertificateSigningRequest,
    start: datetime,
    until: datetime,
) -> x509.Certificate:
    """A certificate for a request that provisioning has checked: CN, SubjectAltName and the
    identity binding copied from ``csr``, for TLS client and server use."""
    name = common_name(csr.subject)
    tls_key = csr.public_key()
    if name is None or not isinstance(tls_key, ec.EllipticCurvePublicKey):
        raise AccordError("a certificate request that was not checked reached the CA (a bug)")
    binding = csr.extensions.get_extension_for_oid(BINDING_OID).value
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.subject)
        .public_key(tls_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - CLOCK_SKEW)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
        .add_extension(san, critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(tls_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .add_extension(binding, critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def sign_crl(
    ca_key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    revoked: list[x509.RevokedCertificate],
    now: datetime,
    number: int,
) -> x509.CertificateRevocationList:
    # Revocations are pushed to the kits, not fetched: the list stays valid as long as the CA.
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.subject)
        .last_update(now)
        .next_update(ca.not_valid_after_utc)
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    for entry in revoked:
        builder = builder.add_revoked_certificate(entry)
    return builder.sign(ca_key, hashes.SHA256())


def issued_json(
    agreement: Agreement, coordinator_address: str, certs: dict[str, x509.Certificate]
) -> bytes:
    record = {
        "agreement": agreement.label,
        "agreement_digest": agreement.digest,
        "coordinator_address": coordinator_address,
        "parties": {
            party: {
                "serial": f"{cert.serial_number:x}",
                "not_valid_after": cert.not_valid_after_utc.isoformat(),
                "sha256": sha256_fingerprint(cert),
            }
            for party, cert in certs.items()
        },
    }
    return (json.dumps(record, indent=2) + "\n").encode("utf-8")


# --- revoke -----------------------------------------------------------------------------------


def revoke(
    ca_dir: Path, party: str, kits_dir: Path | None = None, now: datetime | None = None
) -> None:
    """Add ``party``'s certificate to the CA's revocation list (re-signed, its number one
    higher) and write the list into ``ca_dir`` and every kit of this CA under
    ``kits_dir``. Revoking twice changes nothing but refreshes the kits."""
    moment = utc_seconds(now)
    ca_key = load_ca_key(ca_dir / CA_KEY_FILE)
    ca = read_ca(ca_dir)
    crl = read_crl(ca_dir)
    serial = issued_serial(ca_dir, party)
    kits = _kits_of(ca, kits_dir) if kits_dir is not None else []
    if crl.get_revoked_certificate_by_serial_number(serial) is None:
        entry = (
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(moment).build()
        )
        crl = sign_crl(ca_key, ca, [*crl, entry], moment, crl_number(crl) + 1)
    crl_pem = crl.public_bytes(serialization.Encoding.PEM)
    write_bytes_atomic(ca_dir / CRL_FILE, crl_pem, sync_dir=True)
    for kit in kits:
        install_crl(kit, crl_pem)


def read_ca(ca_dir: Path) -> x509.Certificate:
    """The CA certificate in ``ca_dir``."""
    try:
        return x509.load_pem_x509_certificate(_read(ca_dir / CA_FILE))
    except ValueError:
        raise InputError(f"{ca_dir / CA_FILE}: not a PEM X.509 certificate") from None


def read_crl(ca_dir: Path) -> x509.CertificateRevocationList:
    """The revocation list in ``ca_dir``, verified under its CA."""
    return verify_crl(_read(ca_dir / CRL_FILE), read_ca(ca_dir), ca_dir / CRL_FILE)


def issued_serial(ca_dir: Path, party: str) -> int:
    """The serial of the certificate ``ca_dir``'s CA issued to ``party``."""
    path = ca_dir / ISSUED_FILE
    try:
        record = json.loads(_read(path))
        serial = record["parties"][party]["serial"]
        return int(serial, 16)
    except KeyError:
        raise InputError(f"{path}: no certificate was issued to {party!r}") from None
    except (ValueError, TypeError):
        raise InputError(f"{path}: not the record accord provision wrote") from None


def _kits_of(ca: x509.Certificate, kits_dir: Path) -> list[Kit]:
    """The kits under ``kits_dir``, all of them ``ca``'s (else nothing is written)."""
    if not kits_dir.is_dir():
        raise InputError(f"{kits_dir}: no such folder of kits")
    kits = [load_kit(p.parent) for p in sorted(kits_dir.glob(f"*/{KIT_FILE}"))]
    for kit in kits:
        if kit.ca_certificate != ca:
            raise InputError(f"{kit.folder}: this kit is from another federation CA")
    return kits


def load_ca_key(path: Path) -> ec.EllipticCurvePrivateKey:
    data = _read(path)
    if path.stat().st_mode & 0o077:
        raise InputError(f"{path}: the CA key is accessible to others; run `chmod 600 {path}`")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise InputError(f"{path}: not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InputError(f"{path}: not an ECDSA CA key")
    return key


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(
            f"{path}: no such file (is this the ca folder of accord provision?)"
        ) from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read it ({exc.strerror})") from None
