"""No code under src/ may deserialise with pickle: model files are safetensors.

Unpickling runs arbitrary code from the bytes it reads, and a node reads bytes from other
parties. The scan is textual on purpose: even the word must not appear in src/.
"""

from __future__ import annotations

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

FORBIDDEN = [
    re.compile(r"\bpickle\b"),
    re.compile(r"cPickle"),
    re.compile(r"\bdill\b"),
    re.compile(r"allow_pickle\s*=\s*True"),
]
# Build artefacts that are not our source (egg-info copies the README, for one).
SKIPPED_DIRS = {"__pycache__"}
SKIPPED_DIR_SUFFIXES = (".egg-info",)


def _scanned_files(root: Path) -> list[Path]:
    files = []
    for path in sorted(root.rglob("*")):
        rel_dirs = path.relative_to(root).parts[:-1]
        if any(d in SKIPPED_DIRS or d.endswith(SKIPPED_DIR_SUFFIXES) for d in rel_dirs):
            continue
        if path.is_file() and path.suffix != ".pyc":
            files.append(path)
    return files


def offending_lines(text: str) -> list[tuple[int, str]]:
    """(line number, reason) for every line that could unpickle."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for pattern in FORBIDDEN:
            if pattern.search(line):
                found.append((number, f"matches {pattern.pattern!r}"))
        if "torch.load(" in line and "weights_only=True" not in line:
            found.append((number, "torch.load( without weights_only=True"))
    return found


def test_scanner_flags_each_forbidden_form() -> None:
    # The scanner itself must work, or the real scan below passes vacuously.
    sample = "\n".join(
        [
            "import pickle",
            "from six.moves import cPickle",
            "import dill as d",
            "np.load(f, allow_pickle = True)",
            "state = torch.load(path)",
            "state = torch.load(path, weights_only=True)",
            "pickled_value = 1  # a longer identifier is fine",
        ]
    )
    assert [number for number, _ in offending_lines(sample)] == [1, 2, 3, 4, 5]


def test_src_has_no_way_to_unpickle() -> None:
    files = _scanned_files(SRC)
    python_files = [f for f in files if f.suffix == ".py"]
    assert len(python_files) > 5, f"scanned only {len(python_files)} .py files under {SRC}"
    problems = []
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, reason in offending_lines(text):
            problems.append(f"{path.relative_to(SRC.parent)}:{number}: {reason}")
    assert not problems, "unpickling is forbidden in src/:\n" + "\n".join(problems)
