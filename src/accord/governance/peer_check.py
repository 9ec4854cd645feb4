"""The checks above TLS: who the peer is, once the handshake is done.

grpcio's Python API checks a peer's certificate chain and validity during the handshake
but cannot check a revocation list or Accord's identity binding, and it knows no
agreement. So the receiving side checks them right after the handshake, before any
message is taken:

* The coordinator runs :func:`check_peer_certificate` on the client certificate from the
  call's auth context (``context.auth_context()["x509_pem_cert"][0]``).
* A node cannot read the server's certificate through grpcio's client API. It sends a fresh
  32-byte nonce; the coordinator answers with :func:`sign_challenge` (its Ed25519 identity
  key over the nonce and the name of the node it authenticated); the node runs
  :func:`check_challenge` under the agreement's coordinator key. Because the signed payload
  names the node the coordinator saw, another party that relays the challenge through its
  own connection gets a signature for its own name, which the node refuses.
* Both sides refuse a replayed message with :class:`ReplayGuard`.

Every refusal is a :class:`~accord.errors.PeerRefusedError` (exit 3) with one line naming
the reason, and is logged at WARNING on the ``accord.peer`` logger of the receiving side.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from datetime import UTC, datetime
from typing import NoReturn

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from accord.errors import InputError, PeerRefusedError
from accord.governance.agreement import Agreement
from accord.governance.identity import PartyIdentity, parse_public_key_line, verify_signature
from accord.governance.kit import Kit, current_crl
from accord.governance.tls_binding import (
    binding_payload,
    common_name,
    framed,
    public_key_der,
    read_binding,
)

NONCE_BYTES = 32
CHALLENGE_KIND = b"accord-tls-challenge-v1"
_log = logging.getLogger("accord.peer")


def _refuse(reason: str) -> NoReturn:
    _log.warning("refused a peer: %s", reason)
    raise PeerRefusedError(reason)


def _utc(now: datetime | None) -> datetime:
    return (now or datetime.now(UTC)).astimezone(UTC)


# --- the certificate --------------------------------------------------------------------------


def check_peer_certificate(
    cert_pem: bytes, kit: Kit, agreement: Agreement, now: datetime | None = None
) -> str:
    """The peer's party name, if its certificate passes every check above TLS; else
    PeerRefusedError naming the first that fails: no certificate, another CA, expired or
    not yet valid, revoked (in the kit's CRL, which must verify under the CA), a name not in
    ``agreement``, or an identity binding that does not verify under that party's key."""
    moment = _utc(now)
    if not cert_pem:
        _refuse("the peer presented no certificate")
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        _refuse("the peer's certificate is not a PEM X.509 certificate")
    name = common_name(cert.subject)
    shown = repr(name) if name is not None else "without a single common name"
    ca = kit.ca_certificate
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        _refuse(f"the certificate {shown} was not issued by this federation's CA (another CA)")
    if moment < cert.not_valid_before_utc:
        _refuse(f"the certificate {shown} is not valid before {cert.not_valid_before_utc}")
    if moment >= cert.not_valid_after_utc:
        _refuse(f"the certificate {shown} expired at {cert.not_valid_after_utc}")
    if not ca.not_valid_before_utc <= moment < ca.not_valid_after_utc:
        _refuse(f"this federation's CA is not valid at {moment.isoformat()}")
    try:
        crl = current_crl(kit)
    except InputError as exc:
        _refuse(f"cannot check revocation: {exc}")  # fail closed
    if crl.next_update_utc is not None and moment >= crl.next_update_utc:
        _refuse(f"the revocation list expired at {crl.next_update_utc}; refresh the kit")
    revoked = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    if revoked is not None:
        _refuse(
            f"the certificate {shown} (serial {cert.serial_number:x}) was revoked at "
            f"{revoked.revocation_date_utc}"
        )
    if name is None:
        _refuse("the certificate has no single common name (a party name)")
    party = agreement.terms.party(name)
    if party is None:
        _refuse(f"{name!r} is not a party of agreement {agreement.label}")
    try:
        signature = read_binding(cert.extensions)
    except ValueError:  # extensions are parsed lazily: a malformed one raises here
        _refuse(f"the certificate of {name!r} has a malformed extension")
    if signature is None:
        _refuse(f"the certificate of {name!r} carries no identity binding")
    identity_key = parse_public_key_line(party.key, f"{agreement.path}: parties.{name}.key")
    tls_key = cert.public_key()
    if not isinstance(tls_key, ec.EllipticCurvePublicKey):
        _refuse(f"the certificate of {name!r} has a key Accord does not use (not ECDSA)")
    payload = binding_payload(name, public_key_der(tls_key))
    if not verify_signature(identity_key, signature, payload):
        _refuse(
            f"the identity binding of {name!r} does not verify under {name}'s key in "
            f"{agreement.label} (signed by another key, or for another TLS key)"
        )
    return name


# --- the coordinator's challenge --------------------------------------------------------------


def new_nonce() -> bytes:
    """A fresh challenge nonce, from the operating system's secure source."""
    return os.urandom(NONCE_BYTES)


def challenge_payload(nonce: bytes, party: str) -> bytes:
    """What the coordinator signs: SHA-256 of the framed kind, the node's name and the
    nonce (framed, so never confusable with a binding or an agreement signature)."""
    return hashlib.sha256(framed(CHALLENGE_KIND, party.encode("utf-8"), nonce)).digest()


def sign_challenge(identity: PartyIdentity, nonce: bytes, party: str) -> bytes:
    """The coordinator's answer to node ``party``'s nonce. ``party`` must be the name that
    :func:`check_peer_certificate` returned for this connection, never one from a message."""
    if len(nonce) != NONCE_BYTES:
        _refuse(f"{party!r} sent a challenge of {len(nonce)} bytes, not {NONCE_BYTES}")
    return identity.sign(challenge_payload(nonce, party))


def check_challenge(agreement: Agreement, nonce: bytes, party: str, signature: bytes) -> None:
    """The node's check that the server it reached holds the coordinator's identity key:
    ``signature`` must verify under the agreement's coordinator key over this node's
    ``nonce`` and its own name ``party``. PeerRefusedError otherwise."""
    coordinator = agreement.terms.coordinator
    term = agreement.terms.party(coordinator)
    assert term is not None  # the schema guarantees exactly one coordinator
    key = parse_public_key_line(term.key, f"{agreement.path}: parties.{coordinator}.key")
    if len(nonce) != NONCE_BYTES or not verify_signature(
        key, signature, challenge_payload(nonce, party)
    ):
        _refuse(
            f"the server's answer to the challenge does not verify under {coordinator}'s "
            f"key in {agreement.label} (not the coordinator, or not for this nonce and node)"
        )


# --- replays ----------------------------------------------------------------------------------


class ReplayGuard:
    """Per peer, accepts only message ids that grow: a repeated or older id is a replay.

    One guard per session (ids restart with a new connection, which the handshake and the
    challenge authenticate afresh). Thread-safe: gRPC serves streams on a thread pool.
    """

    def __init__(self) -> None:
        self._last: dict[str, int] = {}
        self._lock = threading.Lock()

    def accept(self, peer: str, message_id: int) -> None:
        """Record ``message_id`` from ``peer``; PeerRefusedError if it is not greater than
        the last one accepted from ``peer``."""
        with self._lock:
            last = self._last.get(peer)
            if last is not None and message_id <= last:
                _refuse(
                    f"replayed message from {peer!r}: id {message_id} is not greater than "
                    f"the last accepted ({last})"
                )
            self._last[peer] = message_id

    def last(self, peer: str) -> int | None:
        """The last id accepted from ``peer`` (None before the first)."""
        with self._lock:
            return self._last.get(peer)
