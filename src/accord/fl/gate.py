"""The release gate: the only sender of data-derived bytes from a node.

Every update, metric, row count or histogram leaves a node as a :class:`Release` that
passes through :meth:`ReleaseGate.release`. The gate checks it and seals it; the node's
transport endpoint accepts only sealed releases that this gate issued, once each
(:meth:`ReleaseGate.unseal`). Where the node has an agreement, the gate checks it before
sealing anything (the node also checks it before any charge or training); the privacy
budget is charged here before the work, so that tests can reason about privacy in one
place.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from accord.errors import GateBypassError, RefusedError
from accord.fl.messages import Release, ReleaseKind
from accord.privacy.events import Adversary

if TYPE_CHECKING:
    from dp_accounting import DpEvent

    from accord.fl.node_agreement import NodeAgreement
    from accord.fl.node_audit import NodeAudit
    from accord.privacy.caps import NodePrivacySettings
    from accord.privacy.ledger import ChargeReceipt, PrivacyLedger

JOB_CHARGE_ROUND = 0
"""The round under which a job charged in full when the node accepts it files that charge."""

# What each kind must carry; a release with anything else is refused, not forwarded.
_ALLOWED_CONTENT: Mapping[ReleaseKind, tuple[frozenset[str], frozenset[str]]] = {
    ReleaseKind.UPDATE: (
        frozenset({"delta", "control_delta"}),
        frozenset({"num_examples", "train_loss", "steps", "within_clip"}),
    ),
    ReleaseKind.METRICS: (frozenset(), frozenset({"num_examples", "loss", "accuracy"})),
    ReleaseKind.ROW_COUNT: (frozenset(), frozenset({"num_examples"})),
    ReleaseKind.LABEL_HISTOGRAM: (frozenset({"histogram"}), frozenset()),
    ReleaseKind.PROTOCOL: (frozenset(), frozenset()),
    ReleaseKind.REVOCATION: (frozenset(), frozenset({"recorded"})),
    ReleaseKind.RECEIPT: (frozenset(), frozenset()),
}

# Kinds that carry nothing read from the data: no charge, no DP event. (A receipt states
# the run's epsilons, which for DP-SGD depend on the node's row count through its sampling
# rate, as every report of them does; docs/agreements.md says so.)
_DATA_FREE = (ReleaseKind.PROTOCOL, ReleaseKind.REVOCATION, ReleaseKind.RECEIPT)


def _payload_types(kind: ReleaseKind) -> tuple[type, ...]:
    """The protection messages a release of ``kind`` may carry (none: no payload).

    A masked or CKKS-encrypted update is the update itself (charged as one); every other
    protocol message holds keys, commitments, encrypted shares, signatures, sealed key sets
    or acknowledgements, nothing derived from data.
    """
    from accord.fl import node_ckks as ckks

    if kind is ReleaseKind.UPDATE:
        from accord.protect.messages import MaskedInput

        return (MaskedInput, ckks.CkksUpdate)
    if kind is ReleaseKind.REVOCATION:
        from accord.governance.agreement import RevocationEntry

        return (RevocationEntry,)
    if kind is ReleaseKind.RECEIPT:
        from accord.fl.node_audit import PrivacyReceipt

        return (PrivacyReceipt,)
    if kind is ReleaseKind.PROTOCOL:
        from accord.protect import messages

        return (messages.Advertisement, messages.Confirmation, messages.KeyShares,
                messages.SurvivorSignature, messages.UnmaskResponse,
                ckks.CkksHello, ckks.CkksKeyDelivery, ckks.CkksAck)  # fmt: skip
    return ()


def _payload_sender(payload: object) -> str | None:
    """The party a protocol message says it is from (its ``sender`` or ``party`` field)."""
    sender = getattr(payload, "sender", None) or getattr(payload, "party", None)
    return sender if isinstance(sender, str) else None


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

    def __init__(
        self,
        party: str,
        privacy: GatePrivacy | None = None,
        agreement: NodeAgreement | None = None,
        audit: NodeAudit | None = None,
    ) -> None:
        self.party = party
        self.privacy = privacy
        self.agreement = agreement
        self.audit = audit
        self._outstanding: dict[int, SealedRelease] = {}
        self._charged: dict[tuple[int, ReleaseKind], ChargeReceipt] = {}
        self._receipts: dict[tuple[int, ReleaseKind], ChargeReceipt] = {}
        """Every charge this gate made, for :meth:`readmit`."""
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
        self._receipts[(round_number, kind)] = receipt
        return receipt

    def readmit(self, round_number: int, kind: ReleaseKind) -> None:
        """Admit one more release of a round's already-charged value: a secure round
        started again (fresh keys and masks) around the same update, which was charged
        once. The same value masked anew costs nothing more; a round never charged is
        refused."""
        if self.privacy is None:
            return
        receipt = self._receipts.get((round_number, kind))
        if receipt is None:
            raise RefusedError(
                f"release gate of {self.party!r}: the {kind.value} of round {round_number} "
                "was never charged; it cannot be released again"
            )
        self._charged[(round_number, kind)] = receipt

    def charge_job(
        self,
        rounds: int,
        kind: ReleaseKind,
        dataset: str,
        round_event: DpEvent,
        adversary: Adversary,
    ) -> None:
        """Charge a whole job's planned releases, ``rounds`` times ``round_event``, when the
        node accepts the job (filed under round 0): DP-FedAvg's accounting needs every
        round charged whether or not the node is sampled, so it is charged up front. A
        resumed run finds its charge already stored and pays nothing twice.
        """
        if self.privacy is None:
            raise ValueError("charge_job needs the node's ledger")
        from dp_accounting import SelfComposedDpEvent

        ledger, run_key = self.privacy.ledger, self.privacy.run_key
        if any(self._is_job_charge(c.round, c.release_kind, kind) for c in ledger.charges(run_key)):
            return
        settings = self.privacy.settings
        event = SelfComposedDpEvent(round_event, rounds)
        ledger.charge(
            run_key, JOB_CHARGE_ROUND, kind.value, dataset, event, adversary,
            settings.caps_for(dataset), exempt=settings.is_exempt(kind.value),
        )  # fmt: skip
        if self.audit is not None:
            self.audit.charged_job(kind.value, dataset, event, adversary)

    def charge_prepaid(
        self, round_number: int, rounds: int, kind: ReleaseKind, dataset: str, adversary: Adversary
    ) -> None:
        """Admit one release that the job's acceptance charge paid for: at most one per
        round 1..``rounds``. It is stored as a ``NoOpDpEvent`` entry, so the ledger lists
        every release and a round is never released twice (not after a resume either)."""
        if self.privacy is None:
            raise ValueError("charge_prepaid needs the node's ledger")
        from dp_accounting import NoOpDpEvent

        charges = self.privacy.ledger.charges(self.privacy.run_key)
        where = f"release gate of {self.party!r}: the {kind.value} release of round {round_number}"
        if not any(self._is_job_charge(c.round, c.release_kind, kind) for c in charges):
            raise RefusedError(f"{where} belongs to a job whose plan was not charged")
        if not 1 <= round_number <= rounds:
            raise RefusedError(f"{where} is outside the job's {rounds} charged rounds")
        if any(c.round == round_number and c.release_kind == kind.value for c in charges):
            raise RefusedError(f"{where} was already made once; a round is released only once")
        self.charge(round_number, kind, dataset, NoOpDpEvent(), adversary)

    @staticmethod
    def _is_job_charge(round_number: int, stored_kind: str, kind: ReleaseKind) -> bool:
        return round_number == JOB_CHARGE_ROUND and stored_kind == kind.value

    def release(self, release: Release) -> SealedRelease:
        """Check ``release`` and seal it for this node's transport.

        A secure-aggregation protocol message (kind ``protocol``) carries no data-derived
        bytes: it needs no charge (its event is ``NoOpDpEvent``) but must be one of the
        protocol's own message types. Every other release must have been charged first.
        """
        if self.agreement is not None and release.kind is not ReleaseKind.REVOCATION:
            # Refuses (exit 3, naming the clause) once the agreement is no longer in force.
            self.agreement.check()
        # Each charge admits one release: a refused release is not retried on the same one.
        charge = self._charged.pop((release.round, release.kind), None)
        if release.kind in _DATA_FREE:
            if release.dp_event is not None:
                raise RefusedError(
                    f"release gate of {self.party!r}: a {release.kind.value} message carries "
                    "no DP event"
                )
        elif self.privacy is not None and charge is None:
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
        allowed = _payload_types(release.kind)
        if release.payload is not None and not isinstance(release.payload, allowed):
            raise RefusedError(
                f"release gate of {self.party!r}: a {release.kind.value} release may not carry "
                f"a {type(release.payload).__name__}"
            )
        if release.payload is not None and (release.tensors or release.scalars):
            # A masked update travels alone: nothing in the clear beside it.
            raise RefusedError(
                f"release gate of {self.party!r}: a {release.kind.value} release with a "
                "protocol payload may carry nothing else"
            )
        if release.kind is ReleaseKind.PROTOCOL and release.payload is None:
            raise RefusedError(f"release gate of {self.party!r}: a protocol message is empty")
        if release.payload is not None and _payload_sender(release.payload) != self.party:
            raise RefusedError(
                f"release gate of {self.party!r}: the protocol message names another sender"
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
        if self.audit is not None:
            # Logged before it leaves, and it leaves carrying the head: a log cut short
            # later no longer holds the head the coordinator kept.
            head = (
                self.audit.head()
                if release.kind in (ReleaseKind.PROTOCOL, ReleaseKind.RECEIPT)
                else self.audit.released(release, charge)
            )
            release = dataclasses.replace(release, audit_head=head)
        sealed = SealedRelease(release)
        self._outstanding[id(sealed)] = sealed
        return sealed

    def reseal(self, release: Release) -> SealedRelease:
        """Seal again a release this node made before (kept in its home: the coordinator
        asked for it again). No new charge; one audit entry "resent"; refused once the
        agreement is out of force."""
        if release.sender != self.party:
            raise RefusedError(
                f"release gate of {self.party!r}: a kept release claims sender {release.sender!r}"
            )
        if self.agreement is not None:
            self.agreement.check()
        if self.audit is not None:
            head = self.audit.resent(release)
            release = dataclasses.replace(release, audit_head=head)
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
