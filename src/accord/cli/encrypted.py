"""``accord encrypted``: score a linear or logistic model on encrypted features (CKKS).

The data owner runs ``keys``, ``encrypt`` and ``decrypt``; the model owner runs ``score``
and never sees a feature or a score. See docs/guides/encrypted-computation.md.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from accord.protect.ckks import CkksKeySet

SECRET_FILE = "ckks-secret.keys"
PUBLIC_FILE = "ckks-public.ctx"

_file = click.Path(path_type=Path, dir_okay=False)
_folder = click.Path(path_type=Path, file_okay=False)


@click.group(
    "encrypted",
    help="Compute on encrypted data: a model owner scores a data owner's encrypted features.",
)
def encrypted() -> None:
    pass


def _read(path: Path, what: str) -> bytes:
    from accord.errors import InputError

    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file ({what})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read {what} ({exc.strerror})") from None


def _load_keys(folder: Path) -> CkksKeySet:
    from accord.errors import InputError
    from accord.protect.ckks import CkksKeySet

    path = folder / SECRET_FILE
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        raise InputError(
            f"{path}: no such file; create keys with `accord encrypted keys --out {folder}`"
        ) from None
    if mode & 0o077:
        raise InputError(f"{path}: the secret key is readable by others; run `chmod 600 {path}`")
    return CkksKeySet.from_secret_bytes(_read(path, "the secret key set"), str(path))


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    from accord.errors import InputError
    from accord.fileio import write_bytes_atomic

    try:
        write_bytes_atomic(path, data, mode)
    except OSError as exc:
        raise InputError(f"{path}: cannot write it ({exc.strerror})") from None


@encrypted.command()
@click.option("--out", "out", type=_folder, required=True, help="Folder for the key files.")
def keys(out: Path) -> None:
    """Create a fresh CKKS key set (data owner): ckks-secret.keys stays with you."""
    from accord.errors import InputError
    from accord.protect.ckks import SCORING, CkksKeySet

    secret_path, public_path = out / SECRET_FILE, out / PUBLIC_FILE
    for path in (secret_path, public_path):
        if path.exists() or path.is_symlink():
            raise InputError(f"{path} already exists; Accord never overwrites a key file")
    key_set = CkksKeySet.generate(SCORING)
    _write(secret_path, key_set.secret_bytes(), 0o600)
    _write(public_path, key_set.public_bytes())
    print(f"key set {key_set.key_id} (preset {SCORING.name}, N = {SCORING.poly_modulus_degree})")
    print(f"wrote {secret_path} (secret key, mode 600: never send it) and {public_path}")


def _read_csv(path: Path) -> tuple[list[str], list[list[float]]]:
    import csv

    from accord.errors import DataError

    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read the CSV ({exc})") from None
    if len(rows) < 2:
        raise DataError(f"{path}: needs a header line and at least one row")
    names = [n.strip() for n in rows[0]]
    if not all(names) or len(set(names)) != len(names):
        raise DataError(f"{path}: the header needs distinct, non-empty column names")
    table = []
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(names):
            raise DataError(f"{path}:{number}: {len(row)} fields, expected {len(names)}")
        try:
            table.append([float(v) for v in row])
        except ValueError:
            raise DataError(f"{path}:{number}: every field must be a number") from None
    return names, table


_agreement_option = click.option(
    "--agreement",
    "agreement_path",
    type=_file,
    default=None,
    help="Check this signed agreement first (with --party): in force, and permitting it.",
)
_party_option = click.option("--party", default=None, help="Your party name in --agreement.")


def _check_agreement(agreement_path: Path | None, party: str | None, kind: str | None) -> None:
    """Refuse (exit 3, naming the clause) a scoring step the agreement does not permit."""
    if agreement_path is None:
        return
    from accord.errors import AgreementRefusedError, InputError
    from accord.governance.agreement import load_agreement
    from accord.governance.agreement_check import scoring_violations

    if party is None:
        raise InputError("--agreement needs --party, your party name in the agreement")
    agreement = load_agreement(agreement_path)
    agreement.check_in_force()
    violations = scoring_violations(agreement.terms, party, kind)
    if violations:
        raise AgreementRefusedError(f"agreement {agreement.label}, {violations[0].line()}")


@encrypted.command()
@click.option("--keys", "keys_dir", type=_folder, required=True, help="Folder of `keys`.")
@click.option("--csv", "csv_path", type=_file, required=True, help="Features: header + rows.")
@click.option("--out", "out", type=_file, required=True, help="Encrypted features to send.")
@_agreement_option
@_party_option
def encrypt(
    keys_dir: Path, csv_path: Path, out: Path, agreement_path: Path | None, party: str | None
) -> None:
    """Encrypt every column of a CSV of numeric features (data owner)."""
    from accord.protect.encrypted_scoring import encrypt_features

    _check_agreement(agreement_path, party, None)
    key_set = _load_keys(keys_dir)
    names, table = _read_csv(csv_path)
    enc = encrypt_features(key_set, table, names)
    _write(out, enc.to_bytes())
    print(f"wrote {out}: {enc.rows} rows x {len(names)} features, encrypted; send it")


@encrypted.command()
@click.option("--model", "model_path", type=_file, required=True, help=".json/.safetensors")
@click.option("--in", "in_path", type=_file, required=True, help="Encrypted features.")
@click.option("--out", "out", type=_file, required=True, help="Encrypted scores to return.")
@_agreement_option
@_party_option
def score(
    model_path: Path, in_path: Path, out: Path, agreement_path: Path | None, party: str | None
) -> None:
    """Score encrypted features with a linear or logistic model (model owner)."""
    from accord.protect.encrypted_scoring import (
        EncryptedFeatures,
        LinearModel,
        score_encrypted,
    )

    model = LinearModel.load(model_path)
    _check_agreement(agreement_path, party, model.kind)
    enc = EncryptedFeatures.from_bytes(_read(in_path, "encrypted features"), str(in_path))
    scores = score_encrypted(model, enc)
    _write(out, scores.to_bytes())
    what = "logits" if model.kind == "logistic" else "scores"
    print(f"wrote {out}: {scores.rows} encrypted {what}, not flooded; return it")


@encrypted.command()
@click.option("--keys", "keys_dir", type=_folder, required=True, help="Folder of `keys`.")
@click.option("--in", "in_path", type=_file, required=True, help="Encrypted scores.")
@click.option("--out", "out", type=_file, default=None, help="CSV to write (default: stdout).")
@click.option(
    "--flood",
    is_flag=True,
    help="Flood the scores for release to someone without the secret key (Li-Micciancio).",
)
@click.option(
    "--score-bound",
    type=click.FloatRange(min=0, min_open=True),
    default=64.0,
    show_default=True,
    help="With --flood: the largest |score| (refused if exceeded).",
)
@click.option(
    "--releases",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="With --flood: how many flooded releases you will make under this key set.",
)
def decrypt(
    keys_dir: Path, in_path: Path, out: Path | None, flood: bool, score_bound: float, releases: int
) -> None:
    """Decrypt scores (data owner); a logistic model's probability is sigmoid(logit)."""
    import numpy as np

    from accord.protect.encrypted_scoring import (
        EncryptedScores,
        decrypt_scores,
        decrypt_scores_flooded,
        sigmoid,
    )
    from accord.secure_random import SecureGenerator

    key_set = _load_keys(keys_dir)
    scores = EncryptedScores.from_bytes(_read(in_path, "encrypted scores"), str(in_path))
    note = ""
    if flood:
        release = decrypt_scores_flooded(
            key_set,
            scores,
            score_bound=score_bound,
            generator=SecureGenerator.fresh(),
            releases=releases,
        )
        values, sigma = release.values, release.plan.sigma
        note = f"flooded: N(0, {sigma:.3g}^2) per score, {release.plan.security_bits:g} bits"
    else:
        values = decrypt_scores(key_set, scores)
        note = "not flooded: keep these scores among key holders"
    header = "row,logit,probability" if scores.kind == "logistic" else "row,score"
    lines = [header]
    probabilities = sigmoid(values) if scores.kind == "logistic" else None
    for i, value in enumerate(np.asarray(values)):
        extra = f",{probabilities[i]:.6f}" if probabilities is not None else ""
        lines.append(f"{i},{value:.9g}{extra}")
    text = "\n".join(lines) + "\n"
    if out is None:
        sys.stdout.write(text)
        print(note, file=sys.stderr)
    else:
        _write(out, text.encode("utf-8"))
        print(f"wrote {out}: {scores.rows} rows; {note}")
