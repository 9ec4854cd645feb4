"""DP statistics of one column: count, sum, mean, histogram and quantile, per party and combined.

Every statistic is released by one party from its own column, with noise from OpenDP's
samplers (``opendp.measurements.make_laplace``), never numpy's or torch's: OpenDP samples
exactly (a discrete Laplace on integers, and on floats a discrete Laplace on a fine grid
that is then rounded), so the floating-point attack on naive Laplace noise (Mironov 2012)
does not apply, and the noise comes from OpenDP's own secure source.

Adjacency: add or remove one record (the one used by the ledger everywhere).

Bounds are declared, never read from the data: ``lower``/``upper`` are required for sum,
mean, histogram and quantile, and every value is clamped to them before anything else.

Mechanisms, at ``epsilon`` per party:

* count: discrete Laplace of scale ``1/epsilon`` on the row count (sensitivity 1);
  ``DiscreteLaplaceDpEvent(epsilon, 1)``.
* sum: Laplace of scale ``M/epsilon`` on the clamped sum, ``M = max(|lower|, |upper|)``
  (one added or removed record moves the sum by at most M); ``LaplaceDpEvent(1/epsilon)``
  (noise multiplier = scale / sensitivity).
  The clamped sum itself is computed with ``math.fsum`` (correctly rounded); its rounding
  can move the sum by one ulp more than M, which the sensitivity does not include.
* mean: the budget is split in two equal halves: a noisy sum at ``epsilon/2`` and a noisy
  count at ``epsilon/2``; mean = noisy sum / noisy count, clipped to the bounds. Event:
  the composition of the two.
* histogram: ``bins`` equal-width bins over ``[lower, upper]`` (declared grid; the last
  bin is closed on the right); one record changes one count by one (L1 sensitivity 1),
  discrete Laplace of scale ``1/epsilon`` on every bin; ``DiscreteLaplaceDpEvent(epsilon, 1)``.
* quantile: the noisy histogram on the grid; the released value is the grid quantile of the
  noisy histogram: the right edge of the first bin whose cumulative count reaches
  ``quantile * total``.

Combined statistics over all parties are post-processing of the per-party releases (no new
charge): sums of the noisy counts, sums and histograms; the combined mean is the summed
noisy sum over the summed noisy count; the combined quantile is the grid quantile of the
summed noisy histograms (a quantile of the union, never an average of per-party quantiles).

Intervals (1 - alpha), computed from the noise distribution only (public), never from the
data:

* one Laplace / discrete Laplace term: the exact two-sided tail (``scale * ln(1/alpha)``
  for Laplace; the smallest integer ``t`` with ``2 r^(t+1) / (1 + r) <= alpha``,
  ``r = exp(-1/scale)``, for the discrete Laplace);
* a sum of k identical independent noises (a combined count, sum or histogram bin): the
  exact tail of the sum (Laplace: ``b (G1 - G2)`` with Gamma(k) variables, integrated
  numerically; discrete Laplace: the probability mass function convolved k times);
* any other sum of independent noises (the quantile's weighted sums): a Chernoff bound
  ``P(|X| > t) <= 2 exp(-lambda t) E[exp(lambda X)]``, minimised over a grid of lambda (any
  lambda gives a valid bound);
* mean: alpha/2 for the sum and alpha/2 for the count (union bound); the interval is the
  range of ``S/N`` over the two boxes, intersected with the bounds;
* histogram: alpha/bins per bin (Bonferroni), so all bins are covered at once with
  probability at least 1 - alpha;
* quantile: with ``D_j = (1-q) C_j - q (N - C_j)`` (``C_j`` the cumulative count up to bin
  j, N the total), the grid quantile is bin ``j* = min{j : D_j >= 0}``. The noise of
  ``D_j`` is a weighted sum of the bins' noises; a Chernoff bound at alpha/bins per j
  bounds all of them at once, which brackets ``j*``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Self, cast

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator

from accord.errors import InputError
from accord.privacy.noise import (
    Noise,
    discrete_laplace_noise,
    laplace_noise,
    noise_halfwidth,
)

if TYPE_CHECKING:
    from dp_accounting import DpEvent

ADJACENCY = "add or remove one record"

StatisticKind = Literal["count", "sum", "mean", "histogram", "quantile"]

_BOUNDED: frozenset[str] = frozenset({"sum", "mean", "histogram", "quantile"})


class StatisticQuery(BaseModel):
    """One statistic of one column, released by each party at ``epsilon``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: StatisticKind
    column: str | None = None
    lower: float | None = None
    upper: float | None = None
    bins: int = Field(default=20, ge=1, le=100_000)
    quantile: float = Field(default=0.5, ge=0.0, le=1.0)
    epsilon: float = Field(gt=0)
    alpha: float = Field(default=0.05, gt=0, lt=1)

    @model_validator(mode="after")
    def _check(self) -> Self:
        for name in ("lower", "upper", "epsilon"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number")
        if self.lower is not None and self.upper is not None and self.lower >= self.upper:
            raise ValueError(f"lower {self.lower:g} must be below upper {self.upper:g}")
        return self

    def describe(self) -> str:
        """``mean of X1`` — the query in a few words, for messages."""
        what = self.kind if self.kind != "quantile" else f"quantile {self.quantile:g}"
        return f"{what} of {self.column}" if self.column else what

    def require_bounds(self) -> tuple[float, float]:
        """The declared bounds; a missing one is an :class:`InputError` naming the query."""
        if self.lower is None or self.upper is None:
            missing = " and ".join(n for n in ("lower", "upper") if getattr(self, n) is None)
            raise InputError(
                f"query '{self.describe()}': {missing} bound missing; a {self.kind} needs "
                "declared bounds lower and upper (bounds never come from the data)"
            )
        return self.lower, self.upper


@dataclass(frozen=True)
class NoisyStatistic:
    """A released statistic with its (1 - alpha) interval and its privacy statement.

    ``value``/``interval`` are a number and a pair, or (histogram) one per bin. The noisy
    components (``noisy_sum``, ``noisy_count``, ``noisy_histogram``, each with its noise)
    are DP releases themselves and are what combined statistics are built from.
    ``dp_event`` is what the party's ledger charges; None for a combined statistic, which is
    post-processing of the parties' releases (each party paid ``epsilon``).
    """

    query: StatisticQuery
    party: str | None
    value: float | tuple[float, ...]
    interval: tuple[float, float] | tuple[tuple[float, float], ...]
    mechanism: str
    adjacency: str
    epsilon: float
    alpha: float
    dp_event: DpEvent | None
    noisy_sum: float | None = None
    sum_noise: Noise | None = None
    noisy_count: int | None = None
    count_noise: Noise | None = None
    noisy_histogram: tuple[int, ...] | None = None
    histogram_noise: Noise | None = None

    def values(self) -> list[float]:
        """The value as a list: one number, or one per bin."""
        if isinstance(self.value, tuple):
            return [float(v) for v in self.value]
        return [float(self.value)]

    def intervals(self) -> list[tuple[float, float]]:
        """The interval as a list: one pair, or one per bin."""
        if isinstance(self.value, tuple):
            pairs = cast(tuple[tuple[float, float], ...], self.interval)
            return [(float(low), float(high)) for low, high in pairs]
        low, high = cast(tuple[float, float], self.interval)
        return [(float(low), float(high))]


# --- per-party releases --------------------------------------------------------------------


def _clean(values: NDArray[Any]) -> NDArray[np.float64]:
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(x)):
        raise InputError("statistics: the column has missing or non-finite values")
    return x


def grid_histogram(values: NDArray[Any], lower: float, upper: float, bins: int) -> NDArray[Any]:
    """Counts of ``values`` clamped to [lower, upper] in ``bins`` equal-width bins."""
    x = np.clip(_clean(values), lower, upper)
    index = np.floor((x - lower) / (upper - lower) * bins).astype(np.int64)
    index = np.clip(index, 0, bins - 1)
    return np.bincount(index, minlength=bins).astype(np.int64)


def grid_quantile_index(histogram: NDArray[Any], q: float) -> int:
    """``min{j : C_j >= q N}``: the bin of the grid quantile of a (noisy) histogram."""
    h = np.asarray(histogram, dtype=np.float64)
    cum = np.cumsum(h)
    d = (1 - q) * cum - q * (cum[-1] - cum)
    hits = np.nonzero(d >= 0)[0]
    return int(hits[0]) if hits.size else len(h) - 1


def grid_edges(lower: float, upper: float, bins: int) -> NDArray[np.float64]:
    return np.asarray(np.linspace(lower, upper, bins + 1), dtype=np.float64)


def true_statistic(query: StatisticQuery, columns: Sequence[NDArray[Any]]) -> Any:
    """The statistic of the union of ``columns`` clamped to the bounds (tests, benchmarks)."""
    x = np.concatenate([_clean(c) for c in columns]) if columns else np.zeros(0)
    if query.kind == "count":
        return float(x.size)
    lower, upper = query.require_bounds()
    clamped = np.clip(x, lower, upper)
    if query.kind == "sum":
        return float(math.fsum(clamped))
    if query.kind == "mean":
        return float(math.fsum(clamped) / x.size) if x.size else None
    hist = grid_histogram(x, lower, upper, query.bins)
    if query.kind == "histogram":
        return tuple(float(v) for v in hist)
    j = grid_quantile_index(hist, query.quantile)
    return float(grid_edges(lower, upper, query.bins)[j + 1])


def release(
    query: StatisticQuery, values: NDArray[Any], party: str | None = None
) -> NoisyStatistic:
    """One party's DP release of ``query`` on its column ``values``."""
    import dp_accounting

    x = _clean(values)
    eps = query.epsilon
    common: dict[str, Any] = {
        "query": query,
        "party": party,
        "adjacency": ADJACENCY,
        "epsilon": eps,
        "alpha": query.alpha,
    }
    if query.kind == "count":
        noise = Noise("discrete_laplace", 1.0 / eps)
        count = int(discrete_laplace_noise([x.size], noise.scale)[0])
        return _count_statistic(
            common,
            count,
            noise,
            dp_accounting.dp_event.DiscreteLaplaceDpEvent(noise_parameter=eps, sensitivity=1),
        )
    lower, upper = query.require_bounds()
    clamped = np.clip(x, lower, upper)
    bound = max(abs(lower), abs(upper))
    if query.kind == "sum":
        noise = Noise("laplace", bound / eps)
        total = float(laplace_noise([math.fsum(clamped)], noise.scale)[0])
        return _sum_statistic(
            common, total, noise, dp_accounting.dp_event.LaplaceDpEvent(1.0 / eps)
        )
    if query.kind == "mean":
        sum_noise = Noise("laplace", bound / (eps / 2))
        count_noise = Noise("discrete_laplace", 1.0 / (eps / 2))
        total = float(laplace_noise([math.fsum(clamped)], sum_noise.scale)[0])
        count = int(discrete_laplace_noise([x.size], count_noise.scale)[0])
        event = dp_accounting.dp_event.ComposedDpEvent(
            [
                dp_accounting.dp_event.LaplaceDpEvent(2.0 / eps),
                dp_accounting.dp_event.DiscreteLaplaceDpEvent(
                    noise_parameter=eps / 2, sensitivity=1
                ),
            ]
        )
        return _mean_statistic(common, total, sum_noise, count, count_noise, event)
    noise = Noise("discrete_laplace", 1.0 / eps)
    hist = discrete_laplace_noise(list(grid_histogram(x, lower, upper, query.bins)), noise.scale)
    event = dp_accounting.dp_event.DiscreteLaplaceDpEvent(noise_parameter=eps, sensitivity=1)
    return _histogram_statistic(common, tuple(int(v) for v in hist), [noise], event)


def _count_statistic(
    common: dict[str, Any], count: int, noise: Noise, event: DpEvent | None, k: int = 1
) -> NoisyStatistic:
    t = noise_halfwidth([(noise, 1.0, k)], common["alpha"])
    return NoisyStatistic(
        **common,
        value=float(count),
        interval=(count - t, count + t),
        mechanism=f"discrete Laplace (OpenDP), scale {noise.scale:g}, sensitivity 1",
        dp_event=event,
        noisy_count=count,
        count_noise=noise,
    )


def _sum_statistic(
    common: dict[str, Any], total: float, noise: Noise, event: DpEvent | None, k: int = 1
) -> NoisyStatistic:
    t = noise_halfwidth([(noise, 1.0, k)], common["alpha"])
    query: StatisticQuery = common["query"]
    lower, upper = query.require_bounds()
    return NoisyStatistic(
        **common,
        value=total,
        interval=(total - t, total + t),
        mechanism=(
            f"Laplace (OpenDP), scale {noise.scale:g}, sensitivity "
            f"{max(abs(lower), abs(upper)):g} (values clamped to [{lower:g}, {upper:g}])"
        ),
        dp_event=event,
        noisy_sum=total,
        sum_noise=noise,
    )


def _mean_statistic(
    common: dict[str, Any],
    total: float,
    sum_noise: Noise,
    count: int,
    count_noise: Noise,
    event: DpEvent | None,
    k: int = 1,
) -> NoisyStatistic:
    query: StatisticQuery = common["query"]
    lower, upper = query.require_bounds()
    alpha = common["alpha"]
    ts = noise_halfwidth([(sum_noise, 1.0, k)], alpha / 2)
    tc = noise_halfwidth([(count_noise, 1.0, k)], alpha / 2)
    value = min(max(total / max(count, 1), lower), upper)
    n_lo, n_hi = max(count - tc, 1.0), count + tc
    if count + tc < 1:
        interval = (lower, upper)
    else:
        s_lo, s_hi = total - ts, total + ts
        corners = [s / n for s in (s_lo, s_hi) for n in (n_lo, n_hi)]
        interval = (max(min(corners), lower), min(max(corners), upper))
        if interval[0] > interval[1]:  # only when the bounds hold no valid S/N: be safe
            interval = (lower, upper)
    return NoisyStatistic(
        **common,
        value=value,
        interval=interval,
        mechanism=(
            f"noisy sum / noisy count, epsilon split in halves: Laplace (OpenDP) scale "
            f"{sum_noise.scale:g} on the sum clamped to [{lower:g}, {upper:g}], discrete "
            f"Laplace (OpenDP) scale {count_noise.scale:g} on the count"
        ),
        dp_event=event,
        noisy_sum=total,
        sum_noise=sum_noise,
        noisy_count=count,
        count_noise=count_noise,
    )


def _histogram_statistic(
    common: dict[str, Any], hist: tuple[int, ...], noises: Sequence[Noise], event: DpEvent | None
) -> NoisyStatistic:
    """Histogram or quantile from a (summed) noisy histogram; ``noises``: one per party."""
    query: StatisticQuery = common["query"]
    lower, upper = query.require_bounds()
    alpha: float = common["alpha"]
    bins = query.bins
    edges = grid_edges(lower, upper, bins)
    scales = ", ".join(sorted({f"{n.scale:g}" for n in noises}))
    grid = f"{bins} equal-width bins on [{lower:g}, {upper:g}]"
    if query.kind == "histogram":
        t = noise_halfwidth([(n, 1.0, 1) for n in noises], alpha / bins)
        return NoisyStatistic(
            **common,
            value=tuple(float(v) for v in hist),
            interval=tuple((v - t, v + t) for v in hist),
            mechanism=f"discrete Laplace (OpenDP) per bin, scale {scales}, {grid}, L1 "
            "sensitivity 1",
            dp_event=event,
            noisy_histogram=hist,
            histogram_noise=noises[0],
        )
    q = query.quantile
    h = np.asarray(hist, dtype=np.float64)
    cum = np.cumsum(h)
    d = (1 - q) * cum - q * (cum[-1] - cum)
    j_lo = j_hi = None
    for j in range(bins):
        terms = [(n, 1 - q, j + 1) for n in noises] + [(n, q, bins - j - 1) for n in noises]
        t = noise_halfwidth(terms, alpha / bins)
        if j_lo is None and d[j] + t >= 0:
            j_lo = j
        if d[j] - t >= 0:
            j_hi = j
            break
    j_lo = bins - 1 if j_lo is None else j_lo
    j_hi = bins - 1 if j_hi is None else j_hi
    j = grid_quantile_index(h, q)
    return NoisyStatistic(
        **common,
        value=float(edges[j + 1]),
        interval=(float(edges[j_lo + 1]), float(edges[j_hi + 1])),
        mechanism=f"grid quantile of a noisy histogram: discrete Laplace (OpenDP) per bin, "
        f"scale {scales}, {grid}, L1 sensitivity 1",
        dp_event=event,
        noisy_histogram=hist,
        histogram_noise=noises[0],
    )


def combine(releases: Sequence[NoisyStatistic]) -> NoisyStatistic:
    """The statistic over all parties, from their noisy releases (post-processing only)."""
    if not releases:
        raise InputError("statistics: no party released the statistic; nothing to combine")
    query = releases[0].query
    if any(
        r.query.model_dump(exclude={"epsilon"}) != query.model_dump(exclude={"epsilon"})
        for r in releases
    ):
        raise InputError("statistics: the releases to combine answer different queries")
    common: dict[str, Any] = {
        "query": query,
        "party": None,
        "adjacency": ADJACENCY,
        "epsilon": max(r.epsilon for r in releases),
        "alpha": query.alpha,
    }
    if query.kind in ("count", "sum", "mean"):
        counts = [(r.noisy_count, r.count_noise) for r in releases]
        sums = [(r.noisy_sum, r.sum_noise) for r in releases]
    if query.kind == "count":
        noise = _same(c for _, c in counts)
        count = sum(int(c or 0) for c, _ in counts)
        return _count_statistic(common, count, noise, None, k=len(releases))
    if query.kind == "sum":
        noise = _same(s for _, s in sums)
        total = math.fsum(float(s or 0.0) for s, _ in sums)
        return _sum_statistic(common, total, noise, None, k=len(releases))
    if query.kind == "mean":
        total = math.fsum(float(s or 0.0) for s, _ in sums)
        count = sum(int(c or 0) for c, _ in counts)
        return _mean_statistic(
            common,
            total,
            _same(s for _, s in sums),
            count,
            _same(c for _, c in counts),
            None,
            k=len(releases),
        )
    hist = np.sum([np.asarray(r.noisy_histogram, dtype=np.int64) for r in releases], axis=0)
    noises = [r.histogram_noise for r in releases]
    return _histogram_statistic(
        common, tuple(int(v) for v in hist), [n for n in noises if n is not None], None
    )


def _same(noises: Any) -> Noise:
    found = list(noises)
    if any(n is None for n in found) or len(set(found)) != 1:
        raise InputError("statistics: combining releases whose noises differ is not supported")
    noise: Noise = found[0]
    return noise
