"""Party identities and the roster: file modes, no overwrite, signatures, strict parsing."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from accord.errors import InputError, RefusedError
from accord.governance import (
    PartyIdentity,
    Roster,
    check_party_name,
    fingerprint,
    generate_identity,
    load_identity,
    load_roster,
    node_identity,
    parse_public_key_line,
    public_key_line,
    read_public_key_file,
    roster_entry,
    verify_signature,
    write_identity_files,
    write_node_identity,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_roster(home: Path, text: str, file_mode: int = 0o644) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "roster.toml"
    path.write_text(text)
    os.chmod(path, file_mode)
    return path


def roster_text(**parties: PartyIdentity) -> str:
    lines = [roster_entry(name, identity.public_key) for name, identity in parties.items()]
    return "[parties]\n" + "\n".join(lines) + "\n"


# --- names, key lines, fingerprints -----------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "party-1", "St.Mary_2", "x" * 64])
def test_party_names_accepted(name: str) -> None:
    assert check_party_name(name) == name


@pytest.mark.parametrize("name", ["", "x" * 65, "a b", "a/b", "é", "..", ".", "a:b"])
def test_bad_party_names_refused(name: str) -> None:
    with pytest.raises(InputError, match="not a party name"):
        check_party_name(name)


def test_public_key_line_round_trip_and_fingerprint() -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes(32)).public_key()
    line = public_key_line(key)
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert line == "ed25519:" + base64.b64encode(raw).decode()
    assert parse_public_key_line(f"  {line}\n").public_bytes_raw() == raw
    # The all-zero seed's public key is 3b6a27bc...; SHA-256 of it starts 139e3940e64b5491.
    assert raw.hex().startswith("3b6a27bcceb6a42d")
    assert fingerprint(key) == "139e 3940 e64b 5491"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("ssh-ed25519 AAAA", "not a public key line"),
        ("ed25519:not base64!", "not base64"),
        ("ed25519:" + base64.b64encode(bytes(31)).decode(), "32 bytes, this one 31"),
        # The same 32 bytes, but the last base64 digit carries non-zero unused bits.
        ("ed25519:" + base64.b64encode(bytes(32)).decode()[:-2] + "B=", "canonical"),
    ],
)
def test_bad_public_key_lines_refused(text: str, needle: str) -> None:
    with pytest.raises(InputError, match=needle):
        parse_public_key_line(text, where="x.pub")


# --- key files --------------------------------------------------------------------------------


def test_identity_files_have_owner_only_key_and_round_trip(tmp_path: Path) -> None:
    identity = generate_identity("alice")
    key_path, pub_path = write_identity_files(identity, tmp_path)
    assert (key_path.name, pub_path.name) == ("alice.key", "alice.pub")
    assert mode(key_path) == 0o600
    assert mode(pub_path) == 0o644
    assert key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert pub_path.read_text() == identity.public_key_line + "\n"
    loaded = load_identity(key_path)
    assert loaded.name == "alice"
    assert loaded.public_key_line == identity.public_key_line
    assert read_public_key_file(pub_path) == identity.public_key
    assert "PRIVATE" not in repr(loaded) and identity.fingerprint in repr(loaded)


def test_sign_verify_round_trip() -> None:
    alice, bob = generate_identity("alice"), generate_identity("bob")
    signature = alice.sign(b"agreement v1")
    assert len(signature) == 64
    assert verify_signature(alice.public_key, signature, b"agreement v1")
    assert not verify_signature(alice.public_key, signature, b"agreement v2")
    assert not verify_signature(bob.public_key, signature, b"agreement v1")


def test_existing_files_are_never_overwritten(tmp_path: Path) -> None:
    first = generate_identity("alice")
    key_path, _ = write_identity_files(first, tmp_path)
    before = key_path.read_bytes()
    with pytest.raises(InputError, match="already exists"):
        write_identity_files(generate_identity("alice"), tmp_path)
    assert key_path.read_bytes() == before
    # Only the .pub exists: nothing is written either.
    (tmp_path / "bob.pub").write_text("keep me\n")
    with pytest.raises(InputError, match=r"bob\.pub already exists"):
        write_identity_files(generate_identity("bob"), tmp_path)
    assert not (tmp_path / "bob.key").exists()
    assert (tmp_path / "bob.pub").read_text() == "keep me\n"


def test_a_link_in_place_of_the_key_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    (tmp_path / "alice.key").symlink_to(target)
    with pytest.raises(InputError, match="already exists"):
        write_identity_files(generate_identity("alice"), tmp_path)
    assert not target.exists()


def test_missing_directory_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such directory"):
        write_identity_files(generate_identity("alice"), tmp_path / "absent")


def test_key_readable_by_others_refused(tmp_path: Path) -> None:
    key_path, _ = write_identity_files(generate_identity("alice"), tmp_path)
    os.chmod(key_path, 0o640)
    with pytest.raises(InputError, match=r"accessible to others \(mode 640\); run `chmod 600"):
        load_identity(key_path)


def test_encrypted_foreign_and_garbage_keys_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    def put(name: str, data: bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(data)
        os.chmod(path, 0o600)
        return path

    pkcs8 = serialization.PrivateFormat.PKCS8
    encrypted = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, pkcs8, serialization.BestAvailableEncryption(b"pw")
    )
    x25519 = X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, pkcs8, serialization.NoEncryption()
    )
    with pytest.raises(InputError, match="encrypted with a passphrase"):
        load_identity(put("a.key", encrypted))
    with pytest.raises(InputError, match="not an Ed25519 key"):
        load_identity(put("b.key", x25519))
    with pytest.raises(InputError, match="not a PEM private key"):
        load_identity(put("c.key", b"hello"))
    with pytest.raises(InputError, match="no such key file"):
        load_identity(tmp_path / "d.key")


# --- a node's own identity --------------------------------------------------------------------


def test_node_identity_written_into_secrets_and_loaded(tmp_path: Path) -> None:
    home = tmp_path / "homes" / "alice"
    identity = generate_identity("alice")
    path = write_node_identity(identity, home)
    assert path == home / "secrets" / "identity.key"
    assert mode(path) == 0o600 and mode(path.parent) == 0o700 and mode(home) == 0o700
    assert sorted(p.name for p in home.rglob("*")) == ["identity.key", "secrets"]
    assert node_identity(home, "alice").public_key_line == identity.public_key_line
    with pytest.raises(InputError, match="already exists"):
        write_node_identity(generate_identity("alice"), home)
    assert node_identity(home, "alice").public_key_line == identity.public_key_line


def test_node_identity_respects_the_home_owner(tmp_path: Path) -> None:
    home = tmp_path / "alice"
    home.mkdir()
    (home / "node.toml").write_text('party = "alice"\n')
    with pytest.raises(InputError, match="belongs to party 'alice', not 'bob'"):
        write_node_identity(generate_identity("bob"), home)
    with pytest.raises(InputError, match="no identity key; create one with `accord keys new"):
        node_identity(home, "alice")


# --- the roster -------------------------------------------------------------------------------


def test_roster_maps_parties_to_keys_and_verifies(tmp_path: Path) -> None:
    alice, bob = generate_identity("alice"), generate_identity("bob")
    write_roster(tmp_path, roster_text(alice=alice, **{"st.mary-2": bob}))
    roster = load_roster(tmp_path)
    assert isinstance(roster, Roster)
    assert list(roster) == ["alice", "st.mary-2"] and len(roster) == 2
    assert roster["alice"] == alice.public_key
    assert roster.fingerprint("st.mary-2") == bob.fingerprint
    assert roster.party_of(bob.public_key) == "st.mary-2"
    assert roster.party_of(generate_identity("eve").public_key) is None
    roster.verify("alice", alice.sign(b"m"), b"m")
    with pytest.raises(RefusedError, match="not party 'alice'"):
        roster.verify("alice", bob.sign(b"m"), b"m")
    with pytest.raises(RefusedError, match="not in the roster"):
        roster.verify("eve", alice.sign(b"m"), b"m")


def test_roster_own_entry_must_match_own_key(tmp_path: Path) -> None:
    alice, bob = generate_identity("alice"), generate_identity("bob")
    (tmp_path / "node.toml").write_text('party = "alice"\n')
    write_node_identity(alice, tmp_path)
    write_roster(tmp_path, roster_text(alice=alice, bob=bob))
    assert load_roster(tmp_path)["alice"] == alice.public_key
    write_roster(tmp_path, roster_text(alice=generate_identity("alice"), bob=bob))
    with pytest.raises(InputError, match=r"parties\.alice: this is not the key of this node"):
        load_roster(tmp_path)


ALICE = public_key_line(Ed25519PrivateKey.from_private_bytes(bytes(32)).public_key())
BOB = public_key_line(Ed25519PrivateKey.from_private_bytes(bytes([1]) * 32).public_key())


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (f'[parties]\nalice = "{ALICE}"\n[agreement]\nid = 1\n', "agreement: unknown key"),
        (f'version = 2\n[parties]\nalice = "{ALICE}"\n', "version: unknown key"),
        ("[parties]\n", r"\[parties\] lists no party"),
        ('[party]\nalice = "x"\n', "party: unknown key; did you mean 'parties'"),
        (f'[parties]\nalice = "{ALICE}"\nalice = "{BOB}"\n', "not valid TOML"),
        (f'[parties]\nalice = "{ALICE}"\nbob = "{ALICE}"\n', "have the same public key"),
        (f'[parties]\nalice = "{ALICE}"\nAlice = "{BOB}"\n', "differ only in case"),
        ('[parties]\nalice = "ed25519:AAAA"\n', r"parties\.alice: an Ed25519 public key has 32"),
        (f'[parties]\n"a b" = "{ALICE}"\n', "not a party name"),
        ("[parties]\nalice = 3\n", r"parties\.alice: Input should be a valid string"),
        ("[parties\n", "not valid TOML"),
        (
            f'[parties]\nst.mary = "{ALICE}"\n',
            r'parties\.st: .*quote a name with a dot: "st\.mary"',
        ),
    ],
)
def test_bad_rosters_refused(tmp_path: Path, text: str, needle: str) -> None:
    write_roster(tmp_path, text)
    with pytest.raises(InputError, match=needle) as info:
        load_roster(tmp_path)
    assert str(tmp_path / "roster.toml") in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_or_writable_roster_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no roster in this node home"):
        load_roster(tmp_path)
    write_roster(tmp_path, f'[parties]\nalice = "{ALICE}"\n', file_mode=0o664)
    with pytest.raises(InputError, match=r"others may write the roster \(mode 664\)"):
        load_roster(tmp_path)
