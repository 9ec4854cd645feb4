"""A node's tamper-evident audit trail: a hash chain of entries, each signed by the node.

Every decision a node takes about its data (a job accepted or refused, a release, a
revocation, an approval) is appended as an :class:`AuditEntry`. Entries form a chain: each
one's hash covers its content and the previous entry's hash, and the node signs
:func:`head_payload` of each (party, sequence number, hash) with its identity key. Whoever
owns the file can rewrite it, so the storage is not what makes the log trustworthy; the
chain and the signatures are:

* an edited entry no longer matches its hash; re-hashing it breaks its signature;
* a deleted, inserted or moved entry leaves a gap in the sequence numbers or a ``prev``
  hash that points elsewhere; renumbering the rest breaks their hashes and signatures;
* a cut-off tail (or a rollback to a backup) is invisible in the file alone, so each of the
  node's releases carries the head it had then (:class:`AuditHead`), and the coordinator or
  the other nodes keep them: :func:`verify_audit` checks the log against those heads.

Storage: ``state/audit.sqlite3`` in the node home (SQLite, WAL, ``synchronous=FULL``,
owner-only), one table ``entries``. Triggers refuse UPDATE, DELETE and out-of-sequence
INSERT: defence in depth against a bug, not against the file's owner, who can drop them.
Reading and verifying need only the node's public key, never its private key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import re
import sqlite3
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from accord.errors import AccordError, AuditTamperedError, InputError
from accord.governance.identity import (
    PARTY_NAME_PATTERN,
    PartyIdentity,
    b64_bytes,
    b64_text,
    home_party,
    verify_signature,
)
from accord.sqlite_wal import connect_wal, transaction

AUDIT_FILE = Path("state") / "audit.sqlite3"
GENESIS_HASH = "0" * 64  # the prev_hash of entry 1

_HEAD_KIND = "accord-audit-head-v1"  # domain separation: never an agreement's signature
_HASH = re.compile(r"[0-9a-f]{64}")
_PARTY = re.compile(PARTY_NAME_PATTERN)

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS entries (seq INTEGER PRIMARY KEY, party TEXT NOT NULL,
    at TEXT NOT NULL, kind TEXT NOT NULL, body_json TEXT NOT NULL, prev_hash TEXT NOT NULL,
    entry_hash TEXT NOT NULL, signature TEXT NOT NULL)""",
    """CREATE TRIGGER IF NOT EXISTS entries_no_update BEFORE UPDATE ON entries
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS entries_no_delete BEFORE DELETE ON entries
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS entries_in_sequence BEFORE INSERT ON entries
    WHEN NEW.seq IS NOT COALESCE((SELECT MAX(seq) FROM entries), 0) + 1
    BEGIN SELECT RAISE(ABORT, 'audit entries are appended in sequence'); END""",
)
_COLUMNS = "seq, party, at, kind, body_json, prev_hash, entry_hash, signature"
_LAST = "ORDER BY seq DESC LIMIT 1"


def head_payload(party: str, seq: int, entry_hash: str) -> bytes:
    """What the node signs for entry ``seq``: SHA-256 of its head's canonical JSON."""
    body: dict[str, Any] = {"kind": _HEAD_KIND, "party": party, "seq": seq, "hash": entry_hash}
    return hashlib.sha256(rfc8785.dumps(body)).digest()


def entry_hash(party: str, seq: int, at: str, kind: str, body: Any, prev_hash: str) -> str:
    """Hex SHA-256 of the entry's canonical JSON (raises ``rfc8785`` errors on a non-JSON body)."""
    content = {"party": party, "seq": seq, "at": at, "kind": kind, "body": body, "prev": prev_hash}
    return hashlib.sha256(rfc8785.dumps(content)).hexdigest()


@dataclasses.dataclass(frozen=True)
class AuditHead:
    """The latest entry of a node's log, signed: what a release carries out of the node."""

    party: str
    seq: int
    entry_hash: str
    signature: str

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, raw: object, where: str) -> AuditHead:
        """A head from its JSON object; :class:`InputError` naming ``where`` if malformed."""
        if not isinstance(raw, dict):
            raise InputError(f"{where}: an audit head must be a JSON object")
        keys = [field.name for field in dataclasses.fields(cls)]
        if sorted(raw) != sorted(keys):  # unknown -> refuse
            raise InputError(f"{where}: an audit head has exactly the keys {', '.join(keys)}")
        party, seq, hash_, signature = (raw[key] for key in keys)
        if not isinstance(party, str) or not _PARTY.fullmatch(party) or set(party) == {"."}:
            raise InputError(f"{where}: party must be a party name (got {party!r})")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            raise InputError(f"{where}: seq must be an integer of at least 1 (got {seq!r})")
        if not isinstance(hash_, str) or not _HASH.fullmatch(hash_):
            raise InputError(f"{where}: entry_hash must be 64 lowercase hex digits")
        if not isinstance(signature, str) or len(b64_bytes(signature)) != 64:
            raise InputError(f"{where}: signature must be the base64 of a 64-byte signature")
        return cls(party, seq, hash_, signature)

    def verifies(self, public_key: Ed25519PublicKey) -> bool:
        """Whether ``public_key`` signed this head."""
        payload = head_payload(self.party, self.seq, self.entry_hash)
        return verify_signature(public_key, b64_bytes(self.signature), payload)


@dataclasses.dataclass(frozen=True)
class AuditEntry:
    """One stored entry, as read (nothing checked: that is :func:`verify_audit`'s job)."""

    party: str
    seq: int
    at: str
    kind: str
    body: dict[str, Any]
    prev_hash: str
    entry_hash: str
    signature: str

    def head(self) -> AuditHead:
        return AuditHead(self.party, self.seq, self.entry_hash, self.signature)


# --- storage -----------------------------------------------------------------------------------


class AuditLog:
    """The writer: one per node home; appends are signed with the node's identity key."""

    def __init__(self, home: Path, identity: PartyIdentity) -> None:
        if not home.is_dir():
            raise InputError(f"{home}: node home not found (give an existing --node-home)")
        owner = home_party(home)
        if owner is not None and owner != identity.name:
            raise InputError(
                f"{home}: this node home belongs to party {owner!r}, not {identity.name!r}"
            )
        self.home = home
        self.path = home / AUDIT_FILE
        self.identity = identity
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Owner-only, like everything in a node home; SQLite gives its -wal and -shm files
        # the database file's permissions.
        os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        with transaction(connect_wal(str(self.path))) as conn:
            for statement in _SCHEMA:  # one at a time: executescript() would commit
                conn.execute(statement)

    def append(self, kind: str, body: Mapping[str, Any]) -> AuditHead:
        """Append one signed entry; return the new head.

        Reading the last entry and inserting the next happen in one ``BEGIN IMMEDIATE``
        transaction, so processes appending at once are serialised by SQLite's write lock
        and never fork the chain. A body that is not JSON (NaN, an integer beyond 2**53,
        a non-string key) is a bug in the caller and raises :class:`AccordError`.
        """
        party = self.identity.name
        try:
            body_json = rfc8785.dumps(dict(body)).decode("utf-8")
        except rfc8785.CanonicalizationError as exc:
            raise AccordError(f"audit entry {kind!r}: its body is not JSON ({exc})") from None
        with transaction(connect_wal(str(self.path))) as conn:
            last = conn.execute(f"SELECT seq, entry_hash FROM entries {_LAST}").fetchone()
            seq, prev = (last[0] + 1, last[1]) if last is not None else (1, GENESIS_HASH)
            # Taken under the lock, so that times rise with sequence numbers.
            at = datetime.now(UTC).isoformat(timespec="microseconds")
            digest = entry_hash(party, seq, at, kind, json.loads(body_json), prev)
            signature = b64_text(self.identity.sign(head_payload(party, seq, digest)))
            conn.execute(
                f"INSERT INTO entries ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (seq, party, at, kind, body_json, prev, digest, signature),
            )
        return AuditHead(party, seq, digest, signature)

    def head(self) -> AuditHead | None:
        """The latest entry's head (None for an empty log); not verified."""
        with transaction(connect_wal(str(self.path)), "BEGIN") as conn:
            rows = _entries(conn, _LAST)
        return rows[0].head() if rows else None


def read_audit(home: Path) -> list[AuditEntry]:
    """Every entry of ``home``'s audit log in sequence order (no private key needed).

    :class:`InputError` if the home has no audit log; :class:`AuditTamperedError` if a row
    cannot even be read as an entry (a body that is not a JSON object, a column of the
    wrong type): only an edit of the file produces one.
    """
    path = home / AUDIT_FILE
    if not home.is_dir():
        raise InputError(f"{home}: node home not found (give an existing --node-home)")
    if not path.is_file():
        raise InputError(f"{home}: this node home has no audit log ({AUDIT_FILE})")
    try:
        # mode=rw: never create an empty database where none was.
        conn = connect_wal(path.resolve().as_uri() + "?mode=rw", uri=True)
        with transaction(conn, "BEGIN") as conn:
            return _entries(conn, "ORDER BY seq")
    except sqlite3.DatabaseError as exc:
        raise InputError(f"{path}: not an Accord audit log ({exc})") from None


def _entries(conn: sqlite3.Connection, order: str) -> list[AuditEntry]:
    return [_entry(row) for row in conn.execute(f"SELECT {_COLUMNS} FROM entries {order}")]


def _entry(row: tuple[Any, ...]) -> AuditEntry:
    seq, party, at, kind, body_json, prev_hash, digest, signature = row
    if not all(isinstance(v, str) for v in row[1:]):
        raise AuditTamperedError(f"audit entry {seq}: a column is not text (edited)")
    try:
        body = json.loads(body_json)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise AuditTamperedError(f"audit entry {seq}: its body is not a JSON object (edited)")
    return AuditEntry(party, seq, at, kind, body, prev_hash, digest, signature)


# --- verification ------------------------------------------------------------------------------


def verify_audit(
    entries: Sequence[AuditEntry],
    public_key: Ed25519PublicKey,
    party: str,
    heads: Sequence[AuditHead] = (),
) -> list[str]:
    """Every problem found, as one line each (empty: the log verifies).

    Detects an edited entry (its hash no longer matches its content), a deleted one (a gap
    in seq, or a prev_hash that does not match), an inserted one (a duplicate seq, a prev
    mismatch, or a signature that does not verify under the node's key), reordered entries,
    an entry of another party, and, against ``heads`` (heads this node's releases carried,
    kept by the coordinator or other nodes), a cut-off tail (a head beyond the last entry)
    or a rewritten or rolled-back log (a head whose entry has another hash). A head whose
    signature does not verify is a forged head, not evidence of truncation. Heads of other
    parties are ignored.
    """
    problems = [p for entry in entries for p in _entry_problems(entry, public_key, party)]
    return problems + _chain_problems(entries) + _head_problems(entries, public_key, party, heads)


def _entry_problems(entry: AuditEntry, public_key: Ed25519PublicKey, party: str) -> list[str]:
    """What is wrong with one entry on its own: party, hash, signature."""
    e, problems = entry, []
    if entry.party != party:
        problems.append(f"entry {entry.seq} belongs to party {entry.party!r}, not {party!r}")
    try:
        digest: str | None = entry_hash(e.party, e.seq, e.at, e.kind, e.body, e.prev_hash)
    except rfc8785.CanonicalizationError:
        digest = None
    if digest != entry.entry_hash:
        problems.append(f"entry {entry.seq}: its hash does not match its content (it was edited)")
    if not entry.head().verifies(public_key):
        problems.append(
            f"entry {entry.seq}: its signature does not verify under {party}'s key "
            "(it was inserted, or re-signed by another key)"
        )
    return problems


def _chain_problems(entries: Sequence[AuditEntry]) -> list[str]:
    """What is wrong with the chain: order, duplicates, gaps, and prev links."""
    problems = [
        f"entry {after.seq} comes after entry {before.seq} (reordered)"
        for before, after in itertools.pairwise(entries)
        if after.seq < before.seq
    ]
    counts = Counter(entry.seq for entry in entries)
    problems += [f"entry {s} appears {n} times (inserted)" for s, n in counts.items() if n > 1]
    expected = 1
    for seq in sorted(counts):
        if seq > expected:
            span = (
                f"entry {expected} is"
                if seq == expected + 1
                else f"entries {expected} to {seq - 1} are"
            )
            problems.append(f"{span} missing (deleted)")
        expected = max(expected, seq + 1)
    hash_of = {entry.seq: entry.entry_hash for entry in entries}
    seq_of = {entry.entry_hash: entry.seq for entry in entries}
    for entry in sorted(entries, key=lambda e: e.seq):
        before = GENESIS_HASH if entry.seq == 1 else hash_of.get(entry.seq - 1)
        if before is None or entry.prev_hash == before:
            continue  # a gap is reported above
        # Where the link points says what happened: back past its predecessor (something
        # was put in between), forward (moved), or nowhere in the log (replaced, deleted).
        target = seq_of.get(entry.prev_hash)
        if target is not None and target < entry.seq - 1:
            why = f"it follows entry {target}'s hash: an entry was inserted before it, or moved"
        elif target is not None:
            why = f"it follows entry {target}'s hash: entries were reordered"
        else:
            why = "an entry before it was deleted, inserted or replaced"
        what = "the genesis value" if entry.seq == 1 else f"entry {entry.seq - 1}'s hash"
        problems.append(f"entry {entry.seq}: its prev_hash is not {what} ({why})")
    return problems


def _head_problems(
    entries: Sequence[AuditEntry],
    public_key: Ed25519PublicKey,
    party: str,
    heads: Sequence[AuditHead],
) -> list[str]:
    """What the heads seen outside the node say about its log: a cut tail, a rewrite."""
    problems = []
    last = max((entry.seq for entry in entries), default=0)
    hashes: dict[int, set[str]] = {}
    for entry in entries:  # a set: with a duplicated seq, either entry may be the true one
        hashes.setdefault(entry.seq, set()).add(entry.entry_hash)
    beyond = 0  # the furthest genuine head past the last entry: one truncation, one line
    for head in heads:
        if head.party != party:
            continue
        if not head.verifies(public_key):
            problems.append(
                f"a head for entry {head.seq} (hash {head.entry_hash[:16]}) does not verify "
                f"under {party}'s key: a forged head"
            )
        elif head.seq > last:
            beyond = max(beyond, head.seq)
        elif head.seq in hashes and head.entry_hash not in hashes[head.seq]:
            problems.append(
                f"entry {head.seq} has hash {sorted(hashes[head.seq])[0][:16]} but a head signed "
                f"for it has {head.entry_hash[:16]} (the log was rewritten or rolled back)"
            )
    if beyond:
        problems.append(
            f"the log ends at entry {last} but a head for entry {beyond} was seen "
            "(its tail was cut off)"
        )
    return problems
