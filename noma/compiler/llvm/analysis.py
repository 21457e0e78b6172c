"""Analyses of the IR that the LLVM lowering reads (pure functions of ir blocks; no LLVM).

Owns: which tensor loads must be copied to the arena (`loads_needing_copy`), which elementwise
instructions are fused into their user's loop (`fusible`), the values a block reads from outside
(`free_values`), whether a block uses some ops (`uses_any`, `resizes`) and a training step's outputs
for the resize probe (`probe_outputs`).
Input: ir.Function / ir.Block. Output: sets and lists of instructions and value ids.
Imports: ir.
"""

from __future__ import annotations

from typing import AbstractSet

from noma.compiler.middle import ir


def _reads(block: ir.Block) -> set[int]:
    """Ids of the values read anywhere in `block` (nested blocks included)."""
    read: set[int] = set()
    for blk in ir.walk_blocks(block):
        read.update(v.id for v in blk.yields)
        for op in blk.ops:
            read.update(v.id for v in ir.operands(op))
    return read


def free_values(block: ir.Block) -> set[int]:
    """Ids of the values `block` reads but neither it nor a block inside it defines (its own
    params count as free: they are the carried values its loop passes in)."""
    defined: set[int] = set()
    for blk in ir.walk_blocks(block):
        if blk is not block:
            defined.update(v.id for v in blk.params)
        for op in blk.ops:
            defined.update(v.id for v in ir.results(op))
    return _reads(block) - defined


def uses_any(block: ir.Block, ops: AbstractSet[ir.Op]) -> bool:
    """Whether `block` (nested blocks included) has an instruction with one of `ops`."""
    return any(isinstance(op, ir.Instr) and op.op in ops for blk in ir.walk_blocks(block) for op in blk.ops)


def resizes(block: ir.Block) -> bool:
    """Whether a training-step body can queue a resize (then its loop measures output changes)."""
    return uses_any(block, {ir.Op.PARAM_RESIZE, ir.Op.DIM_RESIZE, ir.Op.PARAM_KEEP, ir.Op.DIM_KEEP})


def probe_outputs(body: ir.Block) -> list[ir.Instr]:
    """The instructions computing a training step's outputs, besides its loss: what the output
    change of a resize compares. An output is a value computed from the parameters (not a
    parameter itself) that the body's top level combines with data -- a value neither computed
    from the parameters nor a constant, such as the targets in `pred - Y`. So for
    `mean((matmul(h, W2) + b2 - Y) ^ 2)` the output is the network's prediction."""
    from_params: set[int] = set()
    consts: set[int] = set()
    producer: dict[int, ir.Instr] = {}
    found: dict[int, ir.Instr] = {}
    for op in body.ops:
        if not isinstance(op, ir.Instr):
            if any(v.id in from_params for v in ir.operands(op)):
                from_params.update(r.id for r in ir.results(op))
            continue
        if op.result is None:
            continue
        producer[op.result.id] = op
        if op.op is ir.Op.CONST:
            consts.add(op.result.id)
        elif op.op is ir.Op.PARAM_LOAD:
            from_params.add(op.result.id)
        elif any(a.id in from_params for a in op.args):
            from_params.add(op.result.id)
            if any(a.id not in from_params and a.id not in consts for a in op.args):
                for a in op.args:
                    ins = producer.get(a.id)
                    if a.id in from_params and ins is not None and ins.op is not ir.Op.PARAM_LOAD:
                        found.setdefault(a.id, ins)
    return list(found.values())


# ----------------------------------------------------------------------------- load copies


class _Effects:
    """What a region may do to stored params / globals while values loaded in it are live."""

    def __init__(self) -> None:
        self.calls = False
        self.params = False
        self.globals: set[int] = set()


def _effects(block: ir.Block, eff: _Effects, deferred: bool) -> None:
    for op in block.ops:
        if isinstance(op, ir.Instr):
            if op.op is ir.Op.CALL:
                eff.calls = True
            elif op.op in (ir.Op.PARAM_SET, ir.Op.PARAM_FREE, ir.Op.LOAD_CKPT):
                eff.params = True
            elif op.op in (ir.Op.PARAM_RESIZE, ir.Op.DIM_RESIZE, ir.Op.PARAM_KEEP, ir.Op.DIM_KEEP) and not deferred:
                eff.params = True
            elif op.op is ir.Op.GLOBAL_STORE:
                eff.globals.add(int(op.attr("slot")))
            continue
        if isinstance(op, ir.OptimizeOp):
            eff.params = True  # it updates its parameters in place
        for inner in ir.child_blocks(op):
            _effects(inner, eff, deferred)


def loads_needing_copy(fn: ir.Function) -> set[int]:
    """id() of tensor PARAM_LOAD / GLOBAL_LOAD instructions whose stored buffer might be
    overwritten while the loaded value is live.

    A load inside an optimize body / grad block only lives for that step (values leave the step
    only through copies: carry slots, stores), so only effects inside that optimize's blocks
    count (resizes there are deferred to the step's end). A load elsewhere may live for the rest
    of the function: every effect of the function counts.
    """
    whole = _Effects()
    _effects(fn.body, whole, deferred=False)
    out: set[int] = set()

    def visit(block: ir.Block, eff: _Effects) -> None:
        for op in block.ops:
            if isinstance(op, ir.Instr):
                if op.result is None or op.result.rank == 0:
                    continue
                if op.op is ir.Op.PARAM_LOAD and (eff.calls or eff.params):
                    out.add(id(op))
                elif op.op is ir.Op.GLOBAL_LOAD and (eff.calls or int(op.attr("slot")) in eff.globals):
                    out.add(id(op))
                continue
            if isinstance(op, ir.OptimizeOp):
                local = _Effects()
                for inner in ir.child_blocks(op):
                    _effects(inner, local, deferred=True)
                for inner in ir.child_blocks(op):
                    visit(inner, local)
                continue
            for inner in ir.child_blocks(op):
                visit(inner, eff)

    visit(fn.body, whole)
    return out


# ----------------------------------------------------------------------------- fusion

#: Most operands (distinct leaves) one fused elementwise loop reads.
MAX_FUSED_LEAVES = 8


def _is_alias(op: ir.Instr) -> bool:
    return op.op is ir.Op.STOP_GRAD or (op.op is ir.Op.CAST and op.attr("to") in ("f64", "f32"))


def _is_checked(op: ir.Instr) -> bool:
    """An integer cast: it checks its operand whole before converting, so it is its own loop."""
    return op.op is ir.Op.CAST and op.attr("to") in ir.INT_RANGES


def fusible(fn: ir.Function) -> set[int]:
    """id() of elementwise instructions to compute inside the loop of their user.

    An elementwise op with a tensor result is fused when its result has exactly one use, that
    use is an elementwise op of the same block, and no effectful or structured operation lies
    between them (values are immutable and loads that could be overwritten are copies, so moving
    the computation is invisible; shape errors keep their own op's span). A fused loop reads at
    most MAX_FUSED_LEAVES operands.
    """
    uses: dict[int, int] = {}

    def count(block: ir.Block) -> None:
        for op in block.ops:
            if op.__class__ is ir.Instr:  # most operations: no blocks
                for v in op.args:
                    uses[v.id] = uses.get(v.id, 0) + 1
                continue
            for v in ir.operands(op):
                uses[v.id] = uses.get(v.id, 0) + 1
            for inner in ir.child_blocks(op):
                count(inner)
        for v in block.yields:
            uses[v.id] = uses.get(v.id, 0) + 1

    count(fn.body)
    out: set[int] = set()

    def visit(block: ir.Block) -> None:
        pending: dict[int, tuple[ir.Instr, int]] = {}  # result id -> (instr, its leaf count)
        for op in block.ops:
            if isinstance(op, ir.Instr) and op.op in ir.ELEMENTWISE and not _is_alias(op) and not _is_checked(op):
                fusable = [a for a in op.args if a.id in pending]
                leaves = sum(pending[a.id][1] if a.id in pending else 1 for a in op.args)
                if leaves > MAX_FUSED_LEAVES:
                    fusable, leaves = [], len(op.args)
                for a in fusable:
                    out.add(id(pending.pop(a.id)[0]))
                if op.result is not None and op.result.rank > 0 and uses.get(op.result.id, 0) == 1:
                    pending[op.result.id] = (op, leaves)
                continue
            if not isinstance(op, ir.Instr) or op.op in ir.EFFECTFUL:
                pending.clear()
            for inner in ir.child_blocks(op):
                visit(inner)

    visit(fn.body)
    return out
