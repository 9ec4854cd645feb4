"""A node's home directory: its identity file, secrets and checkpoints.

The home belongs to the data owner, not to the run: it is never inside a run folder
(which the coordinator writes), and nothing in it is sent anywhere.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import torch

from accord.errors import InputError
from accord.fileio import load_tensors, save_tensors_atomic, write_text_atomic

# Keep the state of the last two rounds: a round that is run again after a coordinator
# restart starts from the state before it, not from its own first attempt.
_KEEP_ROUNDS = 2


def default_home(party: str) -> Path:
    return Path.home() / ".accord" / "nodes" / party


class NodeHome:
    """``node.toml`` (which party this home belongs to), ``secrets/``, ``jobs/<id>/``."""

    def __init__(self, path: Path, party: str) -> None:
        self.path = path
        self.party = party
        for sub in ("", "secrets", "state", "jobs"):
            (path / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path / "secrets", 0o700)
        node_file = path / "node.toml"
        if node_file.exists():
            try:
                owner = tomllib.loads(node_file.read_text(encoding="utf-8")).get("party")
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise InputError(f"{node_file}: not valid TOML ({exc})") from None
            if owner is None:
                raise InputError(f'{node_file}: no party line; add party = "{party}"')
            if owner != party:
                raise InputError(
                    f"{node_file}: this node home belongs to party {owner!r}, not {party!r}; "
                    "give each party its own home"
                )
        else:
            write_text_atomic(node_file, f'party = "{party}"\n', mode=0o600)

    def job_dir(self, job_id: str) -> Path:
        return self.path / "jobs" / job_id

    def save_round_state(
        self, job_id: str, round_number: int, tensors: dict[str, torch.Tensor]
    ) -> None:
        """Checkpoint node-side state (e.g. SCAFFOLD's c_i) as of the end of a round."""
        folder = self.job_dir(job_id)
        # Node state is the data owner's, like everything in the home: owner-only.
        save_tensors_atomic(folder / f"state-{round_number:06d}.safetensors", tensors, mode=0o600)
        for old in sorted(folder.glob("state-*.safetensors"))[:-_KEEP_ROUNDS]:
            old.unlink(missing_ok=True)

    def load_state_before(self, job_id: str, round_number: int) -> dict[str, torch.Tensor] | None:
        """The latest checkpointed state of a round before ``round_number``, if any."""
        folder = self.job_dir(job_id)
        best: Path | None = None
        for candidate in sorted(folder.glob("state-*.safetensors")):
            if int(candidate.stem.split("-")[1]) < round_number:
                best = candidate
        return None if best is None else load_tensors(best)
