"""Reverse mode through calls that stay calls: recursive functions inside `optimize` bodies.

Owns: the call graph questions autodiff asks (which functions are recursive, which listed
parameters a callee reaches) and the adjoint pair of a recursive function.

Design
------
Non-recursive calls are inlined before autodiff (rewrite.inline_calls). A call of a recursive
function cannot be inlined (its depth is known only at run time), so it stays a CALL and gets,
per optimize loop, an adjoint pair generated from its body:

* `F.fwd…(args) -> r`: F's body (non-recursive callees inlined) that also saves, at its end, the
  values its reverse needs on the runtime tape (the same TAPE_PUSH as any nested block), so
  every activation of the recursion leaves its own residuals, deepest call last;
* `F.rev…(g)`: pops those residuals, runs the reverse of F's body for the result adjoint `g`
  and pushes its outputs on the tape: the adjoints of F's arguments, in order, then the
  gradient contributions of the listed parameters F reaches (`slots`, ascending).

A recursive CALL inside F becomes, in F.fwd, a call of the callee's `fwd` and, in F.rev, a call
of its `rev` followed by TAPE_POPs of its outputs: the reverse recursion unwinds the forward one
in LIFO order, so the tape stays balanced. At a call site whose result needs an adjoint, the
forward CALL is retargeted to `fwd` and the reverse calls `rev` the same way; calls whose result
gets no adjoint stay plain calls (nothing is pushed, nothing popped). Every argument of F is
treated as active inside the pair (one pair per callee and optimize loop, whatever the call
site); adjoints of inactive arguments are computed and dropped by the caller.
The pair's names encode the parameter slots and ranks (`p.s.s.fwd.p0r0`), so the same callee
differentiated for the same parameters is the same function in every cell.
Globals: before this, globals_ssa passes the globals a recursive call only reads as arguments
(so they are ordinary arguments here) and globals_calls refuses gradients through the globals
it writes.
Imports: noma.compiler.middle.ir, noma.compiler.middle.rewrite. autodiff's reverse sweep reaches
this module as `CallContext.new_sweep` (autodiff imports this module, never the reverse).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

from noma.compiler.middle import ir, rewrite
from noma.compiler.middle.ir import Instr, Op, Value

if TYPE_CHECKING:
    from noma.compiler.middle.autodiff import _Sweep


@dataclass
class Pair:
    """The adjoint pair of one recursive function for one optimize loop."""

    fwd: str
    rev: str
    slots: list[int]
    arg_ranks: list[int]


@dataclass
class CallContext:
    """What one optimize loop's differentiation knows about calls: its parameters and pairs."""

    module: ir.Module
    params: dict[int, ir.ParamRef]
    #: autodiff's reverse sweep of a block whose inputs are the given values: new_sweep(ctx, block, inputs)
    new_sweep: Callable[["CallContext", ir.Block, list[Value]], "_Sweep"]
    pairs: dict[str, Pair] = field(default_factory=dict)
    _reach: dict[str, list[int]] = field(default_factory=dict)

    def slots_reached(self, callee: str) -> list[int]:
        """Listed parameters loaded by the callee or anything it calls, ascending."""
        if callee not in self._reach:
            names = {callee} | rewrite.reachable_functions(self.module, callee)
            found = {op.attr("slot") for n in names if n in self.module.functions
                     for b in ir.walk_blocks(self.module.functions[n].body) for op in b.ops
                     if isinstance(op, Instr) and op.op is Op.PARAM_LOAD and op.attr("slot") in self.params}
            self._reach[callee] = sorted(found)
        return self._reach[callee]

    def pair(self, callee: str) -> Pair:
        """The adjoint pair of `callee`, generated on first use (recursion finds it registered)."""
        found = self.pairs.get(callee)
        if found is not None:
            return found
        fn = self.module.functions[callee]
        slots = self.slots_reached(callee)
        suffix = "".join(f".p{s}r{self.params[s].rank}" for s in slots)
        pair = Pair(f"{callee}.fwd{suffix}", f"{callee}.rev{suffix}", slots, [p.rank for p in fn.params])
        self.pairs[callee] = pair
        _generate(self, fn, pair)
        return pair


def _generate(ctx: CallContext, fn: ir.Function, pair: Pair) -> None:
    module = ctx.module
    params = [module.new_value(p.rank) for p in fn.params]
    body = rewrite.clone_block(module, fn.body, {p.id: q for p, q in zip(fn.params, params)})
    rewrite.inline_calls(module, body)
    body.params = params  # seen as the block's inputs by the sweep (saved on the tape at the end)
    sweep = ctx.new_sweep(ctx, body, params)
    g: Optional[Value] = None if fn.result_rank is None else module.new_value(fn.result_rank)
    if g is not None and body.yields:
        sweep.accum(body.yields[0].id, g)
    sweep.run()
    outs = [sweep.adjoint_or_zeros(p.id) for p in params] + \
        [sweep.adjoint_or_zeros(("param", s)) for s in pair.slots]
    sweep.finish(outs)
    body.params = []
    rev = sweep.block
    rev.ops += [Instr(Op.TAPE_PUSH, (v,), None) for v in rev.yields]
    rev.yields = []
    module.functions[pair.fwd] = ir.Function(pair.fwd, params, body, fn.result_rank, fn.span)
    module.functions[pair.rev] = ir.Function(pair.rev, [] if g is None else [g], rev, None, fn.span)


def reverse_call(sweep: "_Sweep", ins: Instr, g: Value, ctx: CallContext) -> None:
    """The reverse of a kept CALL whose result has adjoint g: retarget the forward call to the
    callee's `fwd`, call its `rev` and accumulate the adjoints it leaves on the tape."""
    pair = ctx.pair(ins.attr("callee"))
    attrs: dict[str, Any] = dict(ins.attrs)
    attrs["callee"] = pair.fwd
    at = sweep.at
    assert sweep.fwd.ops[at] is ins
    sweep.fwd.ops[at] = dataclasses.replace(ins, attrs=tuple(sorted(attrs.items())))
    sweep.b.emit(Op.CALL, (g,), sweep.span, callee=pair.rev, result_rank=None)
    ranks = pair.arg_ranks + [ctx.params[s].rank for s in pair.slots]
    popped: list[Value] = [sweep.b.value(Op.TAPE_POP, span=sweep.span, rank=r) for r in reversed(ranks)]
    popped.reverse()
    for arg, adj in zip(ins.args, popped):
        sweep.accum(arg.id, adj)
    for slot, adj in zip(pair.slots, popped[len(pair.arg_ranks):]):
        sweep.accum(("param", slot), adj)
