"""Flower 1.42 side of bench/sim_vs_flower.py: one FedAvg job in Flower's simulation engine.

Runs with ``.bench/flower-venv/bin/python`` (``ensure_flower_venv`` in bench/_common.py
makes it), never with the project's venv, which has no Flower. sim_vs_flower.py times the
whole process; this script times the round loop itself, ``strategy.start(...)`` inside the
ServerApp's main, and prints one line ``RESULT {json}`` on stdout:

    accuracy            server-side accuracy on the held-out rows after the last round
    accuracy_per_round  the same after round 0 (initial weights), 1, ..., rounds
    round_seconds       wall time from one server-side evaluation to the next, per round
    loop_seconds        wall time of strategy.start(...)
    client_torch_threads  torch.get_num_threads() seen by the clients (averaged by FedAvg)
    server_torch_threads  the same in the ServerApp (server-side evaluation)
    flwr_version, ray_version, num_supernodes, client_cpus

and writes the final global model to ``--out`` (safetensors, keys 0.weight, 0.bias,
2.weight, 2.bias). The file layout of ``--data`` and ``--init`` is described in
sim_vs_flower.py.

The job, as in the Accord run: every one of the 100 supernodes trains in every round
(FedAvg, fraction_train=1.0), with SGD (no momentum, no weight decay), sequential
mini-batches without shuffling and mean cross-entropy; no client-side evaluation
(fraction_evaluate=0.0); server-side evaluation through ``evaluate_fn``.

The ClientApp is imported by the Ray workers as module ``_flower_child`` (not shipped by
value with every message as code from ``__main__`` would be), so each worker process loads
the training rows once and keeps them, as Flower's own examples do with their data sets.
Running this file with no arguments (``make bench`` runs every bench/*.py) only says what
it is for.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Flower sends usage telemetry to an outside host unless told not to, and it reads the
# setting when it is imported. Ray workers inherit the environment, and PYTHONPATH lets
# them import this module by name.
os.environ["FLWR_TELEMETRY_ENABLED"] = "0"
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (_HERE, os.environ.get("PYTHONPATH", "")) if p
    )

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

try:
    import flwr
    import ray
    from flwr.app import (
        ArrayRecord,
        ConfigRecord,
        Context,
        Message,
        MetricRecord,
        RecordDict,
    )
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg
    from flwr.simulation import run_simulation
except ImportError:  # run with the wrong interpreter, e.g. by `make bench`
    if __name__ == "__main__" and len(sys.argv) == 1:
        print("bench/_flower_child.py: helper of bench/sim_vs_flower.py; run that instead")
        sys.exit(0)
    raise
from safetensors.numpy import save_file  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

NUM_FEATURES = 64
NUM_HIDDEN = 64
NUM_CLASSES = 10


def build_model() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(NUM_FEATURES, NUM_HIDDEN), nn.ReLU(), nn.Linear(NUM_HIDDEN, NUM_CLASSES)
    )


# ---------------------------------------------------------------------------- ClientApp

# One entry per data file in each worker process: (x_train, y_train) as tensors.
_TRAIN_ROWS: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}


def _train_rows(data_path: str) -> tuple[torch.Tensor, torch.Tensor]:
    if data_path not in _TRAIN_ROWS:
        with np.load(data_path) as data:
            x = torch.from_numpy(np.ascontiguousarray(data["x_train"], dtype=np.float32))
            y = torch.from_numpy(np.ascontiguousarray(data["y_train"], dtype=np.int64))
        _TRAIN_ROWS[data_path] = (x, y)
    return _TRAIN_ROWS[data_path]


def _as_int(value: object) -> int:
    if not isinstance(value, int | float | str):
        raise TypeError(f"expected a number, got {value!r}")
    return int(value)


def _as_float(value: object) -> float:
    if not isinstance(value, int | float | str):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


client_app = ClientApp()


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    """Local SGD on this supernode's shard; reply with the weights and num-examples."""
    config = msg.content.config_records["config"]
    torch.set_num_threads(_as_int(config["threads"]))
    partition_id = _as_int(context.node_config["partition-id"])
    shard_size = _as_int(config["shard-size"])
    x_all, y_all = _train_rows(str(config["data"]))
    start = partition_id * shard_size
    x, y = x_all[start : start + shard_size], y_all[start : start + shard_size]

    model = build_model()
    model.load_state_dict(msg.content.array_records["arrays"].to_torch_state_dict())
    optimizer = torch.optim.SGD(model.parameters(), lr=_as_float(config["lr"]))
    batch_size = _as_int(config["batch-size"])
    loss = torch.zeros(())
    for _ in range(_as_int(config["epochs"])):
        for i in range(0, shard_size, batch_size):  # in order: no shuffling
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x[i : i + batch_size]), y[i : i + batch_size])
            torch.autograd.backward(loss)
            optimizer.step()

    metrics = MetricRecord(
        {
            "num-examples": shard_size,
            "train-loss": float(loss.item()),
            "torch-threads": torch.get_num_threads(),
        }
    )
    # Flower's FedAvg sums `array * weight` in the reply's dtype, in arrival order (which
    # varies from run to run). In float32 the compute setting's rounding differences grow
    # to ~2e-5 over 10 rounds of batch-4 SGD; replying in float64 makes Flower's average
    # as exact as the other engines' (the clients still train in float32). It costs Flower
    # 3.8 MB more per round, which is small beside its per-round overhead.
    weights = {k: v.double() for k, v in model.state_dict().items()}
    content = RecordDict({"arrays": ArrayRecord(weights), "metrics": metrics})
    return Message(content=content, reply_to=msg)


# ---------------------------------------------------------------------------- ServerApp


def make_server_app(args: argparse.Namespace, outcome: dict[str, Any]) -> ServerApp:
    """A ServerApp whose main runs FedAvg and records its outcome in ``outcome``."""
    with np.load(args.data) as data:
        x_test = torch.from_numpy(np.ascontiguousarray(data["x_test"], dtype=np.float32))
        y_test = torch.from_numpy(np.ascontiguousarray(data["y_test"], dtype=np.int64))
    eval_model = build_model()
    accuracies: list[float] = []
    stamps: list[float] = []

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        stamps.append(time.perf_counter())
        eval_model.load_state_dict(arrays.to_torch_state_dict())
        with torch.no_grad():
            logits = eval_model(x_test)
            loss = nn.functional.cross_entropy(logits, y_test).item()
            accuracy = (logits.argmax(dim=1) == y_test).float().mean().item()
        accuracies.append(accuracy)
        return MetricRecord({"accuracy": accuracy, "loss": loss})

    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        torch.set_num_threads(args.threads)
        initial = ArrayRecord(load_file(args.init))
        strategy = FedAvg(
            fraction_train=1.0,
            fraction_evaluate=0.0,  # no client-side evaluation
            min_train_nodes=args.num_supernodes,
            min_available_nodes=args.num_supernodes,
        )
        train_config = ConfigRecord(
            {
                "lr": args.lr,
                "epochs": args.epochs,
                "batch-size": args.batch_size,
                "shard-size": args.shard_size,
                "threads": args.threads,
                "data": str(Path(args.data).resolve()),
            }
        )
        # The supernodes register while this thread starts; wait for them here so that
        # the strategy's own 1-second polling for them is not counted as round time.
        while len(list(grid.get_node_ids())) < args.num_supernodes:
            time.sleep(0.01)
        start = time.perf_counter()
        result = strategy.start(
            grid=grid,
            initial_arrays=initial,
            num_rounds=args.rounds,
            train_config=train_config,
            evaluate_fn=evaluate,
        )
        outcome["loop_seconds"] = time.perf_counter() - start
        outcome["arrays"] = result.arrays
        outcome["client_torch_threads"] = result.train_metrics_clientapp[args.rounds][
            "torch-threads"
        ]
        outcome["server_torch_threads"] = torch.get_num_threads()
        outcome["accuracy_per_round"] = list(accuracies)
        # From one server-side evaluation to the next: round 1 also waits for Ray to start,
        # which run_simulation does while the ServerApp already runs.
        outcome["round_seconds"] = [b - a for a, b in itertools.pairwise(stamps)]

    return server_app


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", required=True, help="data.npz written by sim_vs_flower.py")
    parser.add_argument("--init", required=True, help="initial weights (safetensors)")
    parser.add_argument("--out", required=True, help="where to write the final weights")
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--num-supernodes", type=int, default=100)
    parser.add_argument("--shard-size", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per client")
    parser.add_argument(
        "--client-cpus",
        type=float,
        default=1.0,
        help="Ray CPUs per ClientApp: the pool runs cpu_count/client_cpus clients at once",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    outcome: dict[str, Any] = {}
    cpus = os.cpu_count() or 1
    backend_config: dict[str, Any] = {
        "init_args": {"num_cpus": cpus},
        "client_resources": {"num_cpus": args.client_cpus, "num_gpus": 0.0},
    }
    run_simulation(
        server_app=make_server_app(args, outcome),
        client_app=client_app,
        num_supernodes=args.num_supernodes,
        backend_config=backend_config,
    )
    if "arrays" not in outcome:
        print("bench: the Flower ServerApp did not finish", file=sys.stderr)
        return 1
    final: ArrayRecord = outcome.pop("arrays")
    arrays = _numpy_arrays(final)
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}, args.out)
    report = {
        "accuracy": outcome["accuracy_per_round"][-1],
        **outcome,
        "flwr_version": flwr.__version__,
        "ray_version": ray.__version__,
        "num_supernodes": args.num_supernodes,
        "client_cpus": args.client_cpus,
        "ray_cpus": cpus,
    }
    print("RESULT " + json.dumps(report), flush=True)
    return 0


def _numpy_arrays(record: ArrayRecord) -> dict[str, Any]:
    return {key: array.numpy() for key, array in record.items()}


if __name__ == "__main__":
    # Run as the importable module `_flower_child` rather than as `__main__`, so that the
    # ClientApp that Ray serialises for its workers refers to this module by name.
    import _flower_child

    sys.exit(_flower_child.main())
