"""The coordinator's end of the network: a gRPC server with mutual TLS, one stream per node.

Each node dials in and opens one stream. The server hands the peer's TLS certificate and
the node's first message to ``authenticate`` (supplied by the layer above, which knows the
agreement and the federation's revocation list); a refused peer is logged here, at the
receiving side, and its stream closed with PERMISSION_DENIED. An accepted node's stream is
then a :class:`~accord.transport.grpc_link.Link` the coordinator's transport uses.

:class:`NetworkTransport` is the coordinator's :class:`~accord.transport.base.Transport`:
it sends every party its request, then collects the replies in party order (never in
arrival order), each within the timeout; a party that refuses, drops or stays silent is
reported in ``Exchange.failed``, as in simulation.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent import futures
from typing import Any

import grpc

from accord.errors import PeerRefusedError, TransportError, WireError
from accord.fl.messages import Release, Request
from accord.transport.base import Exchange
from accord.transport.grpc_link import CHANNEL_OPTIONS, METHOD, Link

LOG = logging.getLogger("accord.coordinator")

Authenticate = Callable[[bytes | None, object], tuple[str, object]]
"""(peer certificate PEM or None, the node's hello) -> (party, the reply to send); raises
PeerRefusedError to refuse the peer."""


class CoordinatorServer:
    """The gRPC server and the links of the nodes that passed authentication."""

    def __init__(
        self,
        listen: str,
        cert_pem: bytes,
        key_pem: bytes,
        ca_pem: bytes,
        authenticate: Authenticate,
        hello_timeout_s: float = 30.0,
    ) -> None:
        self.listen = listen
        self.authenticate = authenticate
        self.hello_timeout_s = hello_timeout_s
        self.links: dict[str, Link] = {}
        self.refusals: list[str] = []
        self._changed = threading.Condition()
        credentials = grpc.ssl_server_credentials(
            [(key_pem, cert_pem)], root_certificates=ca_pem, require_client_auth=True
        )
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=64), options=CHANNEL_OPTIONS
        )
        handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.stream_stream_rpc_method_handler(
            self._connect
        )
        service, method = METHOD.rsplit("/", 1)
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service.lstrip("/"), {method: handler}),)
        )
        self.port = int(self._server.add_secure_port(listen, credentials))
        if self.port == 0:
            raise TransportError(f"cannot listen on {listen}")

    def start(self) -> int:
        self._server.start()
        return self.port

    def stop(self) -> None:
        for link in list(self.links.values()):
            link.close()
        self._server.stop(grace=2.0)

    def wait_for(self, parties: Sequence[str], timeout_s: float) -> None:
        """Block until every party has an open link; TransportError naming who is missing."""
        with self._changed:
            ready = self._changed.wait_for(
                lambda: all(p in self.links and not self.links[p].closed.is_set()
                            for p in parties),
                timeout=timeout_s,
            )  # fmt: skip
        if not ready:
            missing = [p for p in parties if p not in self.links]
            raise TransportError(
                f"parties {missing} did not connect within {timeout_s:g} s"
                + (f"; refused: {'; '.join(self.refusals)}" if self.refusals else "")
            )

    def _refuse(self, context: grpc.ServicerContext, peer: str, why: str) -> None:
        line = f"refused {peer}: {why}"
        LOG.warning(line)
        self.refusals.append(line)
        context.abort(grpc.StatusCode.PERMISSION_DENIED, why)

    def _connect(self, incoming: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        peer = context.peer()
        # The TLS layer verified the chain; revocation and the binding are checked above.
        certs = list(context.auth_context().get("x509_pem_cert") or [])
        cert = certs[0] if certs and isinstance(certs[0], bytes) else None
        link = Link(name=peer)
        threading.Thread(target=link.pump, args=(incoming,), daemon=True).start()
        try:
            hello = link.receive(self.hello_timeout_s)
            party, reply = self.authenticate(cert, hello)
        except (PeerRefusedError, WireError, TransportError) as refused:
            link.close(refused)
            self._refuse(context, peer, str(refused))
            return
        with self._changed:
            old = self.links.get(party)
            if old is not None and not old.closed.is_set():
                link.close()
                self._refuse(context, peer, f"{party} is already connected")
                return
            link.name = party
            # The answer to the hello is the link's first message, before anyone else
            # can send on it.
            link.send(reply)
            self.links[party] = link
            self._changed.notify_all()
        LOG.info("%s connected from %s", party, peer)
        yield from link.outgoing()


class NetworkTransport:
    """The coordinator's transport over the server's links."""

    def __init__(self, server: CoordinatorServer, timeout_s: float) -> None:
        self.server = server
        self.timeout_s = timeout_s
        self.offer: dict[str, Any] | None = None
        """The job offer, once made: a node that dials in again (a restarted process) is
        offered the job first and takes part again only once it accepts."""

    def _reply(self, party: str) -> object:
        """The reply to the latest request sent to ``party``, skipping late ones: a node
        answers every request once, in order, so the i-th reply answers the i-th request,
        and one that arrives after its request timed out is discarded."""
        link = self.server.links[party]
        while True:
            reply = link.receive(self.timeout_s)
            link.answered += 1
            if link.answered >= link.asked:
                return reply
            LOG.warning("%s: discarded a late reply to an earlier request", party)

    def _admit(self, party: str, link: Link) -> str | None:
        """Offer the job to a node that dialled in again; None once it accepted."""
        assert self.offer is not None
        link.send(dict(self.offer))
        link.asked += 1
        answer = self._reply(party)
        if isinstance(answer, dict) and answer.get("accepted"):
            link.admitted = True
            LOG.info("%s rejoined the job", party)
            return None
        return f"dialled in again but did not accept the job: {_refusal(answer) or answer}"

    def exchange(self, requests: Mapping[str, Request]) -> Exchange:
        result = Exchange()
        sent: list[str] = []
        for party, request in requests.items():
            link = self.server.links.get(party)
            if link is None or link.closed.is_set():
                result.failed[party] = "not connected"
                continue
            try:
                why = None if link.admitted or self.offer is None else self._admit(party, link)
                if why is not None:
                    result.failed[party] = why
                    continue
                link.send(request)
            except TransportError as lost:
                result.failed[party] = str(lost)
                continue
            link.asked += 1
            result.bytes_down += request.nbytes
            sent.append(party)
        for party in sent:  # in party order, whatever order the replies arrive in
            try:
                reply = self._reply(party)
            except TransportError as lost:
                result.failed[party] = str(lost)
                continue
            refused = _refusal(reply)
            if refused is not None:
                result.failed[party] = refused
            elif not isinstance(reply, Release) or reply.sender != party:
                result.failed[party] = f"sent {type(reply).__name__}, not its own release"
                LOG.warning("%s: dropped a reply that is not its own release", party)
            else:
                result.bytes_up += reply.nbytes
                result.replies[party] = reply
        return result

    def send_all(self, message: Mapping[str, Any], parties: Sequence[str]) -> None:
        """A session message (job offer, done) to every connected party."""
        for party in parties:
            link = self.server.links.get(party)
            if link is not None and not link.closed.is_set():
                link.send(dict(message))

    def ask_all(self, message: Mapping[str, Any], parties: Sequence[str]) -> dict[str, object]:
        """A session message to every party at once (the job offer), and each answer."""
        for party in parties:
            self.server.links[party].send(dict(message))
            self.server.links[party].asked += 1
        answers = {party: self._reply(party) for party in parties}
        for party, answer in answers.items():
            if isinstance(answer, dict) and answer.get("accepted"):
                self.server.links[party].admitted = True
        return answers


def _refusal(reply: object) -> str | None:
    if isinstance(reply, dict) and isinstance(reply.get("refused"), str):
        return str(reply["refused"])
    return None
