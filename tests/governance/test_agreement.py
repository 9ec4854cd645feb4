"""The agreement file: schema, canonical form, detached signatures, revocations, the CLI."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import rfc8785

from accord.errors import AgreementFileError, AgreementRefusedError, AgreementRevokedError
from accord.governance.agreement import (
    canonical_form,
    load_agreement,
    make_revocation,
    record_revocation,
    sign_agreement,
)
from accord.governance.identity import generate_identity
from tests.agreement_kit import Federation, make_federation
from tests.conftest import Invoke


@pytest.fixture
def federation(tmp_path: Path) -> Federation:
    return make_federation(tmp_path)


def test_every_party_signed_so_the_agreement_is_in_force(federation: Federation) -> None:
    status = load_agreement(federation.agreement).check_in_force()
    assert set(status.signed) == set(federation.identities)
    assert status.unsigned == () and status.problems == () and status.revocations == ()


def test_the_canonical_form_is_rfc8785_of_the_terms_as_written() -> None:
    raw = {"b": [1, "é"], "a": {"when": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)}, "x": 2.5}
    assert canonical_form(raw) == (
        b'{"a":{"when":"2026-01-02T03:04:05+00:00"},"b":[1,"\xc3\xa9"],"x":2.5}'
    )
    # No schema default is filled in: the digest covers only what was written.
    assert canonical_form({"a": 1}) == rfc8785.dumps({"a": 1})


def test_a_signature_is_ed25519_over_sha256_of_the_canonical_form(
    federation: Federation,
) -> None:
    agreement = load_agreement(federation.agreement)
    assert agreement.digest == hashlib.sha256(canonical_form(agreement.raw)).hexdigest()
    entry = next(s for s in agreement.signature_file.signatures if s.party == "party-1")
    import base64

    federation.identities["party-1"].public_key.verify(
        base64.b64decode(entry.signature), bytes.fromhex(agreement.digest)
    )
    assert entry.key_id == federation.identities["party-1"].fingerprint


def test_a_comment_or_whitespace_edit_keeps_the_signatures(federation: Federation) -> None:
    text = federation.agreement.read_text()
    federation.agreement.write_text("# reviewed by the DPO\n\n" + text.replace(" = ", "  =  "))
    load_agreement(federation.agreement).check_in_force()


def test_one_flipped_byte_anywhere_fails_parsing_or_voids_the_signatures(
    federation: Federation,
) -> None:
    original = federation.agreement.read_bytes()
    digest = load_agreement(federation.agreement).digest
    outcomes = {"parse": 0, "void": 0, "same terms": 0}
    for i in range(len(original)):
        flipped = bytearray(original)
        flipped[i] ^= 0x01
        federation.agreement.write_bytes(bytes(flipped))
        try:
            agreement = load_agreement(federation.agreement)
        except AgreementFileError:
            outcomes["parse"] += 1
            continue
        try:
            agreement.check_in_force()
        except AgreementRefusedError:
            outcomes["void"] += 1
            continue
        # Accepted only where the flip left the terms themselves unchanged.
        assert agreement.digest == digest, f"byte {i}: changed terms still in force"
        outcomes["same terms"] += 1
    assert outcomes["parse"] > 0 and outcomes["void"] > 0


def test_an_agreement_is_not_in_force_until_every_party_signed(federation: Federation) -> None:
    federation.write_terms(federation.terms(), sign=False)
    for name in ["party-1", "party-2", "party-3", "party-4"]:
        sign_agreement(load_agreement(federation.agreement), federation.identities[name])
    with pytest.raises(AgreementRefusedError, match="not signed by coordinator"):
        load_agreement(federation.agreement).check_in_force()


def test_a_signature_by_a_key_not_in_the_agreement_is_refused(federation: Federation) -> None:
    stranger = generate_identity("party-1")
    with pytest.raises(AgreementRefusedError, match="not the key of any party"):
        sign_agreement(load_agreement(federation.agreement), stranger)
    # Planted by hand under a party's name, it voids the agreement.
    sig = federation.agreement.with_suffix(".sig")
    text = sig.read_text()
    agreement = load_agreement(federation.agreement)
    forged = stranger.sign(bytes.fromhex(agreement.digest))
    import base64

    entry = next(s for s in agreement.signature_file.signatures if s.party == "party-1")
    sig.write_text(text.replace(entry.signature, base64.b64encode(forged).decode()))
    with pytest.raises(AgreementRefusedError, match=r"party-1.*does not verify"):
        load_agreement(federation.agreement).check_in_force()
    sig.write_text(text.replace(entry.key_id, stranger.fingerprint))
    with pytest.raises(AgreementRefusedError, match="by a key not in the agreement"):
        load_agreement(federation.agreement).check_in_force()


@pytest.mark.parametrize(
    ("start", "end", "match"),
    [(-30, -1, "expired"), (1, 30, "not valid before")],
)
def test_outside_its_window_the_agreement_is_not_in_force(
    federation: Federation, start: int, end: int, match: str
) -> None:
    terms = federation.terms()
    now = datetime.now(UTC).replace(microsecond=0)
    terms["agreement"]["valid_from"] = now + timedelta(days=start)
    terms["agreement"]["valid_until"] = now + timedelta(days=end)
    federation.write_terms(terms)
    with pytest.raises(AgreementRefusedError, match=match):
        load_agreement(federation.agreement).check_in_force()


def test_a_revocation_is_signed_and_takes_the_agreement_out_of_force(
    federation: Federation,
) -> None:
    agreement = load_agreement(federation.agreement)
    revocation = make_revocation(agreement, federation.identities["party-3"], "ethics")
    assert record_revocation(agreement, revocation)
    assert not record_revocation(load_agreement(federation.agreement), revocation)
    with pytest.raises(AgreementRevokedError, match=r"revoked by party-3.*ethics") as refused:
        load_agreement(federation.agreement).check_in_force()
    assert refused.value.revocation == revocation
    # A revocation edited in transit (another reason) does not verify.
    forged = revocation.model_copy(update={"reason": "no reason"})
    with pytest.raises(AgreementRefusedError, match="does not verify"):
        record_revocation(load_agreement(federation.agreement), forged)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda t: t["protections"].update(veto="party-1"), "protections.veto: unknown key"),
        (lambda t: t.update(jurisdiction="EU"), "jurisdiction: unknown key"),
        (lambda t: t["agreement"].update(valid_from=datetime(2026, 1, 1)), "UTC offset"),
        (lambda t: t["parties"].append(dict(t["parties"][1])), "listed twice"),
        (lambda t: t["outputs"]["metrics"].append("stranger"), "not parties"),
        (lambda t: t["code"].update(allowed="approved"), "needs code.task_hashes"),
    ],
)
def test_an_unknown_clause_or_a_bad_value_is_refused_with_exit_code_2(
    federation: Federation, edit: object, match: str
) -> None:
    terms = federation.terms()
    edit(terms)  # type: ignore[operator]
    with pytest.raises(AgreementFileError, match=match) as refused:
        federation.write_terms(terms, sign=False)
        load_agreement(federation.agreement)
    assert refused.value.exit_code == 2


def test_the_cli_inits_signs_verifies_shows_and_revokes(tmp_path: Path, invoke: Invoke) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    for name in ("coord", "a", "b"):
        assert invoke("keys", "new", name, "--out", str(keys)).code == 0
    agreement = tmp_path / "ag.toml"
    made = invoke(
        "agreement", "init", str(agreement), "--id", "cli-test", "--title", "CLI",
        "--purpose", "research", "--coordinator", f"coord={keys / 'coord.pub'}",
        "--owner", f"a={keys / 'a.pub'}", "--owner", f"b={keys / 'b.key'}",
    )  # fmt: skip
    assert made.code == 0, made.err
    assert invoke("agreement", "init", str(agreement), "--id", "x", "--title", "x",
                  "--purpose", "x", "--coordinator", "c=x", "--owner", "a=x").code == 2  # fmt: skip
    unsigned = invoke("agreement", "verify", str(agreement))
    assert unsigned.code == 3 and "not signed by coord, a, b" in unsigned.err
    for name in ("coord", "a", "b"):
        signed = invoke("agreement", "sign", str(agreement), "--key", str(keys / f"{name}.key"))
        assert signed.code == 0, signed.err
    verified = invoke("agreement", "verify", str(agreement))
    assert verified.code == 0 and "in force" in verified.out
    shown = invoke("agreement", "show", str(agreement))
    assert shown.code == 0
    assert "protections.min_parties" in shown.out and "CONTRACTUAL" in shown.out
    assert "In force now" in shown.out
    revoked = invoke("agreement", "revoke", str(agreement), "--key", str(keys / "a.key"),
                     "--reason", "withdrawn")  # fmt: skip
    assert revoked.code == 0, revoked.err
    after = invoke("agreement", "verify", str(agreement))
    assert after.code == 3 and "revoked by a" in after.err
    broken = agreement.read_text().replace('aggregation = "secagg"', 'aggregation = "secagg')
    agreement.write_text(broken)
    assert invoke("agreement", "verify", str(agreement)).code == 2
