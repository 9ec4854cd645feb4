"""A federation of SecAggNodes and a SecAggServer in one process, and a tampering server.

``Federation`` builds a roster (names, Ed25519 identity keys, secure generators) and
fresh nodes and servers for one round. ``run_round`` drives every stage in order and lets
parties drop at any stage. ``RecordingServer`` is the "malicious coordinator" of the
tests: a SecAggServer that keeps every message it relays (its whole view) and whose
broadcasts the tests alter before handing them to the nodes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from accord.protect import (
    AdvertisementSet,
    ConfirmationSet,
    SecAggNode,
    SecAggParams,
    SecAggServer,
    ShareDelivery,
    SurvivorList,
    UnmaskRequest,
)
from accord.protect.quantize import word_dtype
from accord.secure_random import SecureGenerator

MODEL_HASH = hashlib.sha256(b"global model, round 0").digest()

STAGES = ("advertise", "confirm", "share_keys", "masked_input", "sign", "unmask")


@dataclass
class Federation:
    """n parties with identity keys and generators, and the round's parameters."""

    n: int
    gamma: float = 0.0
    delta: float = 0.0
    min_parties: int = 2
    ring_bits: int = 24
    length: int = 1000
    job_id: str = "job-1"
    round: int = 0
    allow_sparse: bool = True
    seed: int = 0
    names: tuple[str, ...] = field(init=False)
    identities: dict[str, Ed25519PrivateKey] = field(init=False)
    params: SecAggParams = field(init=False)

    def __post_init__(self) -> None:
        self.names = tuple(f"p{i:03d}" for i in range(self.n))
        self.identities = {name: Ed25519PrivateKey.generate() for name in self.names}
        self.params = SecAggParams(
            job_id=self.job_id,
            round=self.round,
            roster=self.names,
            min_parties=self.min_parties,
            gamma=self.gamma,
            delta=self.delta,
            ring_bits=self.ring_bits,
            vector_length=self.length,
            allow_sparse=self.allow_sparse,
        )

    @property
    def roster_keys(self) -> dict[str, Ed25519PublicKey]:
        return {name: key.public_key() for name, key in self.identities.items()}

    def node(self, name: str, model_hash: bytes = MODEL_HASH, **overrides: Any) -> SecAggNode:
        kwargs: dict[str, Any] = {
            "params": self.params,
            "party": name,
            "identity_key": self.identities[name],
            "roster_keys": self.roster_keys,
            "model_hash": model_hash,
            "rng": SecureGenerator.fresh(),
        }
        kwargs.update(overrides)
        return SecAggNode(**kwargs)

    def nodes(self, model_hashes: Mapping[str, bytes] | None = None) -> dict[str, SecAggNode]:
        hashes = model_hashes or {}
        return {name: self.node(name, hashes.get(name, MODEL_HASH)) for name in self.names}

    def server(self, cls: type[SecAggServer] = SecAggServer) -> SecAggServer:
        return cls(self.params, self.roster_keys, MODEL_HASH)

    def inputs(self, rng_seed: int | None = None) -> dict[str, npt.NDArray[np.unsignedinteger]]:
        """Random ring vectors small enough that no sum of n wraps (a test-side choice)."""
        # Test data only: NumPy's generator is fine for inputs, never for masks.
        generator = np.random.default_rng(self.seed if rng_seed is None else rng_seed)
        high = 2 ** (self.ring_bits - 1) // self.n
        dtype = word_dtype(self.ring_bits)
        return {name: generator.integers(0, high, self.length).astype(dtype) for name in self.names}

    def expected_sum(self, inputs: Mapping[str, np.ndarray], parties: Iterable[str]) -> np.ndarray:
        total = sum(inputs[p].astype(np.uint64) for p in parties)
        return np.asarray(total, dtype=np.uint64) & np.uint64(2**self.ring_bits - 1)


class RecordingServer(SecAggServer):
    """A coordinator that keeps everything it relays: the view a malicious one has."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.view: list[object] = []

    def __getattribute__(self, name: str) -> Any:
        attribute = super().__getattribute__(name)
        if name.startswith("receive_") and callable(attribute):
            view = super().__getattribute__("view")

            def recording(message: object) -> None:
                view.append(message)
                attribute(message)

            return recording
        return attribute


class RoundDriver:
    """Drives one round stage by stage; each step feeds a broadcast to some parties, passes
    their answers to the server and returns the server's next broadcast. Tests alter the
    broadcasts in between, as a malicious coordinator would."""

    def __init__(
        self,
        fed: Federation,
        *,
        nodes: dict[str, SecAggNode] | None = None,
        server: SecAggServer | None = None,
    ) -> None:
        self.fed = fed
        self.nodes = nodes if nodes is not None else fed.nodes()
        self.server = server if server is not None else fed.server(RecordingServer)
        self.inputs = fed.inputs()

    def _who(self, parties: Iterable[str] | None, default: Iterable[str]) -> list[str]:
        return sorted(default if parties is None else parties)

    def advertise(self, parties: Iterable[str] | None = None) -> AdvertisementSet:
        for p in self._who(parties, self.fed.names):
            self.server.receive_advertisement(self.nodes[p].advertise())
        return self.server.advertisement_set()

    def confirm(
        self, ad_set: AdvertisementSet, parties: Iterable[str] | None = None
    ) -> ConfirmationSet:
        members = [a.party for a in ad_set.advertisements]
        for p in self._who(parties, members):
            self.server.receive_confirmation(self.nodes[p].confirm(ad_set))
        return self.server.confirmation_set()

    def share(
        self, confirmations: ConfirmationSet, parties: Iterable[str] | None = None
    ) -> dict[str, ShareDelivery]:
        assert self.server.graph is not None or parties is not None
        members = self.server.graph.members if self.server.graph else ()
        for p in self._who(parties, members):
            self.server.receive_key_shares(self.nodes[p].share_keys(confirmations))
        return self.server.share_deliveries()

    def mask(
        self, deliveries: Mapping[str, ShareDelivery], parties: Iterable[str] | None = None
    ) -> SurvivorList:
        for p in self._who(parties, deliveries):
            self.server.receive_masked_input(
                self.nodes[p].masked_input(deliveries[p], self.inputs[p])
            )
        return self.server.survivor_list()

    def sign(
        self, survivor_list: SurvivorList, parties: Iterable[str] | None = None
    ) -> UnmaskRequest:
        for p in self._who(parties, survivor_list.survivors):
            self.server.receive_survivor_signature(self.nodes[p].sign_survivors(survivor_list))
        return self.server.unmask_request()

    def unmask(self, request: UnmaskRequest, parties: Iterable[str] | None = None) -> np.ndarray:
        for p in self._who(parties, request.survivors):
            self.server.receive_unmask_response(self.nodes[p].unmask(request))
        return self.server.result()


@dataclass
class RoundResult:
    total: np.ndarray
    survivors: tuple[str, ...]
    server: SecAggServer
    nodes: dict[str, SecAggNode]


def run_round(
    fed: Federation,
    inputs: Mapping[str, np.ndarray],
    *,
    drop: Mapping[str, Iterable[str]] | None = None,
    nodes: dict[str, SecAggNode] | None = None,
    server: SecAggServer | None = None,
) -> RoundResult:
    """Run every stage; ``drop[stage]`` parties send nothing from that stage on."""
    drop = drop or {}
    assert set(drop) <= set(STAGES), set(drop) - set(STAGES)
    driver = RoundDriver(fed, nodes=nodes, server=server or fed.server())
    driver.inputs = dict(inputs)
    alive = set(fed.names)

    def enter(stage: str, members: Iterable[str]) -> set[str]:
        alive.difference_update(drop.get(stage, ()))
        return alive & set(members)

    ad_set = driver.advertise(enter("advertise", fed.names))
    confirmations = driver.confirm(ad_set, enter("confirm", fed.names))
    assert driver.server.graph is not None
    deliveries = driver.share(confirmations, enter("share_keys", driver.server.graph.members))
    survivor_list = driver.mask(deliveries, enter("masked_input", deliveries))
    request = driver.sign(survivor_list, enter("sign", survivor_list.survivors))
    total = driver.unmask(request, enter("unmask", request.survivors))
    return RoundResult(total, driver.server.survivors, driver.server, driver.nodes)


class LyingServer(RecordingServer):
    """A coordinator that claims ``claim_dropped`` parties dropped although their masked
    inputs arrived, and runs the rest of the round consistently with that lie."""

    def __init__(self, *args: Any, claim_dropped: Iterable[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.claim_dropped = set(claim_dropped)

    def survivor_list(self) -> SurvivorList:
        honest = super().survivor_list()
        lie = tuple(p for p in honest.survivors if p not in self.claim_dropped)
        self._survivors = lie
        return SurvivorList(honest.job_id, honest.round, lie)


def chi_square_top_bits(words: np.ndarray, ring_bits: int, bits: int = 4) -> float:
    """Chi-square statistic of the top ``bits`` bits of ring words against uniform."""
    top = (words.astype(np.uint64) >> np.uint64(ring_bits - bits)).astype(np.int64)
    counts = np.bincount(top, minlength=2**bits)
    expected = words.size / 2**bits
    return float(np.sum((counts - expected) ** 2 / expected))
