"""The ``[privacy]`` section of the job file.

``mode = "none"`` (the default) trains without differential privacy. ``mode = "dpsgd"``
runs sample-level DP-SGD on every node: each local step Poisson-samples a batch (expected
size ``training.batch_size``), clips every example's gradient to ``clip_norm`` and adds
Gaussian noise of standard deviation ``noise_multiplier * clip_norm`` from the node's
secure generator. The noise is added on the node, before anything is released, so the
epsilon it buys holds against the coordinator and the recipients of the outputs.

Give either ``noise_multiplier`` or ``target_epsilon``: with a target, each node
calibrates its own noise multiplier from its own row count (which it never releases),
for the whole job's planned steps at ``delta``.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class PrivacyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["none", "dpsgd"] = "none"
    noise_multiplier: float | None = Field(default=None, gt=0)
    target_epsilon: float | None = Field(default=None, gt=0)
    delta: float = Field(default=1e-5, gt=0, lt=1)
    clip_norm: float = Field(default=1.0, gt=0)
    accountant: Literal["pld", "rdp"] = "pld"

    @model_validator(mode="after")
    def _one_noise_setting(self) -> Self:
        if self.mode == "none":
            for name in ("noise_multiplier", "target_epsilon"):
                if getattr(self, name) is not None:
                    raise ValueError(f'privacy.{name} needs privacy.mode = "dpsgd"')
            return self
        if (self.noise_multiplier is None) == (self.target_epsilon is None):
            raise ValueError(
                "privacy.noise_multiplier / privacy.target_epsilon: give exactly one of them"
            )
        return self

    @property
    def enabled(self) -> bool:
        return self.mode != "none"
