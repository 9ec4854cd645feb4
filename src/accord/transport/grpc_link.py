"""What both ends of the gRPC link share: the method, limits, and one framed stream.

One bidirectional stream per node: the node dials the coordinator (so it works behind a
hospital firewall that allows only outgoing connections) and keeps the stream open for the
whole job. Both directions carry :mod:`accord.transport.wire` chunks as raw bytes; gRPC
itself never sees a Python object. Every logical message has an id that grows by one per
direction; the receiver refuses an id it has already seen (a replayed message).

Mutual TLS is gRPC's own (ECDSA P-256 certificates from the federation's CA). What gRPC
cannot check during the handshake (revocation, the identity binding, the agreement's names)
the layer above checks right after it; this module knows no agreement.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from accord.errors import PeerRefusedError, TransportError, WireError

LOG = logging.getLogger("accord.link")
METHOD = "/accord.wire.v1.Federation/Connect"
CHUNK_BYTES = 1 << 20
"""Bytes of tensor data per chunk: well under gRPC's message limit."""
MAX_CHUNK_MESSAGE = CHUNK_BYTES + (16 << 20)
"""gRPC's per-message limit: one chunk (a header is at most 16 MiB)."""
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_CHUNK_MESSAGE),
    ("grpc.max_receive_message_length", MAX_CHUNK_MESSAGE),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]
_CLOSED = object()


@dataclass
class Link:
    """One end of a stream: send objects, receive objects, in order, with ids checked."""

    name: str
    """Who is at the other end, for messages and logs."""
    outbound: queue.Queue[bytes | object] = field(default_factory=queue.Queue)
    inbound: queue.Queue[object] = field(default_factory=queue.Queue)
    sent: int = 0
    received: int = 0
    closed: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    asked: int = 0
    """Requests the coordinator sent on this link (its reply count must catch up)."""
    answered: int = 0
    admitted: bool = False
    """The node at the other end accepted the job on this link."""
    _sending: threading.Lock = field(default_factory=threading.Lock)

    def send(self, obj: object) -> None:
        from accord.transport.wire import chunks

        if self.closed.is_set():
            why = f" ({self.error})" if self.error is not None else ""
            raise TransportError(f"the link to {self.name} is closed{why}")
        # One message's chunks at a time, in id order, whichever thread sends.
        with self._sending:
            self.sent += 1
            for chunk in chunks(obj, self.sent, CHUNK_BYTES):
                self.outbound.put(chunk)

    def receive(self, timeout: float | None) -> object:
        """The next object from the other end; TransportError when the link closed or
        nothing came within ``timeout`` seconds."""
        try:
            item = self.inbound.get(timeout=timeout)
        except queue.Empty:
            raise TransportError(f"{self.name} sent nothing within {timeout:g} s") from None
        if item is _CLOSED:
            self.inbound.put(_CLOSED)  # every later receive sees the close too
            why = f": {self.error}" if self.error is not None else ""
            raise TransportError(f"the link to {self.name} closed{why}")
        return item

    def outgoing(self) -> Iterator[bytes]:
        """For gRPC: the chunks to send, until the link closes."""
        while True:
            item = self.outbound.get()
            if item is _CLOSED:
                return
            assert isinstance(item, bytes)
            yield item

    def close(self, error: BaseException | None = None) -> None:
        if not self.closed.is_set():
            self.error = error
            self.closed.set()
            self.outbound.put(_CLOSED)
            self.inbound.put(_CLOSED)

    def pump(self, incoming: Iterator[bytes], on_message: Callable[[object], None] | None = None
             ) -> None:  # fmt: skip
        """Read chunks until the stream ends: reassemble, refuse replays, queue objects.
        A malformed or replayed message closes the link (logged by the caller)."""
        from accord.transport.wire import Reassembler

        reassembler = Reassembler()
        try:
            for chunk in incoming:
                obj = reassembler.feed(chunk)
                if obj is None:
                    continue
                self.received += 1
                message_id = reassembler.last_message_id
                if message_id != self.received:
                    raise PeerRefusedError(
                        f"{self.name} sent message {message_id} where {self.received} was "
                        "due (a replayed or reordered message)"
                    )
                if on_message is not None:
                    on_message(obj)
                self.inbound.put(obj)
        except (WireError, PeerRefusedError) as refused:
            # Refused and logged here, at the receiving side; the link closes.
            LOG.warning("refused %s: %s", self.name, refused)
            self.close(refused)
            return
        except Exception as lost:  # the stream broke: the peer is gone
            why = f"{type(lost).__name__}: {lost}"
            self.close(TransportError(f"stream from {self.name} ended: {why}"))
            return
        self.close()


def as_dict(obj: Any, what: str, *keys: str) -> dict[str, Any]:
    """A session message (a dict with ``keys``), or WireError naming what was expected."""
    if not isinstance(obj, dict) or not set(keys) <= set(obj):
        raise WireError(f"expected {what} ({', '.join(keys)}), got {type(obj).__name__}")
    return obj
