"""The interpreter's elementwise rules: one NumPy function per unary and binary elementwise op,
SELECT and CAST, and the error every interpreter table raises for an op it has no rule for.

Owns: UNARY, BINARY, elementwise(), MissingRule. An elementwise op without a rule here raises
MissingRule (it never passes its input through); tests/compiler/test_op_tables.py ties the tables
to the Op enum.
Used by interp.py only.
Imports: numpy, noma.compiler.middle.ir.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from noma.compiler.middle import ir
from noma.compiler.middle.ir import Op


class MissingRule(NotImplementedError):
    """The interpreter has no rule for an op (a new op whose interpreter rule was not written)."""

    def __init__(self, op: Op):
        super().__init__(f"the interpreter has no rule for op `{op.value}` "
                         "(add one: docs/CONTRIBUTING.md, adding a primitive op)")
        self.op = op


UNARY: dict[Op, Callable[[np.ndarray], Any]] = {
    Op.NEG: np.negative, Op.EXP: np.exp, Op.LOG: np.log, Op.SQRT: np.sqrt, Op.SIN: np.sin,
    Op.COS: np.cos, Op.TAN: np.tan, Op.TANH: np.tanh, Op.SIGMOID: lambda x: 1 / (1 + np.exp(-x)),
    Op.RELU: lambda x: np.maximum(x, 0), Op.ABS: np.abs, Op.SIGN: np.sign, Op.FLOOR: np.floor,
    Op.CEIL: np.ceil, Op.NOT: lambda x: x == 0, Op.STOP_GRAD: lambda x: x,
}
BINARY: dict[Op, Callable[[np.ndarray, np.ndarray], Any]] = {
    Op.ADD: np.add, Op.SUB: np.subtract, Op.MUL: np.multiply, Op.DIV: np.divide, Op.POW: np.power,
    Op.MOD: np.fmod, Op.MIN: np.minimum, Op.MAX: np.maximum, Op.LT: np.less, Op.LE: np.less_equal,
    Op.GT: np.greater, Op.GE: np.greater_equal, Op.EQ: np.equal, Op.NE: np.not_equal,
    Op.AND: lambda a, b: (a != 0) & (b != 0), Op.OR: lambda a, b: (a != 0) | (b != 0),
}


def elementwise(op: Op, arrays: list[np.ndarray], to: Optional[str] = None) -> Any:
    """op applied to broadcast-compatible arrays (`to`: CAST's target type; integer casts are
    checked for range by the caller first)."""
    if op in UNARY:
        return UNARY[op](arrays[0])
    if op in BINARY:
        return BINARY[op](arrays[0], arrays[1])
    if op is Op.SELECT:
        return np.where(arrays[0] != 0, arrays[1], arrays[2])
    if op is Op.CAST:
        a = arrays[0]
        if to in ir.INT_RANGES:
            return np.trunc(a)
        return a.astype(np.float32) if to == "f32" else a
    raise MissingRule(op)
