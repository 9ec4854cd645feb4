"""The values of a message body: the tagged JSON tree, and the tensors beside it.

:mod:`accord.transport.wire` frames messages (its docstring lists the tags); this module
turns an object into the body's tree plus a list of out-of-band buffers (tensors, large
bytes) and back. Every check that makes decoding safe is here: the allowlists of
:mod:`accord.transport.wire_types`, the numbers' bounds, the nesting depth, each buffer's
size against its shape and its use exactly once. Error messages quote what the bytes said
only through ``repr`` and cut short, so that each stays one line.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol, cast

import numpy as np
import torch
from pydantic import ValidationError

from accord.errors import AccordError, WireError
from accord.transport.wire_types import (
    BYTES_DTYPE,
    DTYPES,
    NUMPY_DTYPES,
    TORCH_DTYPES,
    RecordType,
    conforms,
    registry,
)

INLINE_BYTES_MAX = 1024
"""Bytes up to this size travel inside the body (base64); larger ones out of band."""
MAX_DEPTH = 64
MAX_TENSORS = 1 << 16
MAX_NDIM = 32
INT_LIMIT = 1 << 63
VALUE_KIND = "value"
"""The header kind of a message whose top level is not a record."""


class TensorMetaView(Protocol):
    """What a protobuf ``TensorMeta`` holds."""

    dtype: str
    shape: Sequence[int]
    nbytes: int


# --- tensors ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TensorSpec:
    dtype: str
    shape: tuple[int, ...]
    nbytes: int


def tensor_specs(declared: Sequence[TensorMetaView], max_message_bytes: int) -> list[TensorSpec]:
    """The header's tensors, checked, before a byte is allocated for them."""
    if len(declared) > MAX_TENSORS:
        raise WireError(f"message: {len(declared)} tensors, more than {MAX_TENSORS}")
    metas, total = [], 0
    for i, meta in enumerate(declared):
        where = f"message: tensor {i}"
        if meta.dtype == BYTES_DTYPE:
            itemsize = 1
            if len(meta.shape) != 1:
                raise WireError(f"{where}: a bytes buffer must be one-dimensional")
        elif meta.dtype in DTYPES:
            itemsize = DTYPES[meta.dtype].itemsize
        else:
            raise WireError(f"{where}: dtype {meta.dtype[:40]!r} is not allowed on the wire")
        shape = tuple(meta.shape)
        # Zero dims count as one: an empty array's other dims must fit too, or its strides
        # overflow in NumPy and torch.
        if len(shape) > MAX_NDIM or math.prod(max(d, 1) for d in shape) > max_message_bytes:
            raise WireError(f"{where}: shape is over the limits")
        if meta.nbytes != math.prod(shape) * itemsize:
            raise WireError(f"{where}: {meta.nbytes} bytes do not match shape {list(shape)}")
        total += meta.nbytes
        if total > max_message_bytes:
            raise WireError(f"message: tensors over the limit of {max_message_bytes} bytes")
        metas.append(TensorSpec(meta.dtype, shape, meta.nbytes))
    return metas


def _array(meta: TensorSpec, buffer: bytearray, as_numpy: bool, where: str) -> object:
    wire = DTYPES[meta.dtype]
    if wire.name == "bool" and buffer.translate(None, b"\x00\x01"):
        raise WireError(f"{where}: a bool tensor holds bytes other than 0 and 1")
    if as_numpy and wire.numpy_dtype is None:
        raise WireError(f"{where}: NumPy has no dtype {wire.name}")
    try:
        if as_numpy:
            return np.frombuffer(buffer, dtype=wire.numpy_dtype).reshape(meta.shape)
        if meta.nbytes == 0:  # torch.frombuffer refuses an empty buffer
            return torch.empty(meta.shape, dtype=wire.torch_dtype)
        return torch.frombuffer(buffer, dtype=wire.torch_dtype).reshape(meta.shape)
    except (ValueError, RuntimeError):  # the specs were checked: a second line of defence
        raise WireError(f"{where}: a shape the array library refuses") from None


# --- encoding --------------------------------------------------------------------------------


class _Encoder:
    def __init__(self) -> None:
        self.metas: list[TensorSpec] = []
        self.views: list[memoryview] = []

    def _buffer(self, dtype: str, shape: tuple[int, ...], view: memoryview) -> int:
        self.metas.append(TensorSpec(dtype, shape, view.nbytes))
        self.views.append(view)
        return len(self.views) - 1

    def value(self, obj: object, depth: int, where: str) -> Any:
        if depth > MAX_DEPTH:
            raise WireError(f"{where}: nested deeper than {MAX_DEPTH} levels")
        if obj is None or obj is True or obj is False:
            return obj
        if isinstance(obj, Enum):  # before str: the allowed enums are StrEnums
            name = registry().enum_names.get(type(obj))
            if name is None:
                raise WireError(f"{where}: enum {type(obj).__qualname__} is not on the wire")
            return {"enum": name, "value": obj.value}
        if isinstance(obj, np.generic) and obj.dtype.kind in "biuf":
            obj = obj.item()  # a NumPy scalar arrives as the Python number it equals
        if isinstance(obj, str):
            return str(obj)
        if isinstance(obj, bool):
            return obj
        if isinstance(obj, int):
            if not -INT_LIMIT < obj < INT_LIMIT:
                raise WireError(f"{where}: integer {obj} is out of the 64-bit range")
            return int(obj)
        if isinstance(obj, float):
            if not math.isfinite(obj):
                raise WireError(f"{where}: {obj} is not finite")
            return float(obj)
        if type(obj) is bytes:
            if len(obj) <= INLINE_BYTES_MAX:
                return {"b64": base64.b64encode(obj).decode("ascii")}
            return {"blob": self._buffer(BYTES_DTYPE, (len(obj),), memoryview(obj))}
        if isinstance(obj, torch.Tensor):
            return {"tensor": self._tensor(obj, where)}
        if type(obj) is np.ndarray:
            return {"ndarray": self._ndarray(obj, where)}
        record = registry().by_class.get(type(obj))
        if record is not None:
            return self._record(record, obj, depth, where)
        if type(obj).__module__.startswith("dp_accounting."):
            from accord.privacy.events import event_to_json

            try:
                return {"dp_event": event_to_json(cast(Any, obj))}
            except ValueError as refused:
                raise WireError(f"{where}: {refused}") from None
        if type(obj) is tuple:
            return {"tuple": [self.value(x, depth + 1, where) for x in obj]}
        if type(obj) is list:
            return [self.value(x, depth + 1, where) for x in obj]
        if isinstance(obj, Mapping):
            if not all(type(k) is str for k in obj):
                raise WireError(f"{where}: a mapping on the wire has string keys only")
            return {
                "dict": {k: self.value(v, depth + 1, f"{where}[{k!r}]") for k, v in obj.items()}
            }
        raise WireError(f"{where}: a {type(obj).__qualname__} is not allowed on the wire")

    def _tensor(self, tensor: torch.Tensor, where: str) -> int:
        wire = TORCH_DTYPES.get(tensor.dtype)
        if wire is None or tensor.layout != torch.strided or tensor.is_meta:
            raise WireError(f"{where}: a {tensor.dtype} {tensor.layout} tensor is not on the wire")
        # A copy only where the tensor is not already contiguous on the CPU (or is a lazy
        # negated view, which NumPy cannot see).
        flat = tensor.detach().cpu().resolve_neg().contiguous().reshape(-1)
        view = flat.view(torch.uint8).numpy().data
        return self._buffer(wire.name, tuple(tensor.shape), view)

    def _ndarray(self, array: np.ndarray[Any, Any], where: str) -> int:
        wire = NUMPY_DTYPES.get(f"{array.dtype.kind}{array.dtype.itemsize}")
        if wire is None or wire.numpy_dtype is None or array.dtype.fields is not None:
            raise WireError(f"{where}: a {array.dtype} array is not allowed on the wire")
        # Little-endian and C-contiguous: a copy only where the array is not already.
        flat = np.ascontiguousarray(array, dtype=wire.numpy_dtype).reshape(-1)
        return self._buffer(wire.name, array.shape, flat.view(np.uint8).data)

    def _record(self, record: RecordType, obj: Any, depth: int, where: str) -> Any:
        if record.is_model:
            # Nested models become plain dicts; the receiver's model validates them again.
            values = obj.model_dump(mode="python")
        else:
            values = {name: getattr(obj, name) for name in record.fields}
            for name, value in values.items():
                # A sender's bug shows at the sender, not as a refusal at the receiver.
                if not conforms(value, record.hints[name]):
                    raise WireError(f"{record.name}.{name}: a {type(value).__qualname__} "
                                    f"does not match {record.hints[name]}")  # fmt: skip
        fields = {
            name: self.value(value, depth + 1, f"{record.name}.{name}")
            for name, value in values.items()
        }
        return {"type": record.name, "fields": fields}


def encode_body(obj: object) -> tuple[str, bytes, list[TensorSpec], list[memoryview]]:
    """The header kind and body of ``obj``, its buffers' specs and their bytes."""
    encoder = _Encoder()
    tree = encoder.value(obj, 0, "message")
    try:
        text = json.dumps(tree, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        body = text.encode("utf-8")
    except UnicodeEncodeError:
        raise WireError("message: a string is not valid Unicode (a lone surrogate)") from None
    kind = tree["type"] if isinstance(tree, dict) and "fields" in tree else VALUE_KIND
    return kind, body, encoder.metas, encoder.views


# --- decoding --------------------------------------------------------------------------------


def _no_constant(name: str) -> Any:
    raise WireError(f"message body: {name} is not allowed")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise WireError("message body: a number is not finite")
    return value


def _bounded_int(text: str) -> int:
    value = int(text) if len(text) <= 20 else INT_LIMIT
    if not -INT_LIMIT < value < INT_LIMIT:
        raise WireError("message body: an integer is out of the 64-bit range")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise WireError("message body: an object repeats a key")
    return out


class _Decoder:
    def __init__(self, metas: list[TensorSpec], buffers: list[bytearray]) -> None:
        self.metas = metas
        self.buffers = buffers
        self.used = [False] * len(metas)

    def _take(self, index: object, blob: bool, where: str) -> tuple[TensorSpec, bytearray]:
        if type(index) is not int or not 0 <= index < len(self.metas) or self.used[index]:
            raise WireError(f"{where}: refers to no tensor, or to one already used")
        self.used[index] = True
        meta = self.metas[index]
        if (meta.dtype == BYTES_DTYPE) != blob:
            raise WireError(f"{where}: tensor {index} is of the wrong kind ({meta.dtype})")
        return meta, self.buffers[index]

    def value(self, node: Any, depth: int, where: str) -> object:
        if depth > MAX_DEPTH:
            raise WireError(f"{where}: nested deeper than {MAX_DEPTH} levels")
        if node is None or isinstance(node, bool | int | float | str):
            return node  # the JSON hooks already bounded the numbers
        if isinstance(node, list):
            return [self.value(x, depth + 1, where) for x in node]
        tag = sorted(node) if isinstance(node, dict) else []
        if tag == ["b64"] and isinstance(node["b64"], str):
            try:
                return base64.b64decode(node["b64"], validate=True)
            except (binascii.Error, ValueError):
                raise WireError(f"{where}: bytes that are not valid base64") from None
        if tag == ["blob"]:
            return bytes(self._take(node["blob"], True, where)[1])
        if tag == ["tensor"] or tag == ["ndarray"]:
            meta, buffer = self._take(node[tag[0]], False, where)
            return _array(meta, buffer, tag == ["ndarray"], where)
        if tag == ["tuple"] and isinstance(node["tuple"], list):
            return tuple(self.value(x, depth + 1, where) for x in node["tuple"])
        if tag == ["dict"] and isinstance(node["dict"], dict):
            return {k: self.value(v, depth + 1, f"{where}[{k[:40]!r}]")
                    for k, v in node["dict"].items()}  # fmt: skip
        if tag == ["dp_event"] and isinstance(node["dp_event"], str):
            from accord.privacy.events import event_from_json

            try:
                return event_from_json(node["dp_event"])
            except (ValueError, TypeError) as refused:
                raise WireError(f"{where}: {str(refused)[:200]}") from None
        if tag == ["enum", "value"]:
            enum = registry().enums.get(node["enum"]) if isinstance(node["enum"], str) else None
            if enum is not None:
                try:
                    return enum(node["value"])
                except (ValueError, TypeError):
                    pass
            raise WireError(f"{where}: not an allowed enum value")
        if tag == ["fields", "type"]:
            return self._record(node["type"], node["fields"], depth, where)
        raise WireError(f"{where}: an unknown value tag {tag[:4]!r}"[:200])

    def _record(self, name: object, fields: object, depth: int, where: str) -> object:
        record = registry().records.get(name) if isinstance(name, str) else None
        if record is None or not isinstance(fields, dict):
            raise WireError(f"{where}: type {str(name)[:60]!r} is not allowed on the wire")
        unknown = sorted(set(fields) - set(record.fields))
        missing = sorted(record.required - set(fields))
        if unknown or missing:
            problem = f"unknown field(s) {unknown}" if unknown else f"missing field(s) {missing}"
            raise WireError(f"{record.name}: {problem}"[:200])
        values = {k: self.value(v, depth + 1, f"{record.name}.{k}") for k, v in fields.items()}
        if record.is_model:
            try:
                return record.cls.model_validate(values, strict=True)
            except ValidationError as invalid:
                error = invalid.errors()[0]
                at = repr(".".join(str(p) for p in error["loc"])[:60])
                raise WireError(f"{record.name} {at}: {error['msg']!r}"[:200]) from None
        for key, value in values.items():
            if not conforms(value, record.hints[key]):
                raise WireError(f"{record.name}.{key}: a {type(value).__qualname__} does not "
                                f"match {record.hints[key]}")  # fmt: skip
        try:
            return record.cls(**values)
        except (TypeError, ValueError, AccordError) as refused:
            raise WireError(f"{record.name}: {str(refused)[:200]}") from None


def decode_body(
    body: bytes, kind_declared: str, metas: list[TensorSpec], buffers: list[bytearray]
) -> object:
    """The object a body and its buffers describe; WireError if anything is amiss."""
    try:
        tree = json.loads(body.decode("utf-8"), parse_constant=_no_constant,
                          parse_float=_finite_float, parse_int=_bounded_int,
                          object_pairs_hook=_unique_keys)  # fmt: skip
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise WireError("message body: not valid UTF-8 JSON") from None
    kind = VALUE_KIND
    if isinstance(tree, dict) and sorted(tree) == ["fields", "type"]:
        kind = str(tree["type"])
    if kind_declared != kind:
        raise WireError(f"message: its header says {kind_declared[:60]!r}, its body {kind[:60]!r}")
    decoder = _Decoder(metas, buffers)
    obj = decoder.value(tree, 0, "message")
    if not all(decoder.used):
        raise WireError("message: carries a tensor that its body does not use")
    return obj
