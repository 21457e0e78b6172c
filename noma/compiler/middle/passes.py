"""IR → IR passes: call inlining, constant folding, common-subexpression elimination and
dead-code elimination, and the value renaming / block cloning utilities they share with autodiff.

Owns: substitute(), clone_block(), the call graph (reachable_functions, is_recursive), inline_calls(),
fold_constants(), cse(), dce(), optimize_module().
Every pass rewrites the module in place and keeps ir.verify() passing.
Imports: the standard library, noma.compiler.middle.ir, noma.diagnostics.
"""

from __future__ import annotations

import dataclasses
import math
import struct
from typing import Any, Callable, Optional

from noma.compiler.middle import ir
from noma.compiler.middle.ir import Block, IfOp, Instr, Op, OptimizeOp, Value, WhileOp
from noma.diagnostics import Kind, error

Mapping = dict[int, Value]

# ----------------------------------------------------------------------------- renaming and cloning


def _look(v: Value, mapping: Mapping) -> Value:
    while v.id in mapping:
        v = mapping[v.id]
    return v


def substitute_op(op: ir.Operation, mapping: Mapping, deep: bool = True) -> ir.Operation:
    """op with every use of a value in `mapping` replaced (region ops are changed in place;
    deep=False leaves their nested blocks to the caller, which walks them itself)."""
    if isinstance(op, Instr):
        if any(a.id in mapping for a in op.args):
            return dataclasses.replace(op, args=tuple(_look(a, mapping) for a in op.args))
        return op
    if isinstance(op, IfOp):
        op.cond = _look(op.cond, mapping)
    elif isinstance(op, WhileOp):
        op.inits = [_look(v, mapping) for v in op.inits]
    else:
        op.hyper = [_look(v, mapping) for v in op.hyper]
        op.max_iter = _look(op.max_iter, mapping)
        op.inits = [_look(v, mapping) for v in op.inits]
    if deep:
        for child in ir.child_blocks(op):
            substitute(child, mapping)
    return op


def substitute(block: Block, mapping: Mapping) -> None:
    """Replace, in place, every use of a value in `mapping` inside block and its nested blocks."""
    if not mapping:
        return
    block.ops = [substitute_op(op, mapping) for op in block.ops]
    block.yields = [_look(v, mapping) for v in block.yields]


def _fresh(module: ir.Module, v: Value, mapping: Mapping) -> Value:
    new = module.new_value(v.rank)
    mapping[v.id] = new
    return new


def clone_op(module: ir.Module, op: ir.Operation, mapping: Mapping) -> ir.Operation:
    """A copy of op with fresh result values (recorded in mapping) and uses renamed by mapping."""
    if isinstance(op, Instr):
        args = tuple(mapping.get(a.id, a) for a in op.args)
        result = None if op.result is None else _fresh(module, op.result, mapping)
        return Instr(op.op, args, result, op.attrs, op.span)
    if isinstance(op, IfOp):
        cond = mapping.get(op.cond.id, op.cond)
        then, else_ = clone_block(module, op.then, mapping), clone_block(module, op.else_, mapping)
        return IfOp(cond, then, else_, [_fresh(module, r, mapping) for r in op.results], op.span)
    if isinstance(op, WhileOp):
        inits = [mapping.get(v.id, v) for v in op.inits]
        cond, body = clone_block(module, op.cond, mapping), clone_block(module, op.body, mapping)
        return WhileOp(inits, cond, body, [_fresh(module, r, mapping) for r in op.results], op.span)
    hyper = [mapping.get(v.id, v) for v in op.hyper]
    max_iter = mapping.get(op.max_iter.id, op.max_iter)
    inits = [mapping.get(v.id, v) for v in op.inits]
    body = clone_block(module, op.body, mapping)
    grad = None if op.grad is None else clone_block(module, op.grad, mapping)
    results = [_fresh(module, r, mapping) for r in op.results]
    return OptimizeOp(list(op.params), op.optimizer, hyper, max_iter, inits, body, results, grad,
                      op.until_text, op.span, list(op.carry_slots), op.result_slot)


def clone_block(module: ir.Module, block: Block, mapping: Mapping) -> Block:
    """A deep copy of block with fresh values for everything it defines."""
    params = [_fresh(module, p, mapping) for p in block.params]
    ops = [clone_op(module, op, mapping) for op in block.ops]
    return Block(params, ops, [mapping.get(v.id, v) for v in block.yields])


# ----------------------------------------------------------------------------- inlining


def _span(module: ir.Module, span: int) -> Any:
    return module.spans[span] if 0 <= span < len(module.spans) else None


def inline_calls(module: ir.Module, block: Block) -> None:
    """Replace every CALL in block (and its nested blocks) by a renamed copy of the callee's body,
    recursively, except calls of recursive functions (a function that may call itself, directly or
    through others), which stay calls. A callee missing from the module is a type error."""
    renames: Mapping = {}
    ops: list[ir.Operation] = []
    for op in block.ops:
        if isinstance(op, Instr) and op.op is Op.CALL and not is_recursive(module, op.attr("callee")):
            ops.extend(_inline_one(module, op, renames))
            continue
        for child in ir.child_blocks(op):
            inline_calls(module, child)
        ops.append(op)
    block.ops = ops
    substitute(block, renames)


def reachable_functions(module: ir.Module, name: str) -> set[str]:
    """Names of the functions a call of `name` may run, through any chain of calls (`name` itself
    only when it is recursive); callees missing from the module are included but not followed."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        fn = module.functions.get(todo.pop())
        if fn is None:
            continue
        for block in ir.walk_blocks(fn.body):
            for op in block.ops:
                if isinstance(op, Instr) and op.op is Op.CALL and (callee := op.attr("callee")) not in seen:
                    seen.add(callee)
                    todo.append(callee)
    return seen


def is_recursive(module: ir.Module, name: str) -> bool:
    """Whether the module's function `name` may call itself (directly or through others)."""
    return name in module.functions and name in reachable_functions(module, name)


def _inline_one(module: ir.Module, call: Instr, renames: Mapping) -> list[ir.Operation]:
    name = call.attr("callee")
    fn = module.functions.get(name)
    where, shown = _span(module, call.span), name.split(".", 1)[0]  # `f.s.t2` is irgen's `f` at ranks (0, 2)
    if fn is None:
        raise error(Kind.TYPE, f"the function '{shown}' is defined in another cell or file, so it cannot be "
                    "used inside an optimize body (its code must be visible to be differentiated)", where)
    if len(fn.params) != len(call.args):
        raise error(Kind.TYPE, f"'{shown}' takes {len(fn.params)} arguments, got {len(call.args)}", where)
    mapping: Mapping = {p.id: a for p, a in zip(fn.params, call.args)}
    body = clone_block(module, fn.body, mapping)
    inline_calls(module, body)
    if call.result is not None:
        if not body.yields:
            raise error(Kind.TYPE, f"the function '{shown}' returns no value", where)
        renames[call.result.id] = body.yields[0]
    return body.ops


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
        if isinstance(op, Instr) and op.result is not None:
            if op.op is Op.CONST:
                value = float(op.attr("value"))
                consts[op.result.id] = _f32(value) if f32 else value
            elif (value := _fold_instr(op, consts, f32)) is not None:
                op = Instr(Op.CONST, (), op.result, (("value", value),), op.span)
                consts[op.result.id] = value
            elif (same := _identity(op, consts)) is not None:
                renames[op.result.id] = same
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


def used_ids(block: Block, out: Optional[set[int]] = None) -> set[int]:
    """Ids of every value used (as operand or yield) in block and its nested blocks."""
    out = set() if out is None else out
    for op in block.ops:
        out.update(v.id for v in ir.operands(op))
        for child in ir.child_blocks(op):
            used_ids(child, out)
    out.update(v.id for v in block.yields)
    return out


def has_effects(op: ir.Operation) -> bool:
    """Whether op is, or contains, an effectful operation (or an optimize loop)."""
    if isinstance(op, Instr):
        return op.op in ir.EFFECTFUL
    if isinstance(op, OptimizeOp):
        return True
    return any(has_effects(inner) for child in ir.child_blocks(op) for inner in child.ops)


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
