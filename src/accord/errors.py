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
``SecAggParameterError``  2     secure-aggregation settings that cannot give the stated
                                security or dropout tolerance (corrupt/dropout fractions,
                                too few parties)
``SecAggAbortedError``    3     a secure-aggregation round stopped safely: nothing about
                                any single party's input was revealed
``SecAggTooFewError``     3     too few parties, shares or signatures remained for a
                                secure-aggregation stage
``SecAggTamperError``     3     a secure-aggregation check that an honest coordinator and
                                honest parties never fail: a bad signature, a different
                                model hash, inconsistent lists, a replayed or altered
                                message
``EnvelopeError``         3     an end-to-end envelope failed authentication or names a
                                different sender, recipient, job or round
``AgreementFileError``    2     an agreement or its signature file is missing, is not
                                valid TOML, or has an unknown clause or a bad value
``AgreementRefusedError`` 3     the agreement is not in force (unsigned, a bad signature,
                                outside its window) or a job breaks one of its clauses;
                                the message names the clause
``ApprovalNeededError``   3     a job departs from a clause that protects one owner's data
                                only; the owner may approve it (the message names the
                                approval id and the command)
``AgreementRevokedError`` 3     a signatory withdrew the agreement (carries the signed
                                revocation, so the other nodes can be told)
``WireError``             2     a network message is malformed, truncated, oversized or of
                                a type not allowed on the wire (never unpickled)
``PeerRefusedError``      3     a peer failed authentication above TLS: a certificate
                                from another CA, expired or revoked, an identity binding
                                that does not verify, a name not in the agreement, a
                                replayed message
``AuditTamperedError``    3     a node's audit log fails verification: an entry edited,
                                deleted, inserted or reordered, or its tail cut off
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


class SecAggParameterError(InputError):
    """Secure-aggregation settings that cannot give the stated security or dropout tolerance."""


class SecAggAbortedError(RefusedError):
    """A secure-aggregation round stopped safely, before revealing anything about one input.

    Raised by a party that refuses to continue and by the coordinator's side when a stage
    cannot complete. Every subclass means the same for privacy: the party (or the
    coordinator's result) released nothing beyond what earlier stages had released.
    """


class SecAggTooFewError(SecAggAbortedError):
    """Too few parties, shares or signatures remained for a secure-aggregation stage."""


class SecAggTamperError(SecAggAbortedError):
    """A check failed that an honest coordinator relaying honest parties' messages never fails."""


class EnvelopeError(SecAggTamperError):
    """An envelope failed authentication, or names another sender, recipient, job or round."""


class AgreementFileError(InputError):
    """An agreement or its signature file is missing, malformed, or has an unknown clause."""


class AgreementRefusedError(RefusedError):
    """The agreement is not in force, or a job breaks one of its clauses (named)."""


class ApprovalNeededError(AgreementRefusedError):
    """A job departs only from clauses its owner may relax; ``approval_ids`` name the
    requests filed in the owners' node homes."""

    def __init__(self, message: str, approval_ids: list[str]) -> None:
        super().__init__(message)
        self.approval_ids = approval_ids


class AgreementRevokedError(AgreementRefusedError):
    """A signatory withdrew the agreement; ``revocation`` is its signed withdrawal."""

    def __init__(self, message: str, revocation: object) -> None:
        super().__init__(message)
        self.revocation = revocation


class AuditTamperedError(RefusedError):
    """A node's audit log fails verification: an entry edited, deleted, inserted or reordered,
    or its tail cut off."""


class WireError(InputError):
    """A network message is malformed, truncated, oversized or of a type not on the wire."""


class PeerRefusedError(RefusedError):
    """A peer failed authentication above TLS (certificate, identity binding, name, replay)."""
