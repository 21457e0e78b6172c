"""Reverse-mode automatic differentiation as an IR pass.

Owns: differentiate(module), which fills `grad` of every OptimizeOp of the module: a block that
yields, per listed parameter, d(loss)/d(parameter) summed over all PARAM_LOADs of its slot.
The per-op derivatives live in autodiff_rules.py; this module owns the sweep.

How it works
------------
* Calls reachable from an optimize body are inlined first (rewrite.inline_calls), except calls
  of recursive functions: they stay calls and are differentiated through an adjoint pair of
  functions that use the runtime tape (autodiff_calls.py). Then the globals the step writes
  become SSA values (globals_ssa.promote_globals), so a loss computed from a global written
  earlier in the step, at any depth or in an inlined function, depends on it; a recursive call
  gets the globals it only reads as arguments, and a gradient that would cross one through a
  global it writes is a located type error (globals_calls).
* Activity: a value is active when it depends, through differentiable operands, on a PARAM_LOAD
  of a listed parameter. Only active values get adjoints; zero adjoints are implicit (None) and
  are materialised (ZEROS_LIKE of the primal) only where branches or loops must merge them.
* The reverse of a block is a new block whose ops are the rules of the forward ops in reverse
  order. Adjoints are keyed by value id, or ("param", slot) for the parameters' gradients.
* The grad block is the reverse of the body's top level: it uses the body's top-level values
  directly (lowering runs grad right after body). Values of nested blocks (if branches, while
  bodies) that a reverse block needs are saved on the tape: TAPE_PUSH at the end of the forward
  block, TAPE_POP (LIFO) at the start of its reverse; CONSTs are re-emitted instead.
* If: an IfOp on the same condition whose branches are the reversed branches; it yields the
  adjoints of the values from outside the if that either branch contributes to.
* While: the forward loop gets an iteration counter (an extra carried value and result); the
  reverse is a loop counting it down, each iteration popping its forward iteration's residuals and
  carrying the adjoints of the loop-carried values and of the outside values the body uses.
Imports: noma.compiler.middle.ir, noma.compiler.middle.rewrite, noma.compiler.middle.globals_ssa,
noma.compiler.middle.autodiff_rules, noma.compiler.middle.autodiff_calls.
"""

from __future__ import annotations

from typing import Optional, Union

from noma.compiler.middle import globals_ssa, ir, rewrite
from noma.compiler.middle.autodiff_calls import CallContext, reverse_call
from noma.compiler.middle.autodiff_rules import RULES, differentiable_args
from noma.compiler.middle.ir import Block, Builder, IfOp, Instr, Op, OptimizeOp, Value, WhileOp

Key = Union[int, tuple[str, int]]


def differentiate(module: ir.Module) -> None:
    """Fill OptimizeOp.grad everywhere in module (ops that already have one are left alone)."""
    targets = [op for fn in list(module.functions.values()) for op in ir.walk_regions(fn.body)
               if isinstance(op, OptimizeOp)]
    for op in targets:
        if op.grad is None:
            rewrite.inline_calls(module, op.body)
            globals_ssa.promote_globals(module, op.body, frozenset(p.slot for p in op.params))
            _differentiate_optimize(module, op)


def _differentiate_optimize(module: ir.Module, opt: OptimizeOp) -> None:
    params = {p.slot: p for p in opt.params}
    calls = CallContext(module, params, _call_sweep)
    top = _Sweep(_Analysis(module, params, opt.body, calls), opt.body)
    loss = opt.body.yields[0]
    if loss.id in top.an.active:  # a non-scalar loss is summed: its seed is ones of its shape
        one = top.const(1.0)
        top.accum(loss.id, one if loss.rank == 0 else top.op(Op.BROADCAST_TO, one, loss))
    top.run()
    top.block.yields = [top.adjoint_or_zeros(("param", p.slot)) for p in opt.params]
    opt.grad = top.block


def _call_sweep(ctx: CallContext, body: Block, inputs: list[Value]) -> "_Sweep":
    """The reverse sweep of a recursive callee's body (autodiff_calls builds its adjoint pair with it)."""
    return _Sweep(_Analysis(ctx.module, ctx.params, body, ctx, inputs=inputs), body)


class _Analysis:
    """Facts about one optimize body (or a recursive function's body, whose `inputs` are
    active): values by id, the active set and provable shape equalities."""

    def __init__(self, module: ir.Module, params: dict[int, ir.ParamRef], body: Block, calls: CallContext,
                 inputs: tuple[Value, ...] | list[Value] = ()):
        self.module = module
        self.params = params
        self.calls = calls
        self.values: dict[int, Value] = {}
        self.active: set[int] = {v.id for v in inputs}
        self._parent: dict[int, int] = {}
        self._index(body)
        while self._mark(body):
            pass

    def _index(self, block: Block) -> None:
        for p in block.params:
            self.values[p.id] = p
        for op in block.ops:
            for child in ir.child_blocks(op):
                self._index(child)
            for r in ir.results(op):
                self.values[r.id] = r
            if isinstance(op, Instr):
                self._shape(op)

    # --- shape classes: values whose shapes are provably equal (union-find over value ids)

    def _find(self, i: int) -> int:
        while i in self._parent:
            i = self._parent[i]
        return i

    def _shape(self, ins: Instr) -> None:
        r, like = ins.result, None
        if r is None or r.rank == 0:
            return
        if ins.op in ir.ELEMENTWISE:
            tensors = [a for a in ins.args if a.rank > 0]
            classes = {self._find(a.id) for a in tensors}
            if len(classes) == 1 and all(a.rank == r.rank for a in tensors):
                like = classes.pop()
        elif ins.op is Op.ZEROS_LIKE:
            like = self._find(ins.args[0].id)
        elif ins.op in (Op.SUM_TO, Op.BROADCAST_TO, Op.RESHAPE_LIKE, Op.SLICE_GRAD, Op.INDEX_GRAD):
            like = self._find(ins.args[1].id)
        if like is not None and like != r.id:
            self._parent[r.id] = like

    def same_shape(self, a: Value, b: Value) -> bool:
        return a.rank == b.rank and (a.rank == 0 or self._find(a.id) == self._find(b.id))

    # --- activity (a fixpoint: loops feed their results back into their bodies)

    def _add(self, v: Value) -> bool:
        if v.id in self.active:
            return False
        self.active.add(v.id)
        return True

    def _mark(self, block: Block) -> bool:
        changed = False
        for op in block.ops:
            if isinstance(op, Instr):
                if op.result is not None and self._instr_active(op):
                    changed |= self._add(op.result)
            elif isinstance(op, IfOp):
                changed |= self._mark(op.then) | self._mark(op.else_)
                for r, a, b in zip(op.results, op.then.yields, op.else_.yields):
                    if a.id in self.active or b.id in self.active:
                        changed |= self._add(r)
            elif isinstance(op, WhileOp):
                for j, r in enumerate(op.results):
                    if op.inits[j].id in self.active or op.body.yields[j].id in self.active:
                        changed |= self._add(op.body.params[j]) | self._add(r)
                changed |= self._mark(op.body)
        return changed

    def _instr_active(self, ins: Instr) -> bool:
        if ins.op is Op.PARAM_LOAD:
            return ins.attr("slot") in self.params
        if ins.op is Op.CALL:
            return ins.result is not None and (any(a.id in self.active for a in ins.args)
                                               or bool(self.calls.slots_reached(ins.attr("callee"))))
        return any(ins.args[i].id in self.active for i in differentiable_args(ins))


class _Sweep:
    """The reverse of one forward block, emitted into a new block; also the rules' emitter."""

    def __init__(self, an: _Analysis, fwd: Block):
        self.an, self.fwd = an, fwd
        self.block = Block()
        self.b = Builder(an.module, self.block)
        self.adj: dict[Key, Value] = {}
        self.local = {p.id for p in fwd.params} | {r.id for op in fwd.ops for r in ir.results(op)}
        self.span = -1
        self.at = -1  # the index in fwd.ops of the operation being reversed
        self._consts: dict[float, Value] = {}

    # --- the emitter interface used by the rules

    def op(self, op: Op, *args: Value, **attrs: object) -> Value:
        return self.b.value(op, *args, span=self.span, **attrs)

    def const(self, x: float) -> Value:
        if x not in self._consts:
            self._consts[x] = self.b.const(x, self.span)
        return self._consts[x]

    def wants(self, v: Value) -> bool:
        return v.id in self.an.active

    def unbroadcast(self, g: Value, x: Value, result: Optional[Value]) -> Value:
        if result is not None and self.an.same_shape(x, result):
            return g
        return self.op(Op.SUM_TO, g, x)

    # --- adjoints

    def accum(self, key: Key, g: Value) -> None:
        if isinstance(key, int) and key not in self.an.active:
            return
        cur = self.adj.get(key)
        self.adj[key] = g if cur is None else self.op(Op.ADD, cur, g)

    def rank(self, key: Key) -> int:
        return self.an.params[key[1]].rank if isinstance(key, tuple) else self.an.values[key].rank

    def zeros(self, key: Key) -> Value:
        if isinstance(key, tuple):
            p = self.an.params[key[1]]
            return self.op(Op.ZEROS_LIKE, self.op(Op.PARAM_LOAD, slot=p.slot, name=p.name, rank=p.rank))
        return self.op(Op.ZEROS_LIKE, self.an.values[key])

    def adjoint_or_zeros(self, key: Key) -> Value:
        g = self.adj.get(key)
        return g if g is not None else self.zeros(key)

    def outer_keys(self) -> list[Key]:
        """Keys of adjoints that belong to values defined outside the forward block."""
        return [k for k in self.adj if isinstance(k, tuple) or k not in self.local]

    # --- the sweep

    def run(self) -> None:
        ops = list(self.fwd.ops)
        for at in range(len(ops) - 1, -1, -1):
            op = ops[at]
            # what reversing an op adds to fwd goes after it (before a later while, at the end),
            # so `at` stays its index: no search for it (a search per while or call was quadratic)
            self.at = at
            self.span = op.span
            if isinstance(op, Instr):
                self._instr(op)
            elif isinstance(op, IfOp):
                self._if(op)
            elif isinstance(op, WhileOp):
                self._while(op)
        self.span = -1

    def _instr(self, ins: Instr) -> None:
        g = None if ins.result is None else self.adj.get(ins.result.id)
        if g is None:
            return
        if ins.op is Op.PARAM_LOAD:
            self.accum(("param", ins.attr("slot")), g)
            return
        if ins.op is Op.CALL:
            reverse_call(self, ins, g, self.an.calls)
            return
        grads = RULES[ins.op](self, ins, g)
        for i in differentiable_args(ins):
            if i < len(grads) and grads[i] is not None:
                self.accum(ins.args[i].id, grads[i])  # type: ignore[arg-type]

    def _if(self, op: IfOp) -> None:
        seeds = [(j, self.adj[r.id]) for j, r in enumerate(op.results) if r.id in self.adj]
        if not seeds:
            return
        subs = []
        for branch in (op.then, op.else_):
            sub = _Sweep(self.an, branch)
            for j, g in seeds:
                sub.accum(branch.yields[j].id, g)
            sub.run()
            subs.append(sub)
        keys = list(dict.fromkeys(subs[0].outer_keys() + subs[1].outer_keys()))
        for sub in subs:
            sub.finish([sub.adjoint_or_zeros(k) for k in keys])
        results = [self.an.module.new_value(self.rank(k)) for k in keys]
        self.block.ops.append(IfOp(op.cond, subs[0].block, subs[1].block, results, op.span))
        for k, r in zip(keys, results):
            self.accum(k, r)

    def _while(self, op: WhileOp) -> None:
        module = self.an.module
        carried = [j for j, r in enumerate(op.results) if r.id in self.an.active]
        if all(op.results[j].id not in self.adj for j in carried):
            return
        count = self._count_iterations(op)
        sub = _Sweep(self.an, op.body)
        k = module.new_value(0)
        a_params = [module.new_value(op.body.params[j].rank) for j in carried]
        for j, a in zip(carried, a_params):
            sub.accum(op.body.yields[j].id, a)
        sub.run()
        keys = sub.outer_keys()
        b_params = [module.new_value(self.rank(key)) for key in keys]
        outs = [sub.adjoint_or_zeros(op.body.params[j].id) for j in carried]
        totals = [sub.op(Op.ADD, b, sub.adj[key]) for key, b in zip(keys, b_params)]
        sub.block.params = [k] + a_params + b_params
        sub.finish([sub.op(Op.SUB, k, sub.const(1.0))] + outs + totals)
        cond = Block([module.new_value(v.rank) for v in sub.block.params])
        cb = Builder(module, cond)
        cond.yields = [cb.value(Op.GT, cond.params[0], cb.const(0.0))]
        inits = ([count] + [self.adjoint_or_zeros(op.results[j].id) for j in carried]
                 + [self.zeros(key) for key in keys])
        results = [module.new_value(v.rank) for v in inits]
        self.block.ops.append(WhileOp(inits, cond, sub.block, results, op.span))
        for j, r in zip(carried, results[1:]):
            self.accum(op.inits[j].id, r)
        for key, r in zip(keys, results[1 + len(carried):]):
            self.accum(key, r)

    def _count_iterations(self, op: WhileOp) -> Value:
        """Make the forward loop count its iterations; returns the count (a new result)."""
        module = self.an.module

        def const(x: float) -> Instr:
            return Instr(Op.CONST, (), module.new_value(0), (("value", x),), op.span)
        zero, one = const(0.0), const(1.0)
        at = self.at
        assert self.fwd.ops[at] is op
        self.fwd.ops.insert(at, zero)
        k = module.new_value(0)
        step = Instr(Op.ADD, (k, one.result), module.new_value(0), (), op.span)  # type: ignore[arg-type]
        op.inits.append(zero.result)  # type: ignore[arg-type]
        op.cond.params.append(module.new_value(0))
        op.body.params.append(k)
        op.body.ops += [one, step]
        op.body.yields.append(step.result)  # type: ignore[arg-type]
        op.results.append(module.new_value(0))
        return op.results[-1]

    def finish(self, yields: list[Value]) -> None:
        """Set the reverse block's yields and save, on the tape, the forward block's values it uses."""
        self.block.yields = list(yields)
        used = rewrite.used_ids(self.block)
        consts = {op.result.id: op for op in self.fwd.ops
                  if isinstance(op, Instr) and op.op is Op.CONST and op.result is not None}
        order = list(self.fwd.params) + [r for op in self.fwd.ops for r in ir.results(op)]
        prelude: list[ir.Operation] = []
        mapping: dict[int, Value] = {}
        pushed: list[Value] = []
        for v in order:
            if v.id not in used:
                continue
            if v.id in consts:
                mapping[v.id] = self.an.module.new_value(0)
                prelude.append(Instr(Op.CONST, (), mapping[v.id], consts[v.id].attrs, consts[v.id].span))
            else:
                pushed.append(v)
        for v in pushed:
            self.fwd.ops.append(Instr(Op.TAPE_PUSH, (v,), None))
        for v in reversed(pushed):
            mapping[v.id] = self.an.module.new_value(v.rank)
            prelude.append(Instr(Op.TAPE_POP, (), mapping[v.id], (("rank", v.rank),)))
        self.block.ops = prelude + self.block.ops
        rewrite.substitute(self.block, mapping)
