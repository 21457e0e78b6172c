"""IR → IR passes after autodiff: constant folding, common-subexpression elimination and
dead-code elimination.

Owns: fold_constants(), cse(), dce(), optimize_module(). The renaming, cloning, call-graph and
inlining tools they share with autodiff live in noma.compiler.middle.rewrite (re-exported here).
Every pass rewrites the module in place and keeps ir.verify() passing.
Imports: the standard library, noma.compiler.middle.ir, noma.compiler.middle.rewrite.
"""

from __future__ import annotations

import math
import struct
from typing import Callable, Optional

from noma.compiler.middle import ir
from noma.compiler.middle.ir import Block, Instr, Op, OptimizeOp, Value
from noma.compiler.middle.rewrite import (  # noqa: F401  (re-exported: the passes' tools)
    Mapping,
    _look,
    clone_block,
    clone_op,
    has_effects,
    inline_calls,
    is_recursive,
    reachable_functions,
    substitute,
    substitute_op,
    used_ids,
)

# ----------------------------------------------------------------------------- constant folding


def _f32(x: float) -> float:
    try:
        return struct.unpack("f", struct.pack("f", x))[0]
    except OverflowError:
        return math.copysign(math.inf, x)


def _trunc(x: float) -> float:
    return float(math.trunc(x)) if math.isfinite(x) else x


def _b(x: bool) -> float:
    return 1.0 if x else 0.0


#: Scalar ops whose IEEE results are exact (or correctly rounded), so folding matches run time.
_FOLD: dict[Op, Callable[..., float]] = {
    Op.NEG: lambda a: -a, Op.ABS: abs, Op.FLOOR: lambda a: float(math.floor(a)),
    Op.CEIL: lambda a: float(math.ceil(a)), Op.SQRT: math.sqrt, Op.NOT: lambda a: _b(a == 0),
    Op.SIGN: lambda a: float((a > 0) - (a < 0)),
    Op.ADD: lambda a, b: a + b, Op.SUB: lambda a, b: a - b, Op.MUL: lambda a, b: a * b,
    Op.DIV: lambda a, b: a / b, Op.MOD: math.fmod, Op.MIN: min, Op.MAX: max,
    Op.LT: lambda a, b: _b(a < b), Op.LE: lambda a, b: _b(a <= b), Op.GT: lambda a, b: _b(a > b),
    Op.GE: lambda a, b: _b(a >= b), Op.EQ: lambda a, b: _b(a == b), Op.NE: lambda a, b: _b(a != b),
    Op.AND: lambda a, b: _b(a != 0 and b != 0), Op.OR: lambda a, b: _b(a != 0 or b != 0),
    Op.SELECT: lambda c, a, b: a if c != 0 else b,
}


def _fold_instr(ins: Instr, consts: dict[int, float], f32: bool) -> Optional[float]:
    if ins.result is None or ins.result.rank != 0 or not all(a.id in consts for a in ins.args):
        return None
    args = [consts[a.id] for a in ins.args]
    if any(math.isnan(a) for a in args) and ins.op not in (Op.SELECT,):
        return None
    try:
        if ins.op is Op.CAST:
            to = ins.attr("to")
            if to in ir.INT_RANGES and not ir.cast_fits(args[0], to):
                return None  # a run-time error at the cast's span
            value = _f32(args[0]) if to == "f32" else _trunc(args[0]) if to in ("i32", "i64") else args[0]
        elif ins.op in _FOLD:
            value = float(_FOLD[ins.op](*args))
        else:
            return None
    except (ArithmeticError, ValueError):
        return None
    return _f32(value) if f32 else value


def fold_constants(module: ir.Module) -> None:
    """Replace scalar ops whose operands are all CONSTs by a CONST of their value, and x·1, 1·x
    and x/1 by x (exact in IEEE arithmetic)."""
    f32 = module.dtype == "f32"
    for fn in module.functions.values():
        renames: Mapping = {}
        _fold_block(fn.body, {}, f32, renames)
        substitute(fn.body, renames)


def _identity(ins: Instr, consts: dict[int, float]) -> Optional[Value]:
    """The operand that ins merely copies (x·1, 1·x, x/1), if any."""
    if ins.result is None or ins.op not in (Op.MUL, Op.DIV):
        return None
    pairs = [(ins.args[0], ins.args[1])] + ([(ins.args[1], ins.args[0])] if ins.op is Op.MUL else [])
    for x, one in pairs:
        if consts.get(one.id) == 1.0 and x.rank == ins.result.rank:
            return x
    return None


def _fold_block(block: Block, consts: dict[int, float], f32: bool, renames: Mapping) -> None:
    ops: list[ir.Operation] = []
    for op in block.ops:
        if isinstance(op, Instr) and (result := op.result) is not None:
            folded: Optional[float]
            if op.op is Op.CONST:
                value = float(op.attr("value"))
                consts[result.id] = _f32(value) if f32 else value
            elif (folded := _fold_instr(op, consts, f32)) is not None:
                op = Instr(Op.CONST, (), result, (("value", folded),), op.span)
                consts[result.id] = folded
            elif (same := _identity(op, consts)) is not None:
                renames[result.id] = same
                continue
        for child in ir.child_blocks(op):
            _fold_block(child, consts, f32, renames)
        ops.append(op)
    block.ops = ops


# ----------------------------------------------------------------------------- CSE


def _key_attrs(attrs: tuple) -> tuple:
    return tuple((k, repr(v) if isinstance(v, float) else v) for k, v in attrs)


def cse(module: ir.Module) -> None:
    """Merge identical pure instructions (same op, operands and attributes) whose first copy
    dominates the others. State reads merge only within one block with no effect in between."""
    for fn in module.functions.values():
        _cse_block(fn.body, {}, {})


def _cse_block(block: Block, table: dict, renames: Mapping) -> list:
    """CSE of block with `table` (what dominates it) shared and grown in place; returns the keys
    it added, which the caller removes when they stop dominating (a scoped table, not a copy per
    nested block: deeply nested IR stays linear). State reads are keyed by a token of this block
    and an epoch that each effect advances, so they merge only within one block."""
    added: list = []
    token = object()
    epoch = 0
    ops: list[ir.Operation] = []
    for op in block.ops:
        op = substitute_op(op, renames, deep=False)  # nested blocks: walked below
        if isinstance(op, Instr) and op.result is not None and op.op not in ir.EFFECTFUL:
            key = (op.op, tuple(a.id for a in op.args), _key_attrs(op.attrs),
                   (token, epoch) if op.op in ir.READS_STATE else None)
            try:
                found = table.get(key)
            except TypeError:  # unhashable attribute: leave the op alone
                ops.append(op)
                continue
            if found is not None:
                renames[op.result.id] = found
                continue
            table[key] = op.result
            added.append(key)
        elif isinstance(op, OptimizeOp):
            inner = _cse_block(op.body, table, renames)  # the body's values dominate the gradient
            if op.grad is not None:
                inner += _cse_block(op.grad, table, renames)
            _forget(table, inner)
            epoch += 1
        elif not isinstance(op, Instr):
            for child in ir.child_blocks(op):
                _forget(table, _cse_block(child, table, renames))
            epoch += 1
        else:
            epoch += 1
        ops.append(op)
    block.ops = ops
    block.yields = [_look(v, renames) for v in block.yields]
    return added


def _forget(table: dict, keys: list) -> None:
    for key in keys:
        del table[key]


# ----------------------------------------------------------------------------- DCE


def _sweep(block: Block, used: set[int]) -> tuple[bool, bool]:
    """Drop unused pure operations; (whether anything changed, whether the block has effects).
    Effects are found bottom-up in the same walk (has_effects per op would rewalk each subtree)."""
    changed = effects = False
    kept: list[ir.Operation] = []
    for op in block.ops:
        op_effects = isinstance(op, OptimizeOp) or (isinstance(op, Instr) and op.op in ir.EFFECTFUL)
        for child in ir.child_blocks(op):
            child_changed, child_effects = _sweep(child, used)
            changed |= child_changed
            op_effects |= child_effects
        if not op_effects and not any(r.id in used for r in ir.results(op)):
            changed = True
            continue
        kept.append(op)
        effects |= op_effects
    block.ops = kept
    return changed, effects


def dce(module: ir.Module) -> None:
    """Remove pure operations (and effect-free if/while regions) whose results are never used."""
    for fn in module.functions.values():
        while _sweep(fn.body, used_ids(fn.body))[0]:
            pass


def optimize_module(module: ir.Module) -> None:
    """The standard pipeline: fold constants, merge duplicates, drop dead code."""
    fold_constants(module)
    cse(module)
    dce(module)
