"""``accord keys``: create a party's long-term Ed25519 identity key and show public keys."""

from __future__ import annotations

from pathlib import Path

import click


@click.group(
    short_help="Party identity keys (Ed25519) and the roster.",
    help="Party identity keys: Ed25519, one per party, and the roster of the parties' public "
    "keys (see docs/guides/identities.md).",
)
def keys() -> None:
    pass


@keys.command(short_help="Create party NAME's identity key.")
@click.argument("name")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Existing folder for NAME.key and NAME.pub (default: the current folder).",
)
@click.option(
    "--node-home",
    "node_home",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Write the key into this node home instead, as secrets/identity.key (no .pub), and "
    "name the party in its node.toml if it has none.",
)
def new(name: str, out: Path | None, node_home: Path | None) -> None:
    """Create party NAME's identity key; print its public key line and fingerprint.

    Writes NAME.key (the private key, mode 600) and NAME.pub (the public key line) and
    never overwrites a file. Send the .pub line to every other party; keep the .key.
    """
    from accord.errors import InputError
    from accord.governance.identity import (
        generate_identity,
        write_identity_files,
        write_node_identity,
    )
    from accord.governance.roster import roster_entry

    if out is not None and node_home is not None:
        raise InputError("give --out or --node-home, not both")
    identity = generate_identity(name)
    if node_home is not None:
        key_path = write_node_identity(identity, node_home)
        wrote = f"wrote {key_path} (private key, mode 600: it never leaves this node)"
        node_file = node_home / "node.toml"
        if not node_file.exists():
            # The home now belongs to NAME: say so where every command looks.
            from accord.fileio import write_text_atomic

            write_text_atomic(node_file, f'party = "{name}"\n', mode=0o600)
    else:
        key_path, pub_path = write_identity_files(identity, out if out is not None else Path())
        wrote = (
            f"wrote {key_path} (private key, mode 600: keep it, never send it) and {pub_path} "
            "(send it to every other party)"
        )
    print(identity.public_key_line)
    print(f"fingerprint: {identity.fingerprint}")
    print(wrote)
    print(f"roster line (under [parties]): {roster_entry(identity.name, identity.public_key)}")


@keys.command(short_help="Print the public key line and fingerprint of a key file.")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
def show(file: Path) -> None:
    """Print the public key line and fingerprint of FILE (a .key or a .pub file)."""
    from accord.governance.identity import fingerprint, public_key_line, read_any_public_key

    public_key = read_any_public_key(file)
    print(public_key_line(public_key))
    print(f"fingerprint: {fingerprint(public_key)}")


@keys.command(short_help="Check a node's roster.toml and list its parties' fingerprints.")
@click.option(
    "--node-home",
    "node_home",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="The node home whose roster.toml to read.",
)
def roster(node_home: Path) -> None:
    """Read NODE_HOME/roster.toml with every check a node makes; print each party's
    fingerprint, to compare with the other parties over a second channel."""
    from accord.errors import InputError
    from accord.governance.roster import load_roster

    if not node_home.is_dir():
        raise InputError(f"{node_home}: node home not found (give an existing --node-home)")
    parties = load_roster(node_home)
    width = max(len(party) for party in parties)
    for party in parties:
        print(f"{party:<{width}}  {parties.fingerprint(party)}")
