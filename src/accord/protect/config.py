"""The ``[protection]`` section of the job file: how updates are protected on their way
to the coordinator.

``mode = "none"`` (the default) sends each update as float32. ``mode = "secagg"`` runs
secure aggregation by masking (Bonawitz et al. 2017, SecAgg+ graph of Bell et al. 2020):
each node quantizes its update to fixed point modulo 2^k and masks it, and the
coordinator learns only the sum of the parties that survive the round, and only if at
least ``sampling.min_parties`` of them signed the survivor list. The settings below are
public and the same for every party; each node checks them against its own copy of the
job.

``mode = "ckks"`` encrypts each update under CKKS (TenSEAL). The party named by
``key_holder`` generates a fresh key set per job and sends the secret key to every other
party end to end; the coordinator holds only the public context, adds the ciphertexts and
never sees a decryption: every party decrypts the sum and applies the strategy's server
step itself (``accord.fl.node_ckks``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ProtectionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["none", "secagg", "ckks"] = "none"
    key_holder: str | None = None
    """ckks: the party that generates the job's key set (required; a party of the job)."""
    max_corrupt_fraction: float = Field(default=0.1, ge=0, lt=0.5)
    """gamma: the largest fraction of parties that may collude with the coordinator."""
    max_dropout_fraction: float = Field(default=0.1, ge=0, lt=1)
    """delta: the fraction of a round's parties that may drop out with the round intact."""
    clip_range: float = Field(default=1.0, gt=0)
    """Each coordinate of an update is clipped to [-clip_range, clip_range] before it is
    quantized (the bound that keeps the sum from wrapping around the ring)."""
    scale_bits: int = Field(default=24, ge=4, le=40)
    """Fixed-point scale 2^scale_bits: the sum's per-coordinate error is at most
    n / 2^scale_bits for n parties (stochastic rounding, unbiased)."""

    @model_validator(mode="after")
    def _key_holder_for_ckks(self) -> ProtectionConfig:
        if self.mode == "ckks" and not self.key_holder:
            raise ValueError(
                'mode = "ckks" needs key_holder = "<party>", the party that generates the keys'
            )
        if self.mode != "ckks" and self.key_holder is not None:
            raise ValueError('key_holder is only used with mode = "ckks"')
        return self

    @property
    def secagg(self) -> bool:
        return self.mode == "secagg"

    @property
    def ckks(self) -> bool:
        return self.mode == "ckks"

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    @property
    def scale(self) -> float:
        return float(2**self.scale_bits)
