"""The one exception tree of Accord.

Every error Accord raises on purpose is an :class:`AccordError`. The command line turns
each into one clear line on stderr and the exit code of its branch:

========================  ====  ==========================================================
class                     exit  meaning
========================  ====  ==========================================================
``AccordError``           1     a bug or an unexpected state (report it)
``InputError``            2     bad input: job file, data, task code, command arguments
``JobFileError``          2     the job file is missing, malformed, or has an unknown key
``DataError``             2     a data file is missing, malformed or inconsistent
``TaskCodeError``         2     a task directory is missing, broken, or its hash differs
``RefusedError``          3     refused by policy or budget
``TooFewPartiesError``    3     a round had fewer releases than ``min_parties``
``GateBypassError``       1     something tried to send bytes that the release gate
                                did not produce (a bug in the caller, never allowed)
``TransportError``        1     the transport could not deliver a message
========================  ====  ==========================================================

Messages name the file or field at fault and what to do about it.
"""

from __future__ import annotations


class AccordError(Exception):
    """Base of every error Accord raises on purpose."""

    exit_code: int = 1


class InputError(AccordError):
    """Bad input: the user can fix it."""

    exit_code = 2


class JobFileError(InputError):
    """The job file is missing, malformed, or names an unknown key or value."""


class DataError(InputError):
    """A data file is missing, malformed, or does not match its declared schema."""


class TaskCodeError(InputError):
    """A task directory is missing or broken, or its hash differs from the job's."""


class RefusedError(AccordError):
    """Refused by policy or budget."""

    exit_code = 3


class TooFewPartiesError(RefusedError):
    """A round received fewer releases than the job's ``min_parties``."""


class GateBypassError(AccordError):
    """A transport was handed bytes that its node's release gate did not produce."""


class TransportError(AccordError):
    """A message could not be delivered."""
