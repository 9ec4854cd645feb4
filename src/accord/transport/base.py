"""The transport interface the coordinator talks to."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from accord.fl.messages import Release, Request


@dataclass(frozen=True, slots=True)
class NodeEndpoint:
    """A node as a transport sees it: a request handler and its gate's unseal check."""

    party: str
    handle: Callable[[Request], object]
    unseal: Callable[[object], Release]


@dataclass(slots=True)
class Exchange:
    """The replies to one batch of requests, and what crossed the network."""

    replies: dict[str, Release] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    """Parties that answered with a refusal instead of a release, and why."""
    bytes_down: int = 0
    bytes_up: int = 0


class Transport(Protocol):
    def exchange(self, requests: Mapping[str, Request]) -> Exchange:
        """Send each party its request; collect the releases that come back."""
        ...
