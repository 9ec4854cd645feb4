"""``accord coordinator``: the coordinator process, the same Coordinator as in simulation.

It listens with its federation certificate and TLS key (mutual TLS), lets in only nodes
whose certificates pass the checks above TLS (this federation's CA, not expired or revoked,
an identity binding that verifies under the agreement's key for the certificate's party),
answers each node's challenge with its own identity key, and offers the job. Each node
accepts or refuses it by its own checks and reports the model's input shape and class
count (schema facts, no rows); the coordinator then runs the rounds exactly as in
simulation, over the network transport, and writes the run folder. It never loads data.
"""

from __future__ import annotations

import logging
import secrets
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from accord.errors import InputError, RefusedError
from accord.fl.run_dir import RunDir
from accord.fl.runner import RunOutcome
from accord.job import Job, dump_job_toml, load_job, parse_job

LOG = logging.getLogger("accord.coordinator")


def job_party_names(job: Job) -> list[str]:
    """The job's parties, from its data section alone (no data is read)."""
    cfg = job.data
    if cfg.parties:
        return [party.name for party in cfg.parties]
    assert cfg.partition.parties is not None  # the job schema requires it without names
    return [f"party-{i + 1}" for i in range(cfg.partition.parties)]


def offered_job(job_path: Path) -> tuple[Job, str]:
    """The job as offered to the nodes (absolute paths, no node homes) and its TOML."""
    from accord.fl.runner import absolutize

    job = absolutize(load_job(job_path), job_path.resolve().parent)
    if job.nodes:
        LOG.info("the job's [nodes] homes are for simulation; deployed nodes have their own")
    job = job.model_copy(update={"nodes": {}})
    text = dump_job_toml(job)
    # What the nodes will parse: its id is the job's id everywhere.
    return parse_job(tomllib.loads(text), str(job_path)), text


def serve_coordinator(
    kit_dir: Path,
    job_path: Path,
    key_path: Path,
    out: Path,
    listen: str | None = None,
    connect_timeout_s: float = 300.0,
    round_timeout_s: float = 600.0,
    on_listening: Callable[[int], None] | None = None,
    on_round: Callable[[dict[str, Any]], None] | None = None,
    tls_key_path: Path | None = None,
    resume: bool = False,
) -> RunOutcome:
    """Run one job over the network; returns what ``accord run`` returns. ``resume``
    continues the run in ``out`` from its last checkpoint, under the same run id: nodes
    that kept a release of the round in progress send it again, uncharged."""
    from accord.fl.deploy_node import authenticate_peer
    from accord.governance.agreement import load_agreement
    from accord.governance.identity import load_identity
    from accord.governance.provisioning import load_kit
    from accord.transport.grpc_coordinator import CoordinatorServer, NetworkTransport

    kit = load_kit(kit_dir)
    agreement = load_agreement(kit.agreement_path)
    agreement.check_in_force()
    identity = load_identity(key_path)
    coordinator_name = agreement.terms.coordinator
    listed = agreement.terms.party(coordinator_name)
    if listed is None or identity.public_key_line != listed.key or kit.party != coordinator_name:
        raise InputError(
            f"{key_path}: not the identity key of the agreement's coordinator {coordinator_name!r}"
        )
    job, job_text = offered_job(job_path)
    if job.job.agreement is None or load_agreement(Path(job.job.agreement)).digest != (
        agreement.digest
    ):
        raise RefusedError(
            "the job must name the kit's agreement ([job] agreement): the nodes check the job "
            f"against {agreement.label} only"
        )
    names = job_party_names(job)
    strangers = [n for n in names if agreement.terms.party(n) is None]
    if strangers:
        raise RefusedError(f"parties {strangers} are not in agreement {agreement.label}")
    run_dir = RunDir(out)
    run_id: str | None = None
    if resume:
        run_id = run_dir.read_run_id()
        if run_id is None or not run_dir.checkpoint_file.exists():
            raise InputError(f"{run_dir.path}: no run to resume (no run_id or checkpoint)")
        if job.protection.ckks:
            raise InputError("a CKKS job cannot be resumed: its keys lived only in memory")
    elif run_dir.path.exists() and any(run_dir.path.iterdir()):
        raise InputError(
            f"{run_dir.path}: run folder exists; give --resume to continue it or --out DIR"
        )
    from accord.governance.provisioning import read_tls_key

    tls_key = read_tls_key(tls_key_path or _tls_key_path(key_path, kit_dir), kit)
    server = CoordinatorServer(
        listen or _listen_address(kit.coordinator_address), kit.cert_pem, tls_key, kit.ca_pem,
        authenticate_peer(kit, agreement, identity),
    )  # fmt: skip
    port = server.start()
    if on_listening is not None:
        on_listening(port)
    transport = NetworkTransport(server, round_timeout_s)
    try:
        server.wait_for(names, connect_timeout_s)
        return _run(job, job_text, names, transport, run_dir, kit.agreement_path, on_round, run_id)
    finally:
        transport.send_all({"done": True}, names)
        server.stop()


def _run(
    job: Job,
    job_text: str,
    names: list[str],
    transport: Any,
    run_dir: RunDir,
    agreement_path: Path,
    on_round: Callable[[dict[str, Any]], None] | None,
    resume_run_id: str | None = None,
) -> RunOutcome:
    from accord.data.federation import FederatedData
    from accord.fl.coordinator import Coordinator
    from accord.fl.coordinator_inbox import CoordinatorInbox
    from accord.fl.runner import execute_run
    from accord.fl.simulation import Simulation, initial_model, model_spec
    from accord.fl.strategies import build_strategy
    from accord.governance.agreement import load_agreement

    job_id, run_id = job.job_id(), resume_run_id or secrets.token_hex(4)
    offer = {"job": job_text, "job_id": job_id, "run_id": run_id}
    answers = transport.ask_all(offer, names)
    transport.offer = offer  # for a node that dials in again later
    shapes = {}
    for party, answer in answers.items():
        if not isinstance(answer, dict) or not answer.get("accepted"):
            why = answer.get("refused") if isinstance(answer, dict) else type(answer).__name__
            raise RefusedError(f"party {party!r} refused the job: {why}")
        shapes[party] = (tuple(answer["input_shape"]), int(answer["num_classes"]))
    if len(set(shapes.values())) != 1:
        raise InputError(f"the parties' data do not agree on the model's shape: {shapes}")
    shape, classes = next(iter(shapes.values()))
    base_dir = Path(job.job.agreement or ".").parent
    spec = model_spec(job, base_dir, shape, classes)
    model = initial_model(job, base_dir, spec)
    initial = model.flat.clone()
    roster = load_agreement(agreement_path).roster_keys() if job.protection.enabled else None
    inbox = CoordinatorInbox(transport, job_id, names, agreement_path)
    coordinator = Coordinator(
        job, job_id, names, inbox, build_strategy(job.strategy, len(names)), initial, run_dir,
        None, roster,
    )  # fmt: skip
    simulation = Simulation(
        job, job_id, FederatedData([], classes, shape), coordinator, [], model, spec, initial,
        run_id,
    )  # fmt: skip
    return execute_run(simulation, run_dir, resume_run_id is not None, on_round)


def _tls_key_path(key_path: Path, kit_dir: Path) -> Path:
    """The coordinator's TLS key: beside its identity key, as `accord provision request`
    wrote it (``<name>.tls.key``)."""
    candidates = [key_path.with_suffix(".tls.key"), key_path.parent / "tls.key"]
    for path in candidates:
        if path.exists():
            return path
    raise InputError(
        f"no TLS key beside {key_path} ({candidates[0].name}); run `accord provision request "
        f"--key {key_path} --out REQ` first (kit {kit_dir} holds no private key)"
    )


def _listen_address(address: str) -> str:
    """The kit's coordinator address (host:port), which the coordinator listens on."""
    if not address.rpartition(":")[2].isdigit():
        raise InputError(f"coordinator address {address!r} has no port")
    return address
