"""Epsilon of DP events, and the noise multiplier that buys a target epsilon.

All composition is Google's ``dp-accounting``; this module only chooses and configures
its accountants, and searches over the noise multiplier for :func:`calibrate_noise`.

Two accountants, both under add-or-remove-one-record adjacency (the one relation Accord
uses everywhere):

``"pld"`` (the default)
    ``dp_accounting.pld.PLDAccountant`` with ``value_discretization_interval`` =
    :data:`PLD_DISCRETIZATION` (1e-4, dp-accounting's own default). The privacy loss is
    rounded *up* to that grid (pessimistic estimate), so the reported epsilon is an upper
    bound: it is never below the exact epsilon and, in our checks (DP-SGD with 1 to 100,000
    steps), it exceeds the value on a ten times finer grid by 0.4% at most, usually by less
    than 1e-5 relative. A finer grid costs time in proportion; a coarser one over-reports
    epsilon by up to a few percent after thousands of steps. The tighter of the two; it
    supports the Gaussian, Laplace and discrete Laplace mechanisms, Poisson sampling of
    Gaussian and Laplace, and composition.
``"rdp"``
    ``dp_accounting.rdp.RdpAccountant`` over :data:`RDP_ORDERS` with the Balle et al. 2020
    conversion to (epsilon, delta), which is also Opacus's. The orders contain Opacus 1.6's
    ``RDPAccountant.DEFAULT_ALPHAS``, so on DP-SGD it reports Opacus's epsilon (within
    0.2% where epsilon is at most 20) or a tighter one when the best order lies outside
    Opacus's range. Looser than PLD, but it supports zCDP events (``ZCDpEvent``: OpenDP's
    Gaussian measurements are zCDP) and repeat-and-select, which PLD does not. Under our
    adjacency neither supports sampling with or without replacement (both need
    replace-one), and RDP does not support discrete Laplace or Poisson-sampled Laplace.

``dp_accounting`` is imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from decimal import ROUND_CEILING, Decimal
from typing import TYPE_CHECKING, Any, Literal, get_args

from accord.errors import InputError

# dp-accounting's RDP logs a warning for each order whose series does not converge and then
# leaves that order out, which can only loosen (never understate) epsilon: noise for a user,
# dozens of lines during a calibration or a report.
logging.getLogger("absl").setLevel(logging.ERROR)

if TYPE_CHECKING:
    from dp_accounting import DpEvent, PrivacyAccountant

Accountant = Literal["pld", "rdp"]
ACCOUNTANTS: tuple[Accountant, ...] = get_args(Accountant)

PLD_DISCRETIZATION = 1e-4
"""``value_discretization_interval`` of the PLD accountant (see the module notes)."""

RDP_ORDERS: tuple[float, ...] = (
    tuple(1 + x / 10.0 for x in range(1, 100)) + tuple(range(11, 64)) + (128, 256, 512, 1024)
)
"""RDP orders: Opacus 1.6's grid (1.1 to 10.9 by 0.1, then 12 to 63) plus 11 and a few
high orders for strong privacy; equal to dp-accounting's ``DEFAULT_RDP_ORDERS``."""

SIGNIFICANT_DIGITS = 7
"""A calibrated noise multiplier is rounded up to this many significant digits."""

# The noise multipliers calibrate_noise searches between. Below 1/16 epsilon is in the
# hundreds for any DP-SGD run, and the PLD of such a mechanism is large and slow to build.
CALIBRATION_SIGMA_MIN = 1.0 / 16
CALIBRATION_SIGMA_MAX = float(2**20)

# calibrate_noise with "pld" first locates the root on this coarser grid (ten times faster),
# then finishes on PLD_DISCRETIZATION; the answer only ever depends on the latter.
_PLD_SEARCH_DISCRETIZATION = 1e-3


# --- events ---------------------------------------------------------------------------------


def dpsgd_event(noise_multiplier: float, sample_rate: float, steps: int) -> DpEvent:
    """The DP event of DP-SGD: ``steps`` Gaussian steps, each on a Poisson sample.

    ``SelfComposedDpEvent(PoissonSampledDpEvent(q, GaussianDpEvent(sigma)), T)``; with
    ``q == 1`` (every record in every step) the sampling wrapper is left out, and with a
    single step the composition is. Bad values raise :class:`InputError`.
    """
    import dp_accounting

    _check_positive_finite("noise multiplier", noise_multiplier)
    _check_sample_rate(sample_rate)
    _check_steps(steps)
    step: DpEvent = dp_accounting.GaussianDpEvent(float(noise_multiplier))
    if sample_rate < 1:
        step = dp_accounting.PoissonSampledDpEvent(float(sample_rate), step)
    return step if steps == 1 else dp_accounting.SelfComposedDpEvent(step, int(steps))


# --- accountants ----------------------------------------------------------------------------


def make_accountant(
    accountant: Accountant = "pld", *, pld_discretization: float = PLD_DISCRETIZATION
) -> PrivacyAccountant:
    """A fresh ``dp-accounting`` accountant, add-or-remove-one adjacency."""
    from dp_accounting import NeighboringRelation
    from dp_accounting.pld import PLDAccountant
    from dp_accounting.rdp import RdpAccountant

    relation = NeighboringRelation.ADD_OR_REMOVE_ONE
    if accountant == "pld":
        return PLDAccountant(relation, value_discretization_interval=pld_discretization)
    if accountant == "rdp":
        return RdpAccountant(list(RDP_ORDERS), relation)
    raise InputError(f"unknown accountant {accountant!r}; choose one of {', '.join(ACCOUNTANTS)}")


def epsilon(event: DpEvent, delta: float, accountant: Accountant = "pld") -> float:
    """Epsilon of ``event`` at ``delta`` (``0 <= delta < 1``) by ``accountant``.

    ``NonPrivateDpEvent`` anywhere in it gives ``inf``; ``NoOpDpEvent`` costs 0. An event
    the accountant does not support raises :class:`InputError`.
    """
    return epsilon_of_events([event], delta, accountant)


def epsilon_of_events(
    events: Sequence[DpEvent], delta: float, accountant: Accountant = "pld"
) -> float:
    """Epsilon at ``delta`` of all ``events`` composed (a ledger's spend).

    Equal events are grouped first (composition is order-free), so a ledger of a thousand
    identical rounds costs one self-composition instead of a thousand compositions.
    """
    return _epsilon(events, delta, accountant, PLD_DISCRETIZATION)


def supports_pld(events: Sequence[DpEvent]) -> bool:
    """Whether the PLD accountant supports every event (``UnsupportedDpEvent``: no)."""
    pld = make_accountant("pld")
    return all(pld.supports(event) for event in events)


def best_accountant(events: Sequence[DpEvent]) -> Accountant:
    """``"pld"`` where PLD supports every event, else ``"rdp"``."""
    return "pld" if supports_pld(events) else "rdp"


def _epsilon(
    events: Sequence[DpEvent], delta: float, accountant: Accountant, pld_discretization: float
) -> float:
    from dp_accounting import UnsupportedEventError

    if isinstance(delta, bool) or not (0 <= delta < 1):
        raise InputError(f"delta must be at least 0 and below 1 (got {delta!r})")
    composed = _grouped(events)
    # The repr names every field of every event, so equal keys are equal compositions.
    key = (repr(composed), float(delta), accountant, pld_discretization)
    cached = _EPSILON_CACHE.get(key)
    if cached is not None:
        _EPSILON_CACHE.move_to_end(key)
        return cached
    acc = make_accountant(accountant, pld_discretization=pld_discretization)
    try:
        acc.compose(composed)
    except UnsupportedEventError as exc:
        other: Accountant = "rdp" if accountant == "pld" else "pld"
        hint = f"; the {other} accountant does" if make_accountant(other).supports(composed) else ""
        raise InputError(f"the {accountant} accountant does not support {exc}{hint}") from None
    value = float(acc.get_epsilon(delta))
    _EPSILON_CACHE[key] = value
    if len(_EPSILON_CACHE) > _EPSILON_CACHE_SIZE:
        _EPSILON_CACHE.popitem(last=False)
    return value


# A PLD epsilon takes up to seconds; in simulation every node of a job asks for the same
# ones (the same events at the same delta), and a report asks again for each party.
_EPSILON_CACHE_SIZE = 512
_EPSILON_CACHE: OrderedDict[tuple[str, float, str, float], float] = OrderedDict()


def _grouped(events: Sequence[DpEvent]) -> DpEvent:
    """One ``ComposedDpEvent`` of each distinct leaf event, self-composed by its count.

    ``ComposedDpEvent`` and ``SelfComposedDpEvent`` are unfolded into their leaves (as both
    accountants do internally) and equal leaves (equal ``repr``: every field equal) are
    counted together. A leaf composed zero times is left out: it never ran.
    """
    import dp_accounting

    counts: dict[str, int] = {}
    leaves: dict[str, DpEvent] = {}

    def walk(event: Any, times: int) -> None:
        if isinstance(event, dp_accounting.SelfComposedDpEvent):
            walk(event.event, times * event.count)
        elif isinstance(event, dp_accounting.ComposedDpEvent):
            for inner in event.events:
                walk(inner, times)
        elif isinstance(event, dp_accounting.NoOpDpEvent):
            return
        else:
            key = repr(event)
            leaves.setdefault(key, event)
            counts[key] = counts.get(key, 0) + times

    for event in events:
        walk(event, 1)
    return dp_accounting.ComposedDpEvent(
        [
            leaf if counts[key] == 1 else dp_accounting.SelfComposedDpEvent(leaf, counts[key])
            for key, leaf in leaves.items()
            if counts[key] > 0
        ]
    )


# --- calibration ----------------------------------------------------------------------------


def calibrate_noise(
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    accountant: Accountant = "pld",
) -> float:
    """The smallest DP-SGD noise multiplier whose epsilon at ``delta`` is at most the target.

    Epsilon decreases as the noise multiplier grows, so the answer is the root of
    ``epsilon(sigma) = target``: bracketed by doubling or halving from 1, then found by
    Brent's method (bisection safeguarded by interpolation, ``scipy.optimize.brentq``) on
    log sigma versus log epsilon. For ``"pld"`` the root is located on a coarse grid first
    and refined with the accountant's own :data:`PLD_DISCRETIZATION`.

    The result is rounded *up* at the :data:`SIGNIFICANT_DIGITS`-th significant digit
    (never down), so that the value as printed still meets the target, and then checked:
    its epsilon, computed exactly as :func:`epsilon` does, is at most the target (else it
    moves up one unit in the last digit), and one unit lower is not (else it moves down).
    The returned float is exactly the printed decimal (``repr`` gives it back).

    Raises :class:`InputError` for impossible inputs: a target that is not positive and
    finite, ``delta`` outside (0, 1), a sample rate outside (0, 1], fewer than one step,
    or a target that needs a noise multiplier outside
    [:data:`CALIBRATION_SIGMA_MIN`, :data:`CALIBRATION_SIGMA_MAX`].
    """
    _check_positive_finite("target epsilon", target_epsilon)
    if isinstance(delta, bool) or not (0 < delta < 1):
        raise InputError(f"delta must be above 0 and below 1 (got {delta!r})")
    _check_sample_rate(sample_rate)
    _check_steps(steps)
    if accountant not in ACCOUNTANTS:
        make_accountant(accountant)  # raises the InputError naming the choices

    def exact(sigma: float) -> float:  # exactly what epsilon() reports for the answer
        return epsilon(dpsgd_event(sigma, sample_rate, steps), delta, accountant)

    def coarse(sigma: float) -> float:
        event = dpsgd_event(sigma, sample_rate, steps)
        return _epsilon([event], delta, accountant, _PLD_SEARCH_DISCRETIZATION)

    fine = _Cached(exact, target_epsilon)
    rough = _Cached(coarse, target_epsilon) if accountant == "pld" else fine
    low, high = _bracket_from_one(rough, target_epsilon, delta)
    if rough is not fine:
        root = _solve(rough, low, high, xtol=1e-5)
        low, high = _bracket_near(fine, root, target_epsilon, delta)
    root = _solve(fine, low, high, xtol=1e-8)
    return _smallest_on_grid(fine, round_up_significant(root, SIGNIFICANT_DIGITS))


def round_up_significant(value: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """``value`` rounded up (toward +inf) to ``digits`` significant decimal digits."""
    number = Decimal(repr(value))
    if number == 0 or not number.is_finite():
        return value
    unit = Decimal(1).scaleb(number.adjusted() - digits + 1)
    return float(number.quantize(unit, rounding=ROUND_CEILING))


class _Cached:
    """``log(epsilon(sigma) / target)`` with every value remembered (PLD is slow)."""

    def __init__(self, epsilon_at: Callable[[float], float], target: float) -> None:
        self._epsilon_at = epsilon_at
        self._target = target
        self._log_target = math.log(target)
        self.epsilons: dict[float, float] = {}
        self.log_of: dict[float, float] = {}  # log sigma -> sigma, for the bracket's ends

    def epsilon(self, sigma: float) -> float:
        if sigma not in self.epsilons:
            self.epsilons[sigma] = self._epsilon_at(sigma)
        return self.epsilons[sigma]

    def gap(self, log_sigma: float) -> float:
        eps = self.epsilon(self.log_of.get(log_sigma, math.exp(log_sigma)))
        # Clamp so that the root finder always sees finite values.
        return math.log(min(max(eps, 1e-300), 1e300)) - self._log_target

    def meets(self, sigma: float) -> bool:
        """Epsilon at exactly ``sigma`` is within the target."""
        return self.epsilon(sigma) <= self._target


def _bracket_from_one(f: _Cached, target: float, delta: float) -> tuple[float, float]:
    """``(low, high)``: epsilon above the target at ``low``, within it at ``high``."""
    sigma = 1.0
    if f.meets(sigma):
        while f.meets(sigma / 2):
            sigma /= 2
            if sigma / 2 < CALIBRATION_SIGMA_MIN:
                raise InputError(
                    f"target epsilon {target:g} at delta {delta:g} needs a noise multiplier "
                    f"below {CALIBRATION_SIGMA_MIN:g}: too large a target to calibrate "
                    "(such noise protects next to nothing)"
                )
        return sigma / 2, sigma
    while not f.meets(sigma * 2):
        sigma *= 2
        if sigma * 2 > CALIBRATION_SIGMA_MAX:
            raise InputError(
                f"no noise multiplier up to {CALIBRATION_SIGMA_MAX:g} reaches epsilon "
                f"{target:g} at delta {delta:g} with these steps and sample rate"
            )
    return sigma, sigma * 2


def _bracket_near(f: _Cached, guess: float, target: float, delta: float) -> tuple[float, float]:
    """A bracket around ``guess`` (the root on the coarse grid), widened until it holds."""
    step = 1.001
    if f.meets(guess):
        high, low = guess, guess / step
        while f.meets(low):
            high, step = low, step * step
            low /= step
            if low < CALIBRATION_SIGMA_MIN:
                return _bracket_from_one(f, target, delta)
        return low, high
    low, high = guess, guess * step
    while not f.meets(high):
        low, step = high, step * step
        high *= step
        if high > CALIBRATION_SIGMA_MAX:
            return _bracket_from_one(f, target, delta)
    return low, high


def _solve(f: _Cached, low: float, high: float, *, xtol: float) -> float:
    """The root of ``f.gap`` between ``low`` and ``high`` (Brent's method on log sigma)."""
    from scipy.optimize import brentq  # type: ignore[import-untyped]

    a, b = math.log(low), math.log(high)
    f.log_of[a], f.log_of[b] = low, high  # so that the ends reuse their known epsilons
    if f.gap(b) == 0:
        return high
    return math.exp(float(brentq(f.gap, a, b, xtol=xtol)))


def _smallest_on_grid(f: _Cached, sigma: float) -> float:
    """The smallest value on the 7-digit grid near ``sigma`` whose epsilon meets the target.

    Epsilon is monotone in sigma, so at most a step or two is needed; the bound on the
    loop only guards against an accountant that is not monotone at this scale.
    """
    for _ in range(100):
        if not f.meets(sigma):
            sigma = _grid_neighbour(sigma, up=True)
            continue
        lower = _grid_neighbour(sigma, up=False)
        if f.meets(lower):
            sigma = lower
            continue
        return sigma
    raise AssertionError("epsilon is not monotone in the noise multiplier")  # never


def _grid_neighbour(value: float, *, up: bool) -> float:
    """The next value above or below ``value`` on the grid of 7 significant digits."""
    number = Decimal(repr(value))
    unit = Decimal(1).scaleb(number.adjusted() - SIGNIFICANT_DIGITS + 1)
    if up:
        return float(number + unit)
    below = number - unit
    if below.adjusted() < number.adjusted():  # 1.000000 -> 0.9999999, not 0.999999
        below = number - unit / 10
    return float(below)


# --- argument checks ------------------------------------------------------------------------


def _check_positive_finite(name: str, value: float) -> None:
    if isinstance(value, bool) or not (math.isfinite(value) and value > 0):
        raise InputError(f"{name} must be a positive finite number (got {value!r})")


def _check_sample_rate(sample_rate: float) -> None:
    if isinstance(sample_rate, bool) or not (0 < sample_rate <= 1):
        raise InputError(f"sample rate must be above 0 and at most 1 (got {sample_rate!r})")


def _check_steps(steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps must be a whole number, at least 1 (got {steps!r})")
