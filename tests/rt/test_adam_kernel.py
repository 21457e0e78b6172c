"""One Adam / AdamW step of the runtime (noma_rt_adam.c) against the formula in NumPy, entry by
entry: many sizes (vector blocks and masked tails), mixed per-entry step counts (runs that start
inside a vector block, entries at step 0 whose stored powers are meaningless), values over the
whole exponent range and the IEEE edge cases (v = 0, eps = 0, inf, NaN)."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from noma.rt import native_lib as nl

ADAM, ADAMW = 2, 4


@pytest.fixture(scope="module", params=["f64", "f32"])
def rt(request):
    try:
        lib = nl.load_runtime(request.param)
    except nl.CompilerNotFound as exc:  # pragma: no cover
        pytest.skip(str(exc))
    c = lib.noma_ctx_new()
    lib.noma_ctx_activate(c)
    lib.noma_set_capture(c, 1)
    yield lib, request.param
    lib.noma_ctx_free(c)


def _T(arr, dtype):
    return nl.tensor_class(dtype).from_array(np.asarray(arr, dtype=np.float64), dtype)


def _state(lib, slot, which):
    t = nl.tensor_class(lib.noma_dtype)()
    lib.noma_param_state(slot, which, ctypes.byref(t))
    return t.to_numpy().astype(np.float64)


def _reference(kind, h, p, g, m, v, t, q1, q2, dt=np.longdouble):
    """The formula in `dt` (default extended precision); returns (p, m, v, pow1, pow2) and the
    scale of the new p (|decayed p| + |update|) against which its error is measured."""
    p, g, m, v = (x.astype(dt) for x in (p, g, m, v))
    q1 = np.where(t == 0, 1, q1).astype(dt)
    q2 = np.where(t == 0, 1, q2).astype(dt)
    lr, b1, b2, eps, wd = (dt(x) for x in h)
    one = dt(1)
    with np.errstate(all="ignore"):
        if kind == ADAMW:
            p = p * (one - lr * wd)
        else:
            g = g + wd * p
        m = b1 * m + (one - b1) * g
        v = b2 * v + (one - b2) * g * g
        q1, q2 = q1 * b1, q2 * b2
        upd = (lr / (one - q1)) * (m / (np.sqrt(v) / np.sqrt(one - q2) + eps))
        return (p - upd, m, v, q1, q2), np.abs(p) + np.abs(upd)


def _step(lib, dtype, kind, h, p, g, m, v, t, q1, q2):
    lib.noma_param_set(0, b"W", ctypes.byref(_T(p, dtype)))
    hyper = np.full(16, np.nan, dtype=np.float64 if dtype == "f64" else np.float32)
    hyper[[0, 1, 2, 3, 4]] = h
    lib.noma_opt_begin(0, kind, hyper.ctypes.data)
    for which, arr in ((0, m), (1, v), (2, t.astype(np.float64)), (3, q1), (4, q2)):
        lib.noma_param_state_set(0, which, ctypes.byref(_T(arr, dtype)))
    lib.noma_opt_step(0, ctypes.byref(_T(g, dtype)))
    assert lib.noma_error_kind(None) == -1
    out = lib.noma_param(0).contents.to_numpy().astype(np.float64)
    return out, [_state(lib, 0, w) for w in range(5)]


def _random_state(rng, n, dtype):
    """Entries over many magnitudes, step counts in runs (and a few scattered)."""
    span = 250 if dtype == "f64" else 30
    m = rng.normal(size=n) * 10.0 ** rng.integers(-span // 2, span // 8, n)
    v = np.abs(rng.normal(size=n)) * 10.0 ** rng.integers(-span, span // 4, n)
    g = rng.normal(size=n) * 10.0 ** rng.integers(-span // 4, span // 8, n)
    t = np.repeat(rng.integers(0, 40, max(1, n // 5 + 1)), 5)[:n]
    t[rng.random(n) < 0.05] = 0
    q1, q2 = 0.9 ** t.astype(float), 0.999 ** t.astype(float)
    q1[t == 0] = 0.0  # stored powers of step-0 entries are meaningless (read as 1)
    q2[t == 0] = 7.0
    v[rng.random(n) < 0.05] = 0.0
    return m, v, g, t, q1, q2


@pytest.mark.parametrize("kind", [ADAM, ADAMW])
@pytest.mark.parametrize("n", [1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 100, 1000])
def test_one_step_matches_the_formula(rt, kind, n):
    lib, dtype = rt
    rng = np.random.default_rng(n * 10 + kind)
    fdt = np.float64 if dtype == "f64" else np.float32
    m, v, g, t, q1, q2 = (x.astype(fdt).astype(np.float64) if x.dtype.kind == "f" else x
                          for x in _random_state(rng, n, dtype))
    p = np.zeros(n) if kind == ADAM else rng.normal(size=n).astype(fdt).astype(np.float64)
    h = tuple(float(fdt(x)) for x in (0.01, 0.9, 0.999, 1e-8, 0.01 if kind == ADAMW else 0.0))
    out, st = _step(lib, dtype, kind, h, p, g, m, v, t, q1, q2)
    # f64: against the exact formula; f32: against the formula in single precision (1 - pow2
    # cancels: its rounding in f32 is the formula's, not the kernel's)
    (ref, rm, rv, rq1, rq2), scale = _reference(kind, h, p, g, m, v, t, q1, q2,
                                                np.longdouble if dtype == "f64" else fdt)
    # the update is within a few ulp of it
    rtol = 1e-14 if dtype == "f64" else 1e-6
    err = np.abs(out - ref.astype(np.float64))
    assert np.all(err <= rtol * scale.astype(np.float64)), np.max(err / scale.astype(np.float64))
    np.testing.assert_allclose(st[0], rm.astype(np.float64), rtol=rtol, atol=0)
    np.testing.assert_allclose(st[1], rv.astype(np.float64), rtol=rtol, atol=0)
    assert np.array_equal(st[2], t + 1)
    np.testing.assert_allclose(st[3], rq1.astype(np.float64), rtol=rtol)
    np.testing.assert_allclose(st[4], rq2.astype(np.float64), rtol=rtol)


def test_edge_cases(rt):
    lib, dtype = rt
    inf, nan = np.inf, np.nan
    big = 1e300 if dtype == "f64" else 1e37
    # m/v/g combinations that leave the fast path's range: zero, inf, nan, subnormal, huge
    g = np.array([0.0, 1.0, -1.0, inf, nan, 1e-160, 0.0, big, 2.0, -3.0, 0.0])
    m = np.array([0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 1e-300, 0.0, 0.0, 0.0, 1.0])
    v = np.zeros(11)
    t = np.zeros(11, np.int64)
    fdt = np.float64 if dtype == "f64" else np.float32
    for eps in (1e-8, 0.0):
        h = tuple(float(fdt(x)) for x in (0.001, 0.9, 0.999, eps, 0.0))
        out, _ = _step(lib, dtype, ADAM, h, np.zeros(11), g, m, v, t, np.ones(11), np.ones(11))
        ref = _reference(ADAM, h, np.zeros(11), g, m, v, t, np.ones(11), np.ones(11), fdt)[0][0]
        ref = ref.astype(np.float64)
        both_nan = np.isnan(out) & np.isnan(ref)
        close = np.isclose(out, ref, rtol=1e-14 if dtype == "f64" else 2e-6, atol=0)
        assert np.all(both_nan | close | (out == ref)), (eps, out, ref)


@pytest.mark.parametrize("eps", [1e-8, 0.0])
def test_whole_exponent_range(rt, eps):
    """m and v log-uniform over the whole range (subnormals included): the fast square root and
    division keep their accuracy, or the exact ones take over."""
    lib, dtype = rt
    fdt = np.float64 if dtype == "f64" else np.float32
    lo, hi = (-322, 300) if dtype == "f64" else (-44, 36)
    rng = np.random.default_rng(5)
    n = 4000
    m = (rng.choice([-1, 1], n) * 10.0 ** rng.uniform(lo, hi, n)).astype(fdt).astype(np.float64)
    # v such that b2 v stays v's magnitude; g = 0 keeps the moments exactly b1 m, b2 v
    v = (10.0 ** rng.uniform(lo, hi, n)).astype(fdt).astype(np.float64)
    g, t = np.zeros(n), np.full(n, 3, np.int64)
    q1, q2 = np.full(n, fdt(0.9) ** 3), np.full(n, fdt(0.999) ** 3)
    h = tuple(float(fdt(x)) for x in (0.001, 0.9, 0.999, eps, 0.0))
    out, _ = _step(lib, dtype, ADAM, h, np.zeros(n), g, m, v, t, q1, q2)
    (ref, *_), scale = _reference(ADAM, h, np.zeros(n), g, m, v, t, q1, q2, fdt)
    ref = ref.astype(np.float64)
    fin = np.isfinite(ref) & (ref != 0) & (np.abs(ref) > np.finfo(fdt).tiny)
    rel = np.abs(out[fin] - ref[fin]) / np.abs(ref[fin])
    assert rel.max() <= (1e-14 if dtype == "f64" else 1e-6), rel.max()
    # zeros, infinities and subnormal results: equal up to a few units of the smallest subnormal
    tiny = 8 * np.finfo(fdt).smallest_subnormal
    both_inf = np.isinf(out[~fin]) & (out[~fin] == ref[~fin])
    with np.errstate(invalid="ignore"):
        assert np.all(both_inf | (np.abs(out[~fin] - ref[~fin]) <= tiny))


@pytest.mark.parametrize("betas", [(0.9, 1.0), (1.0, 0.999), (1.0, 1.0)])
def test_degenerate_betas(rt, betas):
    """beta = 1 makes a bias correction infinite: the kernel then gives the formula's inf / NaN."""
    lib, dtype = rt
    fdt = np.float64 if dtype == "f64" else np.float32
    n = 19
    rng = np.random.default_rng(2)
    m, v, g = rng.normal(size=n), np.abs(rng.normal(size=n)), rng.normal(size=n)
    v[::4] = 0.0
    g[::4] = 0.0
    m, v, g = (x.astype(fdt).astype(np.float64) for x in (m, v, g))
    t = np.full(n, 2, np.int64)
    t[::3] = 0
    q1 = np.where(t == 0, 1.0, fdt(betas[0]) ** 2)
    q2 = np.where(t == 0, 1.0, fdt(betas[1]) ** 2)
    h = tuple(float(fdt(x)) for x in (0.001, betas[0], betas[1], 1e-8, 0.0))
    out, _ = _step(lib, dtype, ADAM, h, np.zeros(n), g, m, v, t, q1, q2)
    with np.errstate(all="ignore"):
        ref = _reference(ADAM, h, np.zeros(n), g, m, v, t, q1, q2, fdt)[0][0].astype(np.float64)
    same = (out == ref) | (np.isnan(out) & np.isnan(ref))
    close = np.isclose(out, ref, rtol=1e-14 if dtype == "f64" else 1e-6, atol=0)
    assert np.all(same | close), (out, ref)
