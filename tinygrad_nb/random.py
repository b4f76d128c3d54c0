"""The central random number generator.

Every random draw in tinygrad_nb (``randn``, ``rand``, dropout masks, ``nn.init``, DataLoader shuffling) comes
from one counter-based generator, Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
SC'11). Its whole state is two plain integers, ``seed`` and ``offset`` (how many 128-bit blocks have been used), so:

* ``get_rng_state()`` is a small dict you can put in JSON, and ``set_rng_state`` restores it exactly;
* block ``i`` of the stream is a pure function of ``(seed, i)``, computed with 32-bit integer arithmetic that numpy
  and cupy evaluate identically, so the same seed gives the same bits on every device.

Integers and uniforms are bit-identical across devices. Normals use Box-Muller computed in float64 and then rounded,
so the device's ``log``/``cos`` may differ from the CPU's by an ulp in float64, which almost never survives the rounding
to float32 (see docs/determinism.md).
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from . import determinism, portable

_MASK32 = 0xFFFFFFFF
_PHILOX_M0, _PHILOX_M1 = 0xD2511F53, 0xCD9E8D57
_PHILOX_W0, _PHILOX_W1 = 0x9E3779B9, 0xBB67AE85
DEFAULT_SEED = 0  # reproducible by default: a fresh process draws the same numbers until you seed it


def philox4x32(counter_lo: Any, counter_hi: Any, seed: int, xp: Any = np) -> tuple[Any, Any, Any, Any]:
    """Philox-4x32-10 on arrays of 64-bit block indices split into (lo, hi) 32-bit words.

    Returns four uint32 arrays (the four output words of every block). All arithmetic is done in uint64 holding
    32-bit values, so it is exact and identical on numpy and cupy.
    """
    c0 = counter_lo.astype(xp.uint64)
    c1 = counter_hi.astype(xp.uint64)
    c2 = xp.zeros_like(c0)
    c3 = xp.zeros_like(c0)
    k0, k1 = seed & _MASK32, (seed >> 32) & _MASK32
    m0, m1 = xp.uint64(_PHILOX_M0), xp.uint64(_PHILOX_M1)
    mask, shift = xp.uint64(_MASK32), xp.uint64(32)
    for _ in range(10):
        p0 = c0 * m0  # a 32x32 -> 64 bit product never overflows uint64
        p1 = c2 * m1
        hi0, lo0 = p0 >> shift, p0 & mask
        hi1, lo1 = p1 >> shift, p1 & mask
        c0, c1, c2, c3 = hi1 ^ c1 ^ xp.uint64(k0), lo1, hi0 ^ c3 ^ xp.uint64(k1), lo0
        k0, k1 = (k0 + _PHILOX_W0) & _MASK32, (k1 + _PHILOX_W1) & _MASK32
    return (c0.astype(xp.uint32), c1.astype(xp.uint32), c2.astype(xp.uint32), c3.astype(xp.uint32))


class Generator:
    """A Philox stream: ``seed`` picks the stream, ``offset`` counts the 128-bit blocks already drawn."""

    def __init__(self, seed: int = DEFAULT_SEED):
        self.manual_seed(seed)

    def manual_seed(self, seed: int) -> Generator:
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise TypeError(f"manual_seed: seed must be an int, got {type(seed).__name__}")
        self.seed = int(seed) & 0xFFFFFFFFFFFFFFFF
        self.offset = 0
        return self

    def __repr__(self) -> str:
        return f"Generator(seed={self.seed}, offset={self.offset})"

    def get_state(self) -> dict[str, int]:
        return {"seed": self.seed, "offset": self.offset}

    def set_state(self, state: dict[str, int]) -> None:
        try:
            seed, offset = int(state["seed"]), int(state["offset"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"set_rng_state: expected {{'seed': int, 'offset': int}}, got {state!r}") from e
        if offset < 0:
            raise ValueError(f"set_rng_state: offset must be >= 0, got {offset}")
        self.seed, self.offset = seed & 0xFFFFFFFFFFFFFFFF, offset

    # -- raw bits -------------------------------------------------------------------------------------------
    def random_bits(self, n: int, xp: Any = np) -> Any:
        """The next ``n`` uint32 words of the stream (advances the offset by ceil(n / 4) blocks)."""
        blocks = (n + 3) // 4
        index = xp.arange(self.offset, self.offset + blocks, dtype=xp.uint64)
        self.offset += blocks
        words = philox4x32(index & xp.uint64(_MASK32), index >> xp.uint64(32), self.seed, xp)
        return xp.stack(words, axis=1).reshape(-1)[:n]

    # -- distributions --------------------------------------------------------------------------------------
    def uniform(self, shape: tuple[int, ...], dtype: Any = np.float32, xp: Any = np) -> Any:
        """U[0, 1): float32 from 24 random bits, float64 from 53 (exact, so identical on every device)."""
        n = math.prod(shape)
        if np.dtype(dtype) == np.float64:
            bits = self.random_bits(2 * n, xp).astype(xp.uint64).reshape(n, 2)
            mantissa = (bits[:, 0] >> xp.uint64(5)) * xp.uint64(1 << 26) + (bits[:, 1] >> xp.uint64(6))
            out = mantissa.astype(xp.float64) * (1.0 / (1 << 53))
        else:
            out = (self.random_bits(n, xp) >> xp.uint32(8)).astype(xp.float32) * np.float32(1.0 / (1 << 24))
        return out.reshape(shape).astype(dtype, copy=False)

    def normal(self, shape: tuple[int, ...], dtype: Any = np.float32, xp: Any = np) -> Any:
        """N(0, 1) by Box-Muller: z = sqrt(-2 ln u1) cos(2 pi u2), computed in float64 then rounded to ``dtype``.

        Under ``deterministic("portable")`` ln and cos are :mod:`tinygrad_nb.portable`'s kernels (IEEE +-*/ only),
        so the normals are the same bits on every CPU; otherwise numpy's (SIMD-dispatched) ``log`` and ``cos``.
        """
        n = math.prod(shape)
        bits = self.random_bits(2 * n, xp).astype(xp.float64).reshape(n, 2)
        u1 = (bits[:, 0] + 0.5) * (1.0 / 2**32)  # in (0, 1): log never sees 0
        u2 = bits[:, 1] * (1.0 / 2**32)
        if determinism.portable_mode:
            z = xp.sqrt(-2.0 * portable.log64(u1)) * portable.cos_turns64(u2)
        else:
            z = xp.sqrt(-2.0 * xp.log(u1)) * xp.cos((2.0 * math.pi) * u2)
        return z.reshape(shape).astype(dtype)

    def randint(self, low: int, high: int, shape: tuple[int, ...], dtype: Any = np.int64, xp: Any = np) -> Any:
        """Integers uniform in [low, high) (64 random bits per draw, so the modulo bias is below 2^-32)."""
        if high <= low:
            raise ValueError(f"randint: high ({high}) must be greater than low ({low})")
        n = math.prod(shape)
        bits = self.random_bits(2 * n, xp).astype(xp.uint64).reshape(n, 2)
        r = (bits[:, 0] << xp.uint64(32)) | bits[:, 1]
        out = (r % xp.uint64(high - low)).astype(xp.int64) + low
        return out.reshape(shape).astype(dtype)

    def randperm(self, n: int, xp: Any = np) -> Any:
        """A random permutation of 0..n-1: a stable argsort of 64-bit random keys (same order on every device)."""
        bits = self.random_bits(2 * n, xp).astype(xp.uint64).reshape(n, 2)
        keys = (bits[:, 0] << xp.uint64(32)) | bits[:, 1]
        return xp.argsort(keys, kind="stable").astype(xp.int64)


default_generator = Generator()


def manual_seed(seed: int) -> Generator:
    """Seed the central generator (and so every later random draw). Returns the generator."""
    return default_generator.manual_seed(seed)


def seed() -> int:
    """The seed the central generator was last seeded with."""
    return default_generator.seed


def get_rng_state() -> dict[str, int]:
    """The central generator's whole state as plain data: ``{"seed": int, "offset": int}``."""
    return default_generator.get_state()


def set_rng_state(state: dict[str, int]) -> None:
    """Restore a state returned by :func:`get_rng_state`; the following draws repeat exactly."""
    default_generator.set_state(state)


@contextlib.contextmanager
def fork_rng() -> Iterator[Generator]:
    """Run a block with the central generator and restore its state afterwards, as if the block drew nothing."""
    saved = get_rng_state()
    try:
        yield default_generator
    finally:
        set_rng_state(saved)
