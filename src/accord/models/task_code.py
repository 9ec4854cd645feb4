"""User task directories: their content hash, and loading them on a node.

A job may name user task code (``model.task_dir`` and ``model.task_hash``). Every node keeps
its own copy of the directory; the job pins the hash, and a node refuses to run code whose
hash differs. The hash is a public contract, so that other implementations (and people
with ``sha256sum``) can reproduce it; :func:`task_code_hash` documents the encoding.

Loading imports the node's local copy with a loader of our own that compiles each module
from source after checking that its bytes are the ones that were hashed. It never reads
nor writes bytecode caches: ``__pycache__`` is not covered by the hash, so a cached ``.pyc``
there could otherwise run instead of the hashed source, and writing one would change the
directory the job pinned.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import re
import stat
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any

from torch import nn

from accord.errors import TaskCodeError

__all__ = ["REQUIREMENTS_FILE", "TASK_FILE", "TaskModule", "load_task", "task_code_hash"]

TASK_FILE = "task.py"
REQUIREMENTS_FILE = "requirements.txt"
_MODULE_PREFIX = "accord_task_"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class TaskModule:
    """The functions a task directory provides, and which code they came from.

    ``build_model(input_shape: tuple[int, ...], num_classes: int) -> nn.Module`` is
    required. ``train(model, x, y, config) -> float`` (mean loss) and
    ``evaluate(model, x, y) -> dict[str, float]`` are optional; ``None`` when absent.
    """

    build_model: Callable[..., nn.Module]
    train: Callable[..., float] | None
    evaluate: Callable[..., dict[str, float]] | None
    hash: str
    path: Path


# --- hashing -------------------------------------------------------------------------------


def _excluded_name(name: str) -> bool:
    return name.startswith(".")


def _file_digest(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def _hashed_files(root: Path, shown: Path) -> dict[str, str]:
    """Relative POSIX path -> hex SHA-256 of every file the hash covers.

    ``shown`` is the directory as the caller named it, for error messages.
    """
    files: dict[str, str] = {}
    pending = [root]
    while pending:
        directory = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as exc:
            raise TaskCodeError(f"{shown}: cannot read task directory: {exc}") from exc
        for entry in entries:
            if _excluded_name(entry.name):
                continue
            path = Path(entry.path)
            rel = path.relative_to(root).as_posix()
            if entry.is_symlink():
                # A link could point anywhere, and its target can change after hashing.
                raise TaskCodeError(
                    f"{shown}: {rel} is a symbolic link; task directories may not contain "
                    "links (copy the file in instead)"
                )
            if entry.is_dir(follow_symlinks=False):
                if entry.name != "__pycache__":
                    pending.append(path)
                continue
            if entry.name.endswith(".pyc"):
                continue
            if not stat.S_ISREG(entry.stat(follow_symlinks=False).st_mode):
                raise TaskCodeError(f"{shown}: {rel} is not a regular file; remove it")
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise TaskCodeError(
                    f"{shown}: the file name {rel!r} is not valid UTF-8; rename it"
                ) from exc
            files[rel] = _file_digest(path)
    return files


def _combine(files: dict[str, str], requirements: bytes) -> str:
    hasher = hashlib.sha256()
    for rel in sorted(files):
        hasher.update(rel.encode("utf-8") + b"\0" + files[rel].encode("ascii") + b"\n")
    hasher.update(requirements)
    return hasher.hexdigest()


def _hash_dir(task_dir: Path) -> tuple[str, dict[str, str]]:
    task_dir = Path(task_dir)
    if not task_dir.is_dir():
        raise TaskCodeError(
            f"{task_dir}: task directory not found; copy the job's task code to this node "
            "or fix model.task_dir"
        )
    # The root itself may be reached through a link: what runs is what lies behind it.
    root = task_dir.resolve()
    files = _hashed_files(root, task_dir)
    # Present in ``files`` only as a regular file (a link was refused by the walk).
    req_bytes = (root / REQUIREMENTS_FILE).read_bytes() if REQUIREMENTS_FILE in files else b""
    return _combine(files, req_bytes), files


def task_code_hash(task_dir: Path) -> str:
    """The hex SHA-256 that pins a task directory (a public contract).

    Encoding, exactly:

    1. Walk ``task_dir`` recursively. Skip every entry whose name starts with ``.``
       (and everything beneath such a directory), every directory named ``__pycache__``
       (and everything beneath it), and every file whose name ends with ``.pyc``.
       Any other entry that is a symbolic link, or neither a directory nor a regular
       file, is refused (:class:`~accord.errors.TaskCodeError`): the hash must cover what
       runs. ``task_dir`` itself may be reached through a link.
    2. For each remaining regular file, take its path relative to ``task_dir`` with ``/``
       as separator (e.g. ``pkg/util.py``; no leading ``./``; names as stored, not
       Unicode-normalised) and the lowercase hex SHA-256 of its bytes.
    3. Sort these pairs by path, comparing code points (the same order as comparing the
       UTF-8 bytes).
    4. SHA-256 over, for each pair in order,
       ``path.encode("utf-8") + b"\\0" + hexdigest.encode("ascii") + b"\\n"``,
       followed by the raw bytes of ``task_dir/requirements.txt`` (nothing when absent;
       the file is also among the pairs when present).
    5. The result is the lowercase hex digest (64 characters).

    An empty directory hashes to ``sha256(b"")``.
    """
    return _hash_dir(task_dir)[0]


def _listing(root: Path) -> set[str]:
    """Every path under ``root``, excluded ones included (to notice anything written)."""
    found: set[str] = set()
    for directory, dirnames, filenames in os.walk(root):
        base = Path(directory)
        for name in (*dirnames, *filenames):
            found.add((base / name).relative_to(root).as_posix())
    return found


# --- loading -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Registered:
    root: Path
    package: bool
    digests: dict[str, str]


class _VerifiedSourceLoader(importlib.machinery.SourceFileLoader):
    """Compiles from source only, and only bytes whose digest was hashed.

    Checking the digest at import time closes the gap between hashing and importing: a
    file changed in between is refused rather than run.
    """

    def __init__(self, fullname: str, path: str, registered: _Registered) -> None:
        super().__init__(fullname, path)
        self._registered = registered

    def get_code(self, fullname: str) -> CodeType:
        path = self.get_filename(fullname)
        data = self.get_data(path)
        rel = Path(path).relative_to(self._registered.root).as_posix()
        expected = self._registered.digests.get(rel)
        if expected is None or hashlib.sha256(data).hexdigest() != expected:
            raise ImportError(
                f"{path} changed after the task directory was hashed; load it again",
                name=fullname,
            )
        # Compiled straight from the checked bytes: the base get_code would first look
        # for a cached .pyc and afterwards write one, and we want neither.
        return self.source_to_code(data, path)


class _TaskFinder(importlib.abc.MetaPathFinder):
    """Finds ``accord_task_<hash12>`` and its submodules in their task directory only.

    For those names it never defers to the default finders, which would also find
    ``.pyc`` files and ``__pycache__`` contents that the hash does not cover.
    """

    def __init__(self) -> None:
        self._tasks: dict[str, _Registered] = {}

    def register(self, name: str, registered: _Registered) -> None:
        self._tasks[name] = registered

    def unregister(self, name: str) -> None:
        self._tasks.pop(name, None)

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        top, _, rest = fullname.partition(".")
        registered = self._tasks.get(top)
        if registered is None:
            return None
        parts = rest.split(".") if rest else []
        root = registered.root
        if not registered.package:
            if parts:
                raise ModuleNotFoundError(
                    f"No module named {fullname!r}: a task without __init__.py is the single "
                    "file task.py",
                    name=fullname,
                )
            return self._spec(fullname, root / TASK_FILE, registered, None)
        if any(part == "__pycache__" or _excluded_name(part) for part in parts):
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        base = root.joinpath(*parts)
        if (base / "__init__.py").is_file():
            return self._spec(fullname, base / "__init__.py", registered, base)
        module_file = base.parent / f"{base.name}.py"
        if parts and module_file.is_file():
            return self._spec(fullname, module_file, registered, None)
        raise ModuleNotFoundError(
            f"No module named {fullname!r} in task directory {root}", name=fullname
        )

    @staticmethod
    def _spec(
        fullname: str, file: Path, registered: _Registered, package_dir: Path | None
    ) -> importlib.machinery.ModuleSpec | None:
        loader = _VerifiedSourceLoader(fullname, str(file), registered)
        locations = None if package_dir is None else [str(package_dir)]
        return importlib.util.spec_from_file_location(
            fullname, file, loader=loader, submodule_search_locations=locations
        )


_FINDER = _TaskFinder()
_LOAD_LOCK = threading.Lock()


def _install_finder() -> None:
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def _forget_modules(name: str) -> None:
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _import_failure(exc: BaseException, root: Path, task_py: Path) -> str:
    where = str(task_py)
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f"{exc.filename}:{exc.lineno}"
    else:
        # Name the innermost frame in the user's code, where the fix belongs.
        prefix = str(root) + os.sep
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            if frame.filename.startswith(prefix):
                where = f"{frame.filename}:{frame.lineno}"
                break
    return f"{where}: importing the task code failed: {_one_line(exc)}"


def _optional_function(module: ModuleType, name: str, task_py: Path) -> Callable[..., Any] | None:
    value = getattr(module, name, None)
    if value is None:
        return None
    if not callable(value):
        raise TaskCodeError(f"{task_py}: {name} must be a function, got {type(value).__name__}")
    function: Callable[..., Any] = value
    return function


def load_task(task_dir: Path, expected_hash: str) -> TaskModule:
    """Import the node's copy of a task directory, refusing it unless its hash matches.

    A directory with ``__init__.py`` is loaded as the package ``accord_task_<hash12>`` (so
    its modules may import each other with relative imports) and its ``task.py`` as the
    submodule ``task``; otherwise ``task.py`` alone is the module ``accord_task_<hash12>``.
    The task directory is never put on ``sys.path``.
    """
    task_dir = Path(task_dir)
    expected = expected_hash.strip().lower()
    if not _HEX64.fullmatch(expected):
        raise TaskCodeError(
            f"{task_dir}: the job's model.task_hash {expected_hash[:20]!r} is not a 64-digit "
            "hex SHA-256; compute it with accord.models.task_code.task_code_hash"
        )
    actual, digests = _hash_dir(task_dir)
    root = task_dir.resolve()
    task_py = task_dir / TASK_FILE
    if TASK_FILE not in digests:
        raise TaskCodeError(
            f"{task_py}: missing; a task directory must contain task.py defining "
            "build_model(input_shape, num_classes)"
        )
    if actual != expected:
        raise TaskCodeError(
            f"{task_dir}: the job expects task code {expected[:12]}, this node has "
            f"{actual[:12]}; update this node's copy or the job's model.task_hash"
        )

    name = _MODULE_PREFIX + actual[:12]
    package = "__init__.py" in digests
    with _LOAD_LOCK:
        before = _listing(root)
        _install_finder()
        _forget_modules(name)  # a fresh import each time: no state from an earlier load
        _FINDER.register(name, _Registered(root=root, package=package, digests=digests))
        saved = sys.dont_write_bytecode
        # Our loader writes no bytecode; this also keeps imports the user's code triggers
        # from writing any while we hold the import.
        sys.dont_write_bytecode = True
        try:
            module = importlib.import_module(f"{name}.task" if package else name)
        except (Exception, SystemExit) as exc:
            _forget_modules(name)
            _FINDER.unregister(name)
            raise TaskCodeError(_import_failure(exc, root, task_py)) from exc
        finally:
            sys.dont_write_bytecode = saved

        after_hash = _hash_dir(task_dir)[0]
        written = sorted(_listing(root) - before)
        if after_hash != actual or written:
            _forget_modules(name)
            _FINDER.unregister(name)
            detail = f"new entries {', '.join(written[:3])}" if written else "files changed"
            raise TaskCodeError(
                f"{task_dir}: importing the task code modified its own directory ({detail}); "
                "task code must not write into its directory"
            )

    try:
        build_model = _optional_function(module, "build_model", task_py)
        if build_model is None:
            raise TaskCodeError(
                f"{task_py}: defines no build_model(input_shape, num_classes) function; "
                "add one that returns a torch.nn.Module"
            )
        train = _optional_function(module, "train", task_py)
        evaluate = _optional_function(module, "evaluate", task_py)
    except TaskCodeError:
        _forget_modules(name)
        _FINDER.unregister(name)
        raise
    return TaskModule(
        build_model=build_model, train=train, evaluate=evaluate, hash=actual, path=root
    )
