"""``accord privacy``: the epsilon and noise calculators for DP-SGD.

They are calculators, not releases: they take no adversary and charge no budget. The
first line of each is the number, at least 7 significant digits in plain decimal
notation; the second says how it was computed.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from accord.privacy.accounting import Accountant

ACCOUNTANT_CHOICE = click.Choice(["pld", "rdp"])
accountant_option = click.option(
    "--accountant",
    type=ACCOUNTANT_CHOICE,
    default="pld",
    show_default=True,
    help="pld: privacy loss distributions (tightest); rdp: Renyi DP (Opacus's accountant).",
)
delta_option = click.option("--delta", type=float, required=True, help="Target delta.")
sample_rate_option = click.option(
    "--sample-rate",
    type=float,
    required=True,
    help="Poisson sampling rate q of each step (expected batch size / records).",
)
steps_option = click.option("--steps", type=int, required=True, help="Number of steps T.")


def plain_decimal(value: float, digits: int = 7) -> str:
    """``value`` with ``digits`` significant digits, rounded up, never in exponent notation.

    Rounding up (toward +inf) means a printed epsilon never understates the privacy loss
    and a printed noise multiplier is never below the computed one. ``inf`` stays ``inf``.
    """
    number = Decimal(repr(float(value)))
    if not number.is_finite():
        return str(value)
    if number == 0:
        return format(Decimal(0).quantize(Decimal(1).scaleb(1 - digits)), "f")
    unit = Decimal(1).scaleb(number.adjusted() - digits + 1)
    rounded = number.quantize(unit, rounding=ROUND_CEILING)
    if rounded.adjusted() > number.adjusted():  # 9.9999999 -> 10.00000: one digit too many
        rounded = rounded.quantize(unit.scaleb(1), rounding=ROUND_CEILING)
    return format(rounded, "f")


def _accountant(name: str) -> Accountant:
    return "rdp" if name == "rdp" else "pld"  # click.Choice allows only these two


def _how(accountant: str, delta: float) -> str:
    from accord.privacy.accounting import PLD_DISCRETIZATION

    detail = (
        f"privacy loss distributions, discretization {PLD_DISCRETIZATION:g}"
        if accountant == "pld"
        else "Renyi DP"
    )
    return (
        f"at delta {delta:g} by the {accountant} accountant ({detail}; "
        "add-or-remove-one-record adjacency)"
    )


@click.group("privacy", help="Privacy calculators: epsilon of DP-SGD, noise for a target.")
def privacy_group() -> None:
    pass


@privacy_group.command("epsilon")
@click.option(
    "--noise-multiplier",
    type=float,
    required=True,
    help="Noise standard deviation over the clipping norm (sigma).",
)
@sample_rate_option
@steps_option
@delta_option
@accountant_option
def epsilon_command(
    noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: str
) -> None:
    """Epsilon of DP-SGD: T steps of the Gaussian mechanism on Poisson samples."""
    from accord.privacy.accounting import dpsgd_event, epsilon

    event = dpsgd_event(noise_multiplier, sample_rate, steps)
    eps = epsilon(event, delta, _accountant(accountant))
    print(f"epsilon {plain_decimal(eps)}")
    print(f"{_how(accountant, delta)} of {event!r}")


@privacy_group.command("calibrate")
@click.option("--epsilon", "target", type=float, required=True, help="Target epsilon.")
@delta_option
@sample_rate_option
@steps_option
@accountant_option
def calibrate_command(
    target: float, delta: float, sample_rate: float, steps: int, accountant: str
) -> None:
    """The smallest noise multiplier whose epsilon is at most the target (rounded up)."""
    from accord.privacy.accounting import calibrate_noise, dpsgd_event, epsilon

    which = _accountant(accountant)
    sigma = calibrate_noise(target, delta, sample_rate, steps, which)
    achieved = epsilon(dpsgd_event(sigma, sample_rate, steps), delta, which)
    print(f"noise_multiplier {plain_decimal(sigma)}")
    print(f"epsilon {plain_decimal(achieved)} {_how(accountant, delta)}")
