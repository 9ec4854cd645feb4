"""A node's end of the network: it dials the coordinator (outgoing only) over mutual TLS.

The node presents its federation certificate and checks the coordinator's against the
federation's CA (gRPC's handshake); the layer above then checks the coordinator's identity
with a signed challenge. The stream is a :class:`~accord.transport.grpc_link.Link`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc

from accord.errors import TransportError
from accord.transport.grpc_link import CHANNEL_OPTIONS, METHOD, Link


class NodeConnection:
    """One stream to the coordinator."""

    def __init__(
        self,
        address: str,
        cert_pem: bytes,
        key_pem: bytes,
        ca_pem: bytes,
        server_name: str,
        connect_timeout_s: float = 300.0,
    ) -> None:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
        )
        # The coordinator's certificate names it by its party name (and its addresses):
        # check the name, whatever address this node dials.
        options = [*CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", server_name)]
        self.channel = grpc.secure_channel(address, credentials, options=options)
        self.link = Link(name="the coordinator")
        # A node started before its coordinator waits for it to listen; a handshake that
        # keeps failing (another CA, a revoked or expired certificate) ends the wait.
        try:
            grpc.channel_ready_future(self.channel).result(timeout=connect_timeout_s)
        except grpc.FutureTimeoutError:
            self.channel.close()
            raise TransportError(
                f"no TLS connection to the coordinator at {address} within "
                f"{connect_timeout_s:g} s (is it running? do this kit's CA and certificate "
                "belong to its federation, unexpired?)"
            ) from None
        connect: grpc.StreamStreamMultiCallable[bytes, bytes] = self.channel.stream_stream(METHOD)
        call: Iterator[bytes] = connect(self.link.outgoing())
        threading.Thread(target=self.link.pump, args=(call,), daemon=True).start()

    def close(self) -> None:
        self.link.close()
        self.channel.close()
