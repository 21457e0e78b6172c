"""IR → IR passes after autodiff: constant folding, common-subexpression elimination and
dead-code elimination.

Owns: fold_constants(), cse(), dce(), optimize_module(). optimize_module walks each function
twice: forwards, folding and merging each operation in turn, then backwards, dropping what no
effect needs (the same IR as the three passes one after the other). The renaming, cloning,
call-graph and inlining tools they share with autodiff live in noma.compiler.middle.rewrite
(re-exported here). Every pass rewrites the module in place and keeps ir.verify() passing.
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


#: Op members used per instruction (an Enum member costs a descriptor call each time it is named)
_CONST, _MUL, _DIV, _CAST, _SELECT = Op.CONST, Op.MUL, Op.DIV, Op.CAST, Op.SELECT
#: the ops _fold_instr may fold
_FOLDABLE = frozenset(_FOLD) | {Op.CAST}


def _fold_instr(ins: Instr, consts: dict[int, float], f32: bool) -> Optional[float]:
    """The value of scalar op `ins` when all its operands are known constants and folding it is
    exact, else None (the op's kind is tested first: most ops are not foldable)."""
    op = ins.op
    if (op is not _CAST and op not in _FOLD) or (result := ins.result) is None or result.rank != 0:
        return None
    args: list[float] = []
    for a in ins.args:
        known = consts.get(a.id)
        if known is None or (known != known and op is not _SELECT):  # unknown, or NaN (floats all)
            return None
        args.append(known)
    try:
        if op is _CAST:
            to = ins.attr("to")
            if to in ir.INT_RANGES and not ir.cast_fits(args[0], to):
                return None  # a run-time error at the cast's span
            value = _f32(args[0]) if to == "f32" else _trunc(args[0]) if to in ("i32", "i64") else args[0]
        else:
            value = float(_FOLD[op](*args))
    except (ArithmeticError, ValueError):
        return None
    return _f32(value) if f32 else value


def _identity(ins: Instr, consts: dict[int, float]) -> Optional[Value]:
    """The operand that ins merely copies (x·1, 1·x, x/1), if any."""
    if ins.result is None or ins.op not in (Op.MUL, Op.DIV):
        return None
    pairs = [(ins.args[0], ins.args[1])] + ([(ins.args[1], ins.args[0])] if ins.op is Op.MUL else [])
    for x, one in pairs:
        if consts.get(one.id) == 1.0 and x.rank == ins.result.rank:
            return x
    return None


def _key_attrs(attrs: tuple) -> tuple:
    """attrs as CSE compares them: floats by repr (0.0 and -0.0 differ, NaNs are equal)."""
    for _, v in attrs:
        if isinstance(v, float):
            return tuple([(k, repr(v) if isinstance(v, float) else v) for k, v in attrs])
    return attrs  # no floats: equal to the pairs it holds


class _Forward:
    """One walk of a function's blocks in program order that folds (`fold`) and merges (`merge`)
    each operation in turn: fold_constants, cse, or both in the one walk that optimize_module
    makes (the same result as fold_constants then cse, which walked twice with a substitute()
    between).

    Each operation is first folded as it stands: its operands not yet renamed, so constants are
    known by their original ids, as fold_constants sees them. It is then renamed by every rename
    made so far: the x·1, 1·x and x/1 folding dropped and the duplicates CSE merged (both only
    ever rename uses that come later in the walk). Then CSE looks it up in a scoped table: what
    dominates the block, shared and grown in place; `block` returns the keys it added, which the
    caller removes when they stop dominating (not a copy per nested block: deeply nested IR stays
    linear). State reads are keyed by a token of their block and an epoch that each effect
    advances, so they merge only within one block with no effect in between."""

    def __init__(self, f32: bool, fold: bool, merge: bool):
        self.f32 = f32
        self.fold = fold
        self.merge = merge
        self.consts: dict[int, float] = {}  # value id -> known scalar constant (folding)
        self.renames: Mapping = {}
        self.table: dict = {}  # CSE key -> the value of its first (dominating) instruction

    def block(self, block: Block) -> list:
        """Fold and merge block and its nested blocks in place; the CSE keys it added."""
        consts, renames, table = self.consts, self.renames, self.table
        f32, fold, merge = self.f32, self.fold, self.merge
        effectful, reads_state = ir.EFFECTFUL, ir.READS_STATE
        added: list = []
        token = object()
        epoch = 0
        ops: list[ir.Operation] = []
        for op in block.ops:
            if not isinstance(op, Instr):  # a region: its operands renamed, its blocks walked
                op = substitute_op(op, renames, deep=False)
                if not merge:
                    for child in ir.child_blocks(op):
                        self.block(child)
                elif isinstance(op, OptimizeOp):
                    inner = self.block(op.body)  # the body's values dominate the gradient
                    if op.grad is not None:
                        inner += self.block(op.grad)
                    _forget(table, inner)
                else:
                    for child in ir.child_blocks(op):
                        _forget(table, self.block(child))
                epoch += 1
                ops.append(op)
                continue
            result, code = op.result, op.op
            if fold and result is not None:
                folded: Optional[float]
                if code is _CONST:
                    value = float(op.attr("value"))
                    consts[result.id] = _f32(value) if f32 else value
                elif code in _FOLDABLE and (folded := _fold_instr(op, consts, f32)) is not None:
                    op = Instr(_CONST, (), result, (("value", folded),), op.span)
                    code = _CONST
                    consts[result.id] = folded
                elif (code is _MUL or code is _DIV) and (same := _identity(op, consts)) is not None:
                    renames[result.id] = same
                    continue
            args = op.args
            for a in args:  # substitute_op, inlined
                if a.id in renames:
                    args = tuple([_look(v, renames) for v in args])
                    op = Instr(code, args, result, op.attrs, op.span)
                    break
            if merge:
                if result is None or code in effectful:
                    epoch += 1
                else:
                    attrs = op.attrs
                    key: object
                    if (code is _CONST and len(attrs) == 1 and attrs[0][0] == "value"
                            and isinstance(number := attrs[0][1], (float, str))):
                        # a constant: the text _key_attrs compares alone (all other keys are tuples)
                        key = repr(number) if isinstance(number, float) else number
                    else:
                        key = (code, tuple([a.id for a in args]) if args else (), _key_attrs(attrs) if attrs else (),
                               (token, epoch) if code in reads_state else None)
                    try:
                        found = table.setdefault(key, result)
                    except TypeError:  # unhashable attribute: leave the op alone
                        ops.append(op)
                        continue
                    if found is not result:
                        renames[result.id] = found
                        continue
                    added.append(key)
            ops.append(op)
        block.ops = ops
        if renames:
            block.yields = [_look(v, renames) for v in block.yields]
        return added


def _forget(table: dict, keys: list) -> None:
    for key in keys:
        del table[key]


def fold_constants(module: ir.Module) -> None:
    """Replace scalar ops whose operands are all CONSTs by a CONST of their value, and x·1, 1·x
    and x/1 by x (exact in IEEE arithmetic)."""
    for fn in module.functions.values():
        _Forward(module.dtype == "f32", fold=True, merge=False).block(fn.body)


def cse(module: ir.Module) -> None:
    """Merge identical pure instructions (same op, operands and attributes) whose first copy
    dominates the others. State reads merge only within one block with no effect in between."""
    for fn in module.functions.values():
        _Forward(module.dtype == "f32", fold=False, merge=True).block(fn.body)


# ----------------------------------------------------------------------------- DCE


def _effects(op: ir.Operation, memo: dict[int, bool]) -> bool:
    """Whether op is, or contains, an effectful operation or an optimize loop (rewrite.has_effects,
    remembered per region by id: DCE asks again for the regions nested in one it keeps)."""
    if isinstance(op, Instr):
        return op.op in ir.EFFECTFUL
    if isinstance(op, OptimizeOp):
        return True
    found = memo.get(id(op))
    if found is None:
        found = False
        for child in ir.child_blocks(op):
            for inner in child.ops:
                if _effects(inner, memo):
                    found = True
                    break
            if found:
                break
        memo[id(op)] = found
    return found


def _keep_live(block: Block, live: set[int], memo: dict[int, bool]) -> None:
    """Drop block's unused pure operations, walking it (and the blocks of the regions it keeps)
    backwards: an operation stays when it has effects or a result in `live`, and then its
    operands and the values its blocks yield become live. Every use follows its definition
    (a gradient block follows the body whose values it reads), so one backward walk finds what
    sweeping until nothing changes found: the operations effects need, directly or not."""
    live.update(v.id for v in block.yields)
    effectful = ir.EFFECTFUL
    kept: list[ir.Operation] = []
    for op in reversed(block.ops):
        if isinstance(op, Instr):
            if op.op in effectful or (op.result is not None and op.result.id in live):
                live.update([a.id for a in op.args])
                kept.append(op)
            continue
        if any(r.id in live for r in ir.results(op)) or _effects(op, memo):
            for child in reversed(ir.child_blocks(op)):
                _keep_live(child, live, memo)
            live.update(v.id for v in ir.operands(op))
            kept.append(op)
    kept.reverse()
    block.ops = kept


def dce(module: ir.Module) -> None:
    """Remove pure operations (and effect-free if/while regions) whose results are never used."""
    for fn in module.functions.values():
        _keep_live(fn.body, set(), {})


def optimize_module(module: ir.Module) -> None:
    """The standard pipeline: fold constants, merge duplicates (one walk), drop dead code."""
    for fn in module.functions.values():
        _Forward(module.dtype == "f32", fold=True, merge=True).block(fn.body)
        _keep_live(fn.body, set(), {})
