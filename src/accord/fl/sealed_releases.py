"""A node's sealed releases: asked the same thing twice, it sends the same bytes again.

When a deployed node releases an update or metrics, it keeps the release (its wire bytes)
in its home, under the job, the run and the round, with a digest of the request that
produced it. If the coordinator asks again (it restarted, or a reply was lost), the node
sends the kept release through its gate again: no retraining, no new charge, one audit
entry "resent". A request for the same round that differs (another global model, another
learning rate) is refused: a round is released once. A node that lost its home's state is
charged again, and its ledger, audit log and receipt show both charges.

Secure aggregation's and CKKS's rounds are not kept here (their protocol state is not
sealed yet): a repeated secure round is refused by the protocol's own checks instead.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import torch

from accord.errors import RefusedError
from accord.fileio import write_bytes_atomic
from accord.fl.messages import EvaluateRequest, Release, ReleaseKind, Request, TrainRequest

_LENGTH = struct.Struct(">Q")


class SealedReleases:
    """The releases of one run of one job, in the node's home."""

    def __init__(self, home: Path, job_id: str, run_id: str) -> None:
        self.folder = home / "jobs" / job_id / "sealed" / run_id

    @staticmethod
    def _name(request: Request) -> str | None:
        if isinstance(request, TrainRequest):
            return f"r{request.round:06d}-train"
        if isinstance(request, EvaluateRequest):
            return f"r{request.round:06d}-evaluate"
        return None

    def load(self, request: Request) -> Release | None:
        """The release kept for this request (None: never released). Refused when the
        round was released for a different request."""
        name = self._name(request)
        if name is None or not (self.folder / name).exists():
            return None
        from accord.transport.wire import decode

        data = (self.folder / name).read_bytes()
        digest, header_length = data[:32], _LENGTH.unpack_from(data, 32)[0]
        if digest != request_digest(request):
            raise RefusedError(
                f"round {request.round} was already released for another request (another "
                "model or learning rate); a round is released once"
            )
        start = 32 + _LENGTH.size
        header = data[start : start + header_length]
        release = decode(header, memoryview(data)[start + header_length :])
        if not isinstance(release, Release):
            raise RefusedError(f"{self.folder / name}: not a kept release")
        return release

    def keep(self, request: Request, release: Release) -> None:
        name = self._name(request)
        # Only plain updates and metrics: a secure-aggregation advertisement or a CKKS
        # ciphertext belongs to protocol state that is not sealed yet.
        plain = release.kind in (ReleaseKind.UPDATE, ReleaseKind.METRICS) and (
            release.payload is None
        )
        if name is None or not plain:
            return
        from accord.transport.wire import encode

        header, payloads = encode(release, 1)
        blob = b"".join(
            [request_digest(request), _LENGTH.pack(len(header)), header,
             *(bytes(p) for p in payloads)]
        )  # fmt: skip
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_bytes_atomic(self.folder / name, blob, mode=0o600, sync_dir=True)


def request_digest(request: Request) -> bytes:
    """SHA-256 of everything in the request that shapes the release."""
    h = hashlib.sha256(type(request).__name__.encode())
    h.update(f"{request.job_id}|{request.round}".encode())
    tensors: dict[str, torch.Tensor | None] = {}
    if isinstance(request, TrainRequest):
        h.update(f"|{request.lr!r}|{request.clip_norm!r}".encode())
        tensors = {"global": request.global_params, **dict(request.extras)}
    elif isinstance(request, EvaluateRequest):
        tensors = {"params": request.params}
    for name in sorted(tensors):
        tensor = tensors[name]
        h.update(name.encode())
        if tensor is not None:
            h.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return h.digest()
