"""What the job seed controls, each purpose with its own stream.

Every use of the job seed draws from ``numpy.random.default_rng([seed, tag, ...])`` with
one of the tags below, so the streams are independent (no two purposes share a tag) and
stateless (resume needs no generator state). None of these streams is secret: whoever
reads the job file can recompute them. Anything a privacy or security property rests on
comes from the node's secure generator instead (:mod:`accord.secure_random`).
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class SeedTag(IntEnum):
    HOLDOUT = 1
    """Rows held out as the simulation-only coordinator test set."""
    PARTITION = 2
    """The simulation partition of a pooled data set."""
    SPLIT = 3
    """Each party's train/test split: ``[seed, SPLIT, party index]``."""
    SAMPLING = 4
    """Client sampling in non-DP jobs: ``[seed, SAMPLING, round]``."""
    SHUFFLE = 5
    """Non-private shuffling of local epochs: ``[seed, SHUFFLE, party index, round]``."""
    TORCH = 6
    """torch's generator before a task's own train(): ``[seed, TORCH, party index, round]``."""


def seeded(seed: int, tag: SeedTag, *more: int) -> np.random.Generator:
    return np.random.default_rng([seed, int(tag), *more])
