"""The coordinator: samples parties, sends the global model, aggregates releases.

It sees only what nodes release through their gates. Replies are combined in party
order (the roster's), never arrival order, so results do not depend on timing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from accord.errors import InputError, TooFewPartiesError
from accord.fl.messages import EvaluateRequest, Release, TrainRequest
from accord.fl.run_dir import Checkpoint, RunDir
from accord.fl.strategies.base import ClientUpdate, Strategy
from accord.job import Job
from accord.privacy.client_dp import (
    ClientDpAggregator,
    ClippedUpdate,
    CoordinatorNoise,
    PartiesNoise,
    SumNoise,
    client_dp_settings,
)
from accord.secure_random import SecureGenerator
from accord.seeds import SeedTag, seeded
from accord.transport.base import Transport

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from accord.protect.ckks import PublicContext

# A DP-FedAvg round's record leaves these out (None): each tells who, or how many, were
# sampled, and amplification by sampling holds only if recipients never learn it.
_HIDDEN_BY_SAMPLING = {"sampled": None, "refused": None, "bytes_down": None, "bytes_up": None}
# Under secure aggregation also the parties contacted and the error bound (n / scale).
_HIDDEN_BY_SECURE_SAMPLING = {**_HIDDEN_BY_SAMPLING, "contacted": None,
                              "quantization_error_bound": None}  # fmt: skip

_CLIENT_DP = "client_dp."  # prefix of the DP-FedAvg state in the checkpoint

ServerEvaluator = Callable[[torch.Tensor], dict[str, float]]
RoundCallback = Callable[[dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class RunResult:
    params: torch.Tensor | None
    """The final global model; None under CKKS, where the coordinator never holds one."""
    records: list[dict[str, Any]]
    loop_seconds: float


def combine_metrics(replies: Sequence[Release]) -> dict[str, float]:
    """Sample-weighted loss and accuracy over the parties' test splits (party order)."""
    total = sum(r.scalars["num_examples"] for r in replies)
    if total == 0:
        return {"num_examples": 0.0}
    return {
        "num_examples": total,
        "loss": sum(r.scalars["loss"] * r.scalars["num_examples"] for r in replies) / total,
        "accuracy": sum(r.scalars["accuracy"] * r.scalars["num_examples"] for r in replies) / total,
    }


def released_train_loss(replies: Sequence[Release]) -> float | None:
    """Row-weighted mean training loss, where nodes release it (not in DP jobs; none in a
    DP-FedAvg round that sampled nobody)."""
    if not replies or not all(
        "train_loss" in r.scalars and "num_examples" in r.scalars for r in replies
    ):
        return None
    rows = sum(r.scalars["num_examples"] for r in replies)
    return sum(r.scalars["train_loss"] * r.scalars["num_examples"] for r in replies) / rows


class Coordinator:
    def __init__(
        self,
        job: Job,
        job_id: str,
        parties: Sequence[str],
        transport: Transport,
        strategy: Strategy,
        initial_params: torch.Tensor,
        run_dir: RunDir | None = None,
        server_evaluator: ServerEvaluator | None = None,
        roster_keys: Mapping[str, Ed25519PublicKey] | None = None,
    ) -> None:
        self.job = job
        self.job_id = job_id
        self.parties = list(parties)
        self.transport = transport
        self.strategy = strategy
        self.params = initial_params.clone()
        self.run_dir = run_dir
        self.server_evaluator = server_evaluator
        self.records: list[dict[str, Any]] = []
        self.completed_rounds = 0
        # Secure aggregation checks every party's signatures with the coordinator's own
        # copy of the roster's public keys.
        self.roster_keys = dict(roster_keys or {})
        if job.protection.secagg and set(self.roster_keys) != set(self.parties):
            raise InputError("secure aggregation needs every party's public key in the roster")
        # A DP job's sampling and central noise come from the coordinator's own secure
        # generator (a fresh key, never the job seed: whoever holds the job file could
        # otherwise tell who was sampled, or subtract the noise).
        self.secure_random = SecureGenerator.fresh() if job.privacy.enabled else None
        # Under CKKS: the public context from the key setup (never a secret key). The
        # coordinator's params then stay the public initial model; it never learns another.
        self.ckks_public: PublicContext | None = None
        self.client_dp: ClientDpAggregator | None = None
        if job.privacy.client_level:
            assert self.secure_random is not None
            noise: SumNoise = (
                PartiesNoise()
                if job.privacy.distributed_noise
                else CoordinatorNoise(self.secure_random)
            )
            self.client_dp = ClientDpAggregator(client_dp_settings(job, len(self.parties)), noise)

    def restore(self, checkpoint: Checkpoint) -> None:
        if self.job.protection.ckks:
            raise InputError("a CKKS job cannot be resumed: its keys live only in memory")
        self.params = checkpoint.global_params.clone()
        strategy_state = dict(checkpoint.strategy_state)
        if self.client_dp is not None:
            self.client_dp.load_state_dict(
                {k.removeprefix(_CLIENT_DP): strategy_state.pop(k)
                 for k in list(strategy_state) if k.startswith(_CLIENT_DP)}
            )  # fmt: skip
        self.strategy.load_state_dict(strategy_state)
        self.records = list(checkpoint.records)
        self.completed_rounds = checkpoint.round

    def party_weight(self, release: Release) -> float:
        """Row counts weight FedAvg; a DP job uses fixed, equal weights (a row count is
        data-derived and not covered by the update's epsilon)."""
        if self.job.privacy.enabled:
            return 1.0
        return release.scalars["num_examples"]

    def sample(self, round_number: int) -> list[str]:
        """This round's parties, in roster order. Non-DP jobs sample from the job seed (so
        a run can be repeated); DP jobs from the coordinator's secure generator."""
        cfg = self.job.sampling
        n = len(self.parties)
        if cfg.mode == "all":
            return list(self.parties)
        secure = self.secure_random
        if cfg.mode == "poisson":
            rate = cfg.rate or 0.0
            if secure is not None:
                chosen = secure.bernoulli(n, rate)
            else:
                chosen = seeded(self.job.job.seed, SeedTag.SAMPLING, round_number).random(n) < rate
            return [p for p, keep in zip(self.parties, chosen, strict=True) if keep]
        count = min(cfg.count or n, n)
        if secure is not None:
            picked = set(secure.permutation(n)[:count].tolist())
        else:
            rng = seeded(self.job.job.seed, SeedTag.SAMPLING, round_number)
            picked = set(rng.choice(n, size=count, replace=False).tolist())
        return [p for i, p in enumerate(self.parties) if i in picked]

    def run(self, on_round: RoundCallback | None = None) -> RunResult:
        """Run the remaining rounds; checkpoint after each when a run folder is set."""
        start = time.perf_counter()
        for round_number in range(self.completed_rounds + 1, self.job.job.rounds + 1):
            record = self.run_round(round_number)
            self.records.append(record)
            self.completed_rounds = round_number
            if self.run_dir is not None and self.job.protection.ckks:
                self.run_dir.append_metrics(record)  # no model to checkpoint, no resume
            elif self.run_dir is not None:
                tick = time.perf_counter()
                self.run_dir.save_checkpoint(
                    Checkpoint(round_number, self.params, self.server_state(), self.records),
                    self.job_id,
                )
                record["seconds"]["checkpoint"] = time.perf_counter() - tick
                self.run_dir.append_metrics(record)
            if on_round is not None:
                on_round(record)
        final = None if self.job.protection.ckks else self.params
        return RunResult(final, self.records, time.perf_counter() - start)

    def server_state(self) -> dict[str, torch.Tensor]:
        """The strategy's state, and the adaptive clipping norm of a DP-FedAvg job."""
        state = self.strategy.state_dict()
        if self.client_dp is not None:
            state.update({_CLIENT_DP + k: v for k, v in self.client_dp.state_dict().items()})
        return state

    def run_round(self, round_number: int) -> dict[str, Any]:
        job = self.job
        seconds: dict[str, float] = {}
        tick = time.perf_counter()
        sampled = self.sample(round_number)
        min_parties = job.sampling.min_parties
        # DP-FedAvg divides by the expected number of parties, so a round may sample few
        # or none; min_parties then counts only against parties that fail.
        client_dp = self.client_dp is not None
        if not client_dp and len(sampled) < min_parties:
            raise TooFewPartiesError(
                f"round {round_number}: {len(sampled)} parties sampled, fewer than "
                f"sampling.min_parties = {min_parties}; raise sampling.rate or lower min_parties"
            )
        lr = job.training.lr_at(round_number, job.job.rounds)
        if job.protection.ckks:
            return self._ckks_round(round_number, lr, sampled, seconds)
        extras = self.strategy.configure_round(round_number, self.params)
        clip_norm = self.client_dp.clip_norm if self.client_dp is not None else None
        request = TrainRequest(self.job_id, round_number, self.params, lr, extras, clip_norm)
        if self.job.protection.secagg:
            return self._secure_round(round_number, lr, sampled, request, seconds, tick)
        exchange = self.transport.exchange({party: request for party in sampled})
        seconds["train"] = time.perf_counter() - tick
        replies = [exchange.replies[p] for p in sampled if p in exchange.replies]
        if len(replies) < min_parties and (exchange.failed or not client_dp):
            reasons = "; ".join(f"{p}: {why}" for p, why in exchange.failed.items())
            raise TooFewPartiesError(
                f"round {round_number}: {len(replies)} parties released an update, fewer than "
                f"sampling.min_parties = {min_parties}" + (f" ({reasons})" if reasons else "")
            )
        tick = time.perf_counter()
        updates = [
            ClientUpdate(
                party=r.sender,
                delta=r.tensors["delta"],
                weight=self.party_weight(r),
                extras={k: v for k, v in r.tensors.items() if k != "delta"},
            )
            for r in replies
        ]
        record: dict[str, Any] = {"round": round_number, "lr": lr}
        if self.client_dp is not None:
            record["clip_norm"] = self.client_dp.clip_norm
            mean_delta = self.client_dp.noisy_mean(
                [ClippedUpdate(r.tensors["delta"], r.scalars.get("within_clip", 1.0) == 1.0)
                 for r in replies],
                self.params,
            )  # fmt: skip
            self.params = self.strategy.server_step(self.params, mean_delta, updates)
            # Who was sampled stays with the trusted coordinator: the amplification by
            # sampling that the epsilon credits holds only if recipients never learn it, nor
            # how many (the bytes count them) nor who failed (only a sampled party can).
            record.update(_HIDDEN_BY_SAMPLING)
        else:
            self.params = self.strategy.aggregate(round_number, self.params, updates)
            record.update({
                "sampled": [r.sender for r in replies],
                "refused": dict(exchange.failed),
                "bytes_down": exchange.bytes_down,
                "bytes_up": exchange.bytes_up,
            })  # fmt: skip
        seconds["aggregate"] = time.perf_counter() - tick
        record["train_loss"] = released_train_loss(replies)
        return self._evaluate_if_due(round_number, record, seconds)

    def _evaluate_if_due(
        self, round_number: int, record: dict[str, Any], seconds: dict[str, float]
    ) -> dict[str, Any]:
        """Evaluate every ``evaluation.every`` rounds and after the last; close the record."""
        if round_number % self.job.evaluation.every == 0 or round_number == self.job.job.rounds:
            tick = time.perf_counter()
            record.update(self.evaluate(round_number, self.params))
            seconds["evaluate"] = time.perf_counter() - tick
        record["seconds"] = seconds
        return record

    def _secure_round(
        self,
        round_number: int,
        lr: float,
        sampled: list[str],
        request: TrainRequest,
        seconds: dict[str, float],
        tick: float,
    ) -> dict[str, Any]:
        """A round under secure aggregation: the coordinator learns only the sum of the
        survivors' updates, every party weighted equally (a row count would need its own
        release), and steps the strategy with their mean."""
        from accord.fl.secure_round import secure_sum, secure_sum_possible

        if self.client_dp is not None and not secure_sum_possible(
            self.job, self.job_id, round_number, self.parties, len(sampled)
        ):
            # Poisson sampling may leave a round too small for a secure sum: it is skipped
            # before any message (no release, no charge beyond the plan's). Its reason
            # names no party and no count: both would tell who was sampled.
            record: dict[str, Any] = {
                "round": round_number, "lr": lr, "protection": "secagg",
                "skipped": "too few parties sampled for a secure sum",
                **_HIDDEN_BY_SECURE_SAMPLING, "train_loss": None,
                "clip_norm": self.client_dp.clip_norm,
            }  # fmt: skip
            return self._evaluate_if_due(round_number, record, seconds)

        outcome = secure_sum(
            self.transport, self.job, self.job_id, round_number, self.parties,
            self.roster_keys, self.params, {party: request for party in sampled},
        )  # fmt: skip
        seconds["train"] = outcome.train_seconds
        seconds["protocol"] = outcome.protocol_seconds
        tick = time.perf_counter()
        total = torch.from_numpy(outcome.total)
        record = {"round": round_number, "lr": lr}
        if self.client_dp is not None:
            record["clip_norm"] = self.client_dp.clip_norm
            # Each node clipped its own update; the sum arrives without the individual ones.
            mean_delta = self.client_dp.noisy_mean_of_sum(total, 0.0, self.params.dtype)
            # As in DP-FedAvg without protection: nothing that counts the sampled parties
            # (the error bound is n / scale).
            record.update(_HIDDEN_BY_SECURE_SAMPLING)
        else:
            mean_delta = (total / len(outcome.survivors)).to(self.params.dtype)
            record.update({
                "sampled": list(outcome.survivors), "refused": outcome.failed,
                "bytes_down": outcome.bytes_down, "bytes_up": outcome.bytes_up,
                "contacted": len(sampled),
                "quantization_error_bound": outcome.error_bound,
            })  # fmt: skip
        self.params = self.strategy.server_step(self.params, mean_delta, [])
        seconds["aggregate"] = time.perf_counter() - tick
        record.update({"train_loss": None, "protection": "secagg"})
        return self._evaluate_if_due(round_number, record, seconds)

    def _ckks_round(
        self, round_number: int, lr: float, sampled: list[str], seconds: dict[str, float]
    ) -> dict[str, Any]:
        """A CKKS round: the coordinator adds encrypted updates (equal weights) and every
        party decrypts the sum and steps the strategy itself; the coordinator's model and
        strategy do not move."""
        from accord.fl.ckks_round import ckks_round, setup_keys

        record: dict[str, Any] = {"round": round_number, "lr": lr}
        if self.ckks_public is None:
            key_holder = self.job.protection.key_holder
            assert key_holder is not None
            setup = setup_keys(self.transport, self.job_id, self.parties, key_holder, self.params)
            self.ckks_public = setup.public
            seconds["key_setup"] = setup.seconds
            record.update({"key_setup_bytes_down": setup.bytes_down,
                           "key_setup_bytes_up": setup.bytes_up})  # fmt: skip
        request = TrainRequest(self.job_id, round_number, None, lr)
        outcome = ckks_round(
            self.transport, self.ckks_public, self.job_id, round_number, self.parties,
            {party: request for party in sampled}, self.job.sampling.min_parties,
        )  # fmt: skip
        seconds["train"] = outcome.train_seconds
        seconds["aggregate"] = outcome.aggregate_seconds
        seconds["apply"] = outcome.apply_seconds
        record.update({
            "sampled": list(outcome.added), "refused": outcome.failed,
            "bytes_down": outcome.bytes_down, "bytes_up": outcome.bytes_up,
            "train_loss": None, "protection": "ckks",
        })  # fmt: skip
        return self._evaluate_if_due(round_number, record, seconds)

    def evaluate(self, round_number: int, params: torch.Tensor) -> dict[str, Any]:
        """Federated evaluation on every party's own test split (and the server set).

        Under CKKS each node evaluates its own copy of the model, and the coordinator,
        which holds none, cannot score the server-side test set."""
        out: dict[str, Any] = {}
        ckks = self.job.protection.ckks
        if self.job.evaluation.federated:
            request = EvaluateRequest(self.job_id, round_number, None if ckks else params)
            exchange = self.transport.exchange({party: request for party in self.parties})
            replies = [exchange.replies[p] for p in self.parties if p in exchange.replies]
            out["federated"] = combine_metrics(replies)
            out["per_party"] = {r.sender: dict(r.scalars) for r in replies}
            if exchange.failed:
                out["refused_metrics"] = dict(exchange.failed)
            out["eval_bytes_down"] = exchange.bytes_down
            out["eval_bytes_up"] = exchange.bytes_up
        if self.server_evaluator is not None and ckks:
            out["server_test_skipped"] = "CKKS: the coordinator holds no model to score"
        elif self.server_evaluator is not None:
            out["server_test"] = self.server_evaluator(params)
        return out
