"""Provisioning: a federation CA and a certificate per party, with no private key moving.

1. Each party runs :func:`tls_request`: its TLS key is made where it stays, and only a
   certificate request (carrying the identity binding) goes to the operator.
2. The operator runs :func:`provision` on the signed agreement and the requests: it makes
   the federation CA (its key stays in ``out/ca``), checks every request against the
   agreement (the name is a party, the binding verifies under that party's identity key),
   and writes one kit per party (:mod:`accord.governance.kit`) with no private key in it.
3. :func:`revoke` (:mod:`accord.governance.federation_ca`) adds a party's certificate to
   the revocation list that kits carry.

The operator is trusted to run the CA, not to speak for a party: a certificate it issues on
its own has no binding by the party's identity key, and every receiver refuses it
(:mod:`accord.governance.peer_check`). What lives where::

    out/ca/ca.key       the CA private key (0600, folder 0700): stays with the operator
    out/ca/ca.pem       the CA certificate (self-signed ECDSA P-256, path length 0)
    out/ca/crl.pem      the revocation list, signed by the CA
    out/ca/issued.json  the serial of each party's certificate (what revoke looks up)
    out/kits/<party>/   one kit per party

This module also re-exports the API of ``tls_binding``, ``kit``, ``peer_check`` and
``federation_ca``, so that callers import the provisioning API from one place.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from accord.errors import InputError, PeerRefusedError
from accord.fileio import write_bytes_atomic
from accord.governance.agreement import Agreement, load_agreement
from accord.governance.federation_ca import (
    CA_KEY_FILE,
    ISSUED_FILE,
    issue_certificate,
    issued_json,
    make_ca,
    revoke,
    sign_crl,
    utc_seconds,
)
from accord.governance.identity import parse_public_key_line, verify_signature
from accord.governance.kit import (
    CA_FILE,
    CRL_FILE,
    Kit,
    current_crl,
    install_crl,
    kit_agreement,
    load_kit,
    read_tls_key,
    write_kit,
)
from accord.governance.peer_check import (
    NONCE_BYTES,
    ReplayGuard,
    challenge_payload,
    check_challenge,
    check_peer_certificate,
    new_nonce,
    sign_challenge,
)
from accord.governance.tls_binding import (
    BINDING_OID,
    TLS_KEY_FILE,
    binding_payload,
    common_name,
    create_private_file,
    public_key_der,
    read_binding,
    san_matches,
    split_host_port,
    tls_request,
)

__all__ = [
    "BINDING_OID",
    "NONCE_BYTES",
    "TLS_KEY_FILE",
    "Kit",
    "ReplayGuard",
    "binding_payload",
    "challenge_payload",
    "check_challenge",
    "check_peer_certificate",
    "current_crl",
    "install_crl",
    "kit_agreement",
    "load_kit",
    "new_nonce",
    "provision",
    "read_tls_key",
    "revoke",
    "sign_challenge",
    "tls_request",
]

CA_DIR = "ca"
KITS_DIR = "kits"


@dataclass(frozen=True)
class _Request:
    path: Path
    party: str
    csr: x509.CertificateSigningRequest
    names: tuple[x509.GeneralName, ...]


# --- provision --------------------------------------------------------------------------------


def provision(
    agreement_path: Path,
    requests_dir: Path,
    out: Path,
    coordinator_address: str,
    valid_days: int = 365,
    now: datetime | None = None,
) -> list[Path]:
    """Make the federation CA in ``out/ca`` and a kit per party in ``out/kits``; returns
    the kit folders. Every party of the in-force agreement needs one verified request in
    ``requests_dir`` (``*.csr``); one bad or missing request refuses the whole run, and
    nothing is written. An existing ``out/ca`` is never overwritten."""
    moment = utc_seconds(now)
    if valid_days < 1:
        raise InputError(f"valid days: must be at least 1 (got {valid_days})")
    host, _ = split_host_port(coordinator_address)
    agreement = load_agreement(agreement_path)
    agreement.check_in_force(moment)
    ca_dir, kits_dir = out / CA_DIR, out / KITS_DIR
    for path in (ca_dir, kits_dir):
        if path.exists() or path.is_symlink():
            raise InputError(
                f"{path} already exists; Accord never overwrites a federation CA or its "
                "kits (choose another --out)"
            )
    requests = _read_requests(requests_dir, agreement, host)
    until = moment + timedelta(days=valid_days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = make_ca(ca_key, agreement, moment, until)
    crl = sign_crl(ca_key, ca, [], moment, number=1)
    certs = {r.party: issue_certificate(ca_key, ca, r.csr, moment, until) for r in requests}
    out.mkdir(parents=True, exist_ok=True)
    # Build everything in a staging folder, then move it into place: no partial kits.
    staging = Path(tempfile.mkdtemp(prefix=".provision-", dir=out))
    try:
        stage_ca = staging / CA_DIR
        stage_ca.mkdir(mode=0o700)
        os.chmod(stage_ca, 0o700)
        key_pem = ca_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        create_private_file(stage_ca / CA_KEY_FILE, key_pem)
        ca_pem = ca.public_bytes(serialization.Encoding.PEM)
        crl_pem = crl.public_bytes(serialization.Encoding.PEM)
        write_bytes_atomic(stage_ca / CA_FILE, ca_pem)
        write_bytes_atomic(stage_ca / CRL_FILE, crl_pem)
        write_bytes_atomic(
            stage_ca / ISSUED_FILE, issued_json(agreement, coordinator_address, certs)
        )
        for party, cert in certs.items():
            write_kit(
                staging / KITS_DIR / party,
                party,
                coordinator_address,
                cert.public_bytes(serialization.Encoding.PEM),
                ca_pem,
                crl_pem,
                agreement_path,
            )
        os.rename(staging / KITS_DIR, kits_dir)
        os.rename(stage_ca, ca_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [kits_dir / party for party in certs]


def _read_requests(requests_dir: Path, agreement: Agreement, host: str) -> list[_Request]:
    """Every request in ``requests_dir``, checked; refuses the first bad one and a party
    without a request."""
    if not requests_dir.is_dir():
        raise InputError(f"{requests_dir}: no such folder of requests")
    requests: dict[str, _Request] = {}
    owner_of: dict[object, Path] = {}
    for path in sorted(requests_dir.glob("*.csr")):
        request = _read_request(path, agreement, host)
        if request.party in requests:
            raise InputError(
                f"{path}: a second request for {request.party!r} (the first: "
                f"{requests[request.party].path.name}); keep one"
            )
        for entry in request.names:
            # A name in two certificates would let one party answer for the other's address
            # (DNS names compare without case, as TLS compares them).
            key = entry.value.lower() if isinstance(entry, x509.DNSName) else entry.value
            if key in owner_of:
                raise PeerRefusedError(
                    f"{path}: the address {entry.value} is also in {owner_of[key].name}; "
                    "each address may be in one party's certificate only"
                )
            owner_of[key] = path
        requests[request.party] = request
    missing = [p.name for p in agreement.terms.parties if p.name not in requests]
    if missing:
        raise InputError(
            f"{requests_dir}: no request from {', '.join(missing)}; each party makes one with "
            "`accord provision request --key KEY --out NAME.csr`"
        )
    return [requests[p.name] for p in agreement.terms.parties]


def _read_request(path: Path, agreement: Agreement, host: str) -> _Request:
    try:
        csr = x509.load_pem_x509_csr(path.read_bytes())
    except ValueError:
        raise InputError(f"{path}: not a PEM certificate request") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read it ({exc.strerror})") from None
    try:
        extensions = csr.extensions  # parsed lazily: a malformed one raises here
    except ValueError as exc:
        raise InputError(f"{path}: a malformed extension ({exc})") from None
    if not csr.is_signature_valid:
        raise PeerRefusedError(f"{path}: the request's own signature does not verify (altered)")
    tls_key = csr.public_key()
    if not isinstance(tls_key, ec.EllipticCurvePublicKey) or tls_key.curve.name != "secp256r1":
        raise InputError(f"{path}: the TLS key is not ECDSA P-256; make it with accord")
    name = common_name(csr.subject)
    if name is None:
        raise InputError(f"{path}: the request has no single common name (a party name)")
    party = agreement.terms.party(name)
    if party is None:
        raise PeerRefusedError(f"{path}: {name!r} is not a party of {agreement.label}")
    signature = read_binding(extensions)
    if signature is None:
        raise PeerRefusedError(f"{path}: the request carries no identity binding")
    identity_key = parse_public_key_line(party.key, f"parties.{name}.key")
    if not verify_signature(
        identity_key, signature, binding_payload(name, public_key_der(tls_key))
    ):
        raise PeerRefusedError(
            f"{path}: the identity binding does not verify under {name}'s key in "
            f"{agreement.label} (signed by another key)"
        )
    try:
        san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise InputError(f"{path}: the request has no SubjectAltName") from None
    names = tuple(san)
    if not all(isinstance(n, x509.DNSName | x509.IPAddress) for n in names):
        raise InputError(f"{path}: SubjectAltName may hold DNS names and IP addresses only")
    if x509.DNSName(name) not in names:
        raise InputError(f"{path}: SubjectAltName does not name the party {name!r}")
    dials_coordinator = any(san_matches(n, host) for n in names)
    if party.role == "coordinator" and not dials_coordinator:
        raise InputError(
            f"{path}: the coordinator's request does not name {host}, the address nodes "
            f"dial; make it again with `--address {host}`"
        )
    if party.role != "coordinator" and dials_coordinator:
        raise PeerRefusedError(f"{path}: {name!r} asks for the coordinator's address {host}")
    return _Request(path, name, csr, names)
