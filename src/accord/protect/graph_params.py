"""Degree k and threshold t of the SecAgg+ neighbour graph, and when the graph is complete.

Bell, Bonawitz, Gascón, Lepoint, Raykova 2020, "Secure Single-Server Aggregation with
(Poly)Logarithmic Overhead" (CCS 2020), §3-§4: instead of every party masking with and
sharing its secrets to every other party (Bonawitz et al. 2017), each party does so only
with its k neighbours in a Harary graph H(n, k) whose node labels are a uniformly random
permutation. The statement "for a random labelling, bad events have probability at most
2^-sigma" becomes a computation of k and t from n and the tolerated fractions; the
reference implementation of the paper's authors is Google's
``fcp/secagg/server/graph_parameter_finder.cc``. We recompute the same bounds with exact
integer arithmetic (no floating point, no quantile search): every inequality below is
checked exactly.

Inputs: n parties in the round, at most A corrupt (A = ceil(gamma * roster size), an
absolute number: a coordinator that leaves honest parties out must not raise the corrupt
fraction), at most D = ceil(delta * n) dropouts. sigma = 40 (statistical security),
eta = 20 (correctness: the round fails with probability at most 2^-20 when at most D
parties drop).

For even k from 2 up, the sparse graph is accepted when all hold:

1. Connectivity of the honest survivors (security; Bell et al. §3, Harary graph lemma):
   removing nodes disconnects H(n, k) only if the removed set contains two disjoint runs
   of k/2 cyclically consecutive nodes. There are n(n-k-1)/2 such pairs of runs; each is
   entirely bad (corrupt or dropped, B = A + D of n) with probability
   (B)_k / (n)_k (falling factorials). Union bound: n(n-k-1)/2 * (B)_k/(n)_k < 2^-(sigma+1).
   (Zero when B < k.)
2. Few corrupt neighbours (security): X ~ Hypergeometric(n-1 others, A corrupt, k drawn)
   is the number of corrupt neighbours of an honest party. t1 is the least integer with
   n * P[X > t1] <= 2^-(sigma+1) (union bound over parties). Together with 1 the failure
   probability is at most 2^-sigma.
3. Threshold against a *malicious* coordinator (Bell et al. §4, semi-malicious setting;
   ``SEMI_MALICIOUS_SERVER`` in the reference code): t = max(2, floor((t1 + k)/2) + 1),
   i.e. the least t with 2t > k + t1. Then no split of a party's honest neighbours into
   two groups that are told different stories yields t shares of *both* of its secrets
   (that needs 2t <= k + corrupt neighbours; the signed survivor list below rules such
   splits out too), and every sum a lying coordinator can isolate covers at least
   t - t1 + 1 honest inputs (``graph.py``).
4. Correctness: Y ~ Hypergeometric(n-1, D dropped, k) dropped neighbours;
   n * P[Y > k - t] <= 2^-eta, i.e. every party keeps at least t live neighbours.

The smallest such k wins. If none with k < n - 1 exists, the graph is complete, as in
Bonawitz et al. 2017: every party holds a share of everyone's secrets, its own included
(n holders), with t = max(min_parties, floor((n + 1 + A)/2) + 1). That is at least
Bonawitz's floor(n/2) + 1. 2t > n + A is what stops a malicious coordinator from getting
t shares of both secrets of one party by telling its holders different stories, and from
cutting the honest parties into two groups that each pass the masking check of
``node.py`` (each needs t - A members); the extra 1 also stops a coordinator that
withholds envelopes from one party from unmasking it without relying on the mask
attestations (``consistency.py``).

Survivor list (Bonawitz et al. §6, consistency check): a party reveals shares only for a
survivor list carrying valid signatures of m = max(min_parties, floor((n + A)/2) + 1)
members of that list. Two different lists with m signatures each would need an honest
party that signed both, which it never does.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from math import ceil, comb, perm

from accord.errors import SecAggParameterError, SecAggTooFewError

__all__ = [
    "CORRECTNESS_BITS",
    "SECURITY_BITS",
    "GraphParams",
    "choose_graph_params",
    "corrupt_count",
    "dropout_count",
]

SECURITY_BITS = 40
"""sigma: a bad graph (disconnected honest survivors or t corrupt neighbours) has
probability at most 2^-40 per round."""

CORRECTNESS_BITS = 20
"""eta: with at most delta*n dropouts, the round fails with probability at most 2^-20."""


@dataclass(frozen=True, slots=True)
class GraphParams:
    """The graph of one round: size, degree, Shamir threshold, survivor-list signatures."""

    n: int
    """Parties that advertised (the graph's universe)."""
    degree: int
    """k: neighbours per party (n - 1 when complete)."""
    threshold: int
    """t: shares needed to reconstruct a secret."""
    min_signatures: int
    """m: signatures a survivor list needs before anyone reveals a share."""
    complete: bool
    """Complete graph (every party holds shares of everyone's secrets, its own included)."""
    corrupt: int
    """A: the corrupt parties the bounds allow for."""
    dropouts: int
    """D: the dropouts the bounds allow for."""
    max_corrupt_neighbours: int
    """t1: a party has more corrupt share holders with probability at most 2^-41 (A when
    complete, where it is certain)."""

    @property
    def holders_per_party(self) -> int:
        """How many parties hold shares of one party's secrets."""
        return self.n if self.complete else self.degree


def corrupt_count(gamma: float, roster_size: int) -> int:
    """A = ceil(gamma * roster size), on the decimal value of gamma (no float drift).

    Rounded up: gamma = 0.1 of 4 parties means one corrupt party, not none (rounding down
    would let a small consortium's parameters assume that nobody colludes)."""
    return ceil(Fraction(repr(float(gamma))) * roster_size)


def dropout_count(delta: float, n: int) -> int:
    """D = ceil(delta * n), on the decimal value of delta: the round survives at least
    a delta fraction of dropouts, rounded up."""
    return ceil(Fraction(repr(float(delta))) * n)


def choose_graph_params(
    n: int,
    *,
    roster_size: int,
    gamma: float,
    delta: float,
    min_parties: int,
    allow_sparse: bool = True,
    strict: bool = True,
) -> GraphParams:
    """The parameters for a round in which ``n`` parties advertised.

    ``strict`` (when checking a job's settings): raise :class:`SecAggParameterError` when no
    parameters give both the security and the dropout tolerance asked for. Not strict (in a
    running round, where fewer parties may have come): security is never relaxed, but a
    round that tolerates fewer dropouts than asked for may go on (it fails cleanly if more
    drop); :class:`SecAggTooFewError` when even no dropout at all would do.
    ``allow_sparse=False`` forces the complete graph (the stronger guarantee against a
    coordinator that lies about dropouts: see ``graph.py``).
    """
    if not 0.0 <= gamma < 1.0 or not 0.0 <= delta < 1.0:
        raise SecAggParameterError(f"gamma and delta must be in [0, 1), got {gamma}, {delta}")
    if n < 3:
        raise SecAggParameterError(
            f"secure aggregation needs at least 3 parties ({n} given): with two, each party "
            "learns the other's input from the sum"
        )
    corrupt = min(corrupt_count(gamma, roster_size), n - 1)
    dropouts = dropout_count(delta, n)
    return _choose(n, corrupt, dropouts, min_parties, allow_sparse, strict)


@lru_cache(maxsize=128)
def _choose(
    n: int, corrupt: int, dropouts: int, min_parties: int, allow_sparse: bool, strict: bool
) -> GraphParams:
    min_signatures = max(min_parties, (n + corrupt) // 2 + 1)
    if not strict:
        if min_signatures > n:
            raise SecAggTooFewError(
                f"only {n} parties advertised; the survivor list needs {min_signatures} "
                "signatures (min_parties, or a majority plus the corrupt parties)"
            )
    elif n - dropouts < min_signatures:
        raise SecAggParameterError(
            f"with {n} parties, {corrupt} possibly corrupt and {dropouts} dropouts tolerated, "
            f"a survivor list could not gather the {min_signatures} signatures it needs "
            "(more than half of the parties plus the corrupt ones, and at least min_parties): "
            "lower delta or gamma, or lower min_parties"
        )
    for degree in range(2, n - 1, 2) if allow_sparse else ():
        found = _sparse_threshold(n, degree, corrupt, dropouts)
        if found is not None:
            t, t1 = found
            return GraphParams(n, degree, t, min_signatures, False, corrupt, dropouts, t1)
    threshold = max(min_parties, (n + 1 + corrupt) // 2 + 1)
    if not strict:
        if threshold > n:
            raise SecAggTooFewError(
                f"only {n} parties advertised; unmasking would need {threshold} shares "
                f"of {n} holders"
            )
    elif threshold > n - dropouts:
        raise SecAggParameterError(
            f"with {n} parties and {corrupt} possibly corrupt, a complete graph needs "
            f"{threshold} of {n} shares to unmask, so it tolerates {max(n - threshold, 0)} "
            f"dropouts, fewer than the {dropouts} asked for: lower delta, gamma or "
            "min_parties, or add parties"
        )
    return GraphParams(n, n - 1, threshold, min_signatures, True, corrupt, dropouts, corrupt)


def _sparse_threshold(n: int, k: int, corrupt: int, dropouts: int) -> tuple[int, int] | None:
    """(t, t1) for the Harary graph H(n, k), or None when k does not meet conditions 1-4."""
    # 1. Honest survivors stay connected: n(n-k-1)/2 * (B)_k/(n)_k < 2^-(sigma+1).
    bad = corrupt + dropouts
    if bad >= k and n * (n - k - 1) * perm(bad, k) * 2**SECURITY_BITS >= perm(n, k):
        return None
    # 2. t1: least integer with n * P[X > t1] <= 2^-(sigma+1), X ~ HG(n-1, A, k).
    t1 = _upper_quantile(n - 1, corrupt, k, n * 2 ** (SECURITY_BITS + 1))
    # 3. Semi-malicious threshold: least t with 2t > k + t1, and at least 2.
    t = max(2, (t1 + k) // 2 + 1)
    if t > k:
        return None
    # 4. Correctness: n * P[dropped neighbours > k - t] <= 2^-eta.
    if _tail_exceeds(n - 1, dropouts, k, k - t, n * 2**CORRECTNESS_BITS):
        return None
    return t, t1


def _upper_quantile(population: int, marked: int, draws: int, inverse_bound: int) -> int:
    """Least j with P[X > j] <= 1/inverse_bound for X ~ Hypergeometric(population, marked,
    draws), exactly: sum_{i > j} C(marked, i) C(population - marked, draws - i) times
    inverse_bound <= C(population, draws)."""
    total = comb(population, draws)
    tail = 0  # numerator of P[X > j], built from the top down
    top = min(marked, draws)
    for j in range(top, -1, -1):
        # tail now holds P[X > j]'s numerator.
        if tail * inverse_bound > total:
            return j + 1
        tail += comb(marked, j) * comb(population - marked, draws - j)
    return 0


def _tail_exceeds(population: int, marked: int, draws: int, limit: int, inverse_bound: int) -> bool:
    """Whether P[X > limit] > 1/inverse_bound for X ~ Hypergeometric(population, marked, draws)."""
    tail = sum(
        comb(marked, i) * comb(population - marked, draws - i)
        for i in range(max(limit + 1, 0), min(marked, draws) + 1)
    )
    return tail * inverse_bound > comb(population, draws)
