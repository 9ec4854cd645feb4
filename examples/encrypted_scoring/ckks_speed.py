"""Measure CKKS aggregation on this machine: encryption speed (one core) and bytes per party.

    .venv/bin/python examples/encrypted_scoring/ckks_speed.py [--params 1048576] [--parties 10]

Targets (issue "Protected aggregation"): ciphertext bytes per party at most 10x the float32
plaintext, and at least 1M parameters encrypted per second per core. TenSEAL runs with one
thread here (``n_threads=1``), so wall time is one core's time. The last line is the
headline figure.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from accord.protect.ckks import (
    AGGREGATION,
    AGGREGATION_FLOODED,
    CkksKeySet,
    CkksParams,
    add_ciphertexts,
    decrypt_sum,
    encrypt_vector,
)


def measure(params: CkksParams, n: int, parties: int) -> tuple[float, float]:
    keys = CkksKeySet.generate(params)
    public = keys.public_context()
    rng = np.random.default_rng(0)
    update = (rng.standard_normal(n) * 1e-3).astype(np.float32)
    encrypt_vector(keys, update[: params.slots])  # warm up
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        enc = encrypt_vector(keys, update)
        best = min(best, time.perf_counter() - start)
    rate = n / best
    ratio = enc.nbytes / (4 * n)
    start = time.perf_counter()
    total = add_ciphertexts(public, [enc] * parties)
    add_s = time.perf_counter() - start
    start = time.perf_counter()
    values = decrypt_sum(keys, total)
    dec_s = time.perf_counter() - start
    err = float(np.max(np.abs(values - parties * update.astype(np.float64))))
    print(
        f"{params.name:20s} N={params.poly_modulus_degree} encrypt {rate / 1e6:.2f} M params/s/core"
        f" | {enc.nbytes / n:.2f} bytes/param = {ratio:.2f}x float32"
        f" | add {parties} parties {add_s:.2f} s | decrypt {dec_s:.2f} s"
        f" | max err {err:.1e} (one ciphertext {parties} times: errors add linearly)"
    )
    return rate, ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=int, default=2**20)
    parser.add_argument("--parties", type=int, default=10)
    args = parser.parse_args()
    rate, ratio = measure(AGGREGATION, args.params, args.parties)
    measure(AGGREGATION_FLOODED, args.params, args.parties)
    print(f"ckks aggregation: {rate / 1e6:.2f} M params/s/core, {ratio:.2f}x float32 bytes")


if __name__ == "__main__":
    main()
