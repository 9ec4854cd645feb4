"""Simulation only: give every node home an identity key and a roster (or a copy of the
job's agreement), where it has none.

In a deployment each data owner runs ``accord keys new NAME --node-home HOME`` and writes
``roster.toml`` from the public-key lines the consortium exchanged out of band (see
docs/guides/identities.md). A simulation plays every data owner at once, so it does the
same for them: a home that already has a key or a roster keeps it (a test may plant a
wrong one), and the coordinator gets its own copy of the parties' public keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from accord.fileio import write_bytes_atomic

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from accord.errors import AgreementRevokedError
    from accord.governance.agreement import Agreement
    from accord.job import Job


def provision_identities(homes: Mapping[str, Path]) -> dict[str, Ed25519PublicKey]:
    """Each party's public key, after creating the missing identity keys and rosters."""
    from accord.governance import generate_identity, node_identity, write_node_identity
    from accord.governance.identity import node_identity_path
    from accord.governance.roster import ROSTER_FILE, roster_entry

    keys: dict[str, Ed25519PublicKey] = {}
    for party, home in homes.items():
        if not node_identity_path(home).exists():
            write_node_identity(generate_identity(party), home)
        keys[party] = node_identity(home, party).public_key
    roster = "[parties]\n" + "".join(f"{roster_entry(p, k)}\n" for p, k in keys.items())
    for home in homes.values():
        path = home / ROSTER_FILE
        if not path.exists():
            write_bytes_atomic(path, roster.encode("utf-8"), mode=0o644, sync_dir=True)
    return keys


def coordinator_agreement(job: Job, base_dir: Path, homes: Mapping[str, Path]) -> Agreement | None:
    """The agreement the job names, as the coordinator holds it: it must be in force (the
    coordinator is a signatory too; exit 3 otherwise). Simulation only: a node home without
    a copy gets one, as each data owner would have filed its own."""
    if job.job.agreement is None:
        return None
    from accord.fl.node_agreement import node_agreement_path
    from accord.governance.agreement import load_agreement, signatures_path
    from accord.job import resolve_path

    agreement = load_agreement(resolve_path(job.job.agreement, base_dir))
    agreement.check_in_force()
    for home in homes.values():
        copy = node_agreement_path(home)
        if copy.exists():
            continue
        for source, target in ((agreement.path, copy), (signatures_path(agreement.path),
                                                         signatures_path(copy))):  # fmt: skip
            if source.exists():
                write_bytes_atomic(target, source.read_bytes(), mode=0o644)
    return agreement


def relay_withdrawal(
    agreement: Agreement, homes: Mapping[str, Path], revoked: AgreementRevokedError
) -> AgreementRevokedError:
    """A node refused the job at acceptance because its own copy carries its party's
    withdrawal. As the coordinator would at its first request, record it in the
    coordinator's copy and tell every other node (each verifies it against its own copy).
    Returns the error to raise, saying who recorded it."""
    from accord.errors import AccordError
    from accord.errors import AgreementRevokedError as Revoked
    from accord.fl.node_agreement import node_agreement_path
    from accord.governance.agreement import RevocationEntry, load_agreement, record_revocation

    revocation = revoked.revocation
    assert isinstance(revocation, RevocationEntry)
    record_revocation(agreement, revocation)
    told = []
    for party, home in homes.items():
        copy = node_agreement_path(home)
        if party == revocation.party or not copy.exists():
            continue
        try:
            record_revocation(load_agreement(copy), revocation)
        except AccordError:
            continue  # that node's copy does not verify it: it stays as it is
        told.append(party)
    others = len(homes) - 1
    return Revoked(f"{revoked}; the coordinator and {len(told)} of {others} other nodes "
                   "verified and recorded the withdrawal", revocation)  # fmt: skip
