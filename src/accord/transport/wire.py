"""The wire codec: every message between the coordinator and the nodes, as bytes and back.

**What is on the wire.** One logical message is a stream of protobuf ``Chunk`` messages
(package ``accord.wire.v1``, built at run time from a descriptor: no generated code, no
protoc). Chunk 0 carries the serialized ``Header``; the chunks after it carry the raw
bytes of the message's tensors, concatenated in header order and split at ``chunk_bytes``
(1 MiB by default), so no protobuf is ever near protobuf's 2 GB limit, however large the
model: a chunk is at most ``chunk_bytes`` of data, or one header (at most 16 MiB; large
values never sit in it). The header holds a ``kind`` (the wire name of the top-level
record), ``body`` (UTF-8 JSON describing the object tree) and one ``TensorMeta`` (dtype,
shape, byte count) per out-of-band buffer.

**The body** is a tree of tagged values: JSON's null, booleans, integers (|x| < 2**63),
finite floats, strings and arrays (lists), and one-key objects for everything else:
``{"b64": ...}`` bytes up to 1 KiB (larger bytes, such as CKKS ciphertexts, go out of band
as ``{"blob": i}``), ``{"tensor": i}`` a torch tensor and ``{"ndarray": i}`` a NumPy
array (index ``i`` into the header's tensors), ``{"tuple": [...]}``, ``{"dict": {...}}``
(string keys), ``{"dp_event": <event_to_json text>}``, ``{"enum": name, "value": v}``
and ``{"type": name, "fields": {...}}`` for a record. Non-finite floats are refused:
no message needs one (the gate refuses them in releases; an infinite epsilon is None).

**Why it is safe.** Decoding runs no code named by the bytes (the body is built and read
by :mod:`accord.transport.wire_values`). A record is rebuilt only if
its name is in the allowlist of :mod:`accord.transport.wire_types`, with exactly its
fields, each checked against the class's own annotation (a pydantic model validates
itself, strictly). Tensors are rebuilt from a dtype allowlist with their byte count checked
against their shape, and every buffer is referenced exactly once. Sizes are checked before
anything is allocated. Unknown -> refuse: an unknown tag, type, field, enum value, dtype or
protobuf field raises :class:`~accord.errors.WireError`, never anything else. Little-endian
throughout.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, cast

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

from accord.errors import WireError
from accord.transport.wire_values import (
    TensorMetaView,
    TensorSpec,
    decode_body,
    encode_body,
    tensor_specs,
)

__all__ = ["DEFAULT_CHUNK_BYTES", "Chunk", "Header", "Reassembler", "TensorMeta", "chunks",
           "decode", "encode"]  # fmt: skip

PACKAGE = "accord.wire.v1"
DEFAULT_CHUNK_BYTES = 1 << 20
DEFAULT_MAX_HEADER_BYTES = 16 << 20
DEFAULT_MAX_MESSAGE_BYTES = 8 << 30
_UINT64_LIMIT = 1 << 64


# --- the protobuf schema, built at run time --------------------------------------------------


def _message_classes() -> tuple[type[Message], type[Message], type[Message]]:
    field = descriptor_pb2.FieldDescriptorProto
    one, many = field.LABEL_OPTIONAL, field.LABEL_REPEATED
    schema: dict[str, list[tuple[str, int, Any, Any, str]]] = {
        "TensorMeta": [("dtype", 1, field.TYPE_STRING, one, ""),
                       ("shape", 2, field.TYPE_UINT64, many, ""),
                       ("nbytes", 3, field.TYPE_UINT64, one, "")],
        "Header": [("kind", 1, field.TYPE_STRING, one, ""),
                   ("body", 2, field.TYPE_BYTES, one, ""),
                   ("tensors", 3, field.TYPE_MESSAGE, many, f".{PACKAGE}.TensorMeta"),
                   ("message_id", 4, field.TYPE_UINT64, one, "")],
        "Chunk": [("message_id", 1, field.TYPE_UINT64, one, ""),
                  ("index", 2, field.TYPE_UINT32, one, ""),
                  ("data", 3, field.TYPE_BYTES, one, ""),
                  ("last", 4, field.TYPE_BOOL, one, "")],
    }  # fmt: skip
    proto = descriptor_pb2.FileDescriptorProto(
        name="accord/wire/v1/wire.proto", package=PACKAGE, syntax="proto3"
    )
    for name, fields in schema.items():
        message = proto.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            added = message.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:  # set only for message fields: an empty one is still "set"
                added.type_name = type_name
    # A pool of our own: the process-wide default pool may hold other files, and a second
    # import of this module must not collide with the first.
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    classes = [
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))
        for name in ("TensorMeta", "Header", "Chunk")
    ]
    return classes[0], classes[1], classes[2]


TensorMeta, Header, Chunk = _message_classes()


class _HeaderView(Protocol):
    kind: str
    body: bytes
    tensors: Sequence[TensorMetaView]
    message_id: int


class _ChunkView(Protocol):
    message_id: int
    index: int
    data: bytes
    last: bool


def _parse(cls: type[Message], data: bytes, what: str) -> Message:
    """Parse strictly: unknown fields (or a non-canonical encoding) are refused."""
    try:
        message = cls.FromString(bytes(data))
    except Exception:
        # DecodeError from upb; the pure-Python backend also lets UnicodeDecodeError,
        # IndexError and struct.error escape. Each means the same: not our message.
        raise WireError(f"{what}: not a valid protobuf message") from None
    message.DiscardUnknownFields()
    if message.ByteSize() != len(data):
        raise WireError(f"{what}: carries unknown or repeated fields")
    return message


def _check_message_id(message_id: int) -> None:
    if isinstance(message_id, bool) or not 0 <= message_id < _UINT64_LIMIT:
        raise WireError(f"message id {message_id!r} is not a 64-bit unsigned integer")


def encode(obj: object, message_id: int) -> tuple[bytes, list[memoryview]]:
    """The serialized Header of ``obj``, and its tensors' bytes (views, no copy where the
    tensor is contiguous on the CPU). WireError if anything in ``obj`` is not allowed."""
    _check_message_id(message_id)
    kind, body, specs, views = encode_body(obj)
    metas = [TensorMeta(dtype=m.dtype, shape=m.shape, nbytes=m.nbytes) for m in specs]
    header = Header(kind=kind, body=body, tensors=metas, message_id=message_id)
    serialized = header.SerializeToString()
    if len(serialized) > DEFAULT_MAX_HEADER_BYTES:
        raise WireError(f"message: a header of {len(serialized)} bytes, over the limit of "
                        f"{DEFAULT_MAX_HEADER_BYTES}")  # fmt: skip
    return serialized, views


def _chunk(message_id: int, index: int, data: bytes, last: bool) -> bytes:
    return Chunk(message_id=message_id, index=index, data=data, last=last).SerializeToString()


def chunks(obj: object, message_id: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[bytes]:
    """``obj`` as serialized Chunk messages: the header, then its tensors' bytes."""
    if chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be positive (got {chunk_bytes})")
    header, views = encode(obj, message_id)  # eagerly: a refusal comes from this call
    total = sum(v.nbytes for v in views)
    if -(-total // chunk_bytes) >= 1 << 32:
        raise WireError(f"message: {total} bytes need more than 2**32 chunks of {chunk_bytes}")

    def stream() -> Iterator[bytes]:
        yield _chunk(message_id, 0, header, last=total == 0)
        pending: list[memoryview] = []
        size = sent = 0
        index = 1
        for view in views:
            offset = 0
            while offset < view.nbytes:
                take = min(chunk_bytes - size, view.nbytes - offset)
                pending.append(view[offset : offset + take])
                size, offset = size + take, offset + take
                if size == chunk_bytes or sent + size == total:
                    sent += size
                    yield _chunk(message_id, index, b"".join(pending), last=sent == total)
                    pending, size, index = [], 0, index + 1

    return stream()


def _parse_header(data: bytes, max_header_bytes: int) -> _HeaderView:
    if len(data) > max_header_bytes:
        raise WireError(f"message: a header of {len(data)} bytes, over the limit of "
                        f"{max_header_bytes}")  # fmt: skip
    return cast(_HeaderView, _parse(Header, data, "message header"))


def decode(
    header: bytes,
    payload: bytes | memoryview,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> object:
    """The object that :func:`encode` turned into ``header`` and ``payload`` (its tensors'
    bytes, concatenated). WireError if anything is malformed, oversized or not allowed."""
    parsed = _parse_header(header, max_header_bytes)
    metas = tensor_specs(parsed.tensors, max_message_bytes)
    try:
        data = memoryview(payload).cast("B")
    except TypeError:
        raise WireError("message: a payload must be contiguous bytes") from None
    if data.nbytes != sum(m.nbytes for m in metas):
        raise WireError(f"message: a payload of {data.nbytes} bytes, but its header declares "
                        f"{sum(m.nbytes for m in metas)}")  # fmt: skip
    buffers, offset = [], 0
    for meta in metas:
        buffers.append(bytearray(data[offset : offset + meta.nbytes]))
        offset += meta.nbytes
    return decode_body(parsed.body, parsed.kind, metas, buffers)


class Reassembler:
    """Chunks in, messages out: one message at a time, in order, from one stream.

    Each tensor's buffer is allocated once, at its declared size, when its first byte
    arrives, and filled in place. After a :class:`WireError` the reassembler starts afresh:
    the next chunk 0 begins the next message.
    """

    def __init__(
        self,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.max_header_bytes = max_header_bytes
        self.max_message_bytes = max_message_bytes
        self.last_message_id: int | None = None
        """The id of the message :meth:`feed` returned last (for the link's replay check)."""
        self._reset()

    def _reset(self) -> None:
        self._header: _HeaderView | None = None
        self._metas: list[TensorSpec] = []
        self._buffers: list[bytearray] = []
        self._message_id = 0
        self._next_index = 0
        self._offset = 0
        self._remaining = 0

    def feed(self, chunk: bytes) -> object | None:
        """None until a message completes; then the decoded message."""
        try:
            return self._feed(chunk)
        except BaseException:
            self._reset()
            raise

    def _feed(self, raw: bytes) -> object | None:
        chunk = cast(_ChunkView, _parse(Chunk, raw, "chunk"))
        if self._header is None:
            return self._start(chunk)
        if chunk.message_id != self._message_id:
            raise WireError(f"chunk of message {chunk.message_id} in the middle of message "
                            f"{self._message_id}")  # fmt: skip
        if chunk.index != self._next_index:
            raise WireError(f"message {self._message_id}: chunk {chunk.index} where chunk "
                            f"{self._next_index} was due")  # fmt: skip
        data = memoryview(chunk.data)
        if data.nbytes == 0 or data.nbytes > self._remaining:
            raise WireError(f"message {self._message_id}: chunk {chunk.index} is empty or "
                            "runs past the tensors its header declares")  # fmt: skip
        self._fill(data)
        self._next_index += 1
        if self._remaining and chunk.last:
            raise WireError(f"message {self._message_id} ends {self._remaining} bytes short of "
                            "what its header declares")  # fmt: skip
        if not self._remaining:
            if not chunk.last:
                raise WireError(f"message {self._message_id}: chunk {chunk.index} completes "
                                "the tensors but is not marked last")  # fmt: skip
            header, metas, buffers = self._header, self._metas, self._buffers
            self._reset()
            # Buffers after the last byte are the empty tensors.
            buffers += [bytearray() for _ in metas[len(buffers) :]]
            obj = decode_body(header.body, header.kind, metas, buffers)
            self.last_message_id = chunk.message_id
            return obj
        return None

    def _start(self, chunk: _ChunkView) -> object | None:
        if chunk.index != 0:
            raise WireError(f"message {chunk.message_id}: chunk {chunk.index} arrived before "
                            "its chunk 0")  # fmt: skip
        header = _parse_header(chunk.data, self.max_header_bytes)
        if header.message_id != chunk.message_id:
            raise WireError(f"message {chunk.message_id}: its header names message "
                            f"{header.message_id}")  # fmt: skip
        metas = tensor_specs(header.tensors, self.max_message_bytes)
        total = sum(m.nbytes for m in metas)
        if chunk.last != (total == 0):
            raise WireError(f"message {chunk.message_id}: chunk 0 must be last exactly when "
                            "no tensor bytes follow")  # fmt: skip
        if total == 0:
            obj = decode_body(header.body, header.kind, metas, [bytearray() for _ in metas])
            self.last_message_id = chunk.message_id
            return obj
        self._header, self._metas, self._message_id = header, metas, chunk.message_id
        self._next_index, self._remaining = 1, total
        return None

    def _fill(self, data: memoryview) -> None:
        position = 0
        while position < data.nbytes:
            if not self._buffers or self._offset == len(self._buffers[-1]):
                # The next tensor: allocated now, once, at its declared size.
                self._buffers.append(bytearray(self._metas[len(self._buffers)].nbytes))
                self._offset = 0
                continue
            buffer = self._buffers[-1]
            take = min(len(buffer) - self._offset, data.nbytes - position)
            buffer[self._offset : self._offset + take] = data[position : position + take]
            self._offset += take
            position += take
        self._remaining -= data.nbytes
