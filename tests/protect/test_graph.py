"""Graph parameters (Bell et al. 2020 bounds), the Harary graph, and the commit-reveal seed."""

from __future__ import annotations

import itertools
import math
import os
from collections import deque

import pytest
from scipy.stats import hypergeom

from accord.errors import SecAggParameterError, SecAggTooFewError
from accord.protect.graph import build_graph, graph_seed, nonce_commitment
from accord.protect.graph_params import (
    SECURITY_BITS,
    GraphParams,
    _upper_quantile,
    choose_graph_params,
    corrupt_count,
    dropout_count,
)


def params(
    n: int,
    gamma: float,
    delta: float,
    *,
    roster_size: int | None = None,
    min_parties: int = 2,
    allow_sparse: bool = True,
    strict: bool = True,
) -> GraphParams:
    return choose_graph_params(
        n,
        roster_size=n if roster_size is None else roster_size,
        gamma=gamma,
        delta=delta,
        min_parties=min_parties,
        allow_sparse=allow_sparse,
        strict=strict,
    )


@pytest.mark.parametrize(
    ("n", "gamma", "delta", "k", "t", "t1", "m"),
    [
        (20, 0.1, 0.1, 8, 6, 2, 12),
        (60, 0.05, 0.05, 10, 7, 3, 32),
        (100, 0.05, 0.05, 16, 11, 5, 53),
        (100, 0.1, 0.1, 32, 22, 10, 56),
        (1000, 0.05, 0.05, 52, 37, 20, 526),
        (10000, 0.05, 0.05, 62, 44, 24, 5251),
    ],
)
def test_sparse_parameters_are_pinned(
    n: int, gamma: float, delta: float, k: int, t: int, t1: int, m: int
) -> None:
    p = params(n, gamma, delta)
    assert (p.complete, p.degree, p.threshold, p.max_corrupt_neighbours, p.min_signatures) == (
        False,
        k,
        t,
        t1,
        m,
    )
    assert 2 * p.threshold > p.degree + p.max_corrupt_neighbours  # semi-malicious threshold


@pytest.mark.parametrize(
    ("n", "gamma", "delta"), [(60, 0.05, 0.05), (1000, 0.05, 0.05), (300, 0.02, 0.1)]
)
def test_bounds_agree_with_scipy(n: int, gamma: float, delta: float) -> None:
    """Recheck conditions 2-4 of graph_params.py in floating point, independently."""
    p = params(n, gamma, delta)
    A, D, k, t, t1 = p.corrupt, p.dropouts, p.degree, p.threshold, p.max_corrupt_neighbours
    corrupt_neighbours = hypergeom(n - 1, A, k)
    assert n * corrupt_neighbours.sf(t1) <= 2.0 ** -(SECURITY_BITS + 1) * (1 + 1e-9)
    if t1 > 0:  # t1 is the least such value
        assert n * corrupt_neighbours.sf(t1 - 1) > 2.0 ** -(SECURITY_BITS + 1)
    dropped_neighbours = hypergeom(n - 1, D, k)
    assert n * dropped_neighbours.sf(k - t) <= 2.0**-20 * (1 + 1e-9)
    bad = A + D
    if bad >= k:
        log_p = (
            math.log(n * (n - k - 1) / 2)
            + math.lgamma(bad + 1)
            - math.lgamma(bad - k + 1)
            - math.lgamma(n + 1)
            + math.lgamma(n - k + 1)
        )
        assert log_p < -(SECURITY_BITS + 1) * math.log(2)


def test_upper_quantile_matches_brute_force() -> None:
    for population, marked, draws, inverse in [(20, 5, 6, 10), (59, 3, 10, 1000), (30, 0, 4, 7)]:
        total = math.comb(population, draws)
        pmf = [
            math.comb(marked, i) * math.comb(population - marked, draws - i)
            for i in range(draws + 1)
        ]
        expected = min(j for j in range(draws + 1) if sum(pmf[j + 1 :]) * inverse <= total)
        assert _upper_quantile(population, marked, draws, inverse) == expected


def test_complete_graph_when_no_sparse_degree_fits() -> None:
    p = params(5, 0.0, 0.2)
    assert (p.complete, p.degree, p.threshold, p.min_signatures) == (True, 4, 4, 3)
    forced = params(10, 0.1, 0.1, allow_sparse=False)
    # t = max(min_parties, floor((n + 1 + A)/2) + 1) >= Bonawitz's floor(n/2) + 1
    assert (forced.complete, forced.threshold, forced.min_signatures) == (True, 7, 6)
    assert forced.threshold >= 10 // 2 + 1
    assert params(8, 0.0, 0.25, min_parties=5, allow_sparse=False).threshold == 5
    assert params(6, 0.0, 0.0, min_parties=6, allow_sparse=False).threshold == 6


def test_infeasible_settings_are_refused_before_the_round() -> None:
    with pytest.raises(SecAggParameterError, match="tolerates 1 dropouts"):
        params(5, 0.0, 0.4)
    with pytest.raises(SecAggParameterError, match="3 signatures"):
        params(4, 0.0, 0.5)
    with pytest.raises(SecAggParameterError, match="signatures"):
        params(100, 0.4, 0.4)
    with pytest.raises(SecAggParameterError, match="at least 3"):
        params(2, 0.0, 0.0)
    # In a running round with fewer parties, only security is checked.
    relaxed = params(4, 0.0, 0.5, strict=False)
    assert relaxed.complete and relaxed.threshold == 3
    with pytest.raises(SecAggTooFewError):
        params(4, 0.0, 0.0, min_parties=5, strict=False)


def test_corrupt_count_uses_the_roster_and_exact_decimals() -> None:
    assert corrupt_count(0.3, 10) == 3  # 0.3 * 10 is 2.9999999999999996 in floats
    assert dropout_count(0.07, 100) == 7
    # A coordinator that leaves honest parties out does not lower A.
    p = params(30, 0.1, 0.0, roster_size=100)
    assert p.corrupt == 10


def _connected(adjacency: dict[str, frozenset[str]], removed: set[str]) -> bool:
    alive = [v for v in adjacency if v not in removed]
    seen, queue = {alive[0]}, deque([alive[0]])
    while queue:
        for w in adjacency[queue.popleft()] - removed - seen:
            seen.add(w)
            queue.append(w)
    return len(seen) == len(alive)


def test_harary_graph_is_k_regular_symmetric_and_k_connected() -> None:
    p = GraphParams(12, 4, 3, 7, False, 0, 1, 0)
    members = [f"p{i}" for i in range(12)]
    graph = build_graph(p, members, os.urandom(32))
    for v in members:
        assert len(graph.neighbours(v)) == 4 and v not in graph.neighbours(v)
        assert graph.holders(v) == graph.neighbours(v)
        assert all(v in graph.neighbours(w) for w in graph.neighbours(v))
    # Removing any k - 1 = 3 parties leaves it connected (Harary: k-connected).
    for removed in itertools.combinations(members, 3):
        assert _connected(dict(graph.adjacency), set(removed))
    # Two runs of k/2 consecutive parties disconnect it.
    ring = graph.ring
    assert not _connected(dict(graph.adjacency), {ring[0], ring[1], ring[6], ring[7]})


def test_complete_graph_holders_include_the_party_itself() -> None:
    p = GraphParams(4, 3, 3, 3, True, 0, 0, 0)
    graph = build_graph(p, ["a", "b", "c", "d"], b"")
    assert graph.neighbours("a") == {"b", "c", "d"}
    assert graph.holders("a") == {"a", "b", "c", "d"}


def test_order_depends_on_every_nonce() -> None:
    p = GraphParams(30, 4, 3, 16, False, 0, 1, 0)
    members = [f"p{i:02d}" for i in range(30)]
    nonces = [(m, os.urandom(32)) for m in members]
    digest = os.urandom(32)
    base = build_graph(p, members, graph_seed("job", 0, digest, nonces))
    assert base == build_graph(p, members, graph_seed("job", 0, digest, nonces))
    for i in (0, 17, 29):
        changed = list(nonces)
        changed[i] = (members[i], os.urandom(32))
        assert build_graph(p, members, graph_seed("job", 0, digest, changed)).ring != base.ring
    assert build_graph(p, members, graph_seed("job", 0, os.urandom(32), nonces)).ring != base.ring
    assert build_graph(p, members, graph_seed("job", 1, digest, nonces)).ring != base.ring


def test_nonce_commitment_binds_party_job_and_round() -> None:
    nonce = os.urandom(32)
    c = nonce_commitment("job", 0, "p1", nonce)
    assert len(c) == 32 and nonce not in c
    assert c != nonce_commitment("job", 0, "p2", nonce)
    assert c != nonce_commitment("job", 1, "p1", nonce)
    assert c != nonce_commitment("job", 0, "p1", os.urandom(32))
