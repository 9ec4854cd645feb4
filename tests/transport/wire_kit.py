"""Helpers for the wire codec's tests: field-by-field comparison, hand-made headers and
chunks, and a good message to send after a bad one."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel

from accord.fl.messages import TrainRequest
from accord.transport.wire import Chunk, Header, Reassembler, TensorMeta, chunks


def assert_same(sent: Any, got: Any, where: str = "message") -> None:
    """Field by field: tensors with torch.equal, arrays with array_equal, the rest with ==."""
    if isinstance(sent, Mapping) and not isinstance(sent, BaseModel):
        assert type(got) is dict, where
        assert list(sent) == list(got), where
        for key in sent:
            assert_same(sent[key], got[key], f"{where}[{key!r}]")
        return
    assert type(got) is type(sent) or isinstance(sent, torch.Tensor), where
    if isinstance(sent, torch.Tensor):
        assert type(got) is torch.Tensor and got.dtype == sent.dtype, where
        assert got.shape == sent.shape and torch.equal(got, sent.detach()), where
    elif isinstance(sent, np.ndarray):
        assert got.dtype == sent.dtype and got.shape == sent.shape, where
        assert np.array_equal(got, sent), where
    elif dataclasses.is_dataclass(sent):
        for f in dataclasses.fields(sent):
            assert_same(getattr(sent, f.name), getattr(got, f.name), f"{where}.{f.name}")
    elif isinstance(sent, tuple | list):
        assert len(got) == len(sent), where
        for i, (a, b) in enumerate(zip(sent, got, strict=True)):
            assert_same(a, b, f"{where}[{i}]")
    else:
        assert got == sent, where


def joined(encoded: tuple[bytes, list[memoryview]]) -> tuple[bytes, bytes]:
    header, views = encoded
    return header, b"".join(views)


def through_chunks(obj: object, message_id: int = 1, chunk_bytes: int = 1 << 16) -> object:
    reassembler = Reassembler()
    stream = list(chunks(obj, message_id, chunk_bytes))
    for chunk in stream[:-1]:
        assert reassembler.feed(chunk) is None
    out = reassembler.feed(stream[-1])
    assert reassembler.last_message_id == message_id
    return out


def header_bytes(body: object, tensors: list[tuple[str, list[int], int]] | None = None,
                 kind: str | None = None, message_id: int = 1) -> bytes:  # fmt: skip
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    if kind is None:
        kind = body["type"] if isinstance(body, dict) and "fields" in body else "value"
    metas = [TensorMeta(dtype=d, shape=s, nbytes=n) for d, s, n in tensors or []]
    return Header(kind=kind, body=raw, tensors=metas, message_id=message_id).SerializeToString()


def chunk_bytes(message_id: int, index: int, data: bytes, last: bool = False) -> bytes:
    return Chunk(message_id=message_id, index=index, data=data, last=last).SerializeToString()


GOOD = TrainRequest("job", 3, torch.arange(600, dtype=torch.float32), 0.1, {"c": torch.ones(50)})


def good_stream(message_id: int = 1) -> list[bytes]:
    return list(chunks(GOOD, message_id, 500))


def still_decodes(reassembler: Reassembler, message_id: int = 99) -> None:
    out = None
    for chunk in good_stream(message_id):
        out = reassembler.feed(chunk)
    assert_same(GOOD, out)
