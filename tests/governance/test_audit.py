"""The audit log: each kind of tampering an owner of the file can do is found, and only then.

Every attack edits the real SQLite file as an attacker who owns it would (dropping the
append-only triggers first); keys are real Ed25519 keys. Truncation is only visible
against heads seen outside the node, so it is tested both without and with them.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import multiprocessing
import shutil
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest
import rfc8785

from accord.errors import AccordError, AuditTamperedError, InputError, RefusedError
from accord.governance.audit import (
    AUDIT_FILE,
    AuditEntry,
    AuditHead,
    AuditLog,
    head_payload,
    read_audit,
    verify_audit,
)
from accord.governance.identity import (
    PartyIdentity,
    generate_identity,
    node_identity,
    write_node_identity,
)
from tests.conftest import Invoke

PARTY = "cleveland"
BODIES: list[tuple[str, dict[str, Any]]] = [
    ("job_accepted", {"job": "heart-1", "rounds": 3, "purpose": "research"}),
    ("release", {"job": "heart-1", "round": 1, "epsilon": 0.25, "to": ["coordinator"]}),
    ("release", {"job": "heart-1", "round": 2, "epsilon": 0.5, "noise": None}),
    ("job_refused", {"job": "other", "reason": "purpose 'marketing' not permitted"}),
    ("approval", {"job": "heart-2", "by": "dr. smith", "ok": True}),
    ("revocation", {"agreement": "heart-2026", "reason": "ethics\napproval withdrawn"}),
]


def make_home(root: Path, party: str = PARTY) -> tuple[Path, PartyIdentity]:
    home = root / party
    home.mkdir(parents=True)
    (home / "node.toml").write_text(f'party = "{party}"\n')
    identity = generate_identity(party)
    write_node_identity(identity, home)
    return home, identity


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PartyIdentity, AuditHead]:
    """A home with the six entries of BODIES; the last append's head."""
    home, identity = make_home(tmp_path_factory.mktemp("filled"))
    log = AuditLog(home, identity)
    heads = [log.append(kind, body) for kind, body in BODIES]
    return home, identity, heads[-1]


@pytest.fixture
def copy(filled: tuple[Path, PartyIdentity, AuditHead], tmp_path: Path) -> Path:
    """A fresh copy of the filled home, for one attack."""
    return Path(shutil.copytree(filled[0], tmp_path / PARTY))


def tamper(home: Path, *statements: str, args: tuple[Any, ...] = ()) -> None:
    """Run ``statements`` on the log as its owner would: the triggers dropped first."""
    conn = sqlite3.connect(home / AUDIT_FILE)
    for trigger in ("entries_no_update", "entries_no_delete", "entries_in_sequence"):
        conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    for statement in statements:
        conn.execute(statement, args if "?" in statement else ())
    conn.commit()
    conn.close()


def forged_row(
    forger: PartyIdentity, seq: int, at: str, kind: str, body: dict[str, Any], prev: str
) -> tuple[Any, ...]:
    """A row with a right hash and link, signed by ``forger``: all an attacker can make."""
    content: dict[str, Any] = {"party": PARTY, "seq": seq, "at": at, "kind": kind}
    content.update(body=body, prev=prev)
    digest = hashlib.sha256(rfc8785.dumps(content)).hexdigest()
    signature = _b64(forger.sign(head_payload(PARTY, seq, digest)))
    return (seq, PARTY, at, kind, json.dumps(body), prev, digest, signature)


def problems(home: Path, *heads: AuditHead) -> list[str]:
    return verify_audit(read_audit(home), node_identity(home, PARTY).public_key, PARTY, heads)


def test_a_clean_log_verifies_and_pins_its_format(
    filled: tuple[Path, PartyIdentity, AuditHead],
) -> None:
    home, identity, last = filled
    entries = read_audit(home)
    assert [(e.seq, e.kind, e.body) for e in entries] == [
        (i, kind, body) for i, (kind, body) in enumerate(BODIES, 1)
    ]
    assert problems(home, last) == []
    assert entries[-1].head() == last == AuditLog(home, identity).head()
    assert entries[0].prev_hash == "0" * 64
    assert all(e.prev_hash == p.entry_hash for p, e in itertools.pairwise(entries))
    # The hash and the signed payload as the spec writes them (forged_row hashes by hand;
    # Ed25519 is deterministic, so the same key gives the same signature).
    e = entries[2]
    assert forged_row(identity, 3, e.at, e.kind, e.body, e.prev_hash)[5:] == (
        e.prev_hash,
        e.entry_hash,
        e.signature,
    )
    head: dict[str, Any] = {"kind": "accord-audit-head-v1", "party": PARTY, "seq": 3}
    head["hash"] = e.entry_hash
    assert head_payload(PARTY, 3, e.entry_hash) == hashlib.sha256(rfc8785.dumps(head)).digest()
    assert e.at.endswith("+00:00") and len(e.at.split(".")[1]) == len("123456+00:00")
    assert stat.S_IMODE((home / AUDIT_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "state").stat().st_mode) == 0o700


def test_triggers_refuse_update_delete_and_out_of_sequence_insert(copy: Path) -> None:
    conn = sqlite3.connect(copy / AUDIT_FILE)
    for statement in (
        "UPDATE entries SET kind = 'x' WHERE seq = 2",
        "DELETE FROM entries WHERE seq = 6",
        "INSERT INTO entries SELECT 9, party, at, kind, body_json, prev_hash, entry_hash, "
        "signature FROM entries WHERE seq = 6",
    ):
        with pytest.raises(sqlite3.DatabaseError):
            conn.execute(statement)
    conn.close()
    assert problems(copy) == []


def test_an_edited_body_is_found(copy: Path) -> None:
    tamper(copy, """UPDATE entries SET body_json = '{"epsilon":0.01}' WHERE seq = 3""")
    assert problems(copy) == ["entry 3: its hash does not match its content (it was edited)"]


def test_a_deleted_entry_is_found(copy: Path) -> None:
    tamper(copy, "DELETE FROM entries WHERE seq = 4")
    assert problems(copy) == ["entry 4 is missing (deleted)"]


def test_a_deleted_entry_with_the_rest_renumbered_is_found(copy: Path) -> None:
    tamper(
        copy, "DELETE FROM entries WHERE seq = 4", "UPDATE entries SET seq = seq - 1 WHERE seq > 4"
    )
    found = problems(copy)
    assert (
        "entry 4: its prev_hash is not entry 3's hash (an entry before it was deleted"
        in " ".join(found)
    )
    assert sum("hash does not match its content" in p for p in found) == 2  # 4 and 5


def test_an_inserted_entry_is_found(copy: Path) -> None:
    # The attacker renumbers 4..6 to 5..7 and inserts a forged 4 that chains from 3 and
    # whose hash is right, signed with a key of their own.
    entries = read_audit(copy)
    forger = generate_identity(PARTY)
    row = forged_row(forger, 4, entries[3].at, "approval", {"job": "x"}, entries[2].entry_hash)
    tamper(
        copy,
        "UPDATE entries SET seq = seq + 100 WHERE seq >= 4",
        "UPDATE entries SET seq = seq - 99 WHERE seq >= 100",
        "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        args=row,
    )
    found = problems(copy)
    assert "entry 4: its signature does not verify under cleveland's key" in found[0]
    assert "entry 5: its hash does not match" in " ".join(found)  # the old 4, renumbered
    relinked = "entry 5: its prev_hash is not entry 4's hash (it follows entry 3's hash: "
    assert relinked + "an entry was inserted before it, or moved)" in found


def test_swapped_entries_are_found(copy: Path) -> None:
    tamper(
        copy,
        "UPDATE entries SET seq = -1 WHERE seq = 3",
        "UPDATE entries SET seq = 3 WHERE seq = 4",
        "UPDATE entries SET seq = 4 WHERE seq = -1",
    )
    found = " ".join(problems(copy))
    moved = "entry 3: its prev_hash is not entry 2's hash (it follows entry 4's hash: "
    assert moved + "entries were reordered)" in found
    assert "entry 3: its hash does not match" in found and "entry 4: its hash" in found


def test_entries_given_out_of_order_or_twice_are_found(
    filled: tuple[Path, PartyIdentity, AuditHead],
) -> None:
    home, identity, _ = filled
    entries = read_audit(home)
    swapped = [entries[0], entries[2], entries[1], *entries[3:]]
    assert verify_audit(swapped, identity.public_key, PARTY) == [
        "entry 2 comes after entry 3 (reordered)"
    ]
    doubled = [*entries[:3], entries[2], *entries[3:]]
    assert "entry 3 appears 2 times" in " ".join(verify_audit(doubled, identity.public_key, PARTY))


def test_an_entry_of_another_party_is_found(filled: tuple[Path, PartyIdentity, AuditHead]) -> None:
    home, identity, _ = filled
    entries = read_audit(home)
    other = AuditEntry(**{**entries[1].__dict__, "party": "hungary"})
    found = verify_audit([entries[0], other, *entries[2:]], identity.public_key, PARTY)
    assert found[0] == "entry 2 belongs to party 'hungary', not 'cleveland'"


def test_a_cut_off_tail_is_found_only_against_heads(
    copy: Path, filled: tuple[Path, PartyIdentity, AuditHead]
) -> None:
    tamper(copy, "DELETE FROM entries WHERE seq >= 5")
    assert problems(copy) == []  # undetectable in the file alone
    last = filled[2]
    other = AuditLog(*make_home(copy.parent / "elsewhere", "hungary")).append("release", {})
    assert problems(copy, last, other) == [
        "the log ends at entry 4 but a head for entry 6 was seen (its tail was cut off)"
    ]


def test_a_rewritten_chain_fails_every_signature_and_its_heads(
    copy: Path, filled: tuple[Path, PartyIdentity, AuditHead]
) -> None:
    # The attacker edits entry 2 and rebuilds the whole chain from there with their key.
    forger = generate_identity(PARTY)
    entries = read_audit(copy)
    tamper(copy, "DELETE FROM entries WHERE seq >= 2")
    prev = entries[0].entry_hash
    for e in entries[1:]:
        body = {"job": "rewritten"} if e.seq == 2 else e.body
        row = forged_row(forger, e.seq, e.at, e.kind, body, prev)
        tamper(copy, "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?)", args=row)
        prev = row[6]
    found = problems(copy, filled[2])
    assert [p.split(":")[0] for p in found[:-1]] == [f"entry {s}" for s in range(2, 7)]
    assert all("signature does not verify" in p for p in found[:-1])
    assert found[-1].startswith("entry 6 has hash") and "rewritten or rolled back" in found[-1]


def test_a_forged_head_is_reported_as_forged_not_as_truncation(
    filled: tuple[Path, PartyIdentity, AuditHead],
) -> None:
    home, _, last = filled
    forger = generate_identity(PARTY)
    digest = "ab" * 32
    forged = AuditHead(PARTY, 9, digest, _b64(forger.sign(head_payload(PARTY, 9, digest))))
    assert problems(home, forged) == [
        f"a head for entry 9 (hash {digest[:16]}) does not verify under cleveland's key: "
        "a forged head"
    ]
    garbled = AuditHead(PARTY, 6, last.entry_hash, "not base64!")
    assert problems(home, garbled) == [
        f"a head for entry 6 (hash {last.entry_hash[:16]}) does not verify under cleveland's "
        "key: a forged head"
    ]


def test_heads_round_trip_and_malformed_heads_name_where(
    filled: tuple[Path, PartyIdentity, AuditHead],
) -> None:
    last = filled[2]
    assert AuditHead.from_json(json.loads(json.dumps(last.to_json())), "x") == last
    assert last.verifies(filled[1].public_key)
    bad: object
    for bad in (
        [],
        {**last.to_json(), "extra": 1},
        {**last.to_json(), "seq": 0},
        {**last.to_json(), "seq": True},
        {**last.to_json(), "entry_hash": "AB" * 32},
        {**last.to_json(), "signature": "abc"},
        {**last.to_json(), "party": "a b"},
    ):
        with pytest.raises(InputError, match=r"^heads\.json: heads\[3\]: "):
            AuditHead.from_json(bad, "heads.json: heads[3]")


def test_writer_refuses_bad_bodies_and_other_parties(tmp_path: Path) -> None:
    home, identity = make_home(tmp_path)
    log = AuditLog(home, identity)
    with pytest.raises(AccordError, match="not JSON"):
        log.append("release", {"epsilon": float("nan")})
    assert log.head() is None and read_audit(home) == []
    with pytest.raises(InputError, match="belongs to party 'cleveland'"):
        AuditLog(home, generate_identity("hungary"))
    with pytest.raises(InputError, match="no audit log"):
        read_audit(make_home(tmp_path / "bare", "hungary")[0])
    assert issubclass(AuditTamperedError, RefusedError) and AuditTamperedError.exit_code == 3


# --- two processes appending at once -------------------------------------------------------


def _append_in_process(home: str, barrier: Any, worker: int) -> None:
    log = AuditLog(Path(home), node_identity(Path(home), PARTY))
    barrier.wait(timeout=60)
    for i in range(15):
        log.append("release", {"worker": worker, "i": i})


def test_two_processes_appending_at_once_keep_one_chain(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    workers = [
        context.Process(target=_append_in_process, args=(str(home), barrier, w)) for w in (1, 2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    entries = read_audit(home)
    assert [e.seq for e in entries] == list(range(1, 31))
    assert problems(home) == []
    assert sorted((e.body["worker"], e.body["i"]) for e in entries) == [
        (w, i) for w in (1, 2) for i in range(15)
    ]


# --- the command line ----------------------------------------------------------------------


def test_cli_show_and_verify_a_clean_log(
    filled: tuple[Path, PartyIdentity, AuditHead], invoke: Invoke
) -> None:
    home, _, last = filled
    shown = invoke("audit", "show", "--node-home", str(home), "--last", "2")
    assert shown.code == 0, shown.err
    lines = shown.out.splitlines()
    assert len(lines) == 3 and lines[0].startswith("5  ") and "approval" in lines[0]
    assert "reason=ethics\\napproval withd..." in lines[1]  # a newline stays escaped; cut
    assert lines[2] == f"head: entry 6, hash {last.entry_hash[:16]} (not verified here)"
    verified = invoke("audit", "verify", "--node-home", str(home))
    assert verified.code == 0, verified.err
    assert verified.out == (
        f"audit log of cleveland verifies: 6 entries, head 6 {last.entry_hash[:16]} "
        "(checked against 0 heads)\n"
    )


def test_cli_verify_refuses_an_edited_log_in_one_line(copy: Path, invoke: Invoke) -> None:
    tamper(copy, "UPDATE entries SET kind = 'job_accepted' WHERE seq = 4")
    result = invoke("audit", "verify", "--node-home", str(copy))
    assert result.code == 3 and result.out == ""
    assert result.err.count("\n") == 1 and "entry 4: its hash does not match" in result.err


def test_cli_verify_against_heads_finds_a_cut_tail(
    copy: Path, filled: tuple[Path, PartyIdentity, AuditHead], invoke: Invoke, tmp_path: Path
) -> None:
    heads = tmp_path / "heads.json"
    hungary = AuditLog(*make_home(tmp_path / "elsewhere", "hungary")).append("release", {})
    heads.write_text(json.dumps({"heads": [filled[2].to_json(), hungary.to_json()]}))
    own_key, other_key = tmp_path / "cleveland.pub", tmp_path / "other.pub"
    own_key.write_text(filled[1].public_key_line + "\n")
    other_key.write_text(generate_identity("x").public_key_line + "\n")
    result = invoke("audit", "verify", "--node-home", str(copy), "--against", str(heads))
    assert result.code == 0 and "(checked against 1 heads)" in result.out  # hungary's ignored
    result = invoke("audit", "verify", "--node-home", str(copy), "--key", str(own_key))
    assert result.code == 0, result.err
    heads.write_text(json.dumps([filled[2].to_json()]))  # a bare list is a heads file too
    tamper(copy, "DELETE FROM entries WHERE seq >= 5")
    result = invoke("audit", "verify", "--node-home", str(copy), "--against", str(heads))
    assert result.code == 3 and result.err.count("\n") == 1
    assert "the log ends at entry 4 but a head for entry 6 was seen" in result.err
    result = invoke("audit", "verify", "--node-home", str(copy), "--key", str(other_key))
    assert result.code == 3 and "(and 3 more)" in result.err


def test_cli_bad_input_exits_2(copy: Path, invoke: Invoke, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[{")
    for args in (
        ("show", "--node-home", str(tmp_path / "nowhere")),
        ("verify", "--node-home", str(tmp_path / "nowhere")),
        ("verify", "--node-home", str(copy), "--against", str(bad)),
        ("verify", "--node-home", str(copy), "--against", str(tmp_path / "none.json")),
    ):
        result = invoke("audit", *args)
        assert result.code == 2 and result.err.count("\n") == 1, (args, result.err)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
