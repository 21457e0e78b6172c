"""Globals as SSA values inside a training step, so their data flow is visible to autodiff.

Owns: promote_globals(module, body), run on an optimize body after its calls are inlined and
before it is differentiated. Inside the body a global is state (GLOBAL_STORE writes it,
GLOBAL_LOAD reads it); autodiff follows SSA values only, so a loss computed from a global that
the same step wrote (at any nesting depth, in the body or in an inlined function) would lose its
derivative. This pass replaces every GLOBAL_LOAD whose slot was stored (or already loaded)
earlier in the step by the value that is in the slot at that point, threading the values
through the structured control flow: an IfOp gets one more result per slot either branch
stores, a WhileOp one more carried value per slot its condition or body stores.

Every GLOBAL_STORE stays, so memory always holds what the SSA value says (the invariant the
pass keeps: `known[slot]` is the value the slot holds at that point of the block). A load with
nothing known before it (the slot's value from before the step) stays a GLOBAL_LOAD. A CALL
that is still there (a callee that could not be inlined) may write any global: afterwards
nothing is known until the next store or load. A WhileOp condition that stores a global leaves
that slot unknown at the start of the body and after the loop (the condition's writes happen
after the carried values are chosen), so such values are read back from memory.

The forward semantics do not change (tests run the interpreter on the IR before this pass);
only the data flow autodiff sees does.
Imports: noma.compiler.ir, noma.compiler.passes.
"""

from __future__ import annotations

from noma.compiler import ir, passes
from noma.compiler.ir import Block, IfOp, Instr, Op, OptimizeOp, Value, WhileOp

Known = dict[int, Value]


class _Writes:
    """What a region may write: global slots stored (with a rank and name each) and calls."""

    def __init__(self) -> None:
        self.slots: dict[int, tuple[int, str]] = {}
        self.calls = False

    def scan(self, block: Block) -> "_Writes":
        for op in block.ops:
            if isinstance(op, Instr):
                if op.op is Op.GLOBAL_STORE:
                    self.slots.setdefault(int(op.attr("slot")), (op.args[0].rank, str(op.attr("name"))))
                elif op.op is Op.CALL:
                    self.calls = True
                continue
            if isinstance(op, OptimizeOp):
                self.calls = True  # not expected inside a body; treat it as writing anything
            for child in ir.child_blocks(op):
                self.scan(child)
        return self


def promote_globals(module: ir.Module, body: Block) -> None:
    """Rewrite an (inlined) optimize body in place so reads of globals it wrote use SSA values."""
    p = _Promoter(module)
    p.block(body, {})
    passes.substitute(body, p.renames)


class _Promoter:
    def __init__(self, module: ir.Module):
        self.module = module
        self.renames: passes.Mapping = {}

    def _load(self, block: Block, slot: int, rank: int, name: str) -> Value:
        """Append a GLOBAL_LOAD of slot to block (the slot's value at the block's end so far)."""
        return ir.Builder(self.module, block).value(Op.GLOBAL_LOAD, slot=slot, name=name, rank=rank)

    def _value(self, block: Block, known: Known, slot: int, info: tuple[int, str]) -> Value:
        found = known.get(slot)
        return found if found is not None else self._load(block, slot, *info)

    def block(self, block: Block, known: Known) -> Known:
        """Promote inside block, starting from what is known at its start; what is known at its end."""
        ops, block.ops = block.ops, []
        for op in ops:
            if isinstance(op, Instr):
                self._instr(block, op, known)
            elif isinstance(op, IfOp):
                known = self._if(block, op, known)
            elif isinstance(op, WhileOp):
                known = self._while(block, op, known)
            else:  # an optimize cannot nest in a body; keep it and forget everything
                block.ops.append(op)
                known = {}
        return known

    def _instr(self, block: Block, op: Instr, known: Known) -> None:
        if op.op is Op.GLOBAL_LOAD:
            slot = int(op.attr("slot"))
            assert op.result is not None
            if slot in known:
                self.renames[op.result.id] = known[slot]
                return
            known[slot] = op.result
        elif op.op is Op.GLOBAL_STORE:
            known[int(op.attr("slot"))] = op.args[0]
        elif op.op is Op.CALL:
            known.clear()
        block.ops.append(op)

    def _if(self, block: Block, op: IfOp, known: Known) -> Known:
        writes = _Writes()
        for branch in (op.then, op.else_):
            writes.scan(branch)
        ends = [self.block(branch, dict(known)) for branch in (op.then, op.else_)]
        block.ops.append(op)
        after: Known = {} if writes.calls else dict(known)
        for slot, info in sorted(writes.slots.items()):
            for branch, end in zip((op.then, op.else_), ends):
                branch.yields.append(self._value(branch, end, slot, info))
            result = self.module.new_value(info[0])
            op.results.append(result)
            after[slot] = result
        return after

    def _while(self, block: Block, op: WhileOp, known: Known) -> Known:
        in_cond, in_body = _Writes().scan(op.cond), _Writes().scan(op.body)
        slots = sorted({**in_body.slots, **in_cond.slots}.items())
        calls = in_cond.calls or in_body.calls
        for slot, info in slots:
            op.inits.append(self._value(block, known, slot, info))
        block.ops.append(op)
        outside: Known = {} if calls else {s: v for s, v in known.items() if s not in dict(slots)}
        cond_params = [self.module.new_value(info[0]) for _, info in slots]
        body_params = [self.module.new_value(info[0]) for _, info in slots]
        op.cond.params.extend(cond_params)
        op.body.params.extend(body_params)
        self.block(op.cond, {**outside, **{s: p for (s, _), p in zip(slots, cond_params)}})
        entry: Known = {} if in_cond.calls else {**outside, **{s: p for (s, _), p in zip(slots, body_params)}}
        for s in in_cond.slots:
            entry.pop(s, None)
        end = self.block(op.body, entry)
        results = []
        for slot, info in slots:
            op.body.yields.append(self._value(op.body, end, slot, info))
            results.append(self.module.new_value(info[0]))
        op.results.extend(results)
        if op.carry_slots:  # only loops outside training steps release the arena per iteration
            op.carry_slots.extend([None] * len(slots))
        after: Known = {} if in_cond.calls else dict(outside)
        after.update({s: r for (s, _), r in zip(slots, results) if s not in in_cond.slots})
        return after
