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
that is still there (a recursive function, which autodiff differentiates as a call) reads the
globals the step computed that its functions only read as extra arguments: it calls copies of
its functions (`f.gl.7` for slot 7) whose loads of those slots are the arguments, so their
gradient flows through the call's arguments. It forgets the slots its functions may write (every
slot, if one of them is missing from the module); globals_calls then refuses the step if a
gradient would have to cross such a call through a global it writes.

A WhileOp whose condition stores a global (a function called in `while f() { }`) is first
rotated: the condition is evaluated once before the loop and again at the end of each
iteration, its flag carried, so its stores are ordinary statements of the enclosing block and
of the body.

The forward semantics do not change (tests run the interpreter on the IR before this pass);
only the data flow autodiff sees does.
Imports: noma.compiler.middle.ir, noma.compiler.middle.rewrite, noma.compiler.middle.globals_calls.
"""

from __future__ import annotations

from noma.compiler.middle import ir, rewrite
from noma.compiler.middle.globals_calls import Site, check_kept_calls, reachable
from noma.compiler.middle.ir import Block, IfOp, Instr, Op, OptimizeOp, Value, WhileOp

Known = dict[int, Value]


class _Writes:
    """What a region may write: global slots stored (with a rank and name each), also by the
    functions its kept calls run; `calls`: a call of a function missing from the module."""

    def __init__(self, module: ir.Module) -> None:
        self.module = module
        self.slots: dict[int, tuple[int, str]] = {}
        self.calls = False

    def scan(self, block: Block, follow_calls: bool = True) -> "_Writes":
        for op in block.ops:
            if isinstance(op, Instr):
                if op.op is Op.GLOBAL_STORE:
                    self.slots.setdefault(int(op.attr("slot")), (op.args[0].rank, str(op.attr("name"))))
                elif op.op is Op.CALL and follow_calls:
                    for name in sorted(reachable(self.module, str(op.attr("callee")))):
                        fn = self.module.functions.get(name)
                        if fn is None:
                            self.calls = True
                        else:
                            self.scan(fn.body, follow_calls=False)
                continue
            if isinstance(op, OptimizeOp):
                self.calls = True  # not expected inside a body; treat it as writing anything
            for child in ir.child_blocks(op):
                self.scan(child, follow_calls)
        return self


def _slots(fns: list[ir.Function], kind: Op) -> set[int]:
    return {int(op.attr("slot")) for fn in fns for b in ir.walk_blocks(fn.body) for op in b.ops
            if isinstance(op, Instr) and op.op is kind}


def promote_globals(module: ir.Module, body: Block, params: frozenset[int] = frozenset()) -> None:
    """Rewrite an (inlined) optimize body in place so reads of globals it wrote use SSA values.
    `params`: the listed parameter slots, for the check of calls that stay calls (globals_calls)."""
    p = _Promoter(module)
    p.block(body, {})
    rewrite.substitute(body, p.renames)
    check_kept_calls(module, body, set(params), p.sites)


class _Promoter:
    def __init__(self, module: ir.Module):
        self.module = module
        self.renames: rewrite.Mapping = {}
        self.sites: list[Site] = []

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
        elif op.op is Op.CALL:  # a kept call: forget what the functions it runs may write
            op = self._pass_read_globals(op, known)
            self.sites.append((op, dict(known)))
            writes = _Writes(self.module).scan(Block([], [op], []))
            if writes.calls:
                known.clear()
            for slot in writes.slots:
                known.pop(slot, None)
        block.ops.append(op)

    def _pass_read_globals(self, call: Instr, known: Known) -> Instr:
        """A kept call whose functions read, and none writes, globals this step computed: call a
        copy of them that takes those values as extra arguments instead (`f` → `f.gl.7`), so
        their gradient reaches the copy's arguments. Nothing changes when the copy would read
        nothing this step knows."""
        names = reachable(self.module, str(call.attr("callee")))
        if any(n not in self.module.functions for n in names):
            return call
        fns = [self.module.functions[n] for n in names]
        slots = sorted((_slots(fns, Op.GLOBAL_LOAD) - _slots(fns, Op.GLOBAL_STORE)) & set(known))
        if not slots:
            return call
        suffix = ".gl" + "".join(f".{s}" for s in slots)
        for name in sorted(names):
            self._copy_taking_globals(name, slots, suffix, names, [known[s].rank for s in slots])
        attrs = dict(call.attrs)
        attrs["callee"] = str(call.attr("callee")) + suffix
        return Instr(Op.CALL, call.args + tuple(known[s] for s in slots), call.result,
                     tuple(sorted(attrs.items())), call.span)

    def _copy_taking_globals(self, name: str, slots: list[int], suffix: str, names: set[str],
                             ranks: list[int]) -> None:
        if name + suffix in self.module.functions:
            return
        fn = self.module.functions[name]
        params = [self.module.new_value(p.rank) for p in fn.params]
        extra = [self.module.new_value(r) for r in ranks]
        body = rewrite.clone_block(self.module, fn.body, {p.id: q for p, q in zip(fn.params, params)})
        by_slot = dict(zip(slots, extra))
        renames: rewrite.Mapping = {}
        for block in ir.walk_blocks(body):
            ops: list[ir.Operation] = []
            for op in block.ops:
                if isinstance(op, Instr) and op.op is Op.GLOBAL_LOAD and int(op.attr("slot")) in by_slot:
                    assert op.result is not None
                    renames[op.result.id] = by_slot[int(op.attr("slot"))]
                    continue
                if isinstance(op, Instr) and op.op is Op.CALL and op.attr("callee") in names:
                    attrs = dict(op.attrs)
                    attrs["callee"] = str(op.attr("callee")) + suffix
                    op = Instr(Op.CALL, op.args + tuple(extra), op.result, tuple(sorted(attrs.items())), op.span)
                ops.append(op)
            block.ops = ops
        rewrite.substitute(body, renames)
        self.module.functions[name + suffix] = ir.Function(name + suffix, params + extra, body,
                                                           fn.result_rank, fn.span)

    def _if(self, block: Block, op: IfOp, known: Known) -> Known:
        writes = _Writes(self.module)
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

    def _rotate(self, op: WhileOp) -> Block:
        """`while c(x) { x = b(x) }` → `f = c(x0); while f { x = b(x); f = c(x) }`, in place:
        the condition's effects move where the SSA values are threaded. Returns the block of
        ops to run before the loop (the first evaluation of the condition)."""
        def inline_cond(into: Block, args: list[Value]) -> Value:
            mapping: rewrite.Mapping = {p.id: a for p, a in zip(op.cond.params, args)}
            into.ops.extend(rewrite.clone_op(self.module, c, mapping) for c in op.cond.ops)
            return mapping.get(op.cond.yields[0].id, op.cond.yields[0])

        pre = Block()
        first = inline_cond(pre, list(op.inits))
        op.body.params.append(self.module.new_value(0))
        op.body.yields.append(inline_cond(op.body, list(op.body.yields)))
        op.inits.append(first)
        flag = self.module.new_value(0)
        op.cond = Block([self.module.new_value(v.rank) for v in op.inits[:-1]] + [flag], [], [flag])
        op.results.append(self.module.new_value(0))
        if op.carry_slots:
            op.carry_slots.append(None)
        return pre

    def _while(self, block: Block, op: WhileOp, known: Known) -> Known:
        if _Writes(self.module).scan(op.cond).slots:
            pre = self._rotate(op)
            known = self.block(pre, known)
            block.ops.extend(pre.ops)
        cond_calls = _Writes(self.module).scan(op.cond).calls
        in_body = _Writes(self.module).scan(op.body)
        slots = sorted(in_body.slots.items())
        for slot, info in slots:
            op.inits.append(self._value(block, known, slot, info))
        block.ops.append(op)
        # what holds at every evaluation of the condition and at the start of every iteration
        stored = {s for s, _ in slots}
        outside = {} if cond_calls or in_body.calls else {s: v for s, v in known.items() if s not in stored}
        cond_params = [self.module.new_value(info[0]) for _, info in slots]
        body_params = [self.module.new_value(info[0]) for _, info in slots]
        op.cond.params.extend(cond_params)
        op.body.params.extend(body_params)
        self.block(op.cond, {**outside, **{s: p for (s, _), p in zip(slots, cond_params)}})
        entry = {} if cond_calls else {**outside, **{s: p for (s, _), p in zip(slots, body_params)}}
        end = self.block(op.body, entry)
        results = [self.module.new_value(info[0]) for _, info in slots]
        for slot, info in slots:
            op.body.yields.append(self._value(op.body, end, slot, info))
        op.results.extend(results)
        if op.carry_slots:  # only loops outside training steps release the arena per iteration
            op.carry_slots.extend([None] * len(slots))
        if cond_calls:  # the last evaluation of the condition may have written anything
            return {}
        return {**outside, **{s: r for (s, _), r in zip(slots, results)}}
