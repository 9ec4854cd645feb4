"""The node's secure generator: ChaCha20 keystream turned into noise, samples and masks.

Why this exists
---------------
The job seed is written in the job file, and every party (and the coordinator) reads the
job file. Anything derived from that seed can be recomputed by whoever reads it. If DP noise,
Poisson batch sampling, stochastic rounding, secure-aggregation masks or client sampling in
a DP job were drawn from torch's or NumPy's generators seeded by it, a reader of the job file
could regenerate the noise and subtract it, or know who was sampled, and the guarantee would
be void. Everything a privacy or security property rests on therefore comes from this
module: ChaCha20 (from ``cryptography``) keyed with 256 bits from ``os.urandom``. The key
and the counter stay in the node home (``secrets/`` and ``state/``) and never leave it.

Noise is computed *from the keystream bytes* with NumPy arithmetic. We never seed torch's or
NumPy's generators with keystream output: their state is small and their algorithms are
not designed to hide it, and a seeded generator is one more object that could be copied.

Keystream layout
----------------
``cryptography``'s ``algorithms.ChaCha20`` takes a 16-byte nonce whose first 4 bytes are
the little-endian 32-bit block counter and whose last 12 bytes are the RFC 8439 nonce
(checked against the RFC 8439 test vectors in the tests). Every draw call uses a fresh
nonce: 4 zero bytes (block counter 0) followed by the generator's 96-bit call counter in
little-endian, and then increments the call counter. Distinct call counters give disjoint
keystreams, so the keystream is never reused as long as the counter is never rewound.
One call may use at most 2**32 blocks (256 GiB); ``cryptography`` refuses to go further
rather than let the block counter carry into the nonce.

Crash safety
------------
The counter is persisted *ahead* of use. The generator keeps a high-water mark; before it
uses a call counter ``c >= mark`` it calls ``reserve(c + RESERVE_STEP)``, which must write
the new mark durably before returning. A node that crashes restarts from its stored mark,
which is above every counter it ever used, so it never reuses keystream (it merely skips
the unused rest of the reserved block). :class:`NodeGeneratorStore` implements this in a
node home, and refuses to go on when another process has reserved from the same home in
the meantime (two processes sharing one counter would reuse keystream).

Floating point
--------------
Gaussian noise is Box–Muller on 52-bit uniforms in float64. That is the noise DP-SGD and
DP-FedAvg add to float tensors; it is not a substitute for OpenDP's exact samplers, which
the DP-statistics path uses for released scalars.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
import torch
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms

from accord.errors import AccordError

__all__ = [
    "COUNTER_LIMIT",
    "KEY_BYTES",
    "RESERVE_STEP",
    "SecureGenerator",
]

KEY_BYTES = 32
"""ChaCha20 key length: 256 bits."""

COUNTER_LIMIT = 2**96
"""The call counter fills the 96-bit nonce part; it must stay below this."""

RESERVE_STEP = 1024
"""How many calls one durable reservation covers: one fsync per 1024 draw calls."""

_BLOCK_BYTES = 64
_MAX_CALL_BYTES = _BLOCK_BYTES * 2**32  # the 32-bit block counter of one nonce
_TWO_POW_64 = 2**64


class _Keystream:
    """The keystream of one draw call (one nonce), read front to back."""

    def __init__(self, context: CipherContext) -> None:
        self._context = context
        self._used = 0

    def read(self, n: int) -> bytes:
        if self._used + n > _MAX_CALL_BYTES:
            raise ValueError(
                f"one draw call may use at most {_MAX_CALL_BYTES} keystream bytes; split the draw"
            )
        self._used += n
        # Encrypting zeros yields the raw keystream.
        return self._context.update(bytes(n))

    def words(self, n: int) -> npt.NDArray[np.uint64]:
        """``n`` uniform 64-bit words (little-endian, so the layout is platform-independent)."""
        return np.frombuffer(self.read(8 * n), dtype="<u8").astype(np.uint64)


def _check_count(n: int, what: str = "n") -> None:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {n!r}")


class SecureGenerator:
    """A ChaCha20-based generator for everything privacy or security rests on.

    ``key`` is 32 bytes. ``counter`` is the next call counter to use (0 <= counter < 2**96).
    ``reserve``, when given, is called with a new high-water mark before any counter at or
    above the current mark is used, and must persist that mark durably before returning;
    the generator starts with its mark equal to ``counter``, so the first draw reserves.

    Every public draw method uses exactly one call counter. Arguments that make no sense
    (negative sizes, probabilities outside [0, 1]) raise ``ValueError``: they are bugs in
    the caller, not bad user input. The generator is safe to share between threads.
    """

    def __init__(
        self,
        key: bytes,
        counter: int = 0,
        reserve: Callable[[int], None] | None = None,
    ) -> None:
        if not isinstance(key, bytes) or len(key) != KEY_BYTES:
            raise ValueError(f"the key must be {KEY_BYTES} bytes")
        if isinstance(counter, bool) or not isinstance(counter, int):
            raise ValueError(f"counter must be an int, got {counter!r}")
        if not 0 <= counter < COUNTER_LIMIT:
            raise ValueError(f"counter must be in [0, 2**96), got {counter}")
        self._key = key
        self._counter = counter
        self._mark = counter
        self._reserve = reserve
        self._lock = threading.Lock()

    @classmethod
    def fresh(cls) -> SecureGenerator:
        """A generator with a new random key and no persistence (tests, coordinators)."""
        return cls(os.urandom(KEY_BYTES))

    @property
    def counter(self) -> int:
        """The call counter the next draw will use."""
        return self._counter

    def __repr__(self) -> str:
        # Never show the key.
        return f"SecureGenerator(counter={self._counter})"

    def _stream(self) -> _Keystream:
        with self._lock:
            c = self._counter
            if c >= COUNTER_LIMIT:
                raise AccordError(
                    "the secure generator's 96-bit counter is exhausted; create a new key"
                )
            if self._reserve is not None and c >= self._mark:
                new_mark = min(c + RESERVE_STEP, COUNTER_LIMIT)
                # Persist first: if this raises, the counter is not used and not advanced.
                self._reserve(new_mark)
                self._mark = new_mark
            self._counter = c + 1
        nonce = b"\x00\x00\x00\x00" + c.to_bytes(12, "little")
        context = Cipher(algorithms.ChaCha20(self._key, nonce), mode=None).encryptor()
        return _Keystream(context)

    # --- draws -------------------------------------------------------------------------

    def random_bytes(self, n: int) -> bytes:
        """``n`` uniformly random bytes."""
        _check_count(n)
        return self._stream().read(int(n))

    def uniform(self, n: int) -> npt.NDArray[np.float64]:
        """``n`` uniforms in the open interval (0, 1), float64.

        Each comes from the top 52 bits ``k`` of a 64-bit word as ``(k + 0.5) / 2**52``:
        an odd multiple of 2**-53, exactly representable, never 0 or 1, so ``log(u)`` and
        ``log(1 - u)`` are always finite.
        """
        _check_count(n)
        return self._uniform_from(self._stream(), int(n))

    @staticmethod
    def _uniform_from(stream: _Keystream, n: int) -> npt.NDArray[np.float64]:
        # 52 and not 53 bits: (k + 0.5) for k near 2**53 is not representable in float64
        # and would round up to 2**53, giving exactly 1.0.
        k = (stream.words(n) >> np.uint64(12)).astype(np.float64)
        u: npt.NDArray[np.float64] = (k + 0.5) * (2.0**-52)
        return u

    def normal(self, n: int, std: float = 1.0) -> npt.NDArray[np.float64]:
        """``n`` independent draws from N(0, std**2), float64 (Box–Muller)."""
        _check_count(n)
        _check_std(std)
        n = int(n)
        pairs = (n + 1) // 2
        stream = self._stream()
        u = self._uniform_from(stream, 2 * pairs)
        radius = np.sqrt(-2.0 * np.log(u[:pairs]))
        angle = (2.0 * math.pi) * u[pairs:]
        z = np.empty(2 * pairs, dtype=np.float64)
        z[0::2] = radius * np.cos(angle)
        z[1::2] = radius * np.sin(angle)
        out: npt.NDArray[np.float64] = z[:n] * float(std)
        return out

    def normal_tensor(
        self,
        shape: Sequence[int] | torch.Size,
        std: float,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """A tensor of N(0, std**2) noise of ``shape``, computed from :meth:`normal`."""
        dims = tuple(int(d) for d in shape)
        for d in dims:
            _check_count(d, "every dimension of shape")
        count = math.prod(dims)
        values = self.normal(count, std).reshape(dims)
        return torch.from_numpy(values).to(dtype)

    def bernoulli(self, n: int, p: float) -> npt.NDArray[np.bool_]:
        """``n`` independent booleans, each True with probability ``p`` (Poisson sampling)."""
        _check_count(n)
        p = float(p)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        result: npt.NDArray[np.bool_] = self.uniform(n) < p
        return result

    def integers(self, n: int, high: int) -> npt.NDArray[np.int64]:
        """``n`` integers uniform in ``[0, high)``, int64, unbiased (rejection sampling).

        A 64-bit word ``w`` is accepted when ``w < 2**64 - (2**64 mod high)``, the largest
        multiple of ``high`` that fits, and mapped to ``w mod high``; rejected words are
        replaced from the same call's keystream.
        """
        _check_count(n)
        if isinstance(high, bool) or not isinstance(high, int | np.integer):
            raise ValueError(f"high must be an int, got {high!r}")
        high = int(high)
        if not 1 <= high <= 2**63:
            raise ValueError(f"high must be in [1, 2**63], got {high}")
        n = int(n)
        stream = self._stream()
        remainder = _TWO_POW_64 % high
        out = np.empty(n, dtype=np.int64)
        filled = 0
        while filled < n:
            need = n - filled
            # Draw a little extra so that one more pass is rarely needed.
            words = stream.words(need + need // 16 + 1)
            if remainder:
                words = words[words < np.uint64(_TWO_POW_64 - remainder)]
            take = words[:need] % np.uint64(high)
            out[filled : filled + take.size] = take.astype(np.int64)
            filled += take.size
        return out

    def permutation(self, n: int) -> npt.NDArray[np.int64]:
        """A uniformly random permutation of ``range(n)``, int64.

        Sorts indices by random 64-bit keys; when two keys tie (probability about
        n**2 / 2**65) it draws all keys again from the same call's keystream, so the
        result is exactly uniform given distinct keys.
        """
        _check_count(n)
        n = int(n)
        stream = self._stream()
        while True:
            keys = stream.words(n)
            order = np.argsort(keys, kind="stable")
            sorted_keys = keys[order]
            if n < 2 or not bool(np.any(sorted_keys[1:] == sorted_keys[:-1])):
                return order.astype(np.int64)


def _check_std(std: float) -> None:
    if not math.isfinite(float(std)) or float(std) < 0.0:
        raise ValueError(f"std must be finite and non-negative, got {std!r}")
