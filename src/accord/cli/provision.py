"""``accord provision``: TLS keys, the federation CA, kits and revocation.

Each party runs ``request`` (its TLS key stays with it); the operator runs ``issue`` (or
``accord provision AGREEMENT ...``, the same) and sends each party its kit; ``revoke``
withdraws a certificate; ``show`` prints what a kit holds. No private key is ever written
into a kit or sent anywhere: every command says where each one stays.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

_KEY_HELP = "The party's identity: a NAME.key file, or a node home (its identity key)."


class _ProvisionGroup(click.Group):
    """A group that also takes ``accord provision AGREEMENT ...`` for ``issue``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["issue", *args]
        return super().parse_args(ctx, args)


@click.group(
    cls=_ProvisionGroup,
    short_help="Certificates for the gRPC transport: request, issue, revoke, show.",
    help="Mutual-TLS certificates for a federation, issued from its signed agreement. Each "
    "party makes its TLS key and a request bound to its identity key (request); the "
    "operator makes the federation CA and a kit per party (issue, or `accord provision "
    "AGREEMENT ...`); no private key leaves its party.",
)
def provision() -> None:
    pass


@provision.command(short_help="Make this party's TLS key and certificate request.")
@click.option("--key", required=True, type=click.Path(path_type=Path), help=_KEY_HELP)
@click.option(
    "--out", required=True, type=click.Path(path_type=Path, dir_okay=False), help="The request."
)
@click.option(
    "--address",
    "addresses",
    multiple=True,
    help="An address other parties dial to reach this one (a DNS name or an IP; the "
    "coordinator gives the address in --coordinator-address); repeatable.",
)
def request(key: Path, out: Path, addresses: tuple[str, ...]) -> None:
    """Create an ECDSA P-256 TLS key and write OUT, a certificate request that carries the
    identity key's signature of the TLS key. The TLS key goes to <node home>/secrets/tls.key
    when KEY is a node home, else beside OUT as NAME.tls.key; send only OUT."""
    from accord.errors import InputError
    from accord.governance.identity import home_party, load_identity, node_identity
    from accord.governance.provisioning import TLS_KEY_FILE, tls_request

    if key.is_dir():
        party = home_party(key)
        if party is None:
            raise InputError(f"{key}: not a node home (no party line in node.toml)")
        identity = node_identity(key, party)
    else:
        identity = load_identity(key)
    tls_key = key / TLS_KEY_FILE if key.is_dir() else out.parent / f"{identity.name}.tls.key"
    tls_request(identity, tls_key, out, addresses)
    print(f"wrote {out} (certificate request for {identity.name}: send it to the operator)")
    print(f"TLS private key: {tls_key} (mode 600: it stays here; never send it)")


@provision.command(short_help="Make the federation CA and a kit per party.")
@click.argument("agreement", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--requests",
    "requests_dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder of the parties' requests (*.csr), one per party.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Where to write ca/ (the CA, kept by the operator) and kits/ (one per party).",
)
@click.option(
    "--coordinator-address",
    required=True,
    help="HOST:PORT nodes dial; the coordinator's request must name HOST.",
)
@click.option("--days", default=365, show_default=True, type=click.IntRange(1, 3650))
def issue(
    agreement: Path, requests_dir: Path, out: Path, coordinator_address: str, days: int
) -> None:
    """Check every request against AGREEMENT (in force; each name a party; each identity
    binding verified under that party's key) and issue the certificates. One bad or
    missing request refuses the run and writes nothing."""
    from accord.governance.federation_ca import CA_KEY_FILE
    from accord.governance.provisioning import CA_DIR, provision

    kits = provision(agreement, requests_dir, out, coordinator_address, valid_days=days)
    for kit in kits:
        print(f"kit for {kit.name}: {kit} (send it to {kit.name}; it holds no private key)")
    key = out / CA_DIR / CA_KEY_FILE
    print(f"CA private key: {key} (mode 600: it stays with the operator; it is in no kit)")
    print("each party's TLS private key stays where its request was made")


@provision.command(short_help="Revoke a party's certificate.")
@click.argument("name")
@click.option(
    "--ca",
    "ca_dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="The ca/ folder accord provision wrote.",
)
@click.option(
    "--kits",
    "kits_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="The kits/ folder: its kits get the new revocation list.",
)
def revoke(name: str, ca_dir: Path, kits_dir: Path | None) -> None:
    """Add NAME's certificate to the revocation list, signed by the CA, and write the list
    into every kit under --kits. Send each party its kit's crl.pem; nodes re-read it."""
    from accord.governance.federation_ca import issued_serial, read_crl
    from accord.governance.kit import CRL_FILE
    from accord.governance.provisioning import revoke as revoke_certificate

    serial = issued_serial(ca_dir, name)
    before = read_crl(ca_dir).get_revoked_certificate_by_serial_number(serial)
    revoke_certificate(ca_dir, name, kits_dir)
    count = len(list(read_crl(ca_dir)))
    what = "was already revoked" if before is not None else "is revoked"
    print(f"{name}'s certificate (serial {serial:x}) {what}; {count} revoked in all")
    print(f"revocation list: {ca_dir / CRL_FILE}")
    if kits_dir is not None:
        print(f"updated crl.pem in the kits under {kits_dir}; send it to every party")
    else:
        print("no --kits given: copy this crl.pem into every party's kit")
    print("the CA private key stayed in its folder")


@provision.command(short_help="What a kit holds.")
@click.argument("kit", type=click.Path(path_type=Path, file_okay=False))
def show(kit: Path) -> None:
    """Print KIT's party, role, coordinator address, certificate, CA fingerprint, revoked
    serials and agreement (the kit is checked: files, certificates, no private key)."""
    from accord.governance.agreement import load_agreement
    from accord.governance.kit import current_crl, load_kit, sha256_fingerprint

    loaded = load_kit(kit)
    cert = loaded.certificate
    now = datetime.now(UTC)
    state = (
        "valid now"
        if cert.not_valid_before_utc <= now < cert.not_valid_after_utc
        else ("NOT valid now")
    )
    revoked = [f"{entry.serial_number:x}" for entry in current_crl(loaded)]
    print(f"party: {loaded.party} ({loaded.role})")
    print(f"coordinator address: {loaded.coordinator_address}")
    print(f"certificate: serial {cert.serial_number:x}, valid "
          f"{cert.not_valid_before_utc.isoformat()} to {cert.not_valid_after_utc.isoformat()} "
          f"({state})")  # fmt: skip
    print(f"CA fingerprint (SHA-256): {sha256_fingerprint(loaded.ca_certificate)}")
    print(f"revoked serials: {', '.join(revoked) if revoked else 'none'}")
    print(f"agreement: {load_agreement(loaded.agreement_path).label}")
    print("no private key in this kit (the TLS key stays in the party's node home)")
