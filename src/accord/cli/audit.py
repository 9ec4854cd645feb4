"""``accord audit``: show a node's audit log and verify its hash chain and signatures.

``verify`` is what a data owner, an auditor or another party runs to check that the log
was not edited, pruned or rewritten; ``--against`` adds the heads that the node's releases
carried out of it (kept by the coordinator or the other nodes), which is the only way to
see a cut-off tail or a rollback to an older copy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from accord.governance.audit import AuditHead

_SUMMARY_CHARS = 80
_VALUE_CHARS = 24
_HASH_CHARS = 16

node_home_option = click.option(
    "--node-home",
    "node_home",
    type=click.Path(path_type=Path),
    required=True,
    help="The node's home directory (holds node.toml and state/audit.sqlite3).",
)


@click.group(
    short_help="A node's tamper-evident audit log: show it, verify it.",
    help="A node's audit log: every job accepted or refused, release, revocation and "
    "approval, as a hash chain signed with the node's identity key.",
)
def audit() -> None:
    pass


@audit.command(short_help="List the entries of a node's audit log.")
@node_home_option
@click.option(
    "--last",
    type=click.IntRange(min=1),
    default=None,
    help="List only the latest N entries (default: all).",
)
def show(node_home: Path, last: int | None) -> None:
    """One line per entry (sequence number, time, kind, body), then the head.

    Nothing is verified here: run `accord audit verify` for that.
    """
    from accord.governance.audit import read_audit

    entries = read_audit(node_home)
    if not entries:
        print(f"the audit log of {node_home} is empty")
        return
    shown = entries[-last:] if last is not None else entries
    width = len(str(shown[-1].seq))
    kind_width = max(len(_printable(entry.kind)) for entry in shown)
    for entry in shown:
        kind = _printable(entry.kind)
        print(f"{entry.seq:>{width}}  {entry.at}  {kind:<{kind_width}}  {_summary(entry.body)}")
    head = entries[-1]
    print(f"head: entry {head.seq}, hash {head.entry_hash[:_HASH_CHARS]} (not verified here)")


@audit.command(short_help="Verify a node's audit log: chain, signatures, known heads.")
@node_home_option
@click.option(
    "--against",
    "heads_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help='JSON file of heads the node\'s releases carried (a list, or {"heads": [...]}); '
    "finds a cut-off tail or a rewritten log. Heads of other parties are ignored.",
)
@click.option(
    "--key",
    "key_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Verify with this public key (a .pub or .key file), e.g. the roster's key for the "
    "node, instead of the node home's own identity key.",
)
def verify(node_home: Path, heads_file: Path | None, key_file: Path | None) -> None:
    """Check every entry's hash, signature and link, and the log against known heads.

    Exit 0 when it verifies; exit 3 (refused) naming the first problem when it does not.
    """
    from accord.errors import AuditTamperedError, InputError
    from accord.governance.audit import read_audit, verify_audit
    from accord.governance.identity import (
        NODE_FILE,
        home_party,
        node_identity,
        read_any_public_key,
    )

    if not node_home.is_dir():
        raise InputError(f"{node_home}: node home not found (give an existing --node-home)")
    party = home_party(node_home)
    if party is None:
        raise InputError(f"{node_home / NODE_FILE}: no party line; is this a node home?")
    if key_file is not None:
        public_key = read_any_public_key(key_file)
    else:
        public_key = node_identity(node_home, party).public_key
    heads = [h for h in _read_heads(heads_file) if h.party == party] if heads_file else []
    entries = read_audit(node_home)
    problems = verify_audit(entries, public_key, party, heads)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise AuditTamperedError(f"audit log of {party} ({node_home}): {problems[0]}{more}")
    head = f"{entries[-1].seq} {entries[-1].entry_hash[:_HASH_CHARS]}" if entries else "none"
    print(
        f"audit log of {party} verifies: {len(entries)} entries, head {head} "
        f"(checked against {len(heads)} heads)"
    )


def _read_heads(path: Path) -> list[AuditHead]:
    """The heads of a JSON file: a list of head objects, or an object ``{"heads": [...]}``."""
    from accord.errors import InputError
    from accord.governance.audit import AuditHead

    try:
        raw: Any = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such heads file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the heads file ({exc})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if isinstance(raw, dict) and set(raw) == {"heads"}:
        raw = raw["heads"]
    if not isinstance(raw, list):
        raise InputError(f'{path}: expected a list of audit heads or {{"heads": [...]}}')
    return [AuditHead.from_json(item, f"{path}: heads[{i}]") for i, item in enumerate(raw)]


def _summary(body: dict[str, Any]) -> str:
    """``key=value`` pairs on one line, cut at ``_SUMMARY_CHARS``."""
    parts = []
    # What a reader scans for first; the rest in the stored (sorted) order; nulls left out.
    first = [k for k in ("kind", "round", "dataset", "adversary", "name", "reason") if k in body]
    for key in [*first, *(k for k in body if k not in first)]:
        value = body[key]
        if value is None:
            continue
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        # Cut long values (hashes, lists) so that every key shows.
        text = text if len(text) <= _VALUE_CHARS else text[: _VALUE_CHARS - 3] + "..."
        parts.append(f"{key}={text}")
    line = _printable(" ".join(parts))
    return line if len(line) <= _SUMMARY_CHARS else line[: _SUMMARY_CHARS - 3] + "..."


def _printable(text: str) -> str:
    """``text`` with control characters escaped: a stored value cannot forge a line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
