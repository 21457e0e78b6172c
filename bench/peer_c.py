"""Plain C peers (bench/c/mlp.c): built with gcc -O3 -march=native, and with -ffast-math added;
one ctypes call runs the whole training loop, timed around the call."""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from wl import GrowMlp, Mlp, XorGrow

SRC = Path(__file__).resolve().parent / "c" / "mlp.c"
FLAGS = {"O3": ["-O3", "-march=native"], "fastmath": ["-O3", "-march=native", "-ffast-math"]}
_LIBS: dict[tuple[str, str], ctypes.CDLL] = {}


def compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")


def build(variant: str, dtype: str) -> ctypes.CDLL:
    key = (variant, dtype)
    if key in _LIBS:
        return _LIBS[key]
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler (gcc) found")
    flags = FLAGS[variant] + (["-DREAL_F32"] if dtype == "f32" else [])
    digest = hashlib.sha256(SRC.read_bytes() + " ".join([cc] + flags).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("NOMA_CACHE_DIR", Path.home() / ".cache" / "noma")) / "bench"
    cache.mkdir(parents=True, exist_ok=True)
    lib_path = cache / f"mlp_{variant}_{dtype}_{digest}.so"
    if not lib_path.exists():
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / lib_path.name
            subprocess.run([cc, *flags, "-fPIC", "-shared", str(SRC), "-o", str(out), "-lm"], check=True)
            os.replace(out, lib_path)
    lib = ctypes.CDLL(str(lib_path))
    real = ctypes.c_float if dtype == "f32" else ctypes.c_double
    P = ctypes.c_void_p
    lib.mlp_train.restype = ctypes.c_double
    lib.mlp_train.argtypes = [ctypes.c_int, P, P, P, P, P, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                              ctypes.c_double]
    lib.xor_grow_train.restype = ctypes.c_double
    lib.xor_grow_train.argtypes = ([ctypes.c_int, ctypes.c_int] + [P] * 9 +
                                   [ctypes.c_double, ctypes.c_int, ctypes.c_double, ctypes.c_double,
                                    ctypes.c_int, P])
    lib.grow_mlp_train.restype = ctypes.c_double
    lib.grow_mlp_train.argtypes = [ctypes.c_int] * 6 + [P, P, ctypes.c_int, ctypes.c_int] + [P] * 5 + [ctypes.c_double]
    lib.set_gemm.argtypes = [P]
    lib.set_gemm.restype = None
    lib.real = real
    _LIBS[key] = lib
    return lib


def _ptr(a: np.ndarray) -> int:
    return a.ctypes.data


def xor_grow(w: XorGrow, variant: str) -> tuple[float, float, int]:
    lib = build(variant, w.dtype)
    arrs = [np.ascontiguousarray(a, dtype=np.float64) for a in
            (w.X, w.Y, w.init["W1"], w.init["b1"], w.init["W2"], w.init["b2"],
             w.grow["W1"], w.grow["b1"], w.grow["W2"])]
    steps = ctypes.c_int(0)
    t0 = time.perf_counter()
    loss = lib.xor_grow_train(w.hidden, w.grown, *[_ptr(a) for a in arrs], w.lr1, w.steps1, w.lr2,
                              w.target, w.max2, ctypes.addressof(steps))
    return time.perf_counter() - t0, loss, steps.value


def mlp(w: Mlp, steps: int, variant: str, gemm: int | None = None) -> tuple[float, float, int]:
    lib = build(variant, w.dtype)
    dt = w.np_dtype
    L = w.layers
    Ws = [np.ascontiguousarray(w.init[f"W{i + 1}"], dtype=dt).copy() for i in range(L)]
    bs = [np.ascontiguousarray(w.init[f"b{i + 1}"], dtype=dt).copy() for i in range(L)]
    sizes = (ctypes.c_int * (L + 1))(*w.sizes)
    Wp = (ctypes.c_void_p * L)(*[_ptr(a) for a in Ws])
    bp = (ctypes.c_void_p * L)(*[_ptr(a) for a in bs])
    lib.set_gemm(gemm)
    try:
        t0 = time.perf_counter()
        loss = lib.mlp_train(L, sizes, Wp, bp, _ptr(w.X), _ptr(w.Y), w.rows, w.batch, steps, w.lr)
        dt_s = time.perf_counter() - t0
    finally:
        lib.set_gemm(None)
    return dt_s, loss, steps


def grow_mlp(w: GrowMlp, variant: str) -> tuple[float, float, int]:
    lib = build(variant, w.dtype)
    dt = w.np_dtype
    init = [np.ascontiguousarray(w.init[k], dtype=dt) for k in ("W1", "b1", "W2", "b2")]
    z = np.ascontiguousarray(w.z, dtype=np.float64)
    t0 = time.perf_counter()
    loss = lib.grow_mlp_train(w.n_in, w.Y.shape[1], w.h0, w.h_max, w.h_step, w.steps_per_size,
                              _ptr(w.X), _ptr(w.Y), w.rows, w.batch, *[_ptr(a) for a in init], _ptr(z), w.lr)
    return time.perf_counter() - t0, loss, w.steps
