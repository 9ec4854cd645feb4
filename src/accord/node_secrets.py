"""A node's secure generator, kept in its home: the key in ``secrets/``, the counter's
high-water mark in ``state/`` (see :mod:`accord.secure_random` for why and how).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from accord.errors import AccordError
from accord.fileio import fsync_dir, write_bytes_atomic
from accord.secure_random import COUNTER_LIMIT, KEY_BYTES, SecureGenerator


class NodeGeneratorStore:
    """Keeps a node's generator key and counter high-water mark in its home directory.

    * ``home/secrets/generator.key``: 32 bytes from ``os.urandom``, mode 0o600, in a
      0o700 directory; created once (``O_EXCL``), never rewritten.
    * ``home/state/generator.counter``: the high-water mark in decimal text, rewritten
      atomically (temporary file, fsync, ``os.replace``, fsync of the directory).
    * ``home/state/generator.lock``: taken (``flock``) around every read and write of the
      counter file.

    :meth:`reserve` is a compare-and-swap: it writes the new mark only if the file still
    holds the mark this store last read or wrote. If another process opened the same
    home and reserved in the meantime, both would hold the same counters, so it refuses.
    """

    KEY_NAME = "generator.key"
    COUNTER_NAME = "generator.counter"
    LOCK_NAME = "generator.lock"

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.secrets_dir = self.home / "secrets"
        self.state_dir = self.home / "state"
        self.key_path = self.secrets_dir / self.KEY_NAME
        self.counter_path = self.state_dir / self.COUNTER_NAME
        self.lock_path = self.state_dir / self.LOCK_NAME
        self._last_mark: int | None = None

    def open(self) -> SecureGenerator:
        """The node's generator, starting at the stored mark (created on first use)."""
        self._make_dirs()
        with self._locked():
            key_exists = self.key_path.exists()
            counter_exists = self.counter_path.exists()
            if key_exists and not counter_exists:
                # Starting again from 0 would reuse keystream already spent.
                raise AccordError(
                    f"{self.counter_path} is missing but {self.key_path} exists; the "
                    "generator cannot know which counters were used. Remove the key file "
                    "to start with a new key."
                )
            if not counter_exists:
                # Counter before key: a crash in between leaves a counter without a key,
                # which is harmless (a new key may start at any counter).
                self._write_counter(0)
            mark = self._read_counter()
            key = self._read_key() if key_exists else self._create_key()
            self._last_mark = mark
        return SecureGenerator(key, counter=mark, reserve=self.reserve)

    def reserve(self, new_mark: int) -> None:
        """Durably store ``new_mark`` as the high-water mark (see the class docstring)."""
        if self._last_mark is None:
            raise AccordError("NodeGeneratorStore.reserve called before open()")
        if new_mark <= self._last_mark:
            raise AccordError(f"the generator mark may only grow ({self._last_mark} -> {new_mark})")
        with self._locked():
            stored = self._read_counter()
            if stored != self._last_mark:
                raise AccordError(
                    f"{self.counter_path} holds {stored}, expected {self._last_mark}: another "
                    "process is drawing from this node home's secure generator. Run one "
                    "node process per home."
                )
            self._write_counter(new_mark)
            self._last_mark = new_mark

    # --- files ---------------------------------------------------------------------------

    def _make_dirs(self) -> None:
        self.secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkdir's mode is filtered by the umask and ignored for an existing directory.
        os.chmod(self.secrets_dir, 0o700)
        self.state_dir.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _create_key(self) -> bytes:
        key = os.urandom(KEY_BYTES)
        fd = os.open(self.key_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            view = memoryview(key)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(self.secrets_dir)
        return key

    def _read_key(self) -> bytes:
        mode = self.key_path.stat().st_mode & 0o777
        if mode & 0o077:
            raise AccordError(
                f"{self.key_path} is readable by others (mode {mode:o}); "
                f"run `chmod 600 {self.key_path}`"
            )
        key = self.key_path.read_bytes()
        if len(key) != KEY_BYTES:
            raise AccordError(
                f"{self.key_path} holds {len(key)} bytes, expected {KEY_BYTES}; the file is damaged"
            )
        return key

    def _read_counter(self) -> int:
        text = self.counter_path.read_text(encoding="ascii").strip()
        if not text.isdigit() or int(text) >= COUNTER_LIMIT:
            raise AccordError(
                f"{self.counter_path} does not hold a counter (decimal below 2**96): {text[:40]!r}"
            )
        return int(text)

    def _write_counter(self, mark: int) -> None:
        write_bytes_atomic(self.counter_path, f"{mark}\n".encode("ascii"), 0o600, sync_dir=True)


def open_node_generator(home: Path) -> SecureGenerator:
    """The secure generator of the node whose home directory is ``home``."""
    return NodeGeneratorStore(home).open()
