"""``accord keys``: new key files with owner-only modes, show, and one-line refusals."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from accord.governance import load_identity, node_identity, read_public_key_file
from tests.conftest import Invoke, Result


def one_line_error(result: Result, code: int = 2) -> str:
    assert result.code == code, (result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("accord: error: ") and "Traceback" not in result.err
    return lines[0]


def test_new_writes_key_and_pub_and_prints_the_public_line(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke("keys", "new", "st.mary", "--out", str(tmp_path))
    assert result.code == 0, result.err
    key_path, pub_path = tmp_path / "st.mary.key", tmp_path / "st.mary.pub"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    identity = load_identity(key_path)
    lines = result.out.splitlines()
    assert lines[0] == identity.public_key_line
    assert lines[1] == f"fingerprint: {identity.fingerprint}"
    assert str(key_path) in lines[2] and str(pub_path) in lines[2]
    assert lines[3] == f'roster line (under [parties]): "st.mary" = "{identity.public_key_line}"'
    assert read_public_key_file(pub_path) == identity.public_key

    shown = invoke("keys", "show", str(key_path))
    assert shown.code == 0 and shown.out.splitlines() == lines[:2]
    assert invoke("keys", "show", str(pub_path)).out.splitlines() == lines[:2]


def test_new_defaults_to_the_current_folder(
    invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert invoke("keys", "new", "alice").code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alice.key", "alice.pub"]


def test_new_refuses_to_overwrite(invoke: Invoke, tmp_path: Path) -> None:
    assert invoke("keys", "new", "alice", "--out", str(tmp_path)).code == 0
    before = (tmp_path / "alice.key").read_bytes()
    line = one_line_error(invoke("keys", "new", "alice", "--out", str(tmp_path)))
    assert "alice.key already exists; Accord never overwrites a key file" in line
    assert (tmp_path / "alice.key").read_bytes() == before


def test_new_into_a_node_home(invoke: Invoke, tmp_path: Path) -> None:
    home = tmp_path / "alice-home"
    result = invoke("keys", "new", "alice", "--node-home", str(home))
    assert result.code == 0, result.err
    key_path = home / "secrets" / "identity.key"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_path.parent.stat().st_mode) == 0o700
    assert sorted(p.name for p in home.rglob("*")) == ["identity.key", "node.toml", "secrets"]
    # The home now belongs to alice (its node.toml says so, owner-only like the home).
    assert (home / "node.toml").read_text() == 'party = "alice"\n'
    assert result.out.splitlines()[0] == node_identity(home, "alice").public_key_line
    again = one_line_error(invoke("keys", "new", "alice", "--node-home", str(home)))
    assert "identity.key already exists" in again


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["keys", "new", "bad name", "--out", "{tmp}"], "'bad name' is not a party name"),
        (["keys", "new", "x" * 65, "--out", "{tmp}"], "is not a party name"),
        (["keys", "new", "alice", "--out", "{tmp}/absent"], "absent: no such directory"),
        (["keys", "new", "a", "--out", "{tmp}", "--node-home", "{tmp}/h"], "not both"),
        (["keys", "show", "{tmp}/absent.pub"], "absent.pub: no such file"),
        (["keys", "new"], "Missing argument 'NAME'"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    invoke: Invoke, tmp_path: Path, args: list[str], needle: str
) -> None:
    line = one_line_error(invoke(*(a.replace("{tmp}", str(tmp_path)) for a in args)))
    assert needle in line
    assert not any(tmp_path.rglob("*.key"))


def test_node_home_of_another_party_refused(invoke: Invoke, tmp_path: Path) -> None:
    (tmp_path / "node.toml").write_text('party = "bob"\n')
    line = one_line_error(invoke("keys", "new", "alice", "--node-home", str(tmp_path)))
    assert "belongs to party 'bob', not 'alice'" in line
    assert not (tmp_path / "secrets").exists()


def test_show_refuses_bad_files(invoke: Invoke, tmp_path: Path) -> None:
    assert invoke("keys", "new", "alice", "--out", str(tmp_path)).code == 0
    key_path = tmp_path / "alice.key"
    os.chmod(key_path, 0o644)
    assert "run `chmod 600" in one_line_error(invoke("keys", "show", str(key_path)))
    bad = tmp_path / "bad.pub"
    bad.write_text("ed25519:AAAA\n")
    assert "32 bytes" in one_line_error(invoke("keys", "show", str(bad)))


def test_roster_lists_fingerprints_and_refuses_bad_rosters(invoke: Invoke, tmp_path: Path) -> None:
    home = tmp_path / "home"
    for name in ("alice", "st.mary"):
        assert invoke("keys", "new", name, "--out", str(tmp_path)).code == 0
    alice = load_identity(tmp_path / "alice.key")
    mary = load_identity(tmp_path / "st.mary.key")
    home.mkdir()
    roster = home / "roster.toml"
    roster.write_text(
        f'[parties]\nalice = "{alice.public_key_line}"\n"st.mary" = "{mary.public_key_line}"\n'
    )
    result = invoke("keys", "roster", "--node-home", str(home))
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        f"alice    {alice.fingerprint}",
        f"st.mary  {mary.fingerprint}",
    ]
    roster.write_text(f'[parties]\nalice = "{alice.public_key_line}"\nextra = 1\n')
    assert "parties.extra" in one_line_error(invoke("keys", "roster", "--node-home", str(home)))
    missing = one_line_error(invoke("keys", "roster", "--node-home", str(tmp_path / "nope")))
    assert "node home not found" in missing
