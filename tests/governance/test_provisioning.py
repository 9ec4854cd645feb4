"""Provisioning: requests, the federation CA, kits, and every refusal above TLS.

Real X.509 through ``cryptography``, no mocks: each refusal is made the way an attacker or
a mistake would make it (another CA, a certificate issued for a stranger, a binding by the
wrong key, an old revocation list put back).
"""

from __future__ import annotations

import shutil
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from accord.errors import AgreementRefusedError, InputError, PeerRefusedError
from accord.governance.agreement import Agreement, load_agreement
from accord.governance.federation_ca import issue_certificate, load_ca_key, read_ca
from accord.governance.identity import generate_identity, verify_signature
from accord.governance.provisioning import (
    BINDING_OID,
    Kit,
    ReplayGuard,
    binding_payload,
    check_challenge,
    check_peer_certificate,
    install_crl,
    kit_agreement,
    load_kit,
    new_nonce,
    provision,
    read_tls_key,
    revoke,
    sign_challenge,
    tls_request,
)
from accord.governance.tls_binding import public_key_der, read_binding
from tests.agreement_kit import OWNERS, Federation, make_federation

ADDRESS = "localhost:50051"
PARTIES = ["coordinator", *OWNERS]


@dataclass
class Provisioned:
    fed: Federation
    requests: Path
    out: Path
    agreement: Agreement

    def kit(self, party: str) -> Kit:
        return load_kit(self.out / "kits" / party)

    def cert(self, party: str) -> bytes:
        return (self.out / "kits" / party / "cert.pem").read_bytes()


def make_requests(fed: Federation, folder: Path) -> Path:
    """A request per party in ``folder/requests``; TLS keys in ``folder/keys``."""
    for name, identity in fed.identities.items():
        addresses = ["localhost", "127.0.0.1"] if name == "coordinator" else []
        tls_request(
            identity, folder / "keys" / f"{name}.tls.key", folder / "requests" / f"{name}.csr",
            addresses,
        )  # fmt: skip
    return folder / "requests"


def provisioned(root: Path) -> Provisioned:
    fed = make_federation(root)
    requests = make_requests(fed, root)
    provision(fed.agreement, requests, root / "out", ADDRESS)
    return Provisioned(fed, requests, root / "out", load_agreement(fed.agreement))


@pytest.fixture
def prov(tmp_path: Path) -> Provisioned:
    return provisioned(tmp_path)


def ca_issue(prov: Provisioned, csr_path: Path, days: int = 30) -> bytes:
    """A certificate for ``csr_path`` signed with the federation's own CA key, skipping every
    check provision makes: what a careless or malicious operator could issue."""
    ca_dir = prov.out / "ca"
    csr = x509.load_pem_x509_csr(csr_path.read_bytes())
    now = datetime.now(UTC)
    cert = issue_certificate(
        load_ca_key(ca_dir / "ca.key"), read_ca(ca_dir), csr, now, now + timedelta(days=days)
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def refused(match: str) -> AbstractContextManager[pytest.ExceptionInfo[PeerRefusedError]]:
    return pytest.raises(PeerRefusedError, match=match)


# --- the full path -------------------------------------------------------------------------


def test_request_makes_a_private_tls_key_and_a_bound_request(tmp_path: Path) -> None:
    identity = generate_identity("party-1")
    key, out = tmp_path / "secrets" / "tls.key", tmp_path / "party-1.csr"
    tls_request(identity, key, out, ["node1.example.org", "10.0.0.7"])
    assert key.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "secrets").stat().st_mode & 0o777 == 0o700
    assert b"PRIVATE KEY" in key.read_bytes() and b"PRIVATE KEY" not in out.read_bytes()
    csr = x509.load_pem_x509_csr(out.read_bytes())
    assert csr.is_signature_valid
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["party-1", "node1.example.org"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.7"]
    assert not csr.extensions.get_extension_for_oid(BINDING_OID).critical
    tls_public = csr.public_key()
    assert (
        isinstance(tls_public, ec.EllipticCurvePublicKey) and tls_public.curve.name == "secp256r1"
    )
    signature = read_binding(csr.extensions)
    assert signature is not None
    payload = binding_payload("party-1", public_key_der(tls_public))
    assert verify_signature(identity.public_key, signature, payload)
    # Never over an existing key, and nothing left behind by a refused attempt.
    with pytest.raises(InputError, match="never overwrites a key file"):
        tls_request(identity, key, tmp_path / "again.csr")
    assert not (tmp_path / "again.csr").exists()
    with pytest.raises(InputError, match="not an IP address or a DNS name"):
        tls_request(identity, tmp_path / "k2", tmp_path / "x.csr", ["*.example.org"])
    assert not (tmp_path / "k2").exists()


def test_binding_payload_is_domain_separated() -> None:
    assert binding_payload("a", b"bc") != binding_payload("ab", b"c")
    assert len(binding_payload("a", b"b")) == 32


def test_provision_writes_the_ca_and_a_kit_per_party_with_no_private_key(prov: Provisioned) -> None:
    ca_dir = prov.out / "ca"
    assert (ca_dir / "ca.key").stat().st_mode & 0o777 == 0o600
    assert ca_dir.stat().st_mode & 0o777 == 0o700
    ca = read_ca(ca_dir)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0
    assert sorted(p.name for p in (prov.out / "kits").iterdir()) == sorted(PARTIES)
    assert not list(prov.out.glob(".provision-*"))  # the staging folder is gone
    for party in PARTIES:
        folder = prov.out / "kits" / party
        for path in folder.iterdir():
            assert b"PRIVATE KEY" not in path.read_bytes(), path
        kit = prov.kit(party)
        assert kit.party == party and kit.coordinator_address == ADDRESS
        assert kit.role == ("coordinator" if party == "coordinator" else "data_owner")
        assert check_peer_certificate(kit.cert_pem, kit, prov.agreement) == party
        # Every party's certificate passes at every other party.
        assert check_peer_certificate(prov.cert("party-1"), kit, prov.agreement) == "party-1"
    cert = prov.kit("coordinator").certificate
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {x509.OID_CLIENT_AUTH, x509.OID_SERVER_AUTH}
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert read_binding(cert.extensions) is not None


def test_a_node_takes_its_roster_only_from_an_agreement_with_its_own_key(
    prov: Provisioned,
) -> None:
    kit = prov.kit("party-1")
    own = prov.fed.identities["party-1"].public_key
    assert kit_agreement(kit, own).digest == prov.agreement.digest
    with pytest.raises(AgreementRefusedError, match="another key for 'party-1'"):
        kit_agreement(kit, generate_identity("party-1").public_key)


def test_read_tls_key_checks_mode_and_that_it_is_the_certificates(prov: Provisioned) -> None:
    kit = prov.kit("party-1")
    keys = prov.requests.parent / "keys"
    assert b"PRIVATE KEY" in read_tls_key(keys / "party-1.tls.key", kit)
    with pytest.raises(InputError, match="not the key of the certificate"):
        read_tls_key(keys / "party-2.tls.key", kit)


# --- refusals at the receiving side ---------------------------------------------------------


def test_no_certificate_is_refused_and_logged(
    prov: Provisioned, caplog: pytest.LogCaptureFixture
) -> None:
    with refused("presented no certificate"):
        check_peer_certificate(b"", prov.kit("coordinator"), prov.agreement)
    assert "refused a peer: the peer presented no certificate" in caplog.text


def test_a_certificate_from_another_ca_is_refused(prov: Provisioned, tmp_path: Path) -> None:
    # The same agreement and the same requests, provisioned again: another CA.
    provision(prov.fed.agreement, prov.requests, tmp_path / "other", ADDRESS)
    foreign = (tmp_path / "other" / "kits" / "party-1" / "cert.pem").read_bytes()
    with refused("not issued by this federation's CA"):
        check_peer_certificate(foreign, prov.kit("coordinator"), prov.agreement)
    second = provisioned(tmp_path / "second-federation")
    with refused("another CA"):
        check_peer_certificate(second.cert("party-1"), prov.kit("coordinator"), prov.agreement)


def test_an_expired_or_not_yet_valid_certificate_is_refused(
    prov: Provisioned, tmp_path: Path
) -> None:
    kit, cert = prov.kit("coordinator"), prov.cert("party-1")
    now = datetime.now(UTC)
    with refused("expired at"):
        check_peer_certificate(cert, kit, prov.agreement, now=now + timedelta(days=366))
    with refused("not valid before"):
        check_peer_certificate(cert, kit, prov.agreement, now=now - timedelta(days=1))
    # Issued in the past for one day: expired now.
    fed = make_federation(tmp_path / "old")
    terms = fed.terms()
    terms["agreement"]["valid_from"] = now.replace(microsecond=0) - timedelta(days=10)
    fed.write_terms(terms)
    requests = make_requests(fed, tmp_path / "old")
    provision(fed.agreement, requests, tmp_path / "old" / "out", ADDRESS, valid_days=1,
              now=now - timedelta(days=5))  # fmt: skip
    old_kit = load_kit(tmp_path / "old" / "out" / "kits" / "coordinator")
    with refused("expired"):
        check_peer_certificate(old_kit.cert_pem, old_kit, load_agreement(fed.agreement))


def test_a_revoked_certificate_is_refused_and_an_old_list_cannot_unrevoke(
    prov: Provisioned,
) -> None:
    kit = prov.kit("coordinator")  # loaded before the revocation: it re-reads crl.pem
    old_crl = kit.crl_pem
    revoke(prov.out / "ca", "party-2", prov.out / "kits")
    with refused("revoked at"):
        check_peer_certificate(prov.cert("party-2"), kit, prov.agreement)
    assert check_peer_certificate(prov.cert("party-1"), kit, prov.agreement) == "party-1"
    revoke(prov.out / "ca", "party-2", prov.out / "kits")  # twice: one entry
    fresh = prov.kit("coordinator")
    assert len(list(fresh.crl)) == 1
    # An old list put back, or offered, does not un-revoke.
    (fresh.folder / "crl.pem").write_bytes(old_crl)
    with refused("revoked"):
        check_peer_certificate(prov.cert("party-2"), fresh, prov.agreement)
    with pytest.raises(InputError, match="older than the kit's"):
        install_crl(fresh, old_crl)


def test_a_revocation_list_not_signed_by_the_ca_fails_closed(
    prov: Provisioned, tmp_path: Path
) -> None:
    other = provisioned(tmp_path / "other")
    kit = prov.kit("coordinator")
    shutil.copy(other.out / "ca" / "crl.pem", kit.folder / "crl.pem")
    with refused("cannot check revocation"):
        check_peer_certificate(prov.cert("party-1"), kit, prov.agreement)


def test_a_binding_by_the_wrong_identity_key_is_refused(prov: Provisioned, tmp_path: Path) -> None:
    # The CA key issues a certificate named party-1 whose binding is by a stranger's key.
    stranger = generate_identity("party-1")
    csr = tls_request(stranger, tmp_path / "s.key", tmp_path / "s.csr")
    with refused("identity binding of 'party-1' does not verify"):
        check_peer_certificate(ca_issue(prov, csr), prov.kit("coordinator"), prov.agreement)


def test_a_certificate_for_another_tls_key_than_the_bound_one_is_refused(
    prov: Provisioned,
) -> None:
    genuine = prov.kit("party-1").certificate
    binding = genuine.extensions.get_extension_for_oid(BINDING_OID).value

    def forge(with_binding: bool) -> bytes:
        # party-1's name and binding (or none) on someone else's TLS key, signed by the CA.
        builder = (
            x509.CertificateBuilder()
            .subject_name(genuine.subject)
            .issuer_name(genuine.issuer)
            .public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(genuine.not_valid_before_utc)
            .not_valid_after(genuine.not_valid_after_utc)
        )
        if with_binding:
            builder = builder.add_extension(binding, critical=False)
        cert = builder.sign(load_ca_key(prov.out / "ca" / "ca.key"), hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM)

    with refused("identity binding of 'party-1' does not verify"):
        check_peer_certificate(forge(True), prov.kit("coordinator"), prov.agreement)
    with refused("carries no identity binding"):
        check_peer_certificate(forge(False), prov.kit("coordinator"), prov.agreement)


def test_a_name_not_in_the_agreement_is_refused(prov: Provisioned, tmp_path: Path) -> None:
    mallory = generate_identity("mallory")
    csr = tls_request(mallory, tmp_path / "m.key", tmp_path / "m.csr")
    with refused("'mallory' is not a party of agreement test-agreement v1"):
        check_peer_certificate(ca_issue(prov, csr), prov.kit("coordinator"), prov.agreement)


def test_the_coordinators_challenge(prov: Provisioned) -> None:
    coordinator = prov.fed.identities["coordinator"]
    nonce = new_nonce()
    signature = sign_challenge(coordinator, nonce, "party-1")
    check_challenge(prov.agreement, nonce, "party-1", signature)
    with refused("does not verify under coordinator's key"):
        wrong = sign_challenge(prov.fed.identities["party-2"], nonce, "party-1")
        check_challenge(prov.agreement, nonce, "party-1", wrong)
    with refused("does not verify"):
        check_challenge(prov.agreement, new_nonce(), "party-1", signature)
    with refused("does not verify"):  # relayed for another node
        check_challenge(prov.agreement, nonce, "party-2", signature)
    with refused("not 32"):
        sign_challenge(coordinator, b"short", "party-1")


def test_replay_guard_refuses_repeated_and_older_ids() -> None:
    guard = ReplayGuard()
    guard.accept("party-1", 1)
    guard.accept("party-1", 2)
    guard.accept("party-2", 1)  # per peer
    with refused("replayed message from 'party-1': id 2"):
        guard.accept("party-1", 2)
    with refused("replayed"):
        guard.accept("party-1", 1)
    guard.accept("party-1", 7)
    assert guard.last("party-1") == 7 and guard.last("party-3") is None


# --- refusals at provisioning ---------------------------------------------------------------


def test_provision_refuses_an_agreement_not_in_force(tmp_path: Path) -> None:
    fed = make_federation(tmp_path)
    requests = make_requests(fed, tmp_path)
    fed.write_terms(fed.terms(), sign=False)
    with pytest.raises(AgreementRefusedError, match="not signed by"):
        provision(fed.agreement, requests, tmp_path / "out", ADDRESS)
    assert not (tmp_path / "out" / "ca").exists()


def test_provision_refuses_a_missing_request(tmp_path: Path) -> None:
    fed = make_federation(tmp_path)
    requests = make_requests(fed, tmp_path)
    (requests / "party-3.csr").unlink()
    with pytest.raises(InputError, match="no request from party-3"):
        provision(fed.agreement, requests, tmp_path / "out", ADDRESS)
    assert not (tmp_path / "out" / "ca").exists()


def test_provision_refuses_a_request_named_for_a_stranger(tmp_path: Path) -> None:
    fed = make_federation(tmp_path)
    requests = make_requests(fed, tmp_path)
    tls_request(generate_identity("mallory"), tmp_path / "m.key", requests / "mallory.csr")
    with pytest.raises(PeerRefusedError, match=r"mallory\.csr: 'mallory' is not a party"):
        provision(fed.agreement, requests, tmp_path / "out", ADDRESS)


def test_provision_refuses_a_binding_by_another_key_and_writes_nothing(tmp_path: Path) -> None:
    fed = make_federation(tmp_path)
    requests = make_requests(fed, tmp_path)
    (requests / "party-1.csr").unlink()
    tls_request(generate_identity("party-1"), tmp_path / "s.key", requests / "party-1.csr")
    with pytest.raises(PeerRefusedError, match=r"party-1\.csr: the identity binding does not"):
        provision(fed.agreement, requests, tmp_path / "out", ADDRESS)
    assert not (tmp_path / "out" / "ca").exists() and not (tmp_path / "out" / "kits").exists()


def test_provision_never_overwrites_a_ca(prov: Provisioned) -> None:
    before = (prov.out / "ca" / "ca.key").read_bytes()
    with pytest.raises(InputError, match="never overwrites a federation CA"):
        provision(prov.fed.agreement, prov.requests, prov.out, ADDRESS)
    assert (prov.out / "ca" / "ca.key").read_bytes() == before


def test_provision_checks_who_may_answer_at_the_coordinators_address(tmp_path: Path) -> None:
    fed = make_federation(tmp_path)
    requests = make_requests(fed, tmp_path)
    with pytest.raises(InputError, match=r"does not name coordinator\.example\.org"):
        provision(fed.agreement, requests, tmp_path / "out", "coordinator.example.org:443")
    (requests / "party-2.csr").unlink()
    tls_request(fed.identities["party-2"], tmp_path / "p2.key", requests / "party-2.csr",
                ["localhost"])  # fmt: skip
    with pytest.raises(PeerRefusedError, match="asks for the coordinator's address localhost"):
        provision(fed.agreement, requests, tmp_path / "out", ADDRESS)
    (requests / "party-2.csr").unlink()
    tls_request(fed.identities["party-2"], tmp_path / "p2b.key", requests / "party-2.csr",
                ["127.0.0.1"])  # fmt: skip
    with pytest.raises(PeerRefusedError, match=r"127\.0\.0\.1 is also in coordinator\.csr"):
        provision(fed.agreement, requests, tmp_path / "out", ADDRESS)
    assert not (tmp_path / "out" / "ca").exists()
    with pytest.raises(InputError, match="not an address HOST:PORT"):
        provision(fed.agreement, requests, tmp_path / "out", "localhost")


# --- kits ---------------------------------------------------------------------------------------


def test_load_kit_refuses_a_private_key_a_missing_file_and_an_unknown_key(
    prov: Provisioned,
) -> None:
    folder = prov.out / "kits" / "party-1"
    shutil.copy(prov.requests.parent / "keys" / "party-1.tls.key", folder / "tls.key")
    with pytest.raises(InputError, match="contains a private key"):
        load_kit(folder)
    (folder / "tls.key").unlink()
    (folder / "crl.pem").unlink()
    with pytest.raises(InputError, match=r"the kit has no crl\.pem"):
        load_kit(folder)
    folder = prov.out / "kits" / "party-2"
    with (folder / "kit.toml").open("a") as handle:
        handle.write('role = "coordinator"\n')
    with pytest.raises(InputError, match="role: unknown key"):
        load_kit(folder)
    shutil.copy(prov.out / "kits" / "party-3" / "cert.pem", prov.out / "kits" / "party-4")
    with pytest.raises(InputError, match="not 'party-4'"):
        load_kit(prov.out / "kits" / "party-4")
