"""Client-level DP-FedAvg: clip each party's update, add Gaussian noise to the sum.

The mechanism of McMahan et al. 2018 ("Learning differentially private recurrent language
models"), with the adaptive clipping of Andrew et al. 2021 ("Differentially private
learning with adaptive clipping"). Each round:

1. Parties are Poisson-sampled at rate q by the coordinator's secure generator.
2. Each sampled node trains as usual and clips its update to norm S (release-time
   protection, on the node: :func:`clip_update`). With adaptive clipping it also releases
   one bit, whether its update was within S.
3. The clipped updates are summed; Gaussian noise of standard deviation z_update * S is
   added to the sum, which is divided by the expected number of parties m = q N (a fixed
   denominator: the number actually sampled is never used, so the weights are fixed and
   the count stays hidden). With adaptive clipping the count of unclipped updates gets
   noise sigma_b and moves S geometrically toward the target quantile.

Who adds the noise is a separate piece (:class:`SumNoise`): the coordinator
(:class:`CoordinatorNoise`, a trusted aggregator, so epsilon holds against the recipients
only), or, with ``privacy.noise_placement = "parties"`` under secure aggregation, the
parties themselves (:class:`PartiesNoise`: each adds Skellam noise to its quantized update
before masking, :mod:`accord.privacy.skellam`, and the coordinator adds nothing; epsilon
then holds against the coordinator too, and each node charges a ``ZCDpEvent`` for each
round it takes part in, without amplification by sampling: the coordinator knows who
took part).

Accounting. The round's whole mechanism (sum and count together) is a Gaussian mechanism
of noise multiplier z at the party level (Andrew et al., Theorem 1:
z = (z_update^-2 + (2 sigma_b)^-2)^-1/2). Accord's adjacency is one *record* added or
removed: that can move a party's clipped update anywhere in the ball of radius S, so by
up to 2S, and flip its bit; the record-level noise multiplier is z / 2. Every node
therefore charges ``PoissonSampledDpEvent(q, GaussianDpEvent(z / 2))`` for every round of
the job, sampled or not. Amplification by sampling is credited against the recipients
only, who never learn who was sampled; the coordinator, which adds the noise, is trusted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch

from accord.errors import JobFileError
from accord.privacy.events import Adversary

if TYPE_CHECKING:
    from dp_accounting import DpEvent

    from accord.job import Job
    from accord.privacy.skellam import SkellamSettings
    from accord.secure_random import SecureGenerator

DEFAULT_TARGET_QUANTILE = 0.5
DEFAULT_CLIP_LEARNING_RATE = 0.2
# Andrew et al. 2021 use sigma_b = m / 20: the count noise then costs little of the budget.
COUNT_STDDEV_PER_PARTY = 1 / 20
# Scaling a vector to norm S in float32 can land an ulp above S; aim just below.
_CLIP_SHRINK = 1.0 - 2.0**-20


@dataclass(frozen=True, slots=True)
class ClientDpSettings:
    """Everything both sides derive from the job: the same numbers on every machine."""

    noise_multiplier: float
    """z: the round's whole mechanism at the party level (noise std over S)."""
    clip_norm: float
    """S at the start of the job."""
    sample_rate: float
    """q: each party's chance of being sampled in a round."""
    rounds: int
    delta: float
    expected_parties: float
    """m = q N: the fixed denominator of the noisy mean."""
    adaptive: bool
    target_quantile: float
    clip_learning_rate: float
    clipped_count_stddev: float
    """sigma_b: noise on the count of unclipped updates (0 without adaptive clipping)."""
    skellam: SkellamSettings | None = None
    """Distributed noise (noise_placement = "parties"): the parties' Skellam shares."""

    @property
    def update_noise_multiplier(self) -> float:
        """z_update: the noise on the update sum, after the count's share of the budget."""
        if not self.adaptive:
            return self.noise_multiplier
        inverse_square = self.noise_multiplier**-2 - (2 * self.clipped_count_stddev) ** -2
        return float(inverse_square**-0.5)

    def record_event(self) -> DpEvent:
        """One round as each node's ledger charges it (record-level adjacency)."""
        from dp_accounting import GaussianDpEvent, PoissonSampledDpEvent

        if self.skellam is not None:
            return self.skellam.record_event()
        return PoissonSampledDpEvent(self.sample_rate, GaussianDpEvent(self.noise_multiplier / 2))

    def party_event(self, rounds: int) -> DpEvent:
        """``rounds`` rounds at the party level: one whole party added or removed."""
        from accord.privacy.accounting import dpsgd_event

        if self.skellam is not None:
            from dp_accounting import SelfComposedDpEvent, ZCDpEvent

            return SelfComposedDpEvent(ZCDpEvent(self.skellam.party_rho), rounds)
        return dpsgd_event(self.noise_multiplier, self.sample_rate, rounds)


def client_dp_settings(job: Job, num_parties: int) -> ClientDpSettings:
    """The job's DP-FedAvg settings; refuses a job whose settings cannot be honoured."""
    privacy, sampling = job.privacy, job.sampling
    # The job file's validation refuses sampling.mode = "count" in a DP-FedAvg job.
    assert sampling.mode != "count", "DP-FedAvg's accounting assumes Poisson sampling"
    sample_rate = 1.0 if sampling.mode == "all" else float(sampling.rate or 0.0)
    rounds = job.job.rounds
    skellam = None
    if privacy.distributed_noise:
        from accord.privacy.skellam import skellam_settings

        skellam = skellam_settings(job, num_parties)
        z = skellam.noise_multiplier
    elif privacy.noise_multiplier is not None:
        z = privacy.noise_multiplier
    else:
        assert privacy.target_epsilon is not None
        # The target is the record-level epsilon the ledger charges, whose multiplier is z/2.
        from accord.privacy.accounting import calibrate_noise

        z = 2 * calibrate_noise(
            privacy.target_epsilon, privacy.delta, sample_rate, rounds, privacy.accountant
        )
    expected = sample_rate * num_parties
    count_stddev = 0.0
    if privacy.adaptive_clipping:
        count_stddev = privacy.clipped_count_stddev or COUNT_STDDEV_PER_PARTY * expected
        if not 2 * count_stddev > z:
            raise JobFileError(
                f"privacy.clipped_count_stddev = {count_stddev:g} must exceed "
                f"noise_multiplier / 2 = {z / 2:g}: the count's noise is part of the same "
                "budget (Andrew et al. 2021, Theorem 1). Raise it, or sample more parties "
                "per round (its default is expected parties / 20)"
            )
    return ClientDpSettings(
        noise_multiplier=z,
        clip_norm=privacy.clip_norm,
        sample_rate=sample_rate,
        rounds=rounds,
        delta=privacy.delta,
        expected_parties=expected,
        adaptive=privacy.adaptive_clipping,
        target_quantile=privacy.target_quantile or DEFAULT_TARGET_QUANTILE,
        clip_learning_rate=privacy.clip_learning_rate or DEFAULT_CLIP_LEARNING_RATE,
        clipped_count_stddev=count_stddev,
        skellam=skellam,
    )


# -- the node's side ---------------------------------------------------------------------


def clip_update(delta: torch.Tensor, clip_norm: float) -> tuple[torch.Tensor, bool]:
    """``delta`` scaled to norm at most ``clip_norm``, and whether it was within it."""
    norm = float(torch.linalg.vector_norm(delta, dtype=torch.float64))
    if norm <= clip_norm:
        return delta, True
    return delta * (clip_norm / norm * _CLIP_SHRINK), False


# -- the aggregator's side ---------------------------------------------------------------


class SumNoise(Protocol):
    """Who adds the Gaussian noise to the sum, and so whom epsilon protects against."""

    adversary: Adversary

    def add(self, total: torch.Tensor, std: float) -> torch.Tensor: ...

    def add_scalar(self, total: float, std: float) -> float: ...


class CoordinatorNoise:
    """The trusted coordinator adds the noise, from its own secure generator."""

    adversary = Adversary.RECIPIENTS_ONLY

    def __init__(self, rng: SecureGenerator) -> None:
        self.rng = rng

    def add(self, total: torch.Tensor, std: float) -> torch.Tensor:
        noise = self.rng.normal_tensor(total.shape, std, dtype=torch.float64)
        return (total.double() + noise).to(total.dtype)

    def add_scalar(self, total: float, std: float) -> float:
        return total + float(self.rng.normal(1, std)[0])


class PartiesNoise:
    """Distributed noise: every party added its share to its own masked update, so the
    coordinator adds nothing (and need not be trusted)."""

    adversary = Adversary.COORDINATOR_AND_RECIPIENTS

    def add(self, total: torch.Tensor, std: float) -> torch.Tensor:
        return total

    def add_scalar(self, total: float, std: float) -> float:
        return total


@dataclass(frozen=True, slots=True)
class ClippedUpdate:
    """One party's release: its clipped update and, for adaptive clipping, its bit."""

    delta: torch.Tensor
    within_clip: bool


class ClientDpAggregator:
    """Turns the round's clipped updates into a noisy mean and adapts the clipping norm."""

    def __init__(self, settings: ClientDpSettings, noise: SumNoise) -> None:
        if settings.expected_parties <= 0:
            raise ValueError("client-level DP needs at least one expected party per round")
        self.settings = settings
        self.noise = noise
        self.clip_norm = settings.clip_norm

    def noisy_mean(self, updates: Sequence[ClippedUpdate], like: torch.Tensor) -> torch.Tensor:
        """Sum (in the order given), noise, divide by m; then move the clipping norm."""
        total = torch.zeros_like(like, dtype=torch.float64)
        unclipped = 0.0
        for update in updates:
            # Clipped again here: the sensitivity must not rest on every node's honesty.
            clipped, within = clip_update(update.delta, self.clip_norm)
            total.add_(clipped.double())
            # Centred bits (b - 1/2) have sensitivity 1/2 under a fixed denominator.
            unclipped += (1.0 if within and update.within_clip else 0.0) - 0.5
        return self.noisy_mean_of_sum(total, unclipped, like.dtype)

    def noisy_mean_of_sum(
        self, total: torch.Tensor, centred_count: float, dtype: torch.dtype
    ) -> torch.Tensor:
        """Noise the sum of the round's clipped updates (computed elsewhere, e.g. by secure
        aggregation, where each node clipped its own), divide by m; with adaptive clipping,
        ``centred_count`` is the sum of (within clip - 1/2) over the updates."""
        s = self.settings
        noisy = self.noise.add(total.double(), s.update_noise_multiplier * self.clip_norm)
        mean = (noisy / s.expected_parties).to(dtype)
        if s.adaptive:
            noisy_count = self.noise.add_scalar(centred_count, s.clipped_count_stddev)
            fraction_within = noisy_count / s.expected_parties + 0.5
            self.clip_norm *= math.exp(
                -s.clip_learning_rate * (fraction_within - s.target_quantile)
            )
        return mean

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"clip_norm": torch.tensor([self.clip_norm], dtype=torch.float64)}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.clip_norm = float(state["clip_norm"][0])
