"""Governance: party identities, the roster, agreements, approvals and the audit trail.

Agreements (:mod:`~accord.governance.agreement`, ``agreement_terms``, ``agreement_check``),
owner approvals (:mod:`~accord.governance.approvals`) and the audit log
(:mod:`~accord.governance.audit`) are imported from their modules. Public API here:

* :class:`PartyIdentity`, :func:`generate_identity`, :func:`load_identity`,
  :func:`node_identity`, :func:`write_identity_files`, :func:`write_node_identity`
* :func:`public_key_line`, :func:`parse_public_key_line`, :func:`read_public_key_file`,
  :func:`load_private_key`, :func:`fingerprint`, :func:`verify_signature`,
  :func:`check_party_name`
* :class:`Roster`, :func:`load_roster`, :func:`parse_roster`, :func:`roster_entry`
"""

from __future__ import annotations

from accord.governance.identity import (
    PartyIdentity,
    check_party_name,
    fingerprint,
    generate_identity,
    load_identity,
    load_private_key,
    node_identity,
    parse_public_key_line,
    public_key_line,
    read_public_key_file,
    verify_signature,
    write_identity_files,
    write_node_identity,
)
from accord.governance.roster import Roster, load_roster, parse_roster, roster_entry

__all__ = [
    "PartyIdentity",
    "Roster",
    "check_party_name",
    "fingerprint",
    "generate_identity",
    "load_identity",
    "load_private_key",
    "load_roster",
    "node_identity",
    "parse_public_key_line",
    "parse_roster",
    "public_key_line",
    "read_public_key_file",
    "roster_entry",
    "verify_signature",
    "write_identity_files",
    "write_node_identity",
]
