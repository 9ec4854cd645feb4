"""The wire codec refuses: every malformed, oversized or disallowed input raises WireError
(never another exception), and the reassembler then decodes the next message."""

from __future__ import annotations

import ast
import dataclasses
import json
import math
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dp_accounting
import numpy as np
import pytest
import torch

from accord.errors import WireError
from accord.fl.messages import TrainRequest
from accord.protect.messages import Advertisement
from accord.transport.wire import Chunk, Header, Reassembler, chunks, decode, encode
from accord.transport.wire_types import registry
from tests.transport.wire_kit import (
    chunk_bytes,
    good_stream,
    header_bytes,
    still_decodes,
)

SRC = Path(__file__).resolve().parents[2] / "src" / "accord" / "transport"
WIRE_FILES = [SRC / "wire.py", SRC / "wire_types.py", SRC / "wire_values.py"]


def good_tree() -> dict[str, Any]:
    header, _ = encode(TrainRequest("job", 1, None, 0.5), 1)
    return json.loads(Header.FromString(header).body)


def mutated(change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    tree = good_tree()
    change(tree)
    return tree


BAD_BODIES: dict[str, object] = {
    "eval": {"type": "builtins.eval", "fields": {"source": "1"}},
    "os.system": {"type": "os.system", "fields": {}},
    "unknown field": mutated(lambda t: t["fields"].update(extra=1)),
    "missing field": mutated(lambda t: t["fields"].pop("lr")),
    "str for float": mutated(lambda t: t["fields"].update(lr="0.5")),
    "bool for int": mutated(lambda t: t["fields"].update(round=True)),
    "list for tensor": mutated(lambda t: t["fields"].update(global_params=[1.0])),
    "int too large": mutated(lambda t: t["fields"].update(round=2**63)),
    "unknown tag": mutated(lambda t: t["fields"].update(job_id={"callable": "exec"})),
    "two tags": {"tuple": [], "dict": {}},
    "bad base64": {"b64": "not base64!"},
    "unknown enum": {"enum": "builtins.bool", "value": "x"},
    "bad enum value": {"enum": "fl.ReleaseKind", "value": "everything"},
    "bad dp event": {"dp_event": '{"type": "UnsupportedDpEvent"}'},
    "tensor out of range": {"tensor": 0},
    "dict with bad value": {"dict": {"a": {"set": [1]}}},
    "kind mismatch": {"type": "fl.TrainRequest", "fields": {}},
    "deep": json.loads("[" * 200 + "]" * 200),
    "deeper": "[" * 100_000 + "]" * 100_000,
    "NaN": "NaN",
    "inf": "1e999",
    "huge int": "1" * 5000,
    "repeated key": '{"b64": "", "b64": ""}',
    "not JSON": "{",
}


@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_a_bad_body_is_refused(name: str) -> None:
    body = BAD_BODIES[name]
    raw = body.encode() if isinstance(body, str) else body
    kind = "fl.EvaluateRequest" if name == "kind mismatch" else None
    with pytest.raises(WireError):
        decode(header_bytes(raw, kind=kind if isinstance(raw, dict) else "value"), b"")


def test_wrong_field_types_in_real_records_are_refused() -> None:
    ad = Advertisement("job", 1, "party-1", b"h" * 32, b"c" * 32, b"s" * 32, b"n" * 32,
                       b"b" * 32, b"x" * 64)  # fmt: skip
    header, _ = encode(ad, 1)
    tree = json.loads(Header.FromString(header).body)
    tree["fields"]["signature"] = "x" * 64  # a str where bytes belong
    with pytest.raises(WireError, match=r"secagg.Advertisement.signature"):
        decode(header_bytes(tree), b"")
    receipt_body = {"type": "receipt.PrivacyReceipt", "fields": {"party": 1}}
    with pytest.raises(WireError, match=r"receipt\.PrivacyReceipt"):
        decode(header_bytes(receipt_body), b"")


def test_a_pydantic_refusal_is_one_line_whatever_the_keys_say() -> None:
    fields = {"releases": {"dict": {"update\nforged line": "not an int"}}}
    with pytest.raises(WireError) as refused:
        decode(header_bytes({"type": "receipt.PrivacyReceipt", "fields": fields}), b"")
    assert "\n" not in str(refused.value) and "receipt.PrivacyReceipt" in str(refused.value)


BAD_TENSORS: dict[str, tuple[object, list[tuple[str, list[int], int]]]] = {
    "unknown dtype": ({"tensor": 0}, [("object", [1], 8)]),
    "complex": ({"tensor": 0}, [("complex64", [1], 8)]),
    "nbytes mismatch": ({"tensor": 0}, [("float32", [3], 8)]),
    "oversized shape": ({"tensor": 0}, [("float32", [1 << 40], 4 << 40)]),
    "zero with a huge dim": ({"tensor": 0}, [("float32", [0, 1 << 62], 0)]),
    "empty with huge dims": ({"ndarray": 0}, [("float32", [0, 1 << 20, 1 << 20, 1 << 20], 0)]),
    "too many dims": ({"tensor": 0}, [("uint8", [1] * 40, 1)]),
    "unused tensor": (None, [("uint8", [1], 1)]),
    "reused tensor": ([{"tensor": 0}, {"tensor": 0}], [("uint8", [1], 1)]),
    "blob as tensor": ({"tensor": 0}, [("bytes", [1], 1)]),
    "tensor as blob": ({"blob": 0}, [("uint8", [1], 1)]),
    "bfloat16 as numpy": ({"ndarray": 0}, [("bfloat16", [1], 2)]),
}


@pytest.mark.parametrize("name", list(BAD_TENSORS))
def test_a_bad_tensor_is_refused(name: str) -> None:
    body, tensors = BAD_TENSORS[name]
    header = header_bytes(body, tensors)
    declared = sum(n for _, _, n in tensors)
    payload = bytes(declared if declared < 1 << 20 else 64)
    with pytest.raises(WireError):
        decode(header, payload)
    # Through chunks: a declared size over the limit is refused at chunk 0, before any
    # buffer is allocated; the others when the body is read.
    reassembler = Reassembler(max_message_bytes=1 << 20)
    stream = [chunk_bytes(1, 0, header, not payload), chunk_bytes(1, 1, payload, True)]
    with pytest.raises(WireError):
        for chunk in stream[: 2 if payload else 1]:
            assert reassembler.feed(chunk) is None
    still_decodes(reassembler)


def test_a_bool_tensor_holds_only_zeros_and_ones() -> None:
    header = header_bytes({"tensor": 0}, [("bool", [2], 2)])
    assert decode(header, b"\x00\x01").tolist() == [False, True]
    with pytest.raises(WireError, match="bool"):
        decode(header, b"\x00\x02")


def test_what_cannot_go_on_the_wire_is_refused_at_the_sender() -> None:
    @dataclasses.dataclass(frozen=True)
    class Unregistered:
        x: int

    for obj in (Unregistered(1), {1, 2}, float("nan"), float("inf"), 2**63, "\ud800",
                {1: "non-str key"}, torch.zeros(2, dtype=torch.complex64), Path("/etc"),
                np.array(["a"]), TrainRequest("job", 1, None, "fast"),
                dp_accounting.UnsupportedDpEvent(), nested(80)):  # fmt: skip
        with pytest.raises(WireError):
            encode(obj, 1)
    with pytest.raises(WireError):
        encode(None, -1)


def nested(depth: int) -> object:
    value: object = []
    for _ in range(depth):
        value = [value]
    return value


def test_limits_refuse_oversized_messages_and_headers() -> None:
    message = torch.zeros(1000)
    with pytest.raises(WireError, match="over the limit"):
        Reassembler(max_message_bytes=3999).feed(next(iter(chunks(message, 1))))
    with pytest.raises(WireError, match="over the limit"):
        Reassembler(max_header_bytes=10).feed(next(iter(chunks(message, 1))))
    header, views = encode(message, 1)
    with pytest.raises(WireError, match="payload"):
        decode(header, b"".join(views) + b"\x00")
    with pytest.raises(WireError, match="payload"):
        decode(header, b"".join(views)[:-1])
    with pytest.raises(WireError, match="contiguous"):
        decode(header, memoryview(b"".join(views))[::2])


# --- chunk streams that go wrong -------------------------------------------------------------


def broken_streams() -> Iterator[tuple[str, list[bytes]]]:
    stream = good_stream(1)
    other = good_stream(2)
    yield "message id switches", [*stream[:2], other[2]]
    yield "duplicate index", [*stream[:3], stream[2]]
    yield "missing index", [stream[0], *stream[2:]]
    yield "data before header", stream[1:]
    yield "ends short", [*stream[:-2], chunk_bytes(1, len(stream) - 2, b"\x00" * 500, True)]
    last = Chunk.FromString(stream[-1]).data
    yield "runs long", [*stream[:-1], chunk_bytes(1, len(stream) - 1, last + b"\x00", True)]
    yield "last not marked", [*stream[:-1], chunk_bytes(1, len(stream) - 1, b"\x00" * 400)]
    yield "empty chunk", [*stream[:2], chunk_bytes(1, 2, b"")]
    yield "header of another id", [chunk_bytes(5, 0, Chunk.FromString(stream[0]).data)]
    yield "no payload after header", [chunk_bytes(1, 0, Chunk.FromString(stream[0]).data, True)]
    unknown_field = stream[0] + b"\x28\x01"  # field 5, varint: not in the schema
    yield "unknown protobuf field", [unknown_field]


@pytest.mark.parametrize("name,stream", list(broken_streams()))
def test_a_broken_chunk_stream_is_refused_and_the_next_message_decodes(
    name: str, stream: list[bytes]
) -> None:
    reassembler = Reassembler()
    with pytest.raises(WireError):
        for chunk in stream:
            assert reassembler.feed(chunk) is None
    still_decodes(reassembler)


def test_fuzzed_input_raises_only_wire_error_and_never_derails_the_reassembler() -> None:
    rng = random.Random(20240601)
    reassembler = Reassembler(max_message_bytes=1 << 20)
    stream = good_stream(1)
    header = Chunk.FromString(stream[0]).data
    parsed = Header.FromString(header)
    refused = 0

    def attempt(chunks_: list[bytes], must_refuse: bool) -> None:
        nonlocal refused
        try:
            for chunk in chunks_:
                reassembler.feed(chunk)
        except WireError as error:
            assert "\n" not in str(error)
            refused += 1
        else:
            assert not must_refuse
        still_decodes(reassembler)  # whatever came before, the next message decodes

    for i in range(6000):
        case = i % 6
        if case == 0:  # random bytes
            attempt([rng.randbytes(rng.randrange(0, 300))], must_refuse=True)
        elif case == 1:  # one chunk cut short, the rest of the stream after it
            k = rng.randrange(len(stream))
            cut = stream[k][: rng.randrange(len(stream[k]))]
            attempt([*stream[:k], cut, *stream[k + 1 :]], must_refuse=True)
        elif case == 2:  # bits flipped in chunk 0 (the header): a flip inside a string or a
            # digit can leave a good message (of other values), so it may decode
            flipped = bytearray(stream[0])
            for _ in range(rng.randrange(1, 4)):
                flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
            attempt([bytes(flipped), *stream[1:]], must_refuse=False)
        elif case == 3:  # a byte of the JSON body replaced, the header re-serialized
            body = bytearray(parsed.body)
            body[rng.randrange(len(body))] = rng.randrange(256)
            raw = Header(kind=parsed.kind, body=bytes(body), tensors=parsed.tensors,
                         message_id=1).SerializeToString()  # fmt: skip
            attempt([chunk_bytes(1, 0, raw), *stream[1:]], must_refuse=False)
        elif case == 4:  # a random tree of tags, registered names and their field names
            raw = header_bytes(random_value(rng, 0, record_only=True))
            attempt([chunk_bytes(1, 0, raw, True)], must_refuse=False)
        else:  # random declared dtypes, shapes and sizes, then one byte of payload
            metas = [random_meta(rng) for _ in range(rng.randrange(3))]
            raw = header_bytes([{"tensor": j} for j in range(len(metas))], metas)
            attempt([chunk_bytes(1, 0, raw), chunk_bytes(1, 1, b"\x01", True)], must_refuse=False)
    # Nearly all were refused; the rest decoded into good messages of other values.
    assert refused > 5900, refused


def random_value(rng: random.Random, depth: int, record_only: bool = False) -> Any:
    leaves: list[Callable[[], Any]] = [
        lambda: None, lambda: rng.random() < 0.5, lambda: rng.randrange(-9, 1 << 63),
        lambda: rng.uniform(-1e300, 1e300), lambda: rng.choice(["", "job", "party-1", "\x00"]),
    ]  # fmt: skip
    if depth > 3:
        return rng.choice(leaves)()
    records = registry().records
    names = [*records, "builtins.eval", "fl.Nothing"]
    event = {
        "type": rng.choice(["GaussianDpEvent", "NoOpDpEvent", "PoissonSampledDpEvent"]),
        "noise_multiplier": rng.uniform(-2, 2),
        "sampling_probability": rng.random(),
    }

    def record() -> dict[str, Any]:
        name = rng.choice(names)
        fields = list(records[name].fields) if name in records else ["x"]
        chosen = [f for f in fields if rng.random() < 0.9] + (
            ["extra"] if rng.random() < 0.1 else []
        )
        return {"type": name, "fields": {f: random_value(rng, depth + 1) for f in chosen}}

    def inner() -> Any:
        return random_value(rng, depth + 1)

    tags: list[Callable[[], Any]] = [
        lambda: [inner() for _ in range(rng.randrange(3))],
        lambda: {"tuple": [inner() for _ in range(rng.randrange(3))]},
        lambda: {"dict": {rng.choice("abc"): inner() for _ in range(rng.randrange(3))}},
        lambda: {"b64": rng.choice(["", "AAAA", "AA==", "!!", "QUJD"])},
        lambda: {"enum": rng.choice(["fl.ReleaseKind", "privacy.Adversary", "x"]),
                 "value": rng.choice(["update", "recipients_only", 3])},
        lambda: {"dp_event": json.dumps(event)},
        lambda: {rng.choice(["tensor", "ndarray", "blob"]): rng.randrange(-1, 2)},
        record, record, record,
    ]  # fmt: skip
    return record() if record_only else rng.choice(leaves + tags)()


def random_meta(rng: random.Random) -> tuple[str, list[int], int]:
    def size() -> int:
        return rng.randrange(0, 1 << rng.randrange(1, 64))

    dtype = rng.choice(["float32", "uint64", "bool", "bytes", "float128"])
    shape = [size() for _ in range(rng.randrange(4))]
    return dtype, shape, rng.choice([size(), 0, min(math.prod(shape) * 4, (1 << 64) - 1)])


# --- nothing runs code -----------------------------------------------------------------------

ALLOWED_IMPORTS = {"__future__", "base64", "binascii", "collections", "dataclasses", "enum",
                   "functools", "json", "math", "types", "typing", "numpy", "torch", "pydantic",
                   "google", "accord", "dp_accounting"}  # fmt: skip


def test_the_codec_imports_nothing_that_could_run_code_from_the_bytes() -> None:
    for path in WIRE_FILES:
        tree = ast.parse(path.read_text())
        modules = {
            (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in node.names
        }
        assert {m.split(".")[0] for m in modules} <= ALLOWED_IMPORTS, path.name
        calls = {n.func.id for n in ast.walk(tree)
                 if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}  # fmt: skip
        assert not calls & {"eval", "exec", "compile", "__import__"}, path.name
        text = path.read_text()
        for word in ("pickle", "marshal", "importlib", "torch.load", "allow_pickle"):
            assert word not in text, f"{path.name} mentions {word}"
    with pytest.raises(WireError, match=r"builtins\.eval"):
        decode(header_bytes({"type": "builtins.eval", "fields": {}}), b"")
