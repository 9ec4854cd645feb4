"""Who masks with whom: the SecAgg+ neighbour graph, drawn by commit-reveal.

Graph (Bell et al. 2020, §3): the Harary graph H(n, k) on a uniformly random cyclic order
of the n parties — each party's neighbours are the k/2 parties before it and the k/2
after it in that order. When the bounds of ``graph_params.py`` admit no k < n - 1 the
graph is complete, as in Bonawitz et al. 2017, and every party also holds a share of its
own secrets (n holders); in a sparse graph a party's holders are its k neighbours.

Commit-reveal (why the coordinator cannot choose anyone's neighbours)
---------------------------------------------------------------------
The probabilistic bounds hold for a *random* order that the adversary (the coordinator
and up to A corrupt parties) cannot influence. The order is therefore derived from
nonces of all parties, committed before and revealed after the set of parties is fixed:

1. **Advertise.** Party u draws a 256-bit nonce r_u from its SecureGenerator and puts
   the commitment c_u = SHA-256(job, round, u, r_u) into its Ed25519-signed
   advertisement. (r_u is uniform and 256 bits long, so c_u hides it.)
2. **Fix the set.** The coordinator broadcasts the advertisements it chose, U1. Each
   party checks every signature against its own roster, computes the set digest d
   (over U1's signed advertisements in roster order) and only then reveals: its signed
   confirmation carries (u, d, r_u). A confirmation is bound to d, so it cannot be
   replayed for another set.
3. **Derive.** The coordinator broadcasts the confirmations. Each party checks every
   signature, that every confirmation names the same d, and that r_v opens c_v; the seed
   is SHA-256(job, round, d, (v, r_v) for every v in U1 in roster order), and the order is
   the ChaCha20-keyed permutation of :class:`SecureGenerator` under that seed.

The coordinator chooses U1 before any honest nonce is known, and any one honest nonce
makes the seed uniform, so the order is uniform whatever U1 it picked. After the reveal
it can change nothing: the seed takes the nonces of *every* party in U1, and a missing
one means no graph (the round aborts with :class:`SecAggTooFewError`). That is the price
of a sparse graph: a party that advertises and then does not confirm aborts the round.
Were the seed taken over the nonces that arrived, the coordinator (or a corrupt party,
which sees honest nonces before deciding whether to reveal its own) could pick among up
to 2^(parties it may leave out) graphs and multiply its chance of a bad one by that
number. A corrupt party can still abort after seeing the graph and force a new round: r
aborted rounds give the adversary r independent graphs, so the chance that any was bad is
at most r * 2^-40 (every aborted round is visible to the parties). In a complete graph
the nonces play no part, so a party that does not confirm is simply left out.

What a lying coordinator can learn
----------------------------------
With honest behaviour, the sum over the survivor list L. A malicious coordinator can
also withhold envelopes and claim that live parties dropped, after seeing the graph, to
cut the honest survivors into pieces that no unknown pairwise mask joins, and learn each
piece's sum. To unmask a member w of a piece it needs t shares of b_w from holders that
w's signed attestation says it masked with; the honest ones among them are joined to w by
a mask and so lie in w's piece, and at most t1 are corrupt
(``GraphParams.max_corrupt_neighbours``). Hence every sum it can learn covers at least
t - t1 + 1 honest inputs in a sparse graph (w and t - t1 honest neighbours), and at least
t - A in a complete graph (where w holds a share of its own b), e.g. 49 of 100 parties
with A = 5. Force the complete graph (``SecAggParams.allow_sparse=False``) where a
sparse graph's bound is too small.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from accord.protect.encoding import digest
from accord.protect.graph_params import GraphParams
from accord.secure_random import SecureGenerator

__all__ = [
    "NONCE_BYTES",
    "NeighbourGraph",
    "build_graph",
    "graph_seed",
    "nonce_commitment",
]

NONCE_BYTES = 32


def nonce_commitment(job_id: str, round_: int, party: str, nonce: bytes) -> bytes:
    """c_u = SHA-256(job, round, u, r_u): binding, and hiding because r_u is 256 random bits."""
    return digest("nonce-commitment", job_id, round_, party, nonce)


def graph_seed(
    job_id: str, round_: int, set_digest: bytes, nonces: Sequence[tuple[str, bytes]]
) -> bytes:
    """The seed of the random order: SHA-256(job, round, d, every (party, nonce) in order)."""
    fields: list[bytes | str] = []
    for party, nonce in nonces:
        fields += [party, nonce]
    return digest("graph-seed", job_id, round_, set_digest, *fields)


@dataclass(frozen=True)
class NeighbourGraph:
    """The graph of one round: who masks with whom and who holds whose shares."""

    params: GraphParams
    members: tuple[str, ...]
    """The graph's parties, in roster order."""
    ring: tuple[str, ...]
    """The random cyclic order (sparse); equal to ``members`` when complete."""
    adjacency: Mapping[str, frozenset[str]]

    @property
    def threshold(self) -> int:
        return self.params.threshold

    @property
    def complete(self) -> bool:
        return self.params.complete

    def neighbours(self, party: str) -> frozenset[str]:
        """The parties ``party`` masks with (never itself)."""
        return self.adjacency[party]

    def holders(self, party: str) -> frozenset[str]:
        """The parties that hold shares of ``party``'s secrets (itself too when complete)."""
        if self.params.complete:
            return self.adjacency[party] | {party}
        return self.adjacency[party]


def build_graph(params: GraphParams, members: Sequence[str], seed: bytes) -> NeighbourGraph:
    """The complete graph on ``members``, or H(n, k) on the order drawn from ``seed``."""
    members = tuple(members)
    if params.complete:
        everyone = frozenset(members)
        adjacency = {p: everyone - {p} for p in members}
        return NeighbourGraph(params, members, members, adjacency)
    if len(members) != params.n:
        raise ValueError("a sparse graph needs every advertised party")
    # A keyed, deterministic permutation: every party derives the same order from the seed.
    order = SecureGenerator(seed).permutation(len(members))
    ring = tuple(members[int(i)] for i in order)
    n, half = len(ring), params.degree // 2
    adjacency = {}
    for position, party in enumerate(ring):
        adjacency[party] = frozenset(
            ring[(position + step) % n]
            for offset in range(1, half + 1)
            for step in (offset, -offset)
        )
    return NeighbourGraph(params, members, ring, adjacency)
