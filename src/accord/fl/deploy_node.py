"""``accord node``: one data owner's node process, the same Node object as in simulation.

The node dials the coordinator with its kit (certificate, CA, revocation list, address,
agreement) and its own TLS key from its node home, checks the coordinator's identity with a
signed challenge, then receives the job offer. It accepts or refuses the job with exactly
the checks a simulated node makes (its own copy of the agreement, its caps, its approvals,
its audit log), loads only its own data, and answers the coordinator's requests through its
release gate until the job is done. Nothing from the kit overwrites the node home: a home
without an agreement copy gets the kit's, a home with one keeps its own.
"""

from __future__ import annotations

import logging
import os
import secrets
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accord.errors import AccordError, InputError, PeerRefusedError, RefusedError, TransportError
from accord.fileio import write_bytes_atomic
from accord.fl.messages import EvaluateRequest, ProtocolRequest, TrainRequest
from accord.job import Job, parse_job

if TYPE_CHECKING:
    from accord.data.federation import FederatedData, PartyData
    from accord.fl.node import Node
    from accord.fl.sealed_releases import SealedReleases
    from accord.governance.agreement import Agreement
    from accord.governance.identity import PartyIdentity
    from accord.governance.kit import Kit
    from accord.transport.grpc_coordinator import Authenticate
from accord.transport.grpc_link import Link, as_dict

LOG = logging.getLogger("accord.node")
OFFER_TIMEOUT_S = 600.0


def serve_node(
    kit_dir: Path, home: Path, data: Path | None = None, reconnect_s: float = 300.0
) -> int:
    """Run this node for one job; returns the number of requests it answered. A lost
    coordinator is dialled again for up to ``reconnect_s`` seconds."""
    from accord.fl.node_agreement import node_agreement_path
    from accord.governance.agreement import load_agreement, signatures_path
    from accord.governance.identity import node_identity
    from accord.governance.provisioning import (
        TLS_KEY_FILE,
        check_challenge,
        kit_agreement,
        load_kit,
        read_tls_key,
    )
    from accord.transport.grpc_node import NodeConnection

    kit = load_kit(kit_dir)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    identity = node_identity(home, kit.party)
    # The kit's agreement must list this node's own key (so its own signature is among
    # those that verified); only then does it become the home's copy, and never over one.
    kit_agreement(kit, identity.public_key)
    copy = node_agreement_path(home)
    if not copy.exists():
        write_bytes_atomic(copy, kit.agreement_path.read_bytes(), mode=0o644)
        write_bytes_atomic(
            signatures_path(copy), signatures_path(kit.agreement_path).read_bytes(), mode=0o644
        )
    agreement = load_agreement(copy)
    agreement.check_in_force()
    tls_key = read_tls_key(home / TLS_KEY_FILE, kit)
    session = _Session(kit.party, home, data, agreement.digest)
    while True:
        connection = NodeConnection(
            kit.coordinator_address, kit.cert_pem, tls_key, kit.ca_pem,
            agreement.terms.coordinator, connect_timeout_s=reconnect_s,
        )  # fmt: skip
        link = connection.link
        try:
            nonce = secrets.token_bytes(32)
            link.send({"hello": kit.party, "nonce": nonce})
            reply = as_dict(link.receive(60.0), "the coordinator's challenge", "challenge")
            check_challenge(agreement, nonce, kit.party, reply["challenge"])
            LOG.info("%s: the coordinator proved its identity", kit.party)
            message = link.receive(OFFER_TIMEOUT_S)
            if isinstance(message, dict) and message.get("done"):
                LOG.warning("%s: the coordinator ended before offering a job", kit.party)
                return session.answered
            offer = as_dict(message, "a job offer", "job", "job_id", "run_id")
            if not session.accept(link, offer):
                return session.answered
            return session.answer(link)
        except TransportError as lost:
            if session.node is None:
                raise
            # The coordinator went away mid-job (a restart): dial again; the same job and
            # run is answered by the same node, kept releases resent, not recomputed.
            LOG.warning("%s: lost the coordinator (%s); dialling again", kit.party, lost)
        finally:
            connection.close()


class _Session:
    """This node's job across reconnections: the node, and the releases it kept."""

    def __init__(self, party: str, home: Path, data: Path | None, digest: str) -> None:
        self.party, self.home, self.data, self.digest = party, home, data, digest
        self.node: Node | None = None
        self.key: tuple[str, str] | None = None
        self.reply: dict[str, Any] = {}
        self.sealed: SealedReleases | None = None
        self.answered = 0

    def accept(self, link: Link, offer: dict[str, Any]) -> bool:
        """Answer the offer: the same job and run again keeps the node it has."""
        from accord.fl.sealed_releases import SealedReleases

        key = (str(offer["job_id"]), str(offer["run_id"]))
        if self.node is None or key != self.key:
            accepted = _accept(offer, self.party, self.home, self.data, self.digest)
            if isinstance(accepted, str):
                LOG.warning("%s refused the job: %s", self.party, accepted)
                link.send({"refused": accepted})
                return False
            self.node, self.reply = accepted
            self.key = key
            self.sealed = SealedReleases(self.home, *key)
        link.send(self.reply)
        return True

    def answer(self, link: Link) -> int:
        """Answer requests through the node's gate until the coordinator says done."""
        assert self.node is not None and self.sealed is not None
        node, sealed = self.node, self.sealed
        while True:
            request = link.receive(None)
            if isinstance(request, dict) and request.get("done"):
                return self.answered
            if not isinstance(request, TrainRequest | EvaluateRequest | ProtocolRequest):
                link.send({"refused": f"not a request: {type(request).__name__}"})
                continue
            try:
                kept = sealed.load(request)
                if kept is not None:
                    release = node.gate.unseal(node.gate.reseal(kept))
                else:
                    release = node.gate.unseal(node.handle(request))
                    sealed.keep(request, release)
            except RefusedError as refusal:
                link.send({"refused": str(refusal)})
                continue
            except (AccordError, TypeError, ValueError, AttributeError, RuntimeError) as bad:
                # A malformed request never brings the node down: refuse it and go on.
                LOG.warning("refused a malformed request: %s", bad)
                link.send({"refused": f"malformed request: {bad}"})
                continue
            link.send(release)
            self.answered += 1


def _accept(
    offer: dict[str, Any], party: str, home: Path, data: Path | None, digest: str
) -> tuple[Node, dict[str, Any]] | str:
    """This party's Node for the offered job and the acceptance to send, or the refusal."""
    try:
        offered = _offered_job(offer)
        if offered.job_id() != offer["job_id"]:
            raise InputError("the job offer's id does not match its text")
        # --data changes where this node reads its rows, not which job it runs.
        job = offered if data is None else _with_own_data(offered, party, data)
        node, shape, classes = build_party_node(
            job, offered.job_id(), Path(os.getcwd()), party, home, str(offer["run_id"]),
            digest if job.job.agreement is not None else None,
        )  # fmt: skip
    except AccordError as refusal:
        return str(refusal)
    return node, {"accepted": True, "input_shape": list(shape), "num_classes": classes}


def _offered_job(offer: dict[str, Any]) -> Job:
    text = offer["job"]
    if not isinstance(text, str):
        raise InputError("the job offer carries no job text")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"the offered job is not TOML ({exc})") from None
    job = parse_job(raw, "the offered job")
    if job.nodes:
        raise InputError("the offered job names node homes; a deployed node has its own")
    return job


def _with_own_data(job: Job, party: str, data: Path) -> Job:
    """The job with this party's data at ``data`` (``--data``), for a natural partition."""
    cfg = job.data
    if not cfg.natural:
        raise InputError('--data needs a job whose data.partition.kind is "natural"')
    parties = [
        p.model_copy(update={"path": str(data.resolve())}) if p.name == party else p
        for p in cfg.parties
    ]
    return job.model_copy(update={"data": cfg.model_copy(update={"parties": parties})})


def build_party_node(
    job: Job,
    job_id: str,
    base_dir: Path,
    party: str,
    home: Path,
    run_id: str,
    agreement_digest: str | None,
) -> tuple[Node, tuple[int, ...], int]:
    """One party's node for a deployed node process, built as in simulation, and the
    model's input shape and class count (schema facts the coordinator needs to build the
    model; no row of data). Loads the job's data and keeps this party's share: a natural
    partition reads only this party's own file when ``--data`` gave it."""
    from accord.data.federation import build_federated_data
    from accord.fl.simulation import (
        build_nodes,
        check_protection,
        initial_model,
        local_plan,
        model_spec,
    )
    from accord.fl.strategies import build_strategy

    if job.job.threads is not None:
        import torch

        torch.set_num_threads(job.job.threads)
    if job.data.natural:
        own = [p for p in job.data.parties if p.name == party]
        cfg = job.data.model_copy(update={"parties": own})
        data = build_federated_data(cfg, job.job.seed, base_dir)
        names = [p.name for p in job.data.parties]
    else:
        data = build_federated_data(job.data, job.job.seed, base_dir)
        names = [p.name for p in data.parties]
    if party not in names:
        raise InputError(f"party {party!r} is not a party of this job (parties: {names})")
    spec = model_spec(job, base_dir, data.input_shape, data.num_classes)
    model = initial_model(job, base_dir, spec)
    strategy = build_strategy(job.strategy, len(names))
    if job.protection.enabled:
        check_protection(job, job_id, names)
    # The node's index in the job decides its shuffling seed: the same as in simulation.
    ordered = [_stand_in(p, data) for p in names]
    (node,) = build_nodes(
        job, job_id, ordered, model, spec, local_plan(job, strategy.objective), None, base_dir,
        run_id, agreement_digest, only=(party, home),
    )  # fmt: skip
    return node, tuple(data.input_shape), data.num_classes


def _stand_in(name: str, data: FederatedData) -> PartyData:
    """The party's own data, or an empty stand-in for another party (never read)."""
    for party in data.parties:
        if party.name == name:
            return party
    import numpy as np

    from accord.data.federation import PartyData

    empty_x = np.zeros((0, *data.input_shape), dtype=np.float32)
    empty_y = np.zeros(0, dtype=np.int64)
    return PartyData(name, empty_x, empty_y, empty_x, empty_y)


def authenticate_peer(kit: Kit, agreement: Agreement, identity: PartyIdentity) -> Authenticate:
    """For the coordinator: check a node's certificate and hello, answer its challenge."""
    from accord.governance.provisioning import check_peer_certificate, sign_challenge

    def authenticate(cert_pem: bytes | None, hello: object) -> tuple[str, object]:
        if cert_pem is None:
            raise PeerRefusedError("no client certificate")
        party = check_peer_certificate(cert_pem, kit, agreement)
        message = as_dict(hello, "a hello", "hello", "nonce")
        if message["hello"] != party:
            raise PeerRefusedError(
                f"the certificate is {party!r}'s but the hello names {message['hello']!r}"
            )
        nonce = message["nonce"]
        if not isinstance(nonce, bytes) or len(nonce) != 32:
            raise PeerRefusedError("the hello's nonce is not 32 bytes")
        return party, {"challenge": sign_challenge(identity, nonce, party)}

    return authenticate
