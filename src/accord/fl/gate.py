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
from typing import TYPE_CHECKING

from accord.errors import GateBypassError, RefusedError
from accord.fl.messages import Release, ReleaseKind
from accord.privacy.events import Adversary

if TYPE_CHECKING:
    from dp_accounting import DpEvent

    from accord.privacy.caps import NodePrivacySettings
    from accord.privacy.ledger import ChargeReceipt, PrivacyLedger

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


@dataclass(frozen=True, slots=True)
class GatePrivacy:
    """The node's ledger and caps, for a node whose job is private or whose data is capped."""

    run_key: str
    """What the ledger files this run's charges under: ``<job id>.<run id>``. A new run of
    the same job file is a new run; a resumed run keeps its key."""
    ledger: PrivacyLedger
    settings: NodePrivacySettings


class ReleaseGate:
    """One per node. Charges the budget, seals releases after checking them, and unseals
    each exactly once for the transport."""

    def __init__(self, party: str, privacy: GatePrivacy | None = None) -> None:
        self.party = party
        self.privacy = privacy
        self._outstanding: dict[int, SealedRelease] = {}
        self._charged: dict[tuple[int, ReleaseKind], ChargeReceipt] = {}
        self.released_bytes = 0

    def charge(
        self,
        round_number: int,
        kind: ReleaseKind,
        dataset: str,
        event: DpEvent | None,
        adversary: Adversary | None,
    ) -> ChargeReceipt | None:
        """Charge a release's DpEvent to the ledger, in one transaction, before the work
        that produces it (before local training, for an update). Refused (RefusedError,
        exit 3) when any cap of the dataset would be exceeded, or when a release without a
        DP mechanism comes from a capped dataset whose kind node.toml does not exempt.
        """
        if self.privacy is None:
            return None
        settings = self.privacy.settings
        receipt = self.privacy.ledger.charge(
            self.privacy.run_key, round_number, kind.value, dataset, event,
            adversary or Adversary.COORDINATOR_AND_RECIPIENTS,
            settings.caps_for(dataset), exempt=settings.is_exempt(kind.value),
        )  # fmt: skip
        self._charged[(round_number, kind)] = receipt
        return receipt

    def release(self, release: Release) -> SealedRelease:
        """Check ``release`` and seal it for this node's transport."""
        if (
            self.privacy is not None
            and self._charged.pop((release.round, release.kind), None) is None
        ):
            raise RefusedError(
                f"release gate of {self.party!r}: the {release.kind.value} release of round "
                f"{release.round} was not charged to the privacy ledger first"
            )
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
