"""Accord: federated learning with differential privacy, protected aggregation and
data-sharing agreements that every node enforces.

The public API is listed in ``__all__``; names load on first use, so that ``import
accord`` (and the command line's start-up) does not pay for torch until it is needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from accord.errors import (
    AccordError,
    AgreementFileError,
    AgreementRefusedError,
    AgreementRevokedError,
    ApprovalNeededError,
    AuditTamperedError,
    DataError,
    GateBypassError,
    InputError,
    JobFileError,
    RefusedError,
    TaskCodeError,
    TooFewPartiesError,
    TransportError,
)

__version__ = "0.1.0"

_LAZY = {
    "Job": "accord.job",
    "load_job": "accord.job",
    "parse_job": "accord.job",
    "build_simulation": "accord.fl.simulation",
    "Simulation": "accord.fl.simulation",
    "run_job": "accord.fl.runner",
    "Coordinator": "accord.fl.coordinator",
    "Node": "accord.fl.node",
    "ReleaseGate": "accord.fl.gate",
    "Release": "accord.fl.messages",
    "ReleaseKind": "accord.fl.messages",
    "Strategy": "accord.fl.strategies",
    "ClientUpdate": "accord.fl.strategies",
    "build_strategy": "accord.fl.strategies",
    "train_alone": "accord.fl.baselines",
    "train_pooled": "accord.fl.baselines",
    "evaluate_on_parties": "accord.fl.baselines",
    "InProcessTransport": "accord.transport.inprocess",
    "FlatModel": "accord.models.flat",
    "build_builtin_model": "accord.models.builtin",
    "task_code_hash": "accord.models.task_code",
    "load_task": "accord.models.task_code",
    "SecureGenerator": "accord.secure_random",
    "open_node_generator": "accord.node_secrets",
    "build_federated_data": "accord.data.federation",
    "load_agreement": "accord.governance.agreement",
    "AuditLog": "accord.governance.audit",
    "read_audit": "accord.governance.audit",
    "verify_audit": "accord.governance.audit",
    "ApprovalStore": "accord.governance.approvals",
}

__all__ = [
    "AccordError",
    "AgreementFileError",
    "AgreementRefusedError",
    "AgreementRevokedError",
    "ApprovalNeededError",
    "ApprovalStore",
    "AuditLog",
    "AuditTamperedError",
    "ClientUpdate",
    "Coordinator",
    "DataError",
    "FlatModel",
    "GateBypassError",
    "InProcessTransport",
    "InputError",
    "Job",
    "JobFileError",
    "Node",
    "RefusedError",
    "Release",
    "ReleaseGate",
    "ReleaseKind",
    "SecureGenerator",
    "Simulation",
    "Strategy",
    "TaskCodeError",
    "TooFewPartiesError",
    "TransportError",
    "__version__",
    "build_builtin_model",
    "build_federated_data",
    "build_simulation",
    "build_strategy",
    "evaluate_on_parties",
    "load_agreement",
    "load_job",
    "load_task",
    "open_node_generator",
    "parse_job",
    "read_audit",
    "run_job",
    "task_code_hash",
    "train_alone",
    "train_pooled",
    "verify_audit",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'accord' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from accord.data.federation import build_federated_data
    from accord.fl.baselines import evaluate_on_parties, train_alone, train_pooled
    from accord.fl.coordinator import Coordinator
    from accord.fl.gate import ReleaseGate
    from accord.fl.messages import Release, ReleaseKind
    from accord.fl.node import Node
    from accord.fl.runner import run_job
    from accord.fl.simulation import Simulation, build_simulation
    from accord.fl.strategies import ClientUpdate, Strategy, build_strategy
    from accord.governance.agreement import load_agreement
    from accord.governance.approvals import ApprovalStore
    from accord.governance.audit import AuditLog, read_audit, verify_audit
    from accord.job import Job, load_job, parse_job
    from accord.models.builtin import build_builtin_model
    from accord.models.flat import FlatModel
    from accord.models.task_code import load_task, task_code_hash
    from accord.node_secrets import open_node_generator
    from accord.secure_random import SecureGenerator
    from accord.transport.inprocess import InProcessTransport
