"""Transports move messages between the coordinator and the nodes, and nothing more.

A transport knows no agreement, budget or model. It counts the bytes it moves and
refuses, on the node side, anything that the node's release gate did not seal.
"""

from accord.transport.base import Exchange, NodeEndpoint, Transport
from accord.transport.inprocess import InProcessTransport

__all__ = ["Exchange", "InProcessTransport", "NodeEndpoint", "Transport"]
