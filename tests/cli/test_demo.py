"""``accord demo``: the embedded default job, end to end."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import Invoke


def test_demo_ends_with_the_federated_accuracy(invoke: Invoke, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = invoke("demo", "--out", str(out), "--node-homes", str(tmp_path / "homes"))
    assert result.code == 0, result.err
    lines = result.out.rstrip("\n").splitlines()
    assert re.fullmatch(r"federated test accuracy 0\.\d{4}", lines[-1])
    assert float(lines[-1].split()[-1]) > 0.9
    assert f"report: {out / 'report.html'}" in result.out
    assert "alone" in result.out
    assert (out / "report.html").exists() and (out / "model.safetensors").exists()
