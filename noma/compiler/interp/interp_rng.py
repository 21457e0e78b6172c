"""The interpreter's model of the runtime's random generator, written from its documented contract
(noma_rt_rng.c's header, docs/RUNTIME_ABI.md), not from its code: xoshiro256** seeded by
splitmix64, uniform draws `(next() >> 11) * 2^-53`, normals by Marsaglia's polar method with a
cached spare and NOMA's own logarithm (fdlibm's algorithm, every operation rounded alone).

Owns: RuntimeRng (seed, uniform, normal, the six-word state checkpoints store) and noma_log.
Python floats round each operation as the C code does (no fused multiply-add), so the draws are
the runtime's bit for bit; tests/rt checks that against the runtime itself.
Imports: the standard library, numpy.
"""

from __future__ import annotations

import math
import struct

import numpy as np

MASK = (1 << 64) - 1

_LN2_HI, _LN2_LO = float.fromhex("0x1.62e42feep-1"), float.fromhex("0x1.a39ef35793c76p-33")
_LG1, _LG2, _LG3, _LG4, _LG5, _LG6, _LG7 = (float.fromhex(h) for h in (
    "0x1.5555555555593p-1", "0x1.999999997fa04p-2", "0x1.2492494229359p-2", "0x1.c71c51d8e78afp-3",
    "0x1.7466496cb03dep-3", "0x1.39a09d078c69fp-3", "0x1.2f112df3e5244p-3"))


def _bits(x: float) -> int:
    return int(struct.unpack("<Q", struct.pack("<d", x))[0])


def _float(bits: int) -> float:
    return float(struct.unpack("<d", struct.pack("<Q", bits & MASK))[0])


def _rotl(x: int, k: int) -> int:
    return ((x << k) | (x >> (64 - k))) & MASK


def noma_log(x: float) -> float:
    """The runtime's natural logarithm of a positive normal double (fdlibm's e_log.c, hfsq branch)."""
    ix = _bits(x)
    tmp = (ix - 0x3FE6A09E667F3BCD) & MASK
    k = (tmp >> 52) - (1 << 12 if tmp >> 63 else 0)  # arithmetic shift of a signed 64-bit value
    f = _float(ix - (tmp & (0xFFF << 52))) - 1.0
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (_LG2 + w * (_LG4 + w * _LG6))
    t2 = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7)))
    r = t2 + t1
    hfsq = 0.5 * f * f
    dk = float(k)
    return dk * _LN2_HI - ((hfsq - (s * (hfsq + r) + dk * _LN2_LO)) - f)


class RuntimeRng:
    """One generator, as a runtime context holds it (seeded with 0 at creation)."""

    def __init__(self, seed: float = 0.0):
        self.s = [0, 0, 0, 0]
        self.spare: float | None = None
        self.seed(seed)

    def seed(self, seed: float) -> None:
        s = float(seed)
        if math.isfinite(s) and s == math.floor(s) and -(2.0**63) <= s < 2.0**63:
            x = int(s) & MASK
        else:
            x = _bits(s)
        for i in range(4):
            x = (x + 0x9E3779B97F4A7C15) & MASK
            z = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
            self.s[i] = z ^ (z >> 31)
        self.spare = None

    def next(self) -> int:
        s0, s1, s2, s3 = self.s
        r = (_rotl((s1 * 5) & MASK, 7) * 9) & MASK
        t = (s1 << 17) & MASK
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        self.s = [s0, s1, s2, _rotl(s3, 45)]
        return r

    def u53(self) -> float:
        return (self.next() >> 11) * 2.0**-53

    def u24(self) -> float:
        """`rand()` of an f32 program: (next() >> 40) * 2^-24."""
        return (self.next() >> 40) * 2.0**-24

    def randn(self) -> float:
        if self.spare is not None:
            v, self.spare = self.spare, None
            return v
        while True:
            x = 2.0 * self.u53() - 1.0
            y = 2.0 * self.u53() - 1.0
            q = x * x + y * y
            if 0.0 < q < 1.0:
                break
        f = math.sqrt(-2.0 * noma_log(q) / q)
        self.spare = y * f
        return x * f

    def uniform(self, n: int) -> np.ndarray:
        return np.array([self.u53() for _ in range(n)], dtype=np.float64)

    def normal(self, n: int) -> np.ndarray:
        return np.array([self.randn() for _ in range(n)], dtype=np.float64)

    # --- the state as checkpoints store it: s0..s3, has_spare, the spare's bits

    def words(self) -> list[int]:
        spare = self.spare
        return list(self.s) + [0 if spare is None else 1, 0 if spare is None else _bits(spare)]

    def set_words(self, words: list[int]) -> None:
        self.s = [w & MASK for w in words[:4]]
        self.spare = _float(words[5]) if words[4] else None
