"""Where long straight-line code is cut into chunk functions before it goes to LLVM.

Owns: `plan_chunks`, which cuts the top-level operations of an entry function (a cell, a
program's `__main`: no parameters) into runs of about CHUNK_OPS operations. The lowering
(lower_llvm._lower_function) turns every run but the last into an internal, never inlined
`void ()` function that the entry function calls in order, and lowers the last run in the entry
function itself. LLVM's code generator is superlinear in the size of a function and of a basic
block (instruction selection and scheduling work on one block at a time): a 1 MB file of
statements is one block of ~90,000 instructions, and code generation took ~10 s of its compile
time; cut into chunks it grows linearly with the source.

A cut only goes where no value computed before it is read after it, except scalar constants
(the chunk after the cut re-creates those: they are LLVM immediates). Top-level statements
communicate through globals, so ordinary code has such a point after nearly every statement.
Behaviour is unchanged: the chunks run in order in the same native frame chain, a runtime
error unwinds through them to noma_invoke as before (noma_rt.c), and every span is kept.
Input: an ir.Function. Output: a list of Chunk. Imports: ir only.
"""

from __future__ import annotations

from typing import NamedTuple

from noma.compiler.middle import ir

#: Operations (nested ones included) per chunk: small enough that LLVM's per-block work stays
#: linear, large enough that the calls between chunks cost nothing measurable.
CHUNK_OPS = 500


class Chunk(NamedTuple):
    start: int  # index of the chunk's first top-level operation
    end: int  # one past its last
    consts: list[ir.Instr]  # scalar CONST instructions of earlier chunks that it reads
    scalar: bool  # only instructions on and of scalars: straight-line code, no loops


def _weight(op: ir.Operation) -> int:
    """The operation and every operation nested in it."""
    blocks = ir.child_blocks(op)
    if not blocks:
        return 1
    return 1 + sum(len(blk.ops) for b in blocks for blk in ir.walk_blocks(b))


def _reads(op: ir.Operation) -> list[int]:
    """Ids of the values `op` reads, those read inside its blocks included."""
    read = [v.id for v in ir.operands(op)]
    for b in ir.child_blocks(op):
        for blk in ir.walk_blocks(b):
            read.extend(v.id for v in blk.yields)
            for inner in blk.ops:
                read.extend(v.id for v in ir.operands(inner))
    return read


def plan_chunks(fn: ir.Function, limit: int = CHUNK_OPS) -> list[Chunk]:
    """The runs of fn.body.ops to lower as chunks, in order; one run (no cut) for a function
    with parameters or of at most `limit` operations. (One pass over the operations gathers what
    the cuts need; it runs on every top-level operation of a 1 MB source.)"""
    ops = fn.body.ops
    whole = [Chunk(0, len(ops), [], False)]
    if fn.params or len(ops) <= 1:
        return whole
    weights = [1 if isinstance(op, ir.Instr) else _weight(op) for op in ops]
    if sum(weights) <= limit:
        return whole
    const_op = ir.Op.CONST
    defined_at: dict[int, int] = {}  # top-level value id -> index of the operation defining it
    consts: dict[int, ir.Instr] = {}  # ... of those, the scalar constants
    last_use: dict[int, int] = {}
    reads: list[list[int]] = []
    scalar_ops: list[bool] = []
    results: list[list[int]] = []
    for i, op in enumerate(ops):
        if isinstance(op, ir.Instr):
            read = [a.id for a in op.args]
            result = op.result
            scalar_ops.append((result is None or result.rank == 0) and all(a.rank == 0 for a in op.args))
            if result is None:
                results.append([])
            else:
                results.append([result.id])
                if op.op is const_op:
                    consts[result.id] = op
        else:
            read = [r for r in _reads(op) if r in defined_at]
            scalar_ops.append(False)
            results.append([v.id for v in op.results])
        reads.append(read)
        for r in read:
            last_use[r] = i
        for r in results[-1]:
            defined_at[r] = i
    for v in fn.body.yields:  # read after the last operation
        if v.id in defined_at:
            last_use[v.id] = len(ops)
    chunks: list[Chunk] = []
    start, weight, reach = 0, 0, -1
    for i, produced in enumerate(results):
        weight += weights[i]
        for r in produced:
            if r not in consts:
                reach = max(reach, last_use.get(r, i))
        if weight >= limit and reach <= i and i + 1 < len(ops):
            chunks.append(Chunk(start, i + 1, [], False))
            start, weight = i + 1, 0
    chunks.append(Chunk(start, len(ops), [], False))
    if len(chunks) == 1:
        return whole
    out: list[Chunk] = []
    for chunk in chunks:
        needed: dict[int, ir.Instr] = {}
        for i in range(chunk.start, chunk.end):
            for r in reads[i]:
                if r in consts and defined_at[r] < chunk.start:
                    needed.setdefault(r, consts[r])
        if chunk.end == len(ops):
            for v in fn.body.yields:
                if v.id in consts and defined_at[v.id] < chunk.start:
                    needed.setdefault(v.id, consts[v.id])
        out.append(Chunk(chunk.start, chunk.end, list(needed.values()), all(scalar_ops[chunk.start:chunk.end])))
    return out
