"""``accord demo --network``: the demo job through a coordinator and four node processes.

Everything a federation sets up is done here, as each party would, in a fresh folder:
identity keys (each hospital's in its own node home), the agreement (written, then signed
by every party), a TLS key and certificate request per party, the federation CA and the
kits. Then one coordinator process and four node processes talk gRPC with mutual TLS on
127.0.0.1. The summary is computed the way ``accord demo`` computes it, on the model the
networked run wrote: with one torch thread per process, no DP and no secret-keyed
randomness, and releases combined in party order, the federated test accuracy is the same
digit for digit.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import tomli_w

if TYPE_CHECKING:
    import torch

    from accord.fl.simulation import Simulation

PURPOSE = "demo"


def run_network_demo(out: Path, work: Path) -> None:
    from rich.console import Console

    from accord.cli.demo import print_summary

    console = Console()
    work, out = work.resolve(), out.resolve()
    job = _set_up(work)
    console.print(
        "Four hospitals, four node processes, one coordinator process: gRPC with mutual TLS "
        "on 127.0.0.1; the model travels, the rows stay."
    )
    if out.exists():
        shutil.rmtree(out)
    accord = [sys.executable, "-m", "accord"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    coordinator = subprocess.Popen(
        [*accord, "coordinator", "--kit", str(work / "kits" / "coordinator"), "--job", str(job),
         "--key", str(work / "keys" / "coordinator.key"), "--out", str(out)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    nodes = [_start_node(accord, env, work, party) for party in _hospitals()]
    _, coordinator_err = coordinator.communicate(timeout=900)
    node_errors = [n.communicate(timeout=120)[1] for n in nodes]
    if coordinator.returncode != 0:
        from accord.errors import AccordError

        lines = coordinator_err.strip().splitlines()[-1:]
        for party, err in zip(_hospitals(), node_errors, strict=True):
            lines += [f"{party}: {line}" for line in err.strip().splitlines()[-1:]]
        raise AccordError("the networked run failed: " + "; ".join(lines))
    simulation = _local_view(work)
    params = _network_model(simulation, out)
    print_summary(console, simulation, params, out / "report.html")


def _start_node(
    accord: list[str], env: dict[str, str], work: Path, party: str
) -> subprocess.Popen[str]:
    command = [*accord, "node", "--kit", str(work / "kits" / party),
               "--node-home", str(work / "homes" / party)]  # fmt: skip
    return subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def _hospitals() -> list[str]:
    return ["hospital-a", "hospital-b", "hospital-c", "hospital-d"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _set_up(work: Path) -> Path:
    """Keys, the signed agreement, requests, CA and kits, and the demo job under it."""
    import tomllib

    agreement = set_up_federation(work, _hospitals())
    demo = resources.files("accord.demo") / "demo.toml"
    raw = tomllib.loads(demo.read_text(encoding="utf-8"))
    raw["job"].update(purpose=PURPOSE, agreement=str(agreement))
    job = work / "demo.toml"
    job.write_text(tomli_w.dumps(raw))
    return job


def set_up_federation(work: Path, owners: list[str]) -> Path:
    """A federation on 127.0.0.1 in ``work``, as its parties and operator would set it up:
    keys (each owner's in ``work/homes/<owner>``, the coordinator's in ``work/keys``), an
    agreement every party signed (purpose "demo", any aggregation, built-in models, fedavg),
    TLS keys and requests, the CA (``work/federation/ca``) and the kits (``work/kits``).
    Returns the agreement's path."""
    from accord.governance.agreement import load_agreement, sign_agreement
    from accord.governance.agreement_template import agreement_template
    from accord.governance.identity import (
        generate_identity,
        load_identity,
        node_identity,
        write_identity_files,
        write_node_identity,
    )
    from accord.governance.provisioning import TLS_KEY_FILE, provision, tls_request

    if work.exists():
        shutil.rmtree(work)
    (work / "keys").mkdir(parents=True)
    (work / "requests").mkdir()
    coordinator = generate_identity("coordinator")
    key_file, _ = write_identity_files(coordinator, work / "keys")
    identities = [load_identity(key_file)]
    for party in owners:
        home = work / "homes" / party
        write_node_identity(generate_identity(party), home)
        (home / "node.toml").write_text(f'party = "{party}"\n')
        identities.append(node_identity(home, party))
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    parties = [(i.name, "coordinator" if i.name == "coordinator" else "data_owner",
                i.public_key_line) for i in identities]  # fmt: skip
    text = agreement_template("demo-network", "The embedded demo over the network", [PURPOSE],
                              parties, now, now + timedelta(days=1))  # fmt: skip
    text = text.replace('aggregation = "secagg"', 'aggregation = "none"')
    text = text.replace("min_parties = 3", "min_parties = 1")
    text = text.replace('strategies = ["fedavg", "fedprox"]', 'strategies = ["fedavg"]')
    agreement = work / "agreement.toml"
    agreement.write_text(text)
    for identity in identities:
        sign_agreement(load_agreement(agreement), identity)
    port = _free_port()
    tls_request(coordinator, work / "keys" / "coordinator.tls.key",
                work / "requests" / "coordinator.csr", ["localhost", "127.0.0.1"])  # fmt: skip
    for identity in identities[1:]:
        home = work / "homes" / identity.name
        tls_request(identity, home / TLS_KEY_FILE, work / "requests" / f"{identity.name}.csr")
    provision(agreement, work / "requests", work / "federation", f"127.0.0.1:{port}")
    shutil.move(str(work / "federation" / "kits"), str(work / "kits"))
    return agreement


def _local_view(work: Path) -> Simulation:
    """The demo job in simulation (for the table: each hospital alone, and the evaluation
    of the networked model on every hospital's test split), in scratch node homes."""
    from accord.fl.simulation import build_simulation
    from accord.job import load_job

    demo = resources.files("accord.demo") / "demo.toml"
    with resources.as_file(demo) as path:
        job = load_job(path)
    return build_simulation(job, work, work / "local-homes")


def _network_model(simulation: Simulation, out: Path) -> torch.Tensor:
    from accord.fileio import load_tensors

    path = out / "model.safetensors"
    return simulation.model.vector_from_state_dict(load_tensors(path), str(path))
