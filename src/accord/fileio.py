"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def write_bytes_atomic(
    path: Path, data: bytes, mode: int = 0o644, *, sync_dir: bool = False
) -> None:
    """Write to a temporary file in the same folder, fsync it, then rename over ``path``.

    ``sync_dir`` also fsyncs the folder, so that the rename itself survives a crash: for
    state whose loss would be unsafe (the secure generator's counter), not for every file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:  # some filesystems cannot fsync a directory
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    write_bytes_atomic(path, text.encode("utf-8"), mode)


def save_tensors_atomic(
    path: Path,
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str] | None = None,
    mode: int = 0o644,
) -> None:
    """Save named tensors as safetensors, atomically."""
    from safetensors.torch import save

    contiguous = {name: t.detach().contiguous() for name, t in tensors.items()}
    write_bytes_atomic(path, save(contiguous, metadata=dict(metadata or {})), mode)


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file (no code is ever deserialised)."""
    from safetensors.torch import load_file

    return dict(load_file(str(path)))


def load_tensors_with_metadata(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and the header's string metadata of a safetensors file."""
    from safetensors import safe_open

    tensors: dict[str, torch.Tensor] = {}
    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
        for name in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
            tensors[name] = handle.get_tensor(name)
    return tensors, metadata
