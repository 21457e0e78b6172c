"""The interpreter's rules for rows and indices: CONCAT, SLICE (and its gradient), INDEX (and its
gradient) and ONE_HOT, with the runtime's range errors (a row range or an index outside the axis,
located at the op).

Owns: RULES (Op -> rule(interpreter, ins, args)), which Interpreter adds to its op table.
Imports: numpy, noma.compiler.middle.ir, noma.diagnostics; the Interpreter for its helpers
(_arr, _int, _span, _shape_error, dt), under TYPE_CHECKING only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from noma.compiler.middle.ir import Instr, Op
from noma.diagnostics import Kind, error

if TYPE_CHECKING:
    from noma.compiler.interp.interp import Interpreter


def concat(it: "Interpreter", ins: Instr, args: list[Any]) -> Any:
    a, b = it._arr(args[0]), it._arr(args[1])
    if a.shape[1:] != b.shape[1:]:
        raise it._shape_error(ins, a.shape, b.shape)
    return np.concatenate([a, b], axis=0)


def _rows(it: "Interpreter", ins: Instr, x: np.ndarray, start: Any, end: Any) -> tuple[int, int]:
    s, e = it._int(start, ins.span), it._int(end, ins.span)
    if not 0 <= s <= e <= x.shape[0]:
        raise error(Kind.RUNTIME, f"rows {s}..{e} are out of range for an axis of size {x.shape[0]}",
                    it._span(ins.span))
    return s, e


def slice_rows(it: "Interpreter", ins: Instr, args: list[Any]) -> Any:
    x = it._arr(args[0])
    s, e = _rows(it, ins, x, args[1], args[2])
    return x[s:e].copy()


def slice_grad(it: "Interpreter", ins: Instr, args: list[Any]) -> Any:
    g, out = it._arr(args[0]), np.zeros(np.shape(args[1]), dtype=it.dt)
    s, e = _rows(it, ins, out, args[2], float(args[2]) + g.shape[0])
    if g.shape[1:] != out.shape[1:]:
        raise it._shape_error(ins, g.shape, out.shape)
    out[s:e] = g
    return out


def _index_of(it: "Interpreter", ins: Instr, i: Any, size: int) -> int:
    k = it._int(i, ins.span)
    if not 0 <= k < size:
        raise error(Kind.RUNTIME, f"index {k} is out of range for an axis of size {size}", it._span(ins.span))
    return k


def index(it: "Interpreter", ins: Instr, args: list[Any]) -> Any:
    x = it._arr(args[0])
    return x[_index_of(it, ins, args[1], x.shape[0])].copy()


def index_grad(it: "Interpreter", ins: Instr, args: list[Any]) -> Any:
    out = np.zeros(np.shape(args[1]), dtype=it.dt)
    k = _index_of(it, ins, args[2], out.shape[0])
    g = it._arr(args[0])
    if g.shape != out.shape[1:]:
        raise it._shape_error(ins, g.shape, out.shape[1:])
    out[k] = g
    return out


def one_hot(it: "Interpreter", ins: Instr, args: list[Any]) -> Any:
    idx, n = it._arr(args[0]), it._int(args[1], ins.span)
    out = np.zeros(idx.shape + (n,), dtype=it.dt)
    for pos in np.ndindex(idx.shape):
        out[pos + (_index_of(it, ins, idx[pos], n),)] = 1.0
    return out


RULES: dict[Op, Callable[["Interpreter", Instr, list[Any]], Any]] = {
    Op.CONCAT: concat, Op.SLICE: slice_rows, Op.SLICE_GRAD: slice_grad,
    Op.INDEX: index, Op.INDEX_GRAD: index_grad, Op.ONE_HOT: one_hot,
}
