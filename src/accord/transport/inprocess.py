"""In-process transport for simulation: direct calls, the same checks as the network."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from accord.errors import RefusedError, TransportError
from accord.fl.messages import Request
from accord.transport.base import Exchange, NodeEndpoint


class InProcessTransport:
    """Delivers requests to nodes in this process, in the order the requests are given.

    A node's reply reaches the coordinator only through the node's gate check
    (``endpoint.unseal``): anything its gate did not seal raises ``GateBypassError``.
    Bytes are counted as they would cross a network: tensor payloads.
    """

    def __init__(self, endpoints: Iterable[NodeEndpoint]) -> None:
        self._endpoints = {e.party: e for e in endpoints}

    @property
    def parties(self) -> list[str]:
        return list(self._endpoints)

    def exchange(self, requests: Mapping[str, Request]) -> Exchange:
        result = Exchange()
        for party, request in requests.items():
            endpoint = self._endpoints.get(party)
            if endpoint is None:
                raise TransportError(f"no node named {party!r} is connected")
            result.bytes_down += request.nbytes
            try:
                reply = endpoint.handle(request)
            except RefusedError as refusal:
                # A node that refuses (its budget, its policy) sends a refusal, not data.
                result.failed[party] = str(refusal)
                continue
            release = endpoint.unseal(reply)
            result.bytes_up += release.nbytes
            result.replies[party] = release
        return result
