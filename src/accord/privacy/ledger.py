"""The node's privacy ledger: every release it made, as a ``dp-accounting`` DpEvent.

The ledger lives in the node home (``state/ledger.sqlite3``; SQLite in WAL mode with
``synchronous=FULL``) and belongs to the data owner: nothing in it is ever sent. It holds
one table, ``charges``: one row per release (job, round, release kind, dataset, the
release's adversary, its DpEvent as JSON, whether epsilon covers it, when).

Adjacency, everywhere in Accord: two datasets are neighbours when one is the other with
one record added or removed (unbounded DP). Every DpEvent a release states — from DP-SGD,
client-level DP (whose party-level sensitivity is converted to this record-level
adjacency before it is charged), or a DP statistic — is the event of its mechanism under
this adjacency, so that the ledger may compose them.

The release's adversary says who added its noise: ``coordinator_and_recipients`` when the
node added it before the release, ``recipients_only`` when the coordinator adds it (central
DP). Against a cap whose adversary is ``coordinator_and_recipients`` a coordinator-noised
release buys nothing: it counts as ``NonPrivateDpEvent`` (infinite epsilon). Against a
``recipients_only`` cap every release counts with its own event. A ``NoOpDpEvent`` costs
nothing against anyone.

A release is charged before it leaves the node, in one ``BEGIN IMMEDIATE`` transaction:
for every cap of its dataset, epsilon at the cap's delta over the stored events that count
against the cap's adversary plus the new one must stay within the cap's epsilon, or
nothing is stored and :class:`~accord.errors.RefusedError` (exit 3) names the party, the
dataset, the cap, and the spent and would-be epsilon. Two processes charging one ledger at
once are serialised by SQLite's write lock, so together they never overspend.

Accounting is ``dp-accounting``'s, never ours: PLD where PLD supports every event of the
dataset, otherwise RDP (one accountant per dataset, so its epsilons compose). Identical
events are composed as one ``SelfComposedDpEvent`` (the same composition; PLD's
self-composition costs one FFT instead of one convolution per round), so a charge costs
about the same after a thousand rounds as after one.

A release without a DP mechanism (an exact count, a metric) on a capped dataset is refused
unless ``node.toml`` exempts its kind; an exempt one is stored with ``covered = false`` and
a ``NoOpDpEvent``, and reports mark it "not covered by epsilon".
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from dp_accounting import (
    DpEvent,
    NoOpDpEvent,
)

from accord.errors import AccordError, InputError, RefusedError
from accord.privacy.accounting import (
    Accountant,
    make_accountant,
    supports_pld,
)
from accord.privacy.cap_accounting import (
    accountant_for_events,
    composed_epsilon,
    composed_leaves,
    count_against,
    why_infinite,
)
from accord.privacy.caps import Cap, load_node_settings
from accord.privacy.events import Adversary, event_from_json, event_to_json
from accord.sqlite_wal import connect_wal, transaction

LEDGER_FILE = Path("state") / "ledger.sqlite3"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS charges (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id       TEXT    NOT NULL,
    round        INTEGER NOT NULL,
    release_kind TEXT    NOT NULL,
    dataset      TEXT    NOT NULL,
    adversary    TEXT    NOT NULL,
    event_json   TEXT    NOT NULL,
    covered      INTEGER NOT NULL CHECK (covered IN (0, 1)),
    created_at   TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS charges_by_dataset ON charges (dataset, id);
"""

_COLUMNS = "id, job_id, round, release_kind, dataset, adversary, event_json, covered, created_at"


@dataclass(frozen=True)
class Charge:
    """One stored release."""

    id: int
    job_id: str
    round: int
    release_kind: str
    dataset: str
    adversary: Adversary
    event_json: str
    covered: bool
    created_at: str

    @property
    def event(self) -> DpEvent:
        return event_from_json(self.event_json)


@dataclass(frozen=True)
class CapSpend:
    """Epsilon spent against ``cap`` (at its delta), after a charge or for a plan."""

    cap: Cap
    epsilon: float

    @property
    def remaining(self) -> float:
        return max(self.cap.epsilon - self.epsilon, 0.0)


@dataclass(frozen=True)
class ChargeReceipt:
    """What :meth:`PrivacyLedger.charge` stored, and each cap's epsilon after it (none for a
    ``NoOpDpEvent``, which changes no cap's epsilon)."""

    charge: Charge
    accountant: Accountant
    spends: tuple[CapSpend, ...]


class PrivacyLedger:
    """The ledger of one node home (created on first use)."""

    def __init__(self, home: Path) -> None:
        if not home.is_dir():
            raise InputError(f"{home}: node home not found (give an existing --node-home)")
        self.home = home
        self.path = home / LEDGER_FILE
        settings = load_node_settings(home)
        self.party = settings.party or home.name
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Owner-only, like everything in a node home; SQLite gives its -wal and -shm files
        # the database file's permissions.
        os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        with self._transaction() as conn:
            # One statement at a time: executescript() would commit the transaction.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)

    # -- storage ------------------------------------------------------------------------

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``; ``ROLLBACK`` on any exception."""
        return transaction(connect_wal(str(self.path)))

    def _reading(self) -> AbstractContextManager[sqlite3.Connection]:
        """A consistent snapshot for reads (a deferred transaction)."""
        return transaction(connect_wal(str(self.path)), "BEGIN")

    @staticmethod
    def _rows(
        conn: sqlite3.Connection, where: str = "", args: tuple[object, ...] = ()
    ) -> list[Charge]:
        cursor = conn.execute(f"SELECT {_COLUMNS} FROM charges {where} ORDER BY id", args)
        return [
            Charge(
                id=row[0],
                job_id=row[1],
                round=row[2],
                release_kind=row[3],
                dataset=row[4],
                adversary=Adversary(row[5]),
                event_json=row[6],
                covered=bool(row[7]),
                created_at=row[8],
            )
            for row in cursor
        ]

    # -- queries ------------------------------------------------------------------------

    def charges(self, job_id: str | None = None) -> list[Charge]:
        """Every stored charge (of one job), oldest first."""
        with self._reading() as conn:
            if job_id is None:
                return self._rows(conn)
            return self._rows(conn, "WHERE job_id = ?", (job_id,))

    def datasets(self) -> list[str]:
        """Datasets with at least one charge, in the order of their first charge."""
        return list(dict.fromkeys(charge.dataset for charge in self.charges()))

    def accountant_for(self, dataset: str) -> Accountant:
        """``"pld"`` where PLD supports every stored event of ``dataset``, else ``"rdp"``."""
        return self.accountant_choice(dataset)[0]

    def accountant_choice(self, dataset: str) -> tuple[Accountant, str]:
        """The accountant of ``dataset`` and why, in a few words."""
        with self._reading() as conn:
            events = [charge.event for charge in self._rows(conn, *_of(dataset))]
        accountant = accountant_for_events(events)
        if accountant == "pld":
            return accountant, "PLD supports every event of this dataset"
        unsupported = sorted(
            {type(leaf).__name__ for leaf, _ in composed_leaves(events) if not supports_pld([leaf])}
        )
        return accountant, f"PLD does not support {', '.join(unsupported) or 'these events'}"

    def spent(self, dataset: str, cap: Cap) -> float:
        """Epsilon at ``cap.delta`` over the stored events that count against ``cap``."""
        _check_caps(dataset, [cap])
        with self._reading() as conn:
            stored = self._rows(conn, *_of(dataset))
        accountant = accountant_for_events([charge.event for charge in stored])
        return composed_epsilon(_counted(stored, cap), cap.delta, accountant)

    def plan_fits(
        self,
        dataset: str,
        planned: Sequence[tuple[DpEvent, Adversary | str]],
        caps: Sequence[Cap],
    ) -> tuple[bool, str]:
        """Would a job's whole plan, its releases as (event, adversary), fit every cap,
        given what is already spent?

        Call it when a job is accepted, before any record is read for training. The
        answer's text is one line: what fits, or (refused) the party, dataset, cap, spent
        and planned epsilon.
        """
        _check_caps(dataset, caps)
        releases = [(event, Adversary(adversary)) for event, adversary in planned]
        # A coordinator-noised release is what makes a plan infinite against a cap that
        # does not trust the coordinator: name it when the plan has one.
        central = any(a is Adversary.RECIPIENTS_ONLY for _, a in releases)
        adversary = Adversary.RECIPIENTS_ONLY if central else Adversary.COORDINATOR_AND_RECIPIENTS
        with self._reading() as conn:
            stored = self._rows(conn, *_of(dataset))
        accountant = accountant_for_events([c.event for c in stored] + [e for e, _ in releases])
        parts: list[str] = []
        for cap in caps:
            counted = _counted(stored, cap)
            after = composed_epsilon(counted + count_against(releases, cap), cap.delta, accountant)
            if not after <= cap.epsilon:
                before = composed_epsilon(counted, cap.delta, accountant)
                return False, (
                    f"party {self.party!r}: the job's plan for dataset {dataset!r} would reach "
                    f"epsilon {_fmt(after)} against its cap {cap.describe()} "
                    f"(already spent {_fmt(before)}, accountant {accountant})"
                    f"{why_infinite(after, adversary, cap)}"
                )
            parts.append(f"{_fmt(after)} of {cap.describe()}")
        summary = "; ".join(parts) if parts else "the dataset has no cap"
        return True, f"party {self.party!r}: the plan for dataset {dataset!r} fits: {summary}"

    # -- the one write ------------------------------------------------------------------

    def charge(
        self,
        job_id: str,
        round: int,
        kind: str,
        dataset: str,
        event: DpEvent | None,
        adversary: Adversary | str,
        caps: Sequence[Cap],
        exempt: bool = False,
    ) -> ChargeReceipt:
        """Store one release if it fits every cap of ``dataset``; else refuse, store nothing.

        ``caps`` are the dataset's caps (the node's, from ``node.toml``, plus any the
        agreement adds); ``exempt`` is whether ``node.toml`` exempts ``kind``. ``event`` is
        None for a release without a DP mechanism.
        """
        _check_caps(dataset, caps)
        adversary = Adversary(adversary)
        covered = event is not None
        what = (
            f"party {self.party!r}: {_article(kind)} {kind!r} release from dataset "
            f"{dataset!r} (job {job_id}, round {round})"
        )
        if event is None:
            if caps and not exempt:
                raise RefusedError(
                    f"{what} "
                    f"carries no DP mechanism, and the dataset is "
                    f"capped ({'; '.join(cap.describe() for cap in caps)}); node.toml exempts "
                    f"no such kind (add it to [exempt] kinds to release it uncovered)"
                )
            event = NoOpDpEvent()
        try:
            event_json = event_to_json(event)
        except ValueError as exc:
            raise RefusedError(
                f"{what} states an event the ledger cannot account for: {exc}"
            ) from None
        created_at = datetime.now(UTC).isoformat(timespec="microseconds")
        with self._transaction() as conn:
            stored = self._rows(conn, *_of(dataset))
            accountant = accountant_for_events([c.event for c in stored] + [event])
            if not make_accountant(accountant).supports(event):
                # Unknown -> refuse: even an uncapped dataset stores only what a cap added
                # later could account for.
                raise RefusedError(
                    f"{what} "
                    f"states an event that neither accountant "
                    f"supports under add-or-remove-one adjacency: {_short(event)}"
                )
            spends: list[CapSpend] = []
            # A NoOpDpEvent costs nothing against any cap: no epsilon to recompute (the
            # per-release entries of a job charged in full at acceptance are NoOps).
            for cap in caps if not isinstance(event, NoOpDpEvent) else ():
                counted = _counted(stored, cap)
                try:
                    after = composed_epsilon(
                        counted + count_against([(event, adversary)], cap), cap.delta, accountant
                    )
                except InputError as exc:
                    raise RefusedError(f"{what} cannot be accounted for: {exc}") from None
                if not after <= cap.epsilon:
                    before = composed_epsilon(counted, cap.delta, accountant)
                    raise RefusedError(
                        f"{what} "
                        f"would spend epsilon {_fmt(after)} "
                        f"against its cap {cap.describe()} (already spent {_fmt(before)}, "
                        f"accountant {accountant}){why_infinite(after, adversary, cap)}"
                    )
                spends.append(CapSpend(cap, after))
            cursor = conn.execute(
                "INSERT INTO charges (job_id, round, release_kind, dataset, adversary, "
                "event_json, covered, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    round,
                    kind,
                    dataset,
                    adversary.value,
                    event_json,
                    int(covered),
                    created_at,
                ),
            )
            charge_id = cursor.lastrowid
        assert charge_id is not None
        stored_charge = Charge(
            id=charge_id,
            job_id=job_id,
            round=round,
            release_kind=kind,
            dataset=dataset,
            adversary=adversary,
            event_json=event_json,
            covered=covered,
            created_at=created_at,
        )
        return ChargeReceipt(stored_charge, accountant, tuple(spends))


# -- accounting helpers -----------------------------------------------------------------


def _of(dataset: str) -> tuple[str, tuple[object, ...]]:
    return "WHERE dataset = ?", (dataset,)


def _check_caps(dataset: str, caps: Sequence[Cap]) -> None:
    for cap in caps:
        if cap.dataset != dataset:
            raise AccordError(
                f"a cap on dataset {cap.dataset!r} was given for a release from {dataset!r} "
                "(a bug in the caller: pass settings.caps_for(dataset))"
            )


def _counted(stored: Sequence[Charge], cap: Cap) -> list[DpEvent]:
    return count_against([(charge.event, charge.adversary) for charge in stored], cap)


def _short(event: DpEvent) -> str:
    text = repr(event)
    return text if len(text) <= 200 else text[:197] + "..."


def _fmt(epsilon: float) -> str:
    return "inf" if math.isinf(epsilon) else f"{epsilon:.6f}"


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"
