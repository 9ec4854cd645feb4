"""A node's side of a CKKS job: the key setup, its encrypted updates, its own model.

Setup, before round 1 (stages of :class:`~accord.fl.messages.ProtocolRequest`, round 0):

1. ``ckks_hello`` (every party; the request carries the public initial model): the node
   answers with a fresh X25519 public key for this job, signed with its identity key.
2. ``ckks_keys`` (the key holder only; the request carries every hello): the key holder
   checks each hello against its own roster, generates the job's key set and answers with
   the secret key sealed to each other party end to end, and the public context.
3. ``ckks_open`` (every other party; the request carries its envelope and the key holder's
   signed hello): the node checks the key holder's signature against its own roster and
   opens the key set.

Round r: the node trains from its own copy of the global model (the coordinator has none
after the setup) and releases its update encrypted (``update`` release, charged as any
update, nothing in the clear beside it). At ``ckks_apply`` the request carries the
encrypted sum of the round's updates and their count; the node decrypts it and applies
the strategy's server step with its own strategy instance. Decryption and the step are
deterministic, so every party holds the same model. Every answer leaves through the
node's release gate as a ``protocol`` release: keys, signatures, envelopes and
acknowledgements, nothing derived from data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from accord.errors import InputError, RefusedError
from accord.job import Job

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from accord.protect.ckks import CkksKeySet, EncryptedVector
    from accord.protect.envelope import Envelope
    from accord.secure_random import SecureGenerator

SETUP_ROUND = 0
STAGES = ("ckks_hello", "ckks_keys", "ckks_open", "ckks_apply")
MODEL_FILE = "model.safetensors"


def ckks_model_path(home: Path, job_id: str) -> Path:
    """Where the key holder's node keeps the job's current global model."""
    return home / "jobs" / job_id / MODEL_FILE


def hello_bytes(job_id: str, party: str, x25519_public: bytes) -> bytes:
    """What a hello's signature covers: job, party and the party's key for this job."""
    from accord.protect.encoding import encode

    return encode("ckks-hello", job_id, party, x25519_public)


@dataclass(frozen=True, slots=True)
class CkksHello:
    """A party's X25519 key for this job, signed with its identity key."""

    party: str
    job_id: str
    x25519_public: bytes
    signature: bytes

    @property
    def nbytes(self) -> int:
        return len(self.x25519_public) + len(self.signature)


@dataclass(frozen=True, slots=True)
class CkksKeyDelivery:
    """The key holder's answer: the public context and one sealed key set per party."""

    party: str
    public_context: bytes
    envelopes: tuple[Envelope, ...]

    @property
    def nbytes(self) -> int:
        return len(self.public_context) + sum(e.nbytes for e in self.envelopes)


@dataclass(frozen=True, slots=True)
class CkksKeyRelay:
    """The coordinator's relay to one party: its envelope and the key holder's hello."""

    holder_hello: CkksHello
    envelope: Envelope

    @property
    def nbytes(self) -> int:
        return self.holder_hello.nbytes + self.envelope.nbytes


@dataclass(frozen=True, slots=True)
class CkksAck:
    """A party's acknowledgement of a stage, naming the key set it holds."""

    party: str
    stage: str
    key_id: str

    @property
    def nbytes(self) -> int:
        return len(self.stage) + len(self.key_id)


@dataclass(frozen=True, slots=True)
class CkksUpdate:
    """A party's update, encrypted: the payload of its ``update`` release."""

    party: str
    vector: EncryptedVector

    @property
    def nbytes(self) -> int:
        return self.vector.nbytes


@dataclass(frozen=True, slots=True)
class CkksAggregate:
    """The coordinator's sum of a round's encrypted updates, and how many it adds."""

    total: EncryptedVector
    count: int

    @property
    def nbytes(self) -> int:
        return self.total.nbytes + 8


class NodeCkks:
    """One node's CKKS state for a job: its keys, its strategy and its copy of the model."""

    def __init__(
        self, job: Job, job_id: str, party: str, home: Path, parties: Sequence[str]
    ) -> None:
        from accord.fl.strategies import build_strategy
        from accord.governance import load_roster, node_identity

        key_holder = job.protection.key_holder
        assert key_holder is not None  # the job file's validation requires it
        self.job = job
        self.job_id = job_id
        self.party = party
        self.parties = tuple(parties)
        self.key_holder = key_holder
        self.identity = node_identity(home, party)
        self.roster = load_roster(home)
        missing = sorted(set(self.parties) - set(self.roster))
        if missing:
            raise InputError(
                f"node {party!r}: its roster ({self.roster.path}) lists no key for {missing}; "
                "a CKKS job needs every party's key from the node's owner"
            )
        # The node's own strategy instance: its server step (and state) stay on the node.
        self.strategy = build_strategy(job.strategy, len(self.parties))
        self.keys: CkksKeySet | None = None
        self.model: torch.Tensor | None = None
        self.applied_rounds = 0
        self._x25519: X25519PrivateKey | None = None
        self._hello: CkksHello | None = None

    @property
    def is_key_holder(self) -> bool:
        return self.party == self.key_holder

    def step(self, stage: str, payload: Any, rng: SecureGenerator) -> Any:
        """The node's answer to one setup stage (``ckks_apply`` is :meth:`apply`)."""
        if stage == "ckks_hello":
            return self.hello(payload, rng)
        if stage == "ckks_keys":
            return self.deliver_keys(payload, rng)
        if stage == "ckks_open":
            return self.open_keys(payload)
        raise InputError(f"node {self.party!r}: unknown CKKS stage {stage!r}")

    def hello(self, initial: Any, rng: SecureGenerator) -> CkksHello:
        """Take the public initial model; a fresh X25519 key for this job, signed."""
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

        if self._hello is not None:
            raise RefusedError(f"node {self.party!r}: the CKKS key setup runs once per job")
        if not isinstance(initial, torch.Tensor) or initial.dim() != 1:
            raise InputError(f"node {self.party!r}: a CKKS hello must carry the initial model")
        self.model = initial.detach().clone()
        self._x25519 = X25519PrivateKey.from_private_bytes(rng.random_bytes(32))
        public = self._x25519.public_key().public_bytes_raw()
        signature = self.identity.sign(hello_bytes(self.job_id, self.party, public))
        self._hello = CkksHello(self.party, self.job_id, public, signature)
        return self._hello

    def _check_hello(self, hello: Any) -> CkksHello:
        if not isinstance(hello, CkksHello) or hello.job_id != self.job_id:
            raise RefusedError(f"node {self.party!r}: a CKKS hello of another job, or none")
        if hello.party not in self.parties:
            raise RefusedError(f"node {self.party!r}: a CKKS hello from {hello.party!r}, no party")
        self.roster.verify(
            hello.party, hello.signature, hello_bytes(self.job_id, hello.party, hello.x25519_public)
        )
        return hello

    def deliver_keys(self, hellos: Any, rng: SecureGenerator) -> CkksKeyDelivery:
        """The key holder: check every hello, generate the key set, seal it to each party."""
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

        from accord.protect.ckks import AGGREGATION, CkksKeySet, seal_secret_key

        if not self.is_key_holder:
            raise RefusedError(f"node {self.party!r}: not this job's CKKS key holder")
        if self.keys is not None or self._x25519 is None or self._hello is None:
            raise RefusedError(f"node {self.party!r}: CKKS keys asked for out of order")
        checked = [self._check_hello(h) for h in hellos]
        if sorted(h.party for h in checked) != sorted(self.parties):
            raise RefusedError(
                f"node {self.party!r}: the CKKS key setup needs one hello from every party "
                f"{list(self.parties)}"
            )
        own = next(h for h in checked if h.party == self.party)
        if own != self._hello:
            raise RefusedError(f"node {self.party!r}: its own hello was replaced")
        keys = CkksKeySet.generate(AGGREGATION)
        secret = keys.secret_bytes()
        envelopes = tuple(
            seal_secret_key(
                secret, job_id=self.job_id, sender=self.party, recipient=h.party,
                sender_key=self._x25519,
                recipient_public=X25519PublicKey.from_public_bytes(h.x25519_public),
                generator=rng,
            )
            for h in checked if h.party != self.party
        )  # fmt: skip
        self.keys = keys
        return CkksKeyDelivery(self.party, keys.public_bytes(), envelopes)

    def open_keys(self, relay: Any) -> CkksAck:
        """Another party: check the key holder's hello against the roster, open the keys."""
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

        from accord.protect.ckks import AGGREGATION, CkksKeySet, open_secret_key

        if self.keys is not None or self._x25519 is None:
            raise RefusedError(f"node {self.party!r}: CKKS keys offered out of order")
        if not isinstance(relay, CkksKeyRelay):
            raise InputError(f"node {self.party!r}: a ckks_open request must carry a relay")
        holder = self._check_hello(relay.holder_hello)
        if holder.party != self.key_holder:
            raise RefusedError(
                f"node {self.party!r}: CKKS keys from {holder.party!r}, but the job's key "
                f"holder is {self.key_holder!r}"
            )
        secret = open_secret_key(
            relay.envelope, job_id=self.job_id, sender=self.key_holder, recipient=self.party,
            recipient_key=self._x25519,
            sender_public=X25519PublicKey.from_public_bytes(holder.x25519_public),
        )  # fmt: skip
        keys = CkksKeySet.from_secret_bytes(secret)
        if keys.params != AGGREGATION:
            raise RefusedError(
                f"node {self.party!r}: the key holder's key set is not the aggregation preset"
            )
        self.keys = keys
        return CkksAck(self.party, "ckks_open", keys.key_id)

    def current_model(self) -> torch.Tensor:
        if self.model is None:
            raise RefusedError(f"node {self.party!r}: no CKKS key setup ran for this job")
        return self.model

    def encrypt(self, delta: torch.Tensor) -> CkksUpdate:
        """The update, encrypted with the job's key set (equal weights: no row count)."""
        from accord.protect.ckks import encrypt_vector

        if self.keys is None:
            raise RefusedError(f"node {self.party!r}: it holds no CKKS key set for this job")
        vector = encrypt_vector(self.keys, delta.detach().double().numpy())
        return CkksUpdate(self.party, vector)

    def apply(self, round_number: int, aggregate: Any) -> CkksAck:
        """Decrypt the round's sum, take the mean and step the strategy on this node."""
        from accord.protect.ckks import decrypt_sum

        if self.keys is None or self.model is None:
            raise RefusedError(f"node {self.party!r}: it holds no CKKS key set for this job")
        if round_number != self.applied_rounds + 1:
            raise RefusedError(
                f"node {self.party!r}: a CKKS sum for round {round_number}, but the next round "
                f"to apply is {self.applied_rounds + 1}"
            )
        if not isinstance(aggregate, CkksAggregate):
            raise InputError(f"node {self.party!r}: a ckks_apply request must carry a sum")
        if aggregate.count < self.job.sampling.min_parties:
            # A sum of fewer updates than the job allows could be one party's update.
            raise RefusedError(
                f"node {self.party!r}: a CKKS sum of {aggregate.count} updates, fewer than "
                f"sampling.min_parties = {self.job.sampling.min_parties}"
            )
        if aggregate.total.length != self.model.numel():
            raise RefusedError(f"node {self.party!r}: the CKKS sum has the wrong length")
        total = torch.from_numpy(decrypt_sum(self.keys, aggregate.total))
        mean = (total / aggregate.count).to(self.model.dtype)
        self.model = self.strategy.server_step(self.model, mean, [])
        self.applied_rounds = round_number
        return CkksAck(self.party, "ckks_apply", self.keys.key_id)
