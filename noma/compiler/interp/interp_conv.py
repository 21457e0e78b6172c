"""The interpreter's convolution, pooling and ranking ops, in plain NumPy (the oracle).

Owns: the Interpreter methods of CONV2D, CONV2D_GRAD_X, CONV2D_GRAD_W, POOL2D, POOL2D_GRAD,
ARGSORT and TOPK (installed on the class by `install`). They follow ir.py's contracts and the
runtime's (noma_rt_conv.c): NCHW, stride >= 1 and padding >= 0 whole numbers, zero padding, no
padding for pools, the max pool's gradient to the first largest entry of each window (a NaN
counts as largest); argsort ascending and stable with NaN last; topk the k largest, largest first,
ties by lower index, NaN largest.
Imports: numpy, noma.compiler.middle.ir, noma.diagnostics.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from noma.compiler.middle.ir import Instr
from noma.diagnostics import Kind, error


def _whole(it: Any, ins: Instr, x: Any, lo: int, what: str, op: str) -> int:
    f = float(x)
    if not (f >= lo) or f >= 2.0 ** 31 or math.floor(f) != f:
        raise error(Kind.RUNTIME, f"{op}: {what} must be a whole number >= {lo}, got {f:g}", it._span(ins.span))
    return int(f)


def _conv_geom(it: Any, ins: Instr, x: np.ndarray, w: np.ndarray, stride: Any, pad: Any) -> tuple[int, int]:
    if x.ndim != 4 or w.ndim != 4 or x.shape[1] != w.shape[1] or w.shape[2] < 1 or w.shape[3] < 1:
        raise error(Kind.SHAPE, f"conv2d: shapes {list(x.shape)} and {list(w.shape)} do not match",
                    it._span(ins.span))
    s = _whole(it, ins, stride, 1, "the stride", "conv2d")
    p = _whole(it, ins, pad, 0, "the padding", "conv2d")
    if x.shape[2] + 2 * p < w.shape[2] or x.shape[3] + 2 * p < w.shape[3]:
        raise error(Kind.SHAPE, f"conv2d (the padded input is smaller than the kernel): shapes {list(x.shape)} "
                    f"and {list(w.shape)} do not match", it._span(ins.span))
    oh, ow = (x.shape[2] + 2 * p - w.shape[2]) // s + 1, (x.shape[3] + 2 * p - w.shape[3]) // s + 1
    if x.shape[0] * oh * ow * (x.shape[1] * w.shape[2] * w.shape[3] + w.shape[0]) > 1 << 50:
        raise error(Kind.RUNTIME, f"conv2d: the result would be too large ({oh} x {ow} positions)",
                    it._span(ins.span))
    it._room((x.shape[0], w.shape[0], oh, ow), ins.span)
    it._room((x.shape[0], x.shape[1], x.shape[2] + 2 * p, x.shape[3] + 2 * p), ins.span)
    return s, p


def _windows(x: np.ndarray, kh: int, kw: int, s: int, p: int) -> np.ndarray:
    """[N, C, OH, OW, KH, KW]: the (zero-padded) window of every output position."""
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    return sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::s, ::s]


def _conv2d(it: Any, ins: Instr, args: list[Any]) -> Any:
    x, w = it._arr(args[0]), it._arr(args[1])
    s, p = _conv_geom(it, ins, x, w, args[2], args[3])
    win = _windows(x, w.shape[2], w.shape[3], s, p)
    it._room((x.shape[0], w.shape[0]) + win.shape[2:4], ins.span)
    return np.einsum("nchwij,ocij->nohw", win, w)


def _check_grad(it: Any, ins: Instr, g: np.ndarray, like: tuple[int, ...]) -> None:
    if g.shape != like:
        raise error(Kind.SHAPE, f"{ins.op.value}: shapes {list(g.shape)} and {list(like)} do not match",
                    it._span(ins.span))


def _conv2d_grad_w(it: Any, ins: Instr, args: list[Any]) -> Any:
    g, x, w = (it._arr(a) for a in args[:3])
    s, p = _conv_geom(it, ins, x, w, args[3], args[4])
    win = _windows(x, w.shape[2], w.shape[3], s, p)
    _check_grad(it, ins, g, (x.shape[0], w.shape[0]) + win.shape[2:4])
    return np.einsum("nchwij,nohw->ocij", win, g)


def _conv2d_grad_x(it: Any, ins: Instr, args: list[Any]) -> Any:
    g, x, w = (it._arr(a) for a in args[:3])
    s, p = _conv_geom(it, ins, x, w, args[3], args[4])
    n, c, h, wd = x.shape
    kh, kw = w.shape[2], w.shape[3]
    oh, ow = (h + 2 * p - kh) // s + 1, (wd + 2 * p - kw) // s + 1
    _check_grad(it, ins, g, (n, w.shape[0], oh, ow))
    dxp = np.zeros((n, c, h + 2 * p, wd + 2 * p), dtype=it.dt)
    for u in range(kh):
        for v in range(kw):  # each kernel tap scatters G . w[:, :, u, v] back to its input positions
            dxp[:, :, u:u + s * oh:s, v:v + s * ow:s] += np.einsum("nohw,oc->nchw", g, w[:, :, u, v])
    return dxp[:, :, p:p + h, p:p + wd].copy()


def _pool_geom(it: Any, ins: Instr, x: np.ndarray, k: Any, stride: Any) -> tuple[int, int]:
    op = "max_pool2d" if ins.attr("kind") == "max" else "avg_pool2d"
    if x.ndim != 4:
        raise error(Kind.SHAPE, f"{op}: shapes {list(x.shape)} and {list(x.shape)} do not match", it._span(ins.span))
    kk = _whole(it, ins, k, 1, "the window", op)
    s = _whole(it, ins, stride, 1, "the stride", op)
    if x.shape[2] < kk or x.shape[3] < kk:
        raise error(Kind.SHAPE, f"{op}: a window of {kk} does not fit an input of {x.shape[2]} x {x.shape[3]}",
                    it._span(ins.span))
    return kk, s


def _first_max(win: np.ndarray) -> np.ndarray:
    """Index (within the flattened window) of the first largest entry, a NaN counting as largest."""
    flat = win.reshape(win.shape[:4] + (-1,))
    nan = np.isnan(flat)
    return np.where(nan.any(axis=-1), np.argmax(nan, axis=-1), np.argmax(np.where(nan, -np.inf, flat), axis=-1))


def _pool2d(it: Any, ins: Instr, args: list[Any]) -> Any:
    x = it._arr(args[0])
    k, s = _pool_geom(it, ins, x, args[1], args[2])
    win = _windows(x, k, k, s, 0)
    if ins.attr("kind") == "avg":
        return win.sum(axis=(4, 5)) * (it.dt(1.0) / it.dt(k * k))
    flat = win.reshape(win.shape[:4] + (-1,))
    return np.take_along_axis(flat, _first_max(win)[..., None], axis=-1)[..., 0].copy()


def _pool2d_grad(it: Any, ins: Instr, args: list[Any]) -> Any:
    g, x = it._arr(args[0]), it._arr(args[1])
    k, s = _pool_geom(it, ins, x, args[2], args[3])
    win = _windows(x, k, k, s, 0)
    oh, ow = win.shape[2], win.shape[3]
    _check_grad(it, ins, g, x.shape[:2] + (oh, ow))
    dx = np.zeros(x.shape, dtype=it.dt)
    if ins.attr("kind") == "avg":
        gs = g * (it.dt(1.0) / it.dt(k * k))
        for u in range(k):
            for v in range(k):
                dx[:, :, u:u + s * oh:s, v:v + s * ow:s] += gs
        return dx
    best = _first_max(win)
    rows, cols = np.indices(best.shape[:2])
    for i in range(oh):
        for j in range(ow):
            du, dv = np.divmod(best[:, :, i, j], k)  # the window's first largest entry
            np.add.at(dx, (rows, cols, i * s + du, j * s + dv), g[:, :, i, j])
    return dx


def _order(x: np.ndarray, descending: bool) -> list[int]:
    """Indices by value (NaN last ascending, first descending), ties by lower index."""
    def key(i: int) -> tuple[int, float, int]:
        v = float(x[i])
        if math.isnan(v):
            return (1 if not descending else 0, 0.0, i)
        return (0 if not descending else 1, -v if descending else v, i)
    return sorted(range(x.shape[0]), key=key)


def _argsort(it: Any, ins: Instr, args: list[Any]) -> Any:
    return np.array(_order(it._arr(args[0]), False), dtype=it.dt)


def _topk(it: Any, ins: Instr, args: list[Any]) -> Any:
    x = it._arr(args[0])
    f = float(args[1])
    if not (0 <= f <= x.shape[0]) or math.floor(f) != f:
        raise error(Kind.RUNTIME, f"topk: k must be a whole number from 0 to {x.shape[0]}, got {f:g}",
                    it._span(ins.span))
    return np.array(_order(x, True)[:int(f)], dtype=it.dt)


def install(cls: type) -> None:
    """Add the ops' methods (`_conv2d`, ...) to the Interpreter class."""
    for fn in (_conv2d, _conv2d_grad_x, _conv2d_grad_w, _pool2d, _pool2d_grad, _argsort, _topk):
        setattr(cls, fn.__name__, fn)
