"""The ``[privacy]`` section of the job file.

``mode = "none"`` (the default) trains without differential privacy. Two DP modes:

``mode = "dpsgd"``: sample-level DP-SGD on every node. Each local step Poisson-samples a
batch (expected size ``training.batch_size``), clips every example's gradient to
``clip_norm`` and adds Gaussian noise of standard deviation ``noise_multiplier *
clip_norm`` from the node's secure generator. The noise is added on the node, before
anything is released, so the epsilon it buys holds against the coordinator and the
recipients of the outputs. With ``target_epsilon`` each node calibrates its own noise
multiplier from its own row count (which it never releases), for the whole job's planned
steps at ``delta``.

``mode = "dpfedavg"``: client-level DP-FedAvg (McMahan et al. 2018; adaptive clipping of
Andrew et al. 2021). Parties are Poisson-sampled each round at ``sampling.rate`` (or all
of them, ``sampling.mode = "all"``) by the coordinator's own secure generator; each node
trains as usual and clips its update to ``clip_norm``; the coordinator adds Gaussian noise
of standard deviation ``noise_multiplier * clip_norm`` to the sum. The coordinator sees
the clipped updates before the noise, so the epsilon holds against the recipients only.
``target_epsilon`` here is the record-level epsilon each node's ledger is charged for the
whole job; ``noise_multiplier`` is then calibrated from the job alone (no row count), so
the coordinator and every node arrive at the same value. With ``adaptive_clipping`` the
clipping norm follows a privately estimated ``target_quantile`` of the update norms.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

PrivacyMode = Literal["none", "dpsgd", "dpfedavg"]

_ADAPTIVE_FIELDS = ("target_quantile", "clip_learning_rate", "clipped_count_stddev")


class PrivacyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: PrivacyMode = "none"
    noise_multiplier: float | None = Field(default=None, gt=0)
    target_epsilon: float | None = Field(default=None, gt=0)
    delta: float = Field(default=1e-5, gt=0, lt=1)
    clip_norm: float = Field(default=1.0, gt=0)
    accountant: Literal["pld", "rdp"] = "pld"
    adaptive_clipping: bool = False
    """dpfedavg: move clip_norm toward the target quantile of update norms each round."""
    target_quantile: float | None = Field(default=None, gt=0, lt=1)
    """dpfedavg, adaptive: the quantile of update norms to clip at (default 0.5)."""
    clip_learning_rate: float | None = Field(default=None, gt=0)
    """dpfedavg, adaptive: eta in C <- C * exp(-eta (b - quantile)) (default 0.2)."""
    clipped_count_stddev: float | None = Field(default=None, gt=0)
    """dpfedavg, adaptive: noise on the count of unclipped updates (default: expected
    parties per round / 20, as Andrew et al. 2021)."""
    noise_placement: Literal["coordinator", "parties"] = "coordinator"
    """dpfedavg: who adds the noise. "coordinator" (trusted: epsilon holds against the
    recipients only) or "parties" (distributed Skellam noise, each party noising its own
    quantized update before masking; needs protection.mode = "secagg"; epsilon holds
    against the coordinator and the recipients)."""
    colluding_parties: int = Field(default=0, ge=0)
    """noise_placement = "parties": c, how many parties may collude with the coordinator
    and subtract their own noise. The noise is calibrated so that any min_parties - c
    honest survivors carry the target."""

    @model_validator(mode="after")
    def _one_noise_setting(self) -> Self:
        if self.mode == "none":
            for name in ("noise_multiplier", "target_epsilon"):
                if getattr(self, name) is not None:
                    raise ValueError(f'privacy.{name} needs privacy.mode = "dpsgd" or "dpfedavg"')
        elif (self.noise_multiplier is None) == (self.target_epsilon is None):
            raise ValueError(
                "privacy.noise_multiplier / privacy.target_epsilon: give exactly one of them"
            )
        if not self.adaptive_clipping:
            given = [name for name in _ADAPTIVE_FIELDS if getattr(self, name) is not None]
            if given:
                raise ValueError(f"privacy.{given[0]} needs privacy.adaptive_clipping = true")
        elif self.mode != "dpfedavg":
            raise ValueError('privacy.adaptive_clipping needs privacy.mode = "dpfedavg"')
        if self.distributed_noise:
            if self.mode != "dpfedavg":
                raise ValueError(
                    'privacy.noise_placement = "parties" needs privacy.mode = "dpfedavg"'
                )
            if self.adaptive_clipping:
                raise ValueError(
                    'privacy.noise_placement = "parties" with adaptive_clipping: the clipped-count '
                    "bit has no distributed noise yet; use a fixed clip_norm"
                )
        elif self.colluding_parties:
            raise ValueError('privacy.colluding_parties needs privacy.noise_placement = "parties"')
        return self

    @property
    def distributed_noise(self) -> bool:
        """DP-FedAvg whose noise every party adds to its own update (Skellam)."""
        return self.noise_placement == "parties"

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    @property
    def client_level(self) -> bool:
        """Client-level DP (DP-FedAvg): the update is clipped, the sum noised."""
        return self.mode == "dpfedavg"
