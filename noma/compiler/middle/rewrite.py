"""IR rewriting tools shared by autodiff, the globals analyses, irgen and the passes.

Owns: value renaming (substitute, substitute_op), cloning (clone_op, clone_block), the call graph
(reachable_functions, is_recursive), call inlining (inline_calls) and uses (used_ids, has_effects).
They sit below both autodiff and the IR passes in the pipeline (autodiff inlines the calls of a
training step before it differentiates; the passes run after it).
Imports: noma.compiler.middle.ir, noma.diagnostics.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from noma.compiler.middle import ir
from noma.compiler.middle.ir import Block, IfOp, Instr, Op, OptimizeOp, Value, WhileOp
from noma.diagnostics import Kind, Span, error

Mapping = dict[int, Value]

# ----------------------------------------------------------------------------- renaming and cloning


def _look(v: Value, mapping: Mapping) -> Value:
    while v.id in mapping:
        v = mapping[v.id]
    return v


def substitute_op(op: ir.Operation, mapping: Mapping, deep: bool = True) -> ir.Operation:
    """op with every use of a value in `mapping` replaced (region ops are changed in place;
    deep=False leaves their nested blocks to the caller, which walks them itself)."""
    if isinstance(op, Instr):  # most operations: a new Instr only when an operand is renamed
        for a in op.args:
            if a.id in mapping:
                return Instr(op.op, tuple([_look(v, mapping) for v in op.args]), op.result, op.attrs, op.span)
        return op
    if isinstance(op, IfOp):
        op.cond = _look(op.cond, mapping)
    elif isinstance(op, WhileOp):
        op.inits = [_look(v, mapping) for v in op.inits]
    else:
        assert isinstance(op, OptimizeOp)
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
        test = mapping.get(op.cond.id, op.cond)
        then, else_ = clone_block(module, op.then, mapping), clone_block(module, op.else_, mapping)
        return IfOp(test, then, else_, [_fresh(module, r, mapping) for r in op.results], op.span)
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
    if where is not None:
        _relocate(module, body, where, {})
    inline_calls(module, body)
    if call.result is not None:
        if not body.yields:
            raise error(Kind.TYPE, f"the function '{shown}' returns no value", where)
        renames[call.result.id] = body.yields[0]
    return body.ops


def _inlined(span: Span, call: Span) -> Span:
    """span, of code inlined at `call`: its chain of inlined-at calls gets `call` as outermost."""
    at = call if span.inlined_at is None else _inlined(span.inlined_at, call)
    return dataclasses.replace(span, inlined_at=at)


def _relocate(module: ir.Module, block: Block, call: Span, ids: dict[int, int]) -> None:
    """Give every op of an inlined body (in place, nested blocks too) a span id of its own that
    records the call it was inlined at (Span.inlined_at), so a run-time error inside it names the
    call as a native call's frame would (`note: called from here`); `ids` maps old to new ids."""
    def new_id(span: int) -> int:
        if span not in ids:
            old = _span(module, span)
            ids[span] = span if old is None else module.add_span(_inlined(old, call))
        return ids[span]

    for b in ir.walk_blocks(block):
        for i, op in enumerate(b.ops):
            if op.span < 0:
                continue
            if isinstance(op, Instr):
                b.ops[i] = dataclasses.replace(op, span=new_id(op.span))
            else:
                op.span = new_id(op.span)


# ----------------------------------------------------------------------------- uses


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
