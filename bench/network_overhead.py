"""Network overhead: one round simulated vs. four node processes on loopback (gRPC, mTLS).

A fixed workload: every party trains 1 epoch over 2,048 synthetic samples (784 features,
10 classes, labels from a random linear teacher), batch 32, an MLP 784-2500-3000-10
(9,495,510 parameters), one torch thread per process; four parties, one round.

- ``simulated``: Accord's simulation round (every node in this process, one at a time).
- ``networked``: `accord coordinator` and four `accord node` processes on 127.0.0.1, set up
  from keys to kits (`set_up_federation`), the same job under the same agreement.
- ``serialization``: encoding a 9.5M-parameter update release into wire chunks and
  decoding it back (`transport/wire.py`), in this process.
- ``transport``: the update's bytes in the wire's 1 MiB chunks, streamed to a client
  process over gRPC with mutual TLS (the federation's certificates, the link's channel
  options) and back: bytes moved per second of transport time, both directions, TLS on.

Run: .venv/bin/python bench/network_overhead.py [--quick]
Last line: ``transport_mb_per_s X network_round_ratio Y`` (X: absolute, this machine;
Y: networked round seconds over simulated round seconds).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w
import torch

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / ".bench" / "network_overhead"
PARTIES = ["party-1", "party-2", "party-3", "party-4"]
FEATURES, CLASSES = 784, 10
HIDDEN = [2500, 3000]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def write_idx(folder: Path, rows: int) -> dict[str, tuple[Path, Path]]:
    """Synthetic 28x28 uint8 images per party, as gzipped IDX files."""
    rng = np.random.default_rng(0)
    teacher = rng.standard_normal((FEATURES, CLASSES))
    files = {}
    for party in PARTIES:
        images = rng.integers(0, 256, size=(rows, 28, 28), dtype=np.uint8)
        labels = (images.reshape(rows, -1).astype(np.float64) @ teacher).argmax(axis=1)
        # Every party holds every class: without a schema, each node counts its own.
        labels[:CLASSES] = np.arange(CLASSES)
        image_path, label_path = folder / f"{party}-images.gz", folder / f"{party}-labels.gz"
        with gzip.open(image_path, "wb") as out:
            out.write(bytes([0, 0, 8, 3]) + np.array([rows, 28, 28], ">u4").tobytes())
            out.write(images.tobytes())
        with gzip.open(label_path, "wb") as out:
            out.write(bytes([0, 0, 8, 1]) + np.array([rows], ">u4").tobytes())
            out.write(labels.astype(np.uint8).tobytes())
        files[party] = (image_path, label_path)
    return files


def job_dict(files: dict[str, tuple[Path, Path]], agreement: Path | None) -> dict[str, Any]:
    job: dict[str, Any] = {
        "job": {"name": "network-overhead", "seed": 0, "rounds": 1, "threads": 1},
        "data": {
            "source": "idx", "test_fraction": 0.1, "partition": {"kind": "natural"},
            "parties": [{"name": p, "images": str(i), "labels": str(lab)}
                        for p, (i, lab) in files.items()],
        },
        "model": {"kind": "mlp", "hidden": HIDDEN},
        "training": {"local_epochs": 1, "batch_size": 32, "lr": 0.01, "shuffle": False},
        "evaluation": {"federated": False},
    }  # fmt: skip
    if agreement is not None:
        job["job"].update(purpose="demo", agreement=str(agreement))
    return job


def simulated_round(job_path: Path) -> dict[str, Any]:
    from accord.fl.simulation import build_simulation
    from accord.job import load_job

    simulation = build_simulation(load_job(job_path), job_path.parent, WORK / "sim-homes")
    tick = time.perf_counter()
    record = simulation.coordinator.run_round(1)
    return {"wall_s": time.perf_counter() - tick, "record": record,
            "params": int(simulation.initial.numel())}  # fmt: skip


def networked_round(work: Path, job_path: Path) -> dict[str, Any]:
    accord = [sys.executable, "-m", "accord"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = work / "run"
    coordinator = subprocess.Popen(
        [*accord, "coordinator", "--kit", str(work / "kits" / "coordinator"), "--job",
         str(job_path), "--key", str(work / "keys" / "coordinator.key"), "--out", str(out)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    nodes = [_node(accord, env, work, party) for party in PARTIES]
    _, err = coordinator.communicate(timeout=1800)
    for node in nodes:
        node.wait(timeout=120)
    if coordinator.returncode != 0:
        raise SystemExit(f"networked run failed: {err.strip().splitlines()[-1:]}")
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    return {"wall_s": sum(record["seconds"].values()), "record": record}


def _node(
    accord: list[str], env: dict[str, str], work: Path, party: str
) -> subprocess.Popen[bytes]:
    command = [*accord, "node", "--kit", str(work / "kits" / party),
               "--node-home", str(work / "homes" / party)]  # fmt: skip
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip


def serialization_seconds(update: Any, repeats: int) -> float:
    """Encode into chunks and decode back, per direction, averaged."""
    from accord.transport.wire import Reassembler, chunks

    total = 0.0
    for i in range(repeats):
        tick = time.perf_counter()
        reassembler = Reassembler()
        decoded = None
        for chunk in chunks(update, i + 1):
            decoded = reassembler.feed(chunk) or decoded
        total += time.perf_counter() - tick
        assert decoded is not None
    return total / repeats


def transport_rate(work: Path, nbytes: int, repeats: int) -> float:
    """MB per second the TLS link moves, both directions: an echo of ``nbytes`` in the
    wire's 1 MiB chunks, between this process (the coordinator's certificate and the same
    gRPC server options) and a client process (party-1's kit), repeated."""
    import grpc

    from accord.governance.provisioning import load_kit
    from accord.transport.grpc_link import CHANNEL_OPTIONS

    kit = load_kit(work / "kits" / "coordinator")
    credentials = grpc.ssl_server_credentials(
        [((work / "keys" / "coordinator.tls.key").read_bytes(), kit.cert_pem)],
        root_certificates=kit.ca_pem, require_client_auth=True,
    )  # fmt: skip
    from concurrent import futures

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=CHANNEL_OPTIONS)
    echo = grpc.stream_stream_rpc_method_handler(lambda chunks, context: (c for c in chunks))
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("bench.Echo", {"Echo": echo}),)
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--echo", str(work), str(port), str(nbytes),
             str(repeats)], capture_output=True, text=True, timeout=600, check=True,
        )  # fmt: skip
    finally:
        server.stop(grace=1.0)
    return float(done.stdout.strip().splitlines()[-1])


def echo_client(work: Path, port: int, nbytes: int, repeats: int) -> None:
    """The client end of the transport test: stream ``nbytes`` there and back, print MB/s."""
    import grpc

    from accord.governance.provisioning import TLS_KEY_FILE, load_kit
    from accord.transport.grpc_link import CHANNEL_OPTIONS, CHUNK_BYTES

    kit = load_kit(work / "kits" / "party-1")
    credentials = grpc.ssl_channel_credentials(
        kit.ca_pem, (work / "homes" / "party-1" / TLS_KEY_FILE).read_bytes(), kit.cert_pem
    )
    options = [*CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", "coordinator")]
    channel = grpc.secure_channel(f"127.0.0.1:{port}", credentials, options=options)
    call = channel.stream_stream("/bench.Echo/Echo")
    chunk = os.urandom(CHUNK_BYTES)
    count = max(nbytes // CHUNK_BYTES, 1)
    moved = 0
    list(call(iter([chunk] * 4)))  # warm-up: handshake and windows
    tick = time.perf_counter()
    for _ in range(repeats):
        for reply in call(iter([chunk] * count)):
            moved += 2 * len(reply)
    seconds = time.perf_counter() - tick
    channel.close()
    print(f"{moved / seconds / 1e6:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="256 rows per party")
    parser.add_argument("--echo", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo:
        work_dir, port, nbytes, repeats = args.echo
        echo_client(Path(work_dir), int(port), int(nbytes), int(repeats))
        return
    torch.set_num_threads(1)
    from accord.cli.demo_network import set_up_federation
    from accord.fl.messages import Release, ReleaseKind

    shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "data").mkdir(parents=True)
    files = write_idx(WORK / "data", 256 if args.quick else 2048)
    plain = WORK / "plain.toml"
    plain.write_text(tomli_w.dumps(job_dict(files, None)))
    log("simulated round ...")
    sim = simulated_round(plain)
    work = WORK / "federation"
    agreement = set_up_federation(work, PARTIES)
    networked_job = WORK / "networked.toml"
    networked_job.write_text(tomli_w.dumps(job_dict(files, agreement)))
    log("networked round (a coordinator and four node processes) ...")
    net = networked_round(work, networked_job)
    update = Release(kind=ReleaseKind.UPDATE, job_id="bench", round=1, sender="party-1",
                     recipient="coordinator",
                     tensors={"delta": torch.randn(sim["params"])})  # fmt: skip
    log("serialization and transport ...")
    serial = serialization_seconds(update, 3)
    rate = transport_rate(work, update.nbytes, 5)
    record = net["record"]
    mb = (record["bytes_up"] + record["bytes_down"]) / 1e6
    print("| | round s | train s (coordinator's exchange) | aggregate s | MB per round |")
    print("|---|---|---|---|---|")
    for name, run in (("simulated", sim), ("networked", net)):
        r = run["record"]
        moved = (r["bytes_up"] + r["bytes_down"]) / 1e6
        print(f"| {name} | {run['wall_s']:.2f} | {r['seconds']['train']:.2f} | "
              f"{r['seconds']['aggregate']:.3f} | {moved:.1f} |")  # fmt: skip
    print(f"parameters {sim['params']:,}; update {update.nbytes / 1e6:.1f} MB; serialization "
          f"(encode + decode) {serial:.3f} s per update; round bytes {mb:.1f} MB")  # fmt: skip
    print(f"transport_mb_per_s {rate:.0f} network_round_ratio {net['wall_s'] / sim['wall_s']:.3f}")


if __name__ == "__main__":
    main()
