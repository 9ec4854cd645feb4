"""IDX files: every dtype, gzipped by magic bytes or not, and malformed files refused."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from accord.data import load_idx_images_labels, read_idx
from accord.errors import DataError

from .conftest import IdxWriter, idx_bytes

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gz", [False, True])
def test_roundtrip(write_idx: IdxWriter, dtype: type[np.generic], gz: bool) -> None:
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    if dtype is np.uint8:
        array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    out = read_idx(write_idx("a.idx", array, gz=gz))
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, array)


def test_gzip_is_recognised_by_magic_not_suffix(write_idx: IdxWriter) -> None:
    array = np.arange(6, dtype=np.int32)
    np.testing.assert_array_equal(read_idx(write_idx("labels-idx1-ubyte", array, gz=True)), array)
    np.testing.assert_array_equal(read_idx(write_idx("plain.gz", array, gz=False)), array)


def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "bad-idx"
    path.write_bytes(data)
    return path


def test_bad_magic(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"bad-idx: not an IDX file"):
        read_idx(_write(tmp_path, b"\x01\x00\x08\x01\x00\x00\x00\x01\x05"))


def test_unknown_dtype_code(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"bad-idx: unknown IDX dtype code 0x0A"):
        read_idx(_write(tmp_path, b"\x00\x00\x0a\x01\x00\x00\x00\x01\x05"))


def test_payload_size_must_match_dims(tmp_path: Path) -> None:
    data = idx_bytes(np.arange(10, dtype=np.uint8).reshape(2, 5))
    with pytest.raises(DataError, match=r"bad-idx: payload is 9 bytes but dims"):
        read_idx(_write(tmp_path, data[:-1]))
    with pytest.raises(DataError, match=r"payload is 11 bytes"):
        read_idx(_write(tmp_path, data + b"\x00"))


def test_truncated_header(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"truncated IDX header"):
        read_idx(_write(tmp_path, b"\x00\x00\x08\x03\x00\x00\x00\x02"))


def test_corrupt_gzip(tmp_path: Path) -> None:
    data = gzip.compress(idx_bytes(np.arange(100, dtype=np.uint8)))
    with pytest.raises(DataError, match=r"bad-idx: corrupt gzip"):
        read_idx(_write(tmp_path, data[: len(data) // 2]))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"absent.gz: not found"):
        read_idx(tmp_path / "absent.gz")


def test_images_and_labels(write_idx: IdxWriter) -> None:
    images = np.zeros((3, 4, 5), dtype=np.uint8)
    images[0, 0, 0] = 255
    images[1, 1, 1] = 51
    x, y = load_idx_images_labels(
        write_idx("img.gz", images, gz=True),
        write_idx("lab", np.array([2, 0, 1], dtype=np.uint8)),
    )
    assert x.shape == (3, 1, 4, 5) and x.dtype == np.float32
    assert x.max() == 1.0 and x[1, 0, 1, 1] == pytest.approx(0.2)
    assert y.dtype == np.int64 and y.tolist() == [2, 0, 1]


def test_counts_must_match(write_idx: IdxWriter) -> None:
    images = write_idx("img", np.zeros((3, 2, 2), dtype=np.uint8))
    labels = write_idx("lab", np.zeros(4, dtype=np.uint8))
    with pytest.raises(DataError, match=r"img holds 3 images but lab holds 4 labels"):
        load_idx_images_labels(images, labels)


def test_shapes_must_be_images_and_labels(write_idx: IdxWriter) -> None:
    flat = write_idx("flat", np.zeros((3, 4), dtype=np.uint8))
    labels = write_idx("lab", np.zeros(3, dtype=np.uint8))
    with pytest.raises(DataError, match=r"flat: images must have 3 dims"):
        load_idx_images_labels(flat, labels)
    images = write_idx("img", np.zeros((3, 2, 2), dtype=np.uint8))
    floats = write_idx("flab", np.zeros(3, dtype=np.float32))
    with pytest.raises(DataError, match=r"flab: labels must be integers"):
        load_idx_images_labels(images, floats)


def test_fashion_mnist_when_installed() -> None:
    folder = Path("/usr/share/datasets/fashion-mnist")
    images, labels = folder / "t10k-images-idx3-ubyte.gz", folder / "t10k-labels-idx1-ubyte.gz"
    if not (images.is_file() and labels.is_file()):
        pytest.skip(f"{folder} is absent (apt-get install dataset-fashion-mnist)")
    x, y = load_idx_images_labels(images, labels)
    assert x.shape == (10000, 1, 28, 28) and x.min() >= 0.0 and x.max() <= 1.0
    assert np.bincount(y).tolist() == [1000] * 10
