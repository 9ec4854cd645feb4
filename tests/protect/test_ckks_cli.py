"""``accord encrypted``: the example's round trip, and one clear line with exit code 2 or 3."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from accord.cli.encrypted import encrypted
from accord.cli.errors import run_guarded

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """Run ``accord encrypted ARGS`` in-process, as the entry point does (the lead registers
    the group in cli/main.py; these tests call it directly)."""

    def call(*args: str | Path) -> tuple[int, str, str]:
        argv = [str(a) for a in args]
        with pytest.raises(SystemExit) as exit_info:
            run_guarded(
                lambda: encrypted.main(
                    args=argv, prog_name="accord encrypted", standalone_mode=False
                )
            )
        out = capsys.readouterr()
        code = exit_info.value.code
        return (code if isinstance(code, int) else 1), out.out, out.err

    return call


@pytest.fixture
def files(tmp_path: Path) -> Path:
    rows = ["age,chol"] + [f"{0.1 * i - 1:.2f},{(i % 7) / 3:.3f}" for i in range(20)]
    (tmp_path / "x.csv").write_text("\n".join(rows) + "\n")
    model = {"kind": "logistic", "weights": [0.8, -0.4], "bias": 0.1, "features": ["age", "chol"]}
    (tmp_path / "model.json").write_text(json.dumps(model))
    return tmp_path


def test_round_trip_gives_the_plaintext_scores(run: Run, files: Path) -> None:
    keys = files / "keys"
    assert run("keys", "--out", keys)[0] == 0
    assert (keys / "ckks-secret.keys").stat().st_mode & 0o777 == 0o600
    assert (
        run("encrypt", "--keys", keys, "--csv", files / "x.csv", "--out", files / "x.enc")[0] == 0
    )
    code, out, _ = run(
        "score", "--model", files / "model.json", "--in", files / "x.enc", "--out", files / "s.enc"
    )
    assert code == 0 and "not flooded" in out
    code, out, err = run("decrypt", "--keys", keys, "--in", files / "s.enc")
    assert code == 0 and "not flooded" in err
    lines = out.strip().splitlines()
    assert lines[0] == "row,logit,probability" and len(lines) == 21
    x = np.loadtxt(files / "x.csv", delimiter=",", skiprows=1)
    logits = np.array([float(line.split(",")[1]) for line in lines[1:]])
    assert np.allclose(logits, x @ [0.8, -0.4] + 0.1, atol=1e-8)
    code, out, _ = run(
        "decrypt", "--keys", keys, "--in", files / "s.enc", "--flood", "--out", files / "p.csv"
    )
    assert code == 0 and "flooded: N(0," in out and "30 bits" in out


def test_bad_input_exits_2_with_one_line(run: Run, files: Path) -> None:
    keys = files / "keys"
    run("keys", "--out", keys)
    run("encrypt", "--keys", keys, "--csv", files / "x.csv", "--out", files / "x.enc")
    (files / "bad.csv").write_text("age,chol\n1,oops\n")
    (files / "wide.json").write_text(json.dumps({"kind": "linear", "weights": [1], "bias": 0}))
    cases = [
        ("keys", "--out", keys),  # never overwrites a key file
        ("encrypt", "--keys", files / "none", "--csv", files / "x.csv", "--out", files / "y"),
        ("encrypt", "--keys", keys, "--csv", files / "bad.csv", "--out", files / "y"),
        ("encrypt", "--keys", keys, "--csv", files / "missing.csv", "--out", files / "y"),
        ("score", "--model", files / "wide.json", "--in", files / "x.enc", "--out", files / "y"),
        ("score", "--model", files / "x.csv", "--in", files / "x.enc", "--out", files / "y"),
        ("score", "--model", files / "model.json", "--in", files / "x.csv", "--out", files / "y"),
        ("decrypt", "--keys", keys, "--in", files / "x.enc"),  # features, not scores
        ("decrypt", "--keys", keys, "--in", files / "s.enc"),  # missing
        ("encrypt", "--keys", keys),  # missing options
    ]
    for args in cases:
        code, _, err = run(*args)
        assert code == 2, (args, err)
        assert err.startswith("accord: error: ") and err.count("\n") == 1, err
        assert "Traceback" not in err
    assert not (files / "y").exists()


def test_refusals_exit_3_and_foreign_keys_exit_2(run: Run, files: Path) -> None:
    keys, other = files / "keys", files / "other"
    run("keys", "--out", keys)
    run("keys", "--out", other)
    run("encrypt", "--keys", keys, "--csv", files / "x.csv", "--out", files / "x.enc")
    run("score", "--model", files / "model.json", "--in", files / "x.enc", "--out", files / "s.enc")
    code, _, err = run("decrypt", "--keys", other, "--in", files / "s.enc")
    assert code == 2 and "key set" in err
    args = ("decrypt", "--keys", keys, "--in", files / "s.enc", "--flood", "--score-bound", "0.01")
    code, out, err = run(*args)
    assert code == 3 and err.startswith("accord: refused: ") and out == ""
    (keys / "ckks-secret.keys").chmod(0o644)
    code, _, err = run("decrypt", "--keys", keys, "--in", files / "s.enc")
    assert code == 2 and "chmod 600" in err
