"""User task directories: the hash contract and loading the node's copy."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import py_compile
import shutil
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from accord.errors import TaskCodeError
from accord.models.task_code import TaskModule, load_task, task_code_hash

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom_task"

TASK_PY = """\
from torch import nn


def build_model(input_shape, num_classes):
    return nn.Linear(input_shape[0], num_classes)


def train(model, x, y, config):
    return 0.5
"""


def _make_task(root: Path, task_py: str = TASK_PY) -> Path:
    root.mkdir(parents=True)
    (root / "task.py").write_text(task_py)
    (root / "notes.txt").write_text("notes\n")
    (root / "sub").mkdir()
    (root / "sub" / "data.csv").write_text("a,b\n1,2\n")
    (root / "requirements.txt").write_text("torch==2.13.0\n")
    return root


def _reference_hash(root: Path) -> str:
    """The documented encoding, written out independently of the implementation."""
    entries = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__pycache__"]
        for name in filenames:
            if name.startswith(".") or name.endswith(".pyc"):
                continue
            path = Path(dirpath) / name
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            entries.append((path.relative_to(root).as_posix(), digest))
    hasher = hashlib.sha256()
    for rel, digest in sorted(entries):
        hasher.update(rel.encode("utf-8") + b"\0" + digest.encode() + b"\n")
    requirements = root / "requirements.txt"
    hasher.update(requirements.read_bytes() if requirements.exists() else b"")
    return hasher.hexdigest()


# --- the hash ----------------------------------------------------------------------------


def test_hash_follows_the_documented_encoding(tmp_path: Path) -> None:
    root = _make_task(tmp_path / "task")
    assert task_code_hash(root) == _reference_hash(root)
    (root / "requirements.txt").unlink()
    assert task_code_hash(root) == _reference_hash(root)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert task_code_hash(empty) == hashlib.sha256(b"").hexdigest()


def test_hash_is_stable_across_calls_and_copies(tmp_path: Path) -> None:
    root = _make_task(tmp_path / "task")
    first = task_code_hash(root)
    assert task_code_hash(root) == first
    copy = tmp_path / "elsewhere" / "other-name"
    shutil.copytree(root, copy)
    assert task_code_hash(copy) == first


@pytest.mark.parametrize("rel", ["task.py", "notes.txt", "sub/data.csv", "requirements.txt"])
def test_hash_changes_with_any_edit(tmp_path: Path, rel: str) -> None:
    root = _make_task(tmp_path / "task")
    before = task_code_hash(root)
    with (root / rel).open("a") as handle:
        handle.write(" ")
    assert task_code_hash(root) != before


def test_hash_changes_when_a_file_is_added_renamed_or_removed(tmp_path: Path) -> None:
    root = _make_task(tmp_path / "task")
    hashes = {task_code_hash(root)}
    (root / "sub" / "extra.py").write_text("")
    hashes.add(task_code_hash(root))
    (root / "notes.txt").rename(root / "notes.md")
    hashes.add(task_code_hash(root))
    (root / "sub" / "data.csv").rename(root / "data.csv")  # same name, other folder
    hashes.add(task_code_hash(root))
    (root / "requirements.txt").unlink()
    hashes.add(task_code_hash(root))
    assert len(hashes) == 5


def test_hash_ignores_caches_and_hidden_entries(tmp_path: Path) -> None:
    root = _make_task(tmp_path / "task")
    before = task_code_hash(root)
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "task.cpython-311.pyc").write_bytes(b"\x00junk")
    (root / "sub" / "__pycache__").mkdir()
    (root / "sub" / "__pycache__" / "notes.txt").write_text("anything")
    (root / "stray.pyc").write_bytes(b"\x00")
    (root / ".hidden").write_text("secret")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    os.symlink("/etc/passwd", root / ".git" / "link")  # links inside skipped dirs: ignored
    assert task_code_hash(root) == before


def test_links_are_refused(tmp_path: Path) -> None:
    root = _make_task(tmp_path / "task")
    (root / "link.py").symlink_to(root / "task.py")
    with pytest.raises(TaskCodeError, match=r"link\.py is a symbolic link"):
        task_code_hash(root)
    (root / "link.py").unlink()
    (root / "linked_dir").symlink_to(root / "sub", target_is_directory=True)
    with pytest.raises(TaskCodeError, match="linked_dir is a symbolic link"):
        task_code_hash(root)


def test_root_reached_through_a_link_hashes_its_content(tmp_path: Path) -> None:
    root = _make_task(tmp_path / "task")
    (tmp_path / "alias").symlink_to(root, target_is_directory=True)
    assert task_code_hash(tmp_path / "alias") == task_code_hash(root)


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TaskCodeError, match="task directory not found"):
        task_code_hash(tmp_path / "nope")


# --- loading -----------------------------------------------------------------------------


def test_load_task_returns_the_functions(tmp_path: Path) -> None:
    root = _make_task(tmp_path / "task")
    digest = task_code_hash(root)
    task = load_task(root, digest.upper())
    assert isinstance(task, TaskModule)
    assert task.hash == digest and task.path == root.resolve()
    model = task.build_model((4,), 3)
    assert isinstance(model, nn.Linear)
    assert task.train is not None and task.train(model, None, None, None) == 0.5
    assert task.evaluate is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.hash = "x"  # type: ignore[misc]


def test_mismatched_hash_is_refused_with_both_hashes(tmp_path: Path) -> None:
    root = _make_task(tmp_path / "task")
    actual = task_code_hash(root)
    expected = "ab" * 32
    with pytest.raises(TaskCodeError) as info:
        load_task(root, expected)
    message = str(info.value)
    assert "\n" not in message
    assert str(root) in message
    assert f"expects task code {expected[:12]}," in message
    assert f"this node has {actual[:12]};" in message
    assert actual[:13] not in message
    assert "model.task_hash" in message


def test_malformed_expected_hash_is_refused(tmp_path: Path) -> None:
    root = _make_task(tmp_path / "task")
    with pytest.raises(TaskCodeError, match="not a 64-digit hex"):
        load_task(root, "abc")


def test_missing_directory_or_task_py_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TaskCodeError, match="not found"):
        load_task(tmp_path / "nope", "0" * 64)
    root = _make_task(tmp_path / "task")
    (root / "task.py").unlink()
    with pytest.raises(TaskCodeError, match=r"task\.py: missing"):
        load_task(root, task_code_hash(root))


def test_missing_build_model_is_refused(tmp_path: Path) -> None:
    root = _make_task(tmp_path / "task", "def train(model, x, y, config):\n    return 0.0\n")
    with pytest.raises(TaskCodeError, match="defines no build_model"):
        load_task(root, task_code_hash(root))


def test_error_while_importing_names_file_and_one_line(tmp_path: Path) -> None:
    root = _make_task(tmp_path / "task", "x = 1\nraise RuntimeError('boom\\nsecond line')\n")
    with pytest.raises(TaskCodeError) as info:
        load_task(root, task_code_hash(root))
    message = str(info.value)
    assert "task.py:2" in message and "RuntimeError: boom" in message
    assert "second line" not in message and "\n" not in message

    broken = _make_task(tmp_path / "broken", "def build_model(:\n")
    with pytest.raises(TaskCodeError, match=r"task\.py:1: .*SyntaxError"):
        load_task(broken, task_code_hash(broken))


def test_loading_writes_no_bytecode(tmp_path: Path) -> None:
    root = _make_task(tmp_path / "task")
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    load_task(root, task_code_hash(root))
    load_task(root, task_code_hash(root))  # and again, from a fresh import
    assert not list(root.rglob("__pycache__"))
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before


def test_a_planted_pyc_never_runs_instead_of_the_source(tmp_path: Path) -> None:
    # __pycache__ is outside the hash; if the loader read it, anyone who can write there
    # could run code the job never pinned.
    root = _make_task(tmp_path / "task")
    evil = tmp_path / "evil.py"
    evil.write_text("def build_model(input_shape, num_classes):\n    return 'evil'\n")
    cache = importlib.util.cache_from_source(str(root / "task.py"))
    py_compile.compile(
        str(evil),
        cfile=cache,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
    task = load_task(root, task_code_hash(root))
    assert isinstance(task.build_model((2,), 2), nn.Linear)


PACKAGE_TASK = """\
from . import layers


def build_model(input_shape, num_classes):
    from .late import width  # imported when called, after loading
    return layers.make(input_shape[0] * width, num_classes)
"""


def _make_package(root: Path) -> Path:
    _make_task(root, PACKAGE_TASK)
    (root / "__init__.py").write_text("")
    (root / "layers.py").write_text(
        "from torch import nn\n\n\ndef make(a, b):\n    return nn.Linear(a, b)\n"
    )
    (root / "late.py").write_text("width = 1\n")
    return root


def test_package_task_uses_relative_imports_and_stays_off_sys_path(tmp_path: Path) -> None:
    root = _make_package(tmp_path / "pkg")
    digest = task_code_hash(root)
    task = load_task(root, digest)
    model = task.build_model((3,), 2)
    assert isinstance(model, nn.Linear) and model.in_features == 3
    assert str(root) not in sys.path and str(root.resolve()) not in sys.path
    assert f"accord_task_{digest[:12]}.task" in sys.modules
    assert not list(root.rglob("__pycache__"))


def test_a_module_changed_after_hashing_is_refused(tmp_path: Path) -> None:
    root = _make_package(tmp_path / "pkg")
    task = load_task(root, task_code_hash(root))
    (root / "late.py").write_text("width = 100\n")  # swapped after the check
    with pytest.raises(ImportError, match="changed after the task directory was hashed"):
        task.build_model((3,), 2)


def test_task_code_that_writes_into_its_directory_is_refused(tmp_path: Path) -> None:
    code = (
        TASK_PY
        + "\nfrom pathlib import Path\nPath(__file__).with_name('out.txt').write_text('x')\n"
    )
    root = _make_task(tmp_path / "task", code)
    with pytest.raises(TaskCodeError, match=r"modified its own directory \(new entries out\.txt\)"):
        load_task(root, task_code_hash(root))


# --- the example -------------------------------------------------------------------------


def test_example_task_loads_and_builds_a_model() -> None:
    had_cache = (EXAMPLE / "__pycache__").exists()
    assert (EXAMPLE / "requirements.txt").read_text().strip() == "torch==2.13.0"
    task = load_task(EXAMPLE, task_code_hash(EXAMPLE))
    model = task.build_model((1, 28, 28), 10)
    assert isinstance(model, nn.Module)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    x = torch.randn(4, 1, 28, 28)
    assert model(x).shape == (4, 10)
    assert task.evaluate is not None
    metrics = task.evaluate(model, x, torch.tensor([0, 1, 2, 3]))
    assert set(metrics) == {"accuracy", "loss"}
    assert (EXAMPLE / "__pycache__").exists() == had_cache
