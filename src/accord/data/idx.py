"""Read IDX files (the MNIST / Fashion-MNIST format), gzipped or not.

Layout: two zero bytes, a dtype code, the number of dimensions, then one big-endian
uint32 per dimension, then the values, big-endian, in C order. Compression is recognised
by gzip's magic bytes (1f 8b), not by the file name, so a renamed file still reads.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np
import numpy.typing as npt

from accord.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise DataError(f"{path}: not found; check the IDX path in the job file's [data] section")
    raw = path.read_bytes()
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt gzip data ({exc}); download the file again") from exc


def read_idx(path: Path) -> npt.NDArray[np.generic]:
    """The array stored in an IDX file, in native byte order, shaped by its header."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number); expected 00 00 <type> <ndim>")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DataError(f"{path}: unknown IDX dtype code 0x{code:02X} (known: {known})")
    if ndim == 0:
        raise DataError(f"{path}: IDX header declares 0 dimensions; the file is malformed")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header ({len(data)} bytes for {ndim} dims)")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[code])
    expected = math.prod(dims) * dtype.itemsize
    if len(data) - header != expected:
        raise DataError(
            f"{path}: payload is {len(data) - header} bytes but dims {dims} of "
            f"{dtype.name} need {expected}; the file is truncated or malformed"
        )
    values = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    # Native byte order and a writable copy: torch refuses big-endian, read-only buffers.
    return values.astype(dtype.newbyteorder("="))


def load_idx_images_labels(
    images: Path, labels: Path
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Images (n, H, W) and labels (n,) as X float32 (n, 1, H, W) and y int64 (n,).

    uint8 images are scaled to [0, 1] by /255; other dtypes are kept as stored.
    """
    images, labels = Path(images), Path(labels)
    x = read_idx(images)
    y = read_idx(labels)
    if x.ndim != 3:
        raise DataError(f"{images}: images must have 3 dims (n, H, W), this file has {x.shape}")
    if y.ndim != 1:
        raise DataError(f"{labels}: labels must have 1 dim (n,), this file has {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{labels}: labels must be integers, this file holds {y.dtype.name}")
    if x.shape[0] != y.shape[0]:
        raise DataError(
            f"{images.name} holds {x.shape[0]} images but {labels.name} holds {y.shape[0]} "
            "labels; pair the images file with its own labels file"
        )
    if y.size and int(y.min()) < 0:
        raise DataError(f"{labels}: negative label {int(y.min())}; labels must be 0..K-1")
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    x_out = (x.astype(np.float32) / np.float32(scale))[:, None, :, :]
    return np.ascontiguousarray(x_out), y.astype(np.int64)
