"""Helpers shared by the benchmark scripts under bench/.

This module is imported by the scripts; running it on its own does nothing (``make bench``
runs every ``bench/*.py``, so it must exit 0 quietly).

- ``ensure_flower_venv`` builds the peer environment in which Flower runs. Flower pins
  versions of cryptography, protobuf, typer, ... that must not constrain Accord's own
  environment, so it lives in its own venv under ``.bench/flower-venv``.
- ``timed_subprocess`` times a whole child process: interpreter start, imports, work and
  report.
- ``ensure_fashion_mnist`` makes sure Debian's ``dataset-fashion-mnist`` is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO_ROOT / ".bench"

# The CPU build of torch lies on this machine's disk (pip's find-links): it must be
# installed before anything else, or a dependency could resolve a CUDA build.
TORCH_PIN = "torch==2.13.0"
# The ``simulation`` extra brings Ray (flwr 1.42.0 pins ray==2.55.1 on Python 3.11), the
# backend that ``flwr.simulation.run_simulation`` runs its ClientApps on.
FLOWER_PIN = "flwr[simulation]==1.42.0"
FLOWER_EXTRAS: tuple[str, ...] = ("numpy", "scikit-learn", "safetensors")
# The stamp records what was installed; a changed list reinstalls.
_FLOWER_STAMP_TEXT = "\n".join((TORCH_PIN, FLOWER_PIN, *FLOWER_EXTRAS)) + "\n"

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_PROBE = FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz"
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"


def log(message: str) -> None:
    """Progress for a person watching; stdout is kept for the results."""
    print(message, file=sys.stderr, flush=True)


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _base_python() -> str:
    """A Python 3.11 to create a venv from: ``python3.11`` on PATH, else this one."""
    found = shutil.which("python3.11")
    if found is not None:
        return found
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    raise SystemExit("bench: python3.11 is needed to create the Flower environment")


def _run_checked(cmd: Sequence[str], *, quiet: bool = False) -> None:
    """Run ``cmd``; exit with a clear line if it fails. ``quiet`` shows output only then."""
    log("bench: $ " + " ".join(cmd))
    result = subprocess.run(
        list(cmd),
        stdout=subprocess.PIPE if quiet else None,
        stderr=subprocess.STDOUT if quiet else None,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        if quiet:
            log("\n".join(result.stdout.splitlines()[-40:]))
        raise SystemExit(
            f"bench: command failed with exit code {result.returncode}: {' '.join(cmd)}"
        )


def ensure_flower_venv(root: Path = REPO_ROOT) -> Path:
    """Return the Python of ``root/.bench/flower-venv``, creating and filling it if needed.

    Installs ``torch==2.13.0`` first (the CPU wheel from this machine's disk), then
    ``flwr[simulation]==1.42.0`` with numpy, scikit-learn and safetensors. A stamp file
    written after success lets later runs skip all of this.
    """
    venv = root / ".bench" / "flower-venv"
    python = venv_python(venv)
    stamp = venv / ".accord-bench-installed"
    if python.exists() and stamp.exists() and stamp.read_text() == _FLOWER_STAMP_TEXT:
        return python
    log(f"bench: creating the Flower peer environment in {venv} (one-off, a few minutes)")
    if not python.exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        _run_checked([_base_python(), "-m", "venv", str(venv)])
    stamp.unlink(missing_ok=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    # pip's output is kept back unless it fails: this machine's pip configuration makes it
    # print a warning for each package its local indexes lack.
    _run_checked([*pip, TORCH_PIN], quiet=True)
    # torch is named again so that no dependency can move it.
    _run_checked([*pip, TORCH_PIN, FLOWER_PIN, *FLOWER_EXTRAS], quiet=True)
    check = "import flwr, ray, torch; from flwr.simulation import run_simulation"
    _run_checked([str(python), "-c", check])
    stamp.write_text(_FLOWER_STAMP_TEXT)
    return python


def timed_subprocess(
    cmd: Sequence[str], env: Mapping[str, str] | None = None
) -> tuple[int, float, str]:
    """Run ``cmd`` to completion; return (exit code, wall seconds, stdout).

    The time covers the whole process: interpreter start, imports, work and report.
    stderr is passed through to ours so that a failure can be read.
    """
    start = time.perf_counter()
    result = subprocess.run(
        list(cmd),
        env=None if env is None else dict(env),
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    return result.returncode, seconds, result.stdout


def _apt_get(*args: str) -> list[str]:
    prefix = ["sudo"] if os.geteuid() != 0 else []
    return [*prefix, "apt-get", *args]


def ensure_fashion_mnist() -> Path:
    """Return the folder of Fashion-MNIST's gzipped IDX files, installing them if absent.

    They come from Debian's ``dataset-fashion-mnist``. If the install fails even after an
    ``apt-get update``, print one line naming the command and exit with status 2.
    """
    if FASHION_MNIST_PROBE.exists():
        return FASHION_MNIST_DIR
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = _apt_get("install", "-y", "-q", FASHION_MNIST_PACKAGE)
    log(f"bench: {FASHION_MNIST_PROBE} is absent; $ {' '.join(install)}")
    try:
        done = subprocess.run(install, env=env, check=False).returncode == 0
        if not done:
            log(f"bench: $ {' '.join(_apt_get('update'))}")
            subprocess.run(_apt_get("update", "-q"), env=env, check=False)
            done = subprocess.run(install, env=env, check=False).returncode == 0
    except OSError:  # apt-get or sudo is not there at all
        done = False
    if not done or not FASHION_MNIST_PROBE.exists():
        print(
            f"bench: Fashion-MNIST is missing and `{' '.join(install)}` failed; "
            "run it by hand, then rerun the benchmark",
            file=sys.stderr,
        )
        sys.exit(2)
    return FASHION_MNIST_DIR
