"""``accord provision``: request, issue, show, revoke; one-line errors and refusals."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

from accord.governance.identity import generate_identity, write_identity_files
from accord.governance.provisioning import load_kit, tls_request
from tests.agreement_kit import OWNERS, make_federation
from tests.conftest import Invoke, Result

ADDRESS = "localhost:50051"


def one_line(result: Result, code: int, kind: str) -> str:
    assert result.code == code, (result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.err, result.err
    assert lines[0].startswith(f"accord: {kind}: ")
    return lines[0]


def requests_by_cli(invoke: Invoke, root: Path) -> Path:
    """Every party makes its request with the command: owners from their node homes, the
    coordinator from its .key file."""
    fed = make_federation(root)
    requests = root / "requests"
    keys = root / "keys"
    keys.mkdir()
    key_file, _ = write_identity_files(fed.identities["coordinator"], keys)
    result = invoke("provision", "request", "--key", str(key_file),
                    "--out", str(requests / "coordinator.csr"),
                    "--address", "localhost", "--address", "127.0.0.1")  # fmt: skip
    assert result.code == 0, result.err
    assert "stays here; never send it" in result.out
    assert stat.S_IMODE((requests / "coordinator.tls.key").stat().st_mode) == 0o600
    for owner in OWNERS:
        home = fed.homes / owner
        (home / "node.toml").write_text(f'party = "{owner}"\n')
        result = invoke("provision", "request", "--key", str(home),
                        "--out", str(requests / f"{owner}.csr"))  # fmt: skip
        assert result.code == 0, result.err
        assert (home / "secrets" / "tls.key").exists()
        assert str(home / "secrets" / "tls.key") in result.out
    return requests


def test_request_issue_show_revoke(invoke: Invoke, tmp_path: Path) -> None:
    requests = requests_by_cli(invoke, tmp_path)
    out = tmp_path / "federation"
    result = invoke("provision", str(tmp_path / "agreement.toml"), "--requests", str(requests),
                    "--out", str(out), "--coordinator-address", ADDRESS)  # fmt: skip
    assert result.code == 0, result.err
    assert "CA private key" in result.out and "it is in no kit" in result.out
    assert sorted(p.name for p in (out / "kits").iterdir()) == sorted(["coordinator", *OWNERS])

    shown = invoke("provision", "show", str(out / "kits" / "party-1"))
    assert shown.code == 0, shown.err
    assert "party: party-1 (data_owner)" in shown.out
    assert f"coordinator address: {ADDRESS}" in shown.out
    assert "revoked serials: none" in shown.out and "agreement: test-agreement v1" in shown.out
    assert "no private key in this kit" in shown.out

    revoked = invoke("provision", "revoke", "party-2", "--ca", str(out / "ca"),
                     "--kits", str(out / "kits"))  # fmt: skip
    assert revoked.code == 0, revoked.err
    serial = f"{load_kit(out / 'kits' / 'party-2').certificate.serial_number:x}"
    assert f"(serial {serial}) is revoked; 1 revoked in all" in revoked.out
    shown = invoke("provision", "show", str(out / "kits" / "party-1"))
    assert f"revoked serials: {serial}" in shown.out
    again = invoke("provision", "revoke", "party-2", "--ca", str(out / "ca"))
    assert again.code == 0 and "was already revoked" in again.out


def test_issue_subcommand_and_refusals(invoke: Invoke, tmp_path: Path) -> None:
    fed = make_federation(tmp_path)
    requests = tmp_path / "requests"
    for name, identity in fed.identities.items():
        addresses = ["localhost"] if name == "coordinator" else []
        tls_request(identity, tmp_path / f"{name}.tls.key", requests / f"{name}.csr", addresses)
    stranger = requests / "party-1.csr"
    shutil.move(stranger, tmp_path / "party-1.csr")
    tls_request(generate_identity("party-1"), tmp_path / "s.key", stranger)
    args = ["--requests", str(requests), "--out", str(tmp_path / "out"),
            "--coordinator-address", ADDRESS]  # fmt: skip
    line = one_line(invoke("provision", "issue", str(fed.agreement), *args), 3, "refused")
    assert "party-1.csr: the identity binding does not verify" in line
    shutil.move(tmp_path / "party-1.csr", stranger)
    assert invoke("provision", "issue", str(fed.agreement), *args).code == 0
    line = one_line(invoke("provision", "issue", str(fed.agreement), *args), 2, "error")
    assert "never overwrites a federation CA" in line


def test_bad_input_is_one_line_with_exit_2(invoke: Invoke, tmp_path: Path) -> None:
    key_file, _ = write_identity_files(generate_identity("alice"), tmp_path)
    request = ["provision", "request", "--key", str(key_file), "--out", str(tmp_path / "a.csr")]
    line = one_line(invoke(*request, "--address", "bad address!"), 2, "error")
    assert "not an IP address or a DNS name" in line
    line = one_line(invoke("provision", "show", str(tmp_path / "nowhere")), 2, "error")
    assert "no such kit folder" in line
    line = one_line(invoke("provision", "revoke", "alice", "--ca", str(tmp_path)), 2, "error")
    assert "no such file (is this the ca folder of accord provision?)" in line
    missing = tmp_path / "missing"
    line = one_line(invoke("provision", "issue", str(tmp_path / "agreement.toml"), "--requests",
                           str(missing), "--out", str(tmp_path / "out"),
                           "--coordinator-address", "host"), 2, "error")  # fmt: skip
    assert "not an address HOST:PORT" in line
