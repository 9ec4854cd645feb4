"""Accord's simulation engine against Flower 1.42's, on the same FedAvg job.

Run with the project's venv, right after the project is installed:

    .venv/bin/python bench/sim_vs_flower.py

The job: scikit-learn's digits scaled to [0, 1] (divided by 16); 297 rows held out for
server-side evaluation and 1,500 for training, cut into 100 IID shards of 15; an MLP
64-64-10 (Linear(64, 64), ReLU, Linear(64, 10)) from the same initial weights; every client
in every round; 10 rounds; SGD with lr 0.1, no momentum, no weight decay; mini-batches in
order (no shuffling); mean cross-entropy; evaluation after each round on the server only.
Two settings:

    overhead  1 local epoch, batch 16  (little compute: measures the engines' overhead)
    compute   5 local epochs, batch 4  (about 0.91 accuracy)

Each engine runs in its own process, timed whole (interpreter start, imports and report
included); each also reports the wall time of its round loop alone: Flower's is
``strategy.start(...)`` inside its ServerApp, Accord's its round loop with checkpoints on.
A bare PyTorch loop doing the same updates and evaluation (one model object whose
parameters are copied in place, data held as tensors, no DataLoader, Accord's torch thread
count) runs in this process as the floor. The final models must agree to 1e-5.

Flower runs in its own venv, ``.bench/flower-venv``, made on first use (Flower pins
versions of cryptography and protobuf that must not constrain Accord's environment).

Files, under ``.bench/sim_vs_flower/`` (made by ``prepare_data``; every child reads them):

    data.npz           np.savez arrays, loaded with np.load's defaults (no object arrays):
                         x_test  float32 (297, 64)   held-out rows, features / 16
                         y_test  int64   (297,)      their labels 0..9
                         x_train float32 (1500, 64)  training rows
                         y_train int64   (1500,)     their labels
                       client k (k = 0..99) owns training rows 15k .. 15k+14, in that order.
                       The rows are load_digits() permuted by
                       np.random.default_rng(0).permutation(1797): the first 297 of the
                       permutation are the test rows, the next 1500 the training rows.
    init.safetensors   the initial weights: keys 0.weight (64, 64), 0.bias (64,),
                       2.weight (10, 64), 2.bias (10,), float32, those of
                       nn.Sequential(Linear(64, 64), ReLU(), Linear(64, 10)) built right
                       after torch.manual_seed(0).
    <setting>/         one folder per setting: each child writes its final weights
                       there, with the same keys (flower.safetensors, accord.safetensors).

The last line: ``speedup_vs_flower X loop_speedup_vs_flower Y compute_speedup_vs_flower U
loop_over_bare Z``: X and Y are the overhead setting's whole-process and round-loop ratios
(Flower's time over Accord's), U the compute setting's whole-process ratio, Z the compute
setting's Accord round loop over the bare loop.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO_ROOT, ensure_flower_venv, log, timed_subprocess

WORKDIR = REPO_ROOT / ".bench" / "sim_vs_flower"
FLOWER_CHILD = Path(__file__).resolve().parent / "_flower_child.py"

NUM_TEST = 297
NUM_CLIENTS = 100
SHARD_SIZE = 15
NUM_TRAIN = NUM_CLIENTS * SHARD_SIZE
ROUNDS = 10
LR = 0.1
SEED = 0
TOLERANCE = 1e-5
# Torch threads of the Accord job (its `threads`); the bare loop and Flower's clients use
# the same. The Accord child must be run with this value.
ACCORD_TORCH_THREADS = 1


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    epochs: int
    batch_size: int


SETTINGS = (
    Setting("overhead", epochs=1, batch_size=16),
    Setting("compute", epochs=5, batch_size=4),
)


@dataclass(frozen=True, slots=True)
class EngineRun:
    """One engine's run of one setting."""

    process_seconds: float  # whole process, as timed from here
    loop_seconds: float  # the round loop alone, as timed by the engine's child
    accuracy: float  # after the last round, on the 297 held-out rows
    weights: dict[str, torch.Tensor]  # the final global model


@dataclass(frozen=True, slots=True)
class Data:
    x_test: torch.Tensor
    y_test: torch.Tensor
    x_train: torch.Tensor
    y_train: torch.Tensor


def build_model() -> nn.Sequential:
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


# --------------------------------------------------------------------------- the data


JOB_TEMPLATE = """
[job]
name = "sim-vs-flower-{setting}"
seed = 0
rounds = {rounds}
threads = {threads}

[data]
source = "sklearn"
name = "digits"          # scaled to [0, 1] (divided by 16)
server_holdout = {num_test}     # the simulation-only coordinator test set
test_fraction = 0.0      # no client-side evaluation

[data.partition]
kind = "iid"
parties = {num_clients}

[model]
kind = "mlp"
hidden = [64]
initial = "{init}"

[strategy]
name = "fedavg"

[training]
local_epochs = {epochs}
batch_size = {batch_size}
lr = {lr}
shuffle = false

[evaluation]
federated = false
"""


def write_job(setting: Setting, workdir: Path) -> Path:
    path = workdir / setting.name / "job.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        JOB_TEMPLATE.format(
            setting=setting.name, rounds=ROUNDS, threads=ACCORD_TORCH_THREADS, num_test=NUM_TEST,
            num_clients=NUM_CLIENTS, init=workdir / "init.safetensors", epochs=setting.epochs,
            batch_size=setting.batch_size, lr=LR,
        )
    )  # fmt: skip
    return path


def prepare_data(workdir: Path = WORKDIR) -> Data:
    """Write data.npz and init.safetensors (see the module docstring); return the data.

    The rows are those of Accord's own partition of the job (digits / 16, 297 rows held out
    at random from the job seed, the other 1,500 cut into 100 IID parties of 15), exported
    in each party's row order, so that Flower and the bare loop train on exactly the shards
    Accord's nodes hold.
    """
    from accord.data.federation import build_federated_data
    from accord.job import load_job

    workdir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    model = build_model()
    save_file(
        {k: v.detach().contiguous() for k, v in model.state_dict().items()},
        str(workdir / "init.safetensors"),
    )
    job = load_job(write_job(SETTINGS[0], workdir))
    federation = build_federated_data(job.data, job.job.seed, workdir)
    assert federation.server_test is not None
    assert [len(p.y_train) for p in federation.parties] == [SHARD_SIZE] * NUM_CLIENTS
    arrays = {
        "x_test": federation.server_test[0],
        "y_test": federation.server_test[1],
        "x_train": np.concatenate([p.x_train for p in federation.parties]),
        "y_train": np.concatenate([p.y_train for p in federation.parties]),
    }
    np.savez(workdir / "data.npz", **arrays)
    return Data(*(torch.from_numpy(arrays[k]) for k in ("x_test", "y_test", "x_train", "y_train")))


def accuracy_of(model: nn.Module, data: Data) -> float:
    with torch.no_grad():
        predicted = model(data.x_test).argmax(dim=1)
    return float((predicted == data.y_test).float().mean().item())


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    if a.keys() != b.keys():
        raise SystemExit(f"bench: the final models differ in keys: {sorted(a)} vs {sorted(b)}")
    return max(float((a[k].double() - b[k].double()).abs().max().item()) for k in a)


# --------------------------------------------------------------------- the bare loop


def bare_loop(setting: Setting, threads: int, data: Data, workdir: Path = WORKDIR) -> EngineRun:
    """The same updates and evaluation in plain PyTorch: the floor for any engine.

    One model object; before each client trains, the global parameters are copied into it
    in place. Each client's 15 rows are slices of tensors already in memory.
    """
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = build_model()
        model.load_state_dict(load_file(str(workdir / "init.safetensors")))
        params = list(model.parameters())
        global_params = [p.detach().clone() for p in params]
        # Sums in float64: a float32 sum of 100 updates times 15 loses enough precision that
        # after the compute setting's 10 rounds it strays ~3e-5 from the exact average.
        sums = [torch.zeros_like(p, dtype=torch.float64) for p in params]
        optimizer = torch.optim.SGD(params, lr=LR)  # stateless: one serves every client
        start = time.perf_counter()
        for _ in range(ROUNDS):
            for s in sums:
                s.zero_()
            for client in range(NUM_CLIENTS):
                with torch.no_grad():
                    for p, g in zip(params, global_params, strict=True):
                        p.copy_(g)
                rows = slice(client * SHARD_SIZE, (client + 1) * SHARD_SIZE)
                x, y = data.x_train[rows], data.y_train[rows]
                for _ in range(setting.epochs):
                    for i in range(0, SHARD_SIZE, setting.batch_size):
                        optimizer.zero_grad()
                        loss = nn.functional.cross_entropy(
                            model(x[i : i + setting.batch_size]), y[i : i + setting.batch_size]
                        )
                        torch.autograd.backward(loss)
                        optimizer.step()
                with torch.no_grad():
                    for s, p in zip(sums, params, strict=True):
                        s.add_(p, alpha=SHARD_SIZE)
            with torch.no_grad():
                for g, s in zip(global_params, sums, strict=True):
                    g.copy_(s / NUM_TRAIN)
                for p, g in zip(params, global_params, strict=True):
                    p.copy_(g)
            accuracy = accuracy_of(model, data)
        loop_seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(previous_threads)
    names = [name for name, _ in model.named_parameters()]
    weights = {n: g.clone() for n, g in zip(names, global_params, strict=True)}
    return EngineRun(float("nan"), loop_seconds, accuracy, weights)


# ------------------------------------------------------------------------ the engines


def _child_report(stdout: str, engine: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith("RESULT "):
            report: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
            return report
    raise SystemExit(f"bench: the {engine} child printed no RESULT line")


def run_flower_child(setting: Setting, workdir: Path, flower_python: Path) -> EngineRun:
    out = workdir / setting.name / "flower.safetensors"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(flower_python),
        str(FLOWER_CHILD),
        "--data", str(workdir / "data.npz"),
        "--init", str(workdir / "init.safetensors"),
        "--out", str(out),
        "--epochs", str(setting.epochs),
        "--batch-size", str(setting.batch_size),
        "--rounds", str(ROUNDS),
        "--lr", str(LR),
        "--num-supernodes", str(NUM_CLIENTS),
        "--shard-size", str(SHARD_SIZE),
        "--threads", str(ACCORD_TORCH_THREADS),
    ]  # fmt: skip
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0"}
    log(f"bench: Flower, {setting.name} setting")
    code, seconds, stdout = timed_subprocess(cmd, env)
    if code != 0:
        raise SystemExit(f"bench: the Flower child failed with exit code {code}")
    report = _child_report(stdout, "Flower")
    log(
        f"bench: Flower {report['flwr_version']} on Ray {report['ray_version']}: "
        f"torch threads {report['client_torch_threads']:g} per client, "
        f"{report['client_cpus']:g} of {report['ray_cpus']} CPUs per client"
    )
    return EngineRun(
        seconds, float(report["loop_seconds"]), float(report["accuracy"]), load_file(str(out))
    )


def run_accord_child(setting: Setting, workdir: Path) -> dict[str, Any]:
    """``accord run`` on the setting's job file, in its own process, timed whole.

    The round loop's time (checkpoints on) comes from the run folder's ``summary.json``;
    the final model is ``model.safetensors`` (same keys as the other engines).
    """
    job = write_job(setting, workdir)
    run_dir = workdir / setting.name / "accord-run"
    homes = workdir / setting.name / "accord-homes"
    for folder in (run_dir, homes):
        shutil.rmtree(folder, ignore_errors=True)
    cmd = [sys.executable, "-m", "accord", "run", str(job), "--out", str(run_dir),
           "--node-homes", str(homes), "--quiet"]  # fmt: skip
    log(f"bench: Accord, {setting.name} setting")
    code, seconds, _ = timed_subprocess(cmd, dict(os.environ))
    if code != 0:
        raise SystemExit(f"bench: the Accord child failed with exit code {code}")
    summary = json.loads((run_dir / "summary.json").read_text())
    return {
        "process_seconds": seconds,
        "loop_seconds": summary["loop_seconds"],
        "accuracy": summary["final"]["server_test"]["accuracy"],
        "weights_path": run_dir / "model.safetensors",
    }


def _accord_run(setting: Setting, workdir: Path) -> EngineRun:
    report = run_accord_child(setting, workdir)
    return EngineRun(
        float(report["process_seconds"]),
        float(report["loop_seconds"]),
        float(report["accuracy"]),
        load_file(str(report["weights_path"])),
    )


# ---------------------------------------------------------------------------- report


def _print_rows(name: str, runs: dict[str, EngineRun]) -> None:
    print(f"{name} setting:")
    print(f"  {'engine':<8} {'process s':>10} {'loop s':>9} {'accuracy':>9}")
    for engine, run in runs.items():
        process = "-" if np.isnan(run.process_seconds) else f"{run.process_seconds:.2f}"
        print(f"  {engine:<8} {process:>10} {run.loop_seconds:>9.3f} {run.accuracy:>9.4f}")


def _check_agreement(setting: Setting, a: str, b: str, runs: dict[str, EngineRun]) -> float:
    diff = max_abs_diff(runs[a].weights, runs[b].weights)
    print(f"  max abs diff {a} vs {b}: {diff:.2e}")
    if not diff <= TOLERANCE:
        raise SystemExit(
            f"bench: {setting.name}: the final models of {a} and {b} differ by {diff:.2e} "
            f"(more than {TOLERANCE:g}): the engines did not run the same job"
        )
    return diff


def main() -> int:
    data = prepare_data(WORKDIR)
    flower_python = ensure_flower_venv(REPO_ROOT)
    results: dict[str, dict[str, EngineRun]] = {}
    for setting in SETTINGS:
        runs: dict[str, EngineRun] = {}
        runs["flower"] = run_flower_child(setting, WORKDIR, flower_python)
        runs["accord"] = _accord_run(setting, WORKDIR)
        runs["bare"] = bare_loop(setting, ACCORD_TORCH_THREADS, data, WORKDIR)
        results[setting.name] = runs
        _print_rows(setting.name, runs)
        _check_agreement(setting, "bare", "flower", runs)
        _check_agreement(setting, "accord", "bare", runs)
        _check_agreement(setting, "accord", "flower", runs)
    sys.stdout.flush()

    overhead, compute = results["overhead"], results["compute"]
    x = overhead["flower"].process_seconds / overhead["accord"].process_seconds
    y = overhead["flower"].loop_seconds / overhead["accord"].loop_seconds
    u = compute["flower"].process_seconds / compute["accord"].process_seconds
    z = compute["accord"].loop_seconds / compute["bare"].loop_seconds
    print(
        f"speedup_vs_flower {x:.2f} loop_speedup_vs_flower {y:.2f} "
        f"compute_speedup_vs_flower {u:.2f} loop_over_bare {z:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
