"""The release gate: the only sender of data-derived bytes from a node.

Every update, metric, row count or histogram leaves a node as a :class:`Release` that
passes through :meth:`ReleaseGate.release`. The gate checks it and seals it; the node's
transport endpoint accepts only sealed releases that this gate issued, once each
(:meth:`ReleaseGate.unseal`). Later issues add the agreement check, the privacy budget
charge, the protection applied at release time and the audit entry here, so that tests
can reason about privacy in one place.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from accord.errors import GateBypassError, RefusedError
from accord.fl.messages import Release, ReleaseKind

# What each kind must carry; a release with anything else is refused, not forwarded.
_ALLOWED_CONTENT: Mapping[ReleaseKind, tuple[frozenset[str], frozenset[str]]] = {
    ReleaseKind.UPDATE: (
        frozenset({"delta", "control_delta"}),
        frozenset({"num_examples", "train_loss", "steps"}),
    ),
    ReleaseKind.METRICS: (frozenset(), frozenset({"num_examples", "loss", "accuracy"})),
    ReleaseKind.ROW_COUNT: (frozenset(), frozenset({"num_examples"})),
    ReleaseKind.LABEL_HISTOGRAM: (frozenset({"histogram"}), frozenset()),
}


@dataclass(frozen=True, slots=True, eq=False)
class SealedRelease:
    """A release the gate has checked; compared by identity, so it cannot be forged."""

    release: Release


class ReleaseGate:
    """One per node. Seals releases after checking them; unseals each exactly once."""

    def __init__(self, party: str) -> None:
        self.party = party
        self._outstanding: dict[int, SealedRelease] = {}
        self.released_bytes = 0

    def release(self, release: Release) -> SealedRelease:
        """Check ``release`` and seal it for this node's transport."""
        if release.sender != self.party:
            raise RefusedError(
                f"release gate of {self.party!r}: release claims sender {release.sender!r}"
            )
        tensor_keys, scalar_keys = _ALLOWED_CONTENT[release.kind]
        unexpected = (set(release.tensors) - tensor_keys) | (set(release.scalars) - scalar_keys)
        if unexpected:
            raise RefusedError(
                f"release gate of {self.party!r}: a {release.kind.value} release may not "
                f"carry {sorted(unexpected)}"
            )
        for name, tensor in release.tensors.items():
            # A sum is finite only if every element is (or the sum overflows, which is just
            # as wrong for an update); ten times cheaper than isfinite().all().
            if not math.isfinite(float(tensor.sum())):
                raise RefusedError(
                    f"release gate of {self.party!r}: {release.kind.value} tensor {name!r} is "
                    "not finite (training diverged); lower training.lr"
                )
        for name, value in release.scalars.items():
            if not math.isfinite(value):
                raise RefusedError(
                    f"release gate of {self.party!r}: {release.kind.value} value {name!r} is "
                    "not finite"
                )
        sealed = SealedRelease(release)
        self._outstanding[id(sealed)] = sealed
        return sealed

    def unseal(self, candidate: object) -> Release:
        """For the transport: the release, if this gate sealed it and it was not sent yet."""
        if not isinstance(candidate, SealedRelease):
            raise GateBypassError(
                f"node {self.party!r}: the transport was handed a {type(candidate).__name__}, "
                "not a release sealed by the node's gate"
            )
        issued = self._outstanding.pop(id(candidate), None)
        if issued is not candidate:
            raise GateBypassError(
                f"node {self.party!r}: the transport was handed a release that this node's "
                "gate did not seal, or one already sent"
            )
        self.released_bytes += candidate.release.nbytes
        return candidate.release
