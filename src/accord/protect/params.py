"""The settings of one secure-aggregation round, shared by every party and the coordinator."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from accord.errors import SecAggParameterError
from accord.protect.graph_params import GraphParams, choose_graph_params
from accord.protect.quantize import MAX_RING_BITS

__all__ = ["SecAggParams"]


@dataclass(frozen=True)
class SecAggParams:
    """What every party and the coordinator agree on before a round (from the job).

    The roster's *order* gives each party its index (share x-coordinate = index + 1, and
    the sign of pairwise masks). The roster's public keys are not here: each node gets them
    from its own owner, never from the coordinator.

    Construction checks that the settings can give the stated security and dropout
    tolerance for the whole roster (:class:`SecAggParameterError` otherwise), so that a
    job is refused before it runs.
    """

    job_id: str
    round: int
    roster: tuple[str, ...]
    min_parties: int
    """Fewest parties whose inputs a released sum may cover."""
    gamma: float
    """Largest fraction of the roster that may be corrupt (colluding with the coordinator)."""
    delta: float
    """Fraction of the round's parties that may drop out while the round still succeeds."""
    ring_bits: int
    """k of the ring Z_{2^k} (see ``quantize.choose_ring_bits``)."""
    vector_length: int
    allow_sparse: bool = True
    """False forces the complete graph of Bonawitz et al. (see ``graph.py``)."""

    def __post_init__(self) -> None:
        if not isinstance(self.job_id, str) or not self.job_id:
            raise SecAggParameterError("job_id must be a non-empty string")
        if isinstance(self.round, bool) or not isinstance(self.round, int) or self.round < 0:
            raise SecAggParameterError(f"round must be a non-negative int, got {self.round!r}")
        roster = tuple(self.roster)
        object.__setattr__(self, "roster", roster)
        if any(not isinstance(p, str) or not p for p in roster) or len(set(roster)) != len(roster):
            raise SecAggParameterError("the roster must list distinct, non-empty party names")
        if not 1 <= self.min_parties <= len(roster):
            raise SecAggParameterError(
                f"min_parties must be in [1, {len(roster)}], got {self.min_parties}"
            )
        if not 2 <= self.ring_bits <= MAX_RING_BITS:
            raise SecAggParameterError(f"ring_bits must be in [2, {MAX_RING_BITS}]")
        if self.vector_length < 1:
            raise SecAggParameterError("vector_length must be positive")
        # Raises SecAggParameterError when the roster cannot meet gamma/delta/min_parties.
        self.graph_params_for(len(roster), strict=True)

    @cached_property
    def _index(self) -> dict[str, int]:
        return {party: i for i, party in enumerate(self.roster)}

    def index(self, party: str) -> int:
        """The party's roster index (KeyError for a party not on the roster)."""
        return self._index[party]

    def share_x(self, party: str) -> int:
        """The x-coordinate of the party's Shamir shares: roster index + 1."""
        return self._index[party] + 1

    def in_roster_order(self, parties: set[str] | frozenset[str]) -> tuple[str, ...]:
        return tuple(sorted(parties, key=self._index.__getitem__))

    def graph_params_for(self, n: int, *, strict: bool = False) -> GraphParams:
        """k, t and m for a round in which ``n`` parties advertised."""
        return choose_graph_params(
            n,
            roster_size=len(self.roster),
            gamma=self.gamma,
            delta=self.delta,
            min_parties=self.min_parties,
            allow_sparse=self.allow_sparse,
            strict=strict,
        )
