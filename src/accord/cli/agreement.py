"""``accord agreement``: write, sign, verify, show and revoke a data-sharing agreement."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from accord.governance.identity import PartyIdentity

_KEY_HELP = "The signing party's identity: a NAME.key file, or a node home (its identity key)."


@click.group(
    short_help="Data-sharing agreements: init, sign, verify, show, revoke.",
    help="Signed, machine-readable data-sharing agreements that every node checks before it "
    "releases anything (see docs/agreements.md).",
)
def agreement() -> None:
    pass


def _identity(key: Path) -> PartyIdentity:
    from accord.governance.identity import home_party, load_identity, node_identity

    if key.is_dir():
        party = home_party(key)
        if party is None:
            from accord.errors import InputError

            raise InputError(f"{key}: not a node home (no party line in node.toml)")
        return node_identity(key, party)
    return load_identity(key)


def _party_key(spec: str, role: str) -> tuple[str, str, str]:
    """``NAME=FILE`` -> (name, role, key line); FILE is a .pub or .key file or a node home."""
    from accord.errors import InputError
    from accord.governance.identity import check_party_name, public_key_line, read_any_public_key

    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise InputError(f"{spec!r}: give NAME=FILE (FILE: the party's .pub or .key file)")
    check_party_name(name)
    source = Path(path)
    key = _identity(source).public_key if source.is_dir() else read_any_public_key(source)
    return name, role, public_key_line(key)


@agreement.command(short_help="Write a new agreement to fill in and sign.")
@click.argument("out", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--id", "agreement_id", required=True, help="Agreement id, e.g. heart-2026.")
@click.option("--title", required=True, help="One line saying what the agreement is for.")
@click.option("--purpose", "purposes", multiple=True, required=True, help="Repeatable.")
@click.option(
    "--coordinator", required=True, help="NAME=FILE: the coordinator's .pub or .key file."
)
@click.option(
    "--owner",
    "owners",
    multiple=True,
    required=True,
    help="NAME=FILE (a .pub or .key file, or the owner's node home); repeatable.",
)
@click.option("--model-owner", "model_owners", multiple=True, help="NAME=FILE; repeatable.")
@click.option("--days", default=365, show_default=True, type=click.IntRange(1, 36500))
def init(
    out: Path,
    agreement_id: str,
    title: str,
    purposes: tuple[str, ...],
    coordinator: str,
    owners: tuple[str, ...],
    model_owners: tuple[str, ...],
    days: int,
) -> None:
    """Write OUT, an annotated agreement with cautious defaults (secure aggregation, at
    least min(3, owners) parties per aggregate, built-in models), valid from now for DAYS
    days. Edit it, then every party signs it with `accord agreement sign`."""
    from accord.errors import InputError
    from accord.fileio import write_text_atomic
    from accord.governance.agreement import load_agreement
    from accord.governance.agreement_template import agreement_template

    if out.exists():
        raise InputError(f"{out} already exists; Accord never overwrites an agreement")
    parties = [_party_key(coordinator, "coordinator")]
    parties += [_party_key(spec, "data_owner") for spec in owners]
    parties += [_party_key(spec, "model_owner") for spec in model_owners]
    now = datetime.now(UTC).replace(microsecond=0)
    text = agreement_template(
        agreement_id, title, list(purposes), parties, now, now + timedelta(days=days)
    )
    write_text_atomic(out, text)
    load_agreement(out)  # the template must itself be a valid agreement
    print(f"wrote {out}; edit its terms, then each party runs: accord agreement sign {out} "
          "--key KEY")  # fmt: skip


@agreement.command(short_help="Sign an agreement with a party's identity key.")
@click.argument("path", metavar="AGREEMENT", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--key", required=True, type=click.Path(path_type=Path), help=_KEY_HELP)
def sign(path: Path, key: Path) -> None:
    """Add this party's signature of AGREEMENT's terms to AGREEMENT's .sig file."""
    from accord.governance.agreement import load_agreement, sign_agreement

    party = sign_agreement(load_agreement(path), _identity(key))
    status = load_agreement(path).status()
    print(f"signed {status.label} as {party} (terms {status.digest[:16]})")
    if status.unsigned:
        print(f"still to sign: {', '.join(status.unsigned)}")
    else:
        print("every party has signed")


@agreement.command(short_help="Check signatures, revocations and the validity window.")
@click.argument("path", metavar="AGREEMENT", type=click.Path(path_type=Path, dir_okay=False))
def verify(path: Path) -> None:
    """Exit 0 when AGREEMENT is in force now; 3 (naming why) when it is not; 2 when the
    file is not a valid agreement."""
    from accord.governance.agreement import load_agreement

    loaded = load_agreement(path)
    status = loaded.check_in_force()
    print(f"{status.label}: in force; signed by {', '.join(status.signed)}; terms "
          f"{status.digest}")  # fmt: skip


@agreement.command(short_help="Who may do what, in plain words.")
@click.argument("path", metavar="AGREEMENT", type=click.Path(path_type=Path, dir_okay=False))
def show(path: Path) -> None:
    """A human-readable summary of AGREEMENT: parties, datasets, clauses (each labelled
    enforced by every node, or contractual: a node cannot verify it), and signatures."""
    from accord.governance.agreement import load_agreement
    from accord.governance.agreement_show import describe

    print(describe(load_agreement(path), datetime.now(UTC)))


@agreement.command(short_help="Withdraw from an agreement (signed).")
@click.argument("path", metavar="AGREEMENT", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--key", required=True, type=click.Path(path_type=Path), help=_KEY_HELP)
@click.option("--reason", default="", help="Why, for the other parties.")
def revoke(path: Path, key: Path, reason: str) -> None:
    """Add this party's signed withdrawal to AGREEMENT's .sig file. A node whose own copy
    carries it releases nothing more (from its next request) and announces it through the
    coordinator, which tells every other node."""
    from accord.governance.agreement import load_agreement, make_revocation, record_revocation

    loaded = load_agreement(path)
    revocation = make_revocation(loaded, _identity(key), reason)
    record_revocation(loaded, revocation)
    print(f"{revocation.party} revoked {loaded.label} at {revocation.revoked_at}")
