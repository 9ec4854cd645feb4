"""What may cross the wire: the record types, enums and tensor dtypes, and the type check.

The codec (:mod:`accord.transport.wire`) rebuilds only what this module lists. A record is
a frozen dataclass or a pydantic model named here under a short, stable wire name (the
name is part of the protocol: renaming a Python class must not change it). Every decoded
field is checked against the class's own annotations before the class is constructed, so
a message cannot smuggle a value of another type into a field (a tensor where a signature
belongs, a string where a count belongs).

The message modules are imported on first use, not when the transport is imported: they
sit above the transport in the dependency order, and importing them eagerly would tie the
transport's import to theirs.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel

# --- tensor dtypes ---------------------------------------------------------------------------

BYTES_DTYPE = "bytes"
"""The TensorMeta dtype of an out-of-band ``bytes`` value (a CKKS ciphertext, a context)."""


@dataclass(frozen=True, slots=True)
class WireDtype:
    """One dtype allowed on the wire: its name there, and what it is in each library."""

    name: str
    itemsize: int
    torch_dtype: torch.dtype
    numpy_dtype: np.dtype[Any] | None
    """Little-endian; None where NumPy has no such type (bfloat16)."""


def _dtype(name: str, torch_dtype: torch.dtype, numpy_name: str | None) -> WireDtype:
    numpy_dtype = None if numpy_name is None else np.dtype(numpy_name)
    return WireDtype(name, torch_dtype.itemsize, torch_dtype, numpy_dtype)


# The wire is little-endian, as is every platform Accord runs on.
DTYPES: dict[str, WireDtype] = {
    d.name: d
    for d in (
        _dtype("float32", torch.float32, "<f4"),
        _dtype("float64", torch.float64, "<f8"),
        _dtype("float16", torch.float16, "<f2"),
        _dtype("bfloat16", torch.bfloat16, None),
        _dtype("int64", torch.int64, "<i8"),
        _dtype("int32", torch.int32, "<i4"),
        _dtype("int16", torch.int16, "<i2"),
        _dtype("int8", torch.int8, "i1"),
        _dtype("uint8", torch.uint8, "u1"),
        _dtype("uint32", torch.uint32, "<u4"),
        _dtype("uint64", torch.uint64, "<u8"),
        _dtype("bool", torch.bool, "?"),
    )
}
TORCH_DTYPES: dict[torch.dtype, WireDtype] = {d.torch_dtype: d for d in DTYPES.values()}
NUMPY_DTYPES: dict[str, WireDtype] = {
    # Keyed by kind and size: a big-endian array is converted, not refused.
    f"{d.numpy_dtype.kind}{d.numpy_dtype.itemsize}": d
    for d in DTYPES.values()
    if d.numpy_dtype is not None
}


# --- records and enums -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordType:
    """A class allowed on the wire, under its wire name."""

    name: str
    cls: type[Any]
    fields: tuple[str, ...]
    required: frozenset[str]
    """Fields without a default: a message that lacks one is refused."""
    hints: Mapping[str, Any]
    """Each field's annotation (dataclasses; a pydantic model validates itself)."""
    is_model: bool


@dataclass(frozen=True, slots=True)
class Registry:
    records: Mapping[str, RecordType]
    by_class: Mapping[type[Any], RecordType]
    enums: Mapping[str, type[Enum]]
    enum_names: Mapping[type[Enum], str]


def _record(name: str, cls: type[Any], localns: Mapping[str, Any]) -> RecordType:
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        info = cls.model_fields
        required = frozenset(f for f, i in info.items() if i.is_required())
        return RecordType(name, cls, tuple(info), required, {}, True)
    if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise TypeError(f"wire type {name}: {cls.__qualname__} is not a frozen record")
    fields = [f for f in dataclasses.fields(cls) if f.init]
    required = frozenset(
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    # Some message modules import the field types under TYPE_CHECKING only: resolve their
    # annotations with every wire class in scope.
    hints = typing.get_type_hints(cls, localns=dict(localns))
    return RecordType(name, cls, tuple(f.name for f in fields), required,
                      {f.name: hints[f.name] for f in fields}, False)  # fmt: skip


@lru_cache(maxsize=1)
def registry() -> Registry:
    """Every record type and enum allowed on the wire (built once, on first use)."""
    from dp_accounting import DpEvent

    from accord.fl import messages as fl
    from accord.fl import node_ckks as ckks
    from accord.fl.node_audit import PrivacyReceipt
    from accord.governance.agreement import RevocationEntry
    from accord.governance.audit import AuditHead
    from accord.privacy.events import Adversary
    from accord.protect import messages as secagg
    from accord.protect.ckks import EncryptedVector
    from accord.protect.envelope import Envelope

    classes: dict[str, type[Any]] = {
        "fl.TrainRequest": fl.TrainRequest,
        "fl.EvaluateRequest": fl.EvaluateRequest,
        "fl.ProtocolRequest": fl.ProtocolRequest,
        "fl.Release": fl.Release,
        "secagg.Advertisement": secagg.Advertisement,
        "secagg.AdvertisementSet": secagg.AdvertisementSet,
        "secagg.Confirmation": secagg.Confirmation,
        "secagg.ConfirmationSet": secagg.ConfirmationSet,
        "secagg.KeyShares": secagg.KeyShares,
        "secagg.ShareDelivery": secagg.ShareDelivery,
        "secagg.MaskAttestation": secagg.MaskAttestation,
        "secagg.MaskedInput": secagg.MaskedInput,
        "secagg.SurvivorList": secagg.SurvivorList,
        "secagg.SurvivorSignature": secagg.SurvivorSignature,
        "secagg.UnmaskRequest": secagg.UnmaskRequest,
        "secagg.UnmaskResponse": secagg.UnmaskResponse,
        "envelope.Envelope": Envelope,
        "ckks.CkksHello": ckks.CkksHello,
        "ckks.CkksKeyDelivery": ckks.CkksKeyDelivery,
        "ckks.CkksKeyRelay": ckks.CkksKeyRelay,
        "ckks.CkksAck": ckks.CkksAck,
        "ckks.CkksUpdate": ckks.CkksUpdate,
        "ckks.CkksAggregate": ckks.CkksAggregate,
        "ckks.EncryptedVector": EncryptedVector,
        "agreement.RevocationEntry": RevocationEntry,
        "audit.AuditHead": AuditHead,
        "receipt.PrivacyReceipt": PrivacyReceipt,
    }
    enums: dict[str, type[Enum]] = {
        "fl.ReleaseKind": fl.ReleaseKind,
        "privacy.Adversary": Adversary,
    }
    # A field may be annotated DpEvent (the base class: any storable event conforms).
    localns = {"DpEvent": DpEvent, **{cls.__name__: cls for cls in classes.values()}}
    records = {name: _record(name, cls, localns) for name, cls in classes.items()}
    return Registry(
        records,
        {r.cls: r for r in records.values()},
        enums,
        {cls: name for name, cls in enums.items()},
    )


# --- the type check --------------------------------------------------------------------------


class UncheckableAnnotation(TypeError):
    """A registered field's annotation is of a form the wire cannot check (a bug here)."""


def conforms(value: object, hint: Any) -> bool:
    """Whether ``value`` is of the annotated type ``hint`` (the subset messages use)."""
    if hint is Any or hint is object:
        return True
    if hint is None or hint is types.NoneType:
        return value is None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return any(conforms(value, arg) for arg in args)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(conforms(item, args[0]) for item in value)
        return len(value) == len(args) and all(map(conforms, value, args))
    if origin is list:
        return isinstance(value, list) and all(conforms(item, args[0]) for item in value)
    if origin is dict or origin is collections.abc.Mapping:
        return isinstance(value, dict) and all(
            isinstance(k, str) and conforms(v, args[1]) for k, v in value.items()
        )
    if origin is np.ndarray:
        if not isinstance(value, np.ndarray):
            return False
        scalar = typing.get_args(args[1])[0] if len(args) == 2 else Any
        return scalar is Any or np.issubdtype(value.dtype, scalar)
    if hint is float:  # the numeric tower: an int is accepted where a float is annotated
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(hint, type) and origin is None:
        return isinstance(value, hint)
    raise UncheckableAnnotation(f"the wire cannot check the annotation {hint!r}")
