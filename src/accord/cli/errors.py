"""Turn errors into one clear line and an exit code (never a traceback)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import NoReturn

from accord.errors import AccordError

EXIT_BUG = 1
EXIT_BAD_INPUT = 2
EXIT_REFUSED = 3


def fail(message: str, code: int) -> NoReturn:
    print(f"accord: {message}", file=sys.stderr)
    raise SystemExit(code)


def run_guarded(entry: Callable[[], object]) -> NoReturn:
    """Call ``entry``; map every error to one line on stderr and an exit code."""
    import click

    try:
        entry()
    except AccordError as exc:
        kind = {EXIT_BAD_INPUT: "error", EXIT_REFUSED: "refused"}.get(
            exc.exit_code, "internal error"
        )
        fail(f"{kind}: {exc}", exc.exit_code)
    except click.exceptions.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except click.ClickException as exc:
        fail(f"error: {exc.format_message()}", EXIT_BAD_INPUT)
    except (KeyboardInterrupt, click.exceptions.Abort):
        fail("interrupted; rerun with --resume to continue from the last checkpoint", 130)
    except Exception as exc:
        if os.environ.get("ACCORD_DEBUG"):
            raise
        fail(
            f"internal error: {type(exc).__name__}: {exc} (a bug; rerun with ACCORD_DEBUG=1 "
            "for the traceback and report it)",
            EXIT_BUG,
        )
    raise SystemExit(0)
