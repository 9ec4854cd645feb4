"""``accord keys``: create a party's long-term Ed25519 identity key and show public keys."""

from __future__ import annotations

from pathlib import Path

import click


@click.group(help="Party identity keys: Ed25519, one per party (see docs/guides/identities.md).")
def keys() -> None:
    pass


@keys.command()
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
    help="Write the key into this node home instead, as secrets/identity.key (no .pub).",
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

    if out is not None and node_home is not None:
        raise InputError("give --out or --node-home, not both")
    identity = generate_identity(name)
    if node_home is not None:
        key_path = write_node_identity(identity, node_home)
        wrote = f"wrote {key_path} (private key, mode 600: it never leaves this node)"
    else:
        key_path, pub_path = write_identity_files(identity, out if out is not None else Path())
        wrote = (
            f"wrote {key_path} (private key, mode 600: keep it, never send it) and {pub_path} "
            "(send it to every other party)"
        )
    print(identity.public_key_line)
    print(f"fingerprint: {identity.fingerprint}")
    print(wrote)
    print(f'roster line (under [parties]): {identity.name} = "{identity.public_key_line}"')


@keys.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
def show(file: Path) -> None:
    """Print the public key line and fingerprint of FILE (a .key or a .pub file)."""
    from accord.errors import InputError
    from accord.governance.identity import (
        fingerprint,
        load_private_key,
        public_key_line,
        read_public_key_file,
    )

    try:
        head = file.read_bytes()[:64]
    except FileNotFoundError:
        raise InputError(f"{file}: no such file") from None
    except OSError as exc:
        raise InputError(f"{file}: cannot read it ({exc.strerror})") from None
    if b"-----BEGIN" in head:
        public_key = load_private_key(file).public_key()
    else:
        public_key = read_public_key_file(file)
    print(public_key_line(public_key))
    print(f"fingerprint: {fingerprint(public_key)}")
