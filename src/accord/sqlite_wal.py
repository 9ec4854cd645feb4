"""SQLite as the node's stores use it (privacy ledger, audit log): WAL, full sync, one
connection per operation, explicit transactions.

``synchronous=FULL`` in WAL mode makes each committed transaction durable before COMMIT
returns: a charge or an audit entry survives a crash right after it. ``BEGIN IMMEDIATE``
takes the write lock first, so processes writing at once are serialised and a
read-check-write never races.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager

BUSY_TIMEOUT_S = 120.0
"""Seconds a writer waits for another process's transaction (each holds the lock for well
under a second)."""


def connect_wal(target: str, uri: bool = False) -> sqlite3.Connection:
    """A connection in WAL mode with ``synchronous=FULL`` (autocommit off: transactions
    are explicit)."""
    conn = sqlite3.connect(target, timeout=BUSY_TIMEOUT_S, isolation_level=None, uri=uri)
    # WAL is a property of the file: set it once. Switching answers "database is locked" at
    # once, without waiting, while another process holds the new file, so retry within the
    # busy timeout.
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        try:
            conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                conn.close()
                raise
            time.sleep(0.02)
    conn.execute("PRAGMA synchronous=FULL")
    return conn


@contextmanager
def transaction(
    conn: sqlite3.Connection, begin: str = "BEGIN IMMEDIATE"
) -> Iterator[sqlite3.Connection]:
    """``begin`` … ``COMMIT`` (``ROLLBACK`` on any exception), then close the connection.
    ``BEGIN`` alone gives a consistent snapshot for reads."""
    try:
        conn.execute(begin)
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    finally:
        conn.close()
