"""The lowering of one IR function: its value map, the per-instruction dispatch and blocks.

Owns: `FunctionLowering` (one LLVM function under construction: the collaborators it emits
through -- the builder-level toolkit, inline math, vector loops, kernels, linalg --, the map from
IR values to LLVM values, the fused instructions not emitted yet, the training loops being
lowered), LOWERINGS (Op -> handler: every Op the IR defines, checked by
tests/compiler/test_lowering_table.py; the handlers live in elementwise.py, ops.py, state.py and
conv.py), the structured ops IfOp / WhileOp (branches and loops with phis; an OptimizeOp goes to
training.py) and PROBE_LEFT_OUT (the effects a resize probe's copy of a step leaves out).
Input: ir.Block / ir.Instr with a module.ModuleContext. Output: llvmlite.ir code.
Imports: ir, basics, module, toolkit, inline_math, vector, kernels, linalg, elementwise, ops,
state, conv, training, llvmlite.ir.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

from llvmlite import ir as ll

from noma.compiler.llvm import conv, elementwise, ops, state
from noma.compiler.llvm.basics import LoweringError
from noma.compiler.llvm.inline_math import InlineMath
from noma.compiler.llvm.kernels import Kernels
from noma.compiler.llvm.linalg import Linalg
from noma.compiler.llvm.module import ModuleContext
from noma.compiler.llvm.toolkit import Toolkit
from noma.compiler.llvm.training import lower_optimize
from noma.compiler.llvm.vector import VectorLoops
from noma.compiler.middle import ir

Op = ir.Op

#: How one instruction is lowered: (the function's lowering, the instruction) -> the LLVM value
#: of its result (None when it has none; elementwise.DEFERRED when it is fused into its user).
Handler = Callable[["FunctionLowering", ir.Instr], Optional[ll.Value]]


def _merge(*tables: dict[Op, Handler]) -> dict[Op, Handler]:
    out: dict[Op, Handler] = {}
    for table in tables:
        twice = out.keys() & table.keys()
        if twice:
            raise AssertionError(f"ops lowered twice: {sorted(op.value for op in twice)}")
        out.update(table)
    return out


#: Op -> its lowering. Every Op of the IR has one (tests/compiler/test_op_tables.py).
LOWERINGS: dict[Op, Handler] = _merge(elementwise.HANDLERS, ops.HANDLERS, state.HANDLERS, conv.HANDLERS)

#: Ops deliberately without a lowering, with why (none today: the structured operations IfOp,
#: WhileOp and OptimizeOp are not Op members and are lowered by FunctionLowering.lower_block).
NOT_LOWERED: dict[Op, str] = {}

#: Effects the output probe's copy of a training step leaves out: everything that changes state
#: or the outside world, except global stores (the runtime puts the globals back after each
#: pass) and what computes values (random draws -- the generator is put back too --, reads, the
#: tape).
PROBE_LEFT_OUT = ir.EFFECTFUL - {Op.CALL, Op.TAPE_PUSH, Op.TAPE_POP, Op.RANDOM, Op.RAND_SCALAR,
                                 Op.LOAD_CSV, Op.LOAD_ST, Op.GLOBAL_STORE}


class FunctionLowering:
    """Lowers the blocks and instructions of one function into `fn` (see the module docstring)."""

    def __init__(self, mc: ModuleContext, fn: ll.Function, copy_loads: set[int], fused: set[int],
                 producers: dict[int, ir.Instr]):
        self.mc: ModuleContext = mc
        self.tk: Toolkit = Toolkit(mc, fn)
        self.math: InlineMath = InlineMath(self.tk)
        self.vec: VectorLoops = VectorLoops(self.tk)
        self.kern: Kernels = Kernels(self.tk, self.vec)
        self.linalg: Linalg = Linalg(self.tk, self.vec)
        #: IR value id -> its LLVM value
        self.vals: dict[int, ll.Value] = {}
        #: id() of PARAM_LOAD / GLOBAL_LOAD instructions whose tensor must be copied to the arena
        #: (something in scope may overwrite the stored buffer while the value is live).
        self.copy_loads: set[int] = copy_loads
        #: id() of elementwise instructions computed inside the loop of their only user.
        self.fused: set[int] = fused
        #: result id -> the instruction computing it, over the whole IR function (a training
        #: loop's replay re-lowers the constants its body reads).
        self.producers: dict[int, ir.Instr] = producers
        self.optimize_depth: int = 0  # > 0 while lowering the body or gradient of a training loop
        #: the training loops being lowered, innermost last, with their hyperparameter arrays
        self.training: list[tuple[ir.OptimizeOp, ll.Value]] = []
        #: True while lowering the output probe's copy of a training step's body: effects are
        #: left out (see training._probe_and_apply_resizes).
        self.probing: bool = False
        #: result id -> fused instruction not emitted yet.
        self.deferred: dict[int, ir.Instr] = {}

    def derive(self, fn: ll.Function) -> FunctionLowering:
        """A lowering of another LLVM function of the same IR function (its analyses shared)."""
        return FunctionLowering(self.mc, fn, self.copy_loads, self.fused, self.producers)

    def get(self, v: ir.Value) -> ll.Value:
        """The LLVM value of IR value v (a deferred fused value is emitted here)."""
        value = self.vals.get(v.id)
        if value is not None:
            return value
        ins = self.deferred.pop(v.id, None)
        if ins is not None:  # a fused value needed on its own after all: emit it here
            saved = self.tk.span
            self.tk.span = ins.span
            value = self.vals[v.id] = elementwise.elementwise_tree(self, ins)
            self.tk.span = saved
            return value
        raise LoweringError(f"{v} used before definition")

    def lower_instr(self, ins: ir.Instr) -> None:
        """Lower one instruction through LOWERINGS (effects are left out while probing)."""
        if self.probing and ins.result is None and ins.op in PROBE_LEFT_OUT:
            return
        self.tk.span = ins.span
        self.tk.new_stage()
        handler = LOWERINGS.get(ins.op)
        if handler is None:
            raise LoweringError(f"no lowering for {ins.op.value}")
        result = handler(self, ins)
        if ins.result is not None and result is not elementwise.DEFERRED:
            if result is None:
                raise LoweringError(f"{ins.op.value} produced no value")
            self.vals[ins.result.id] = result

    def lower_block(self, block: ir.Block, params: Sequence[ll.Value]) -> list[ll.Value]:
        """Lower `block` with its params bound to `params`; the LLVM values it yields."""
        for p, v in zip(block.params, params):
            self.vals[p.id] = v
        self.lower_ops(block.ops)
        return [self.get(v) for v in block.yields]

    def lower_ops(self, ops: Sequence[ir.Operation]) -> None:
        """Lower a sequence of operations (a block's, or one chunk of a long body's)."""
        for op in ops:
            if isinstance(op, ir.Instr):
                self.lower_instr(op)
            elif isinstance(op, ir.IfOp):
                self._lower_if(op)
            elif isinstance(op, ir.WhileOp):
                self._lower_while(op)
            elif isinstance(op, ir.OptimizeOp):
                lower_optimize(self, op)
            else:
                raise LoweringError(f"unknown operation {op!r}")

    def _lower_if(self, op: ir.IfOp) -> None:
        tk = self.tk
        cond = tk.truth(self.get(op.cond))
        then_bb = tk.fn.append_basic_block("if.then")
        else_bb = tk.fn.append_basic_block("if.else")
        merge = tk.fn.append_basic_block("if.end")
        tk.b.cbranch(cond, then_bb, else_bb)
        incoming = []
        for bb, block in ((then_bb, op.then), (else_bb, op.else_)):
            tk.b.position_at_end(bb)
            ys = self.lower_block(block, [])
            incoming.append((ys, tk.b.block))
            tk.b.branch(merge)
        tk.b.position_at_end(merge)
        for k, r in enumerate(op.results):
            phi = tk.b.phi(self.mc.value_type(r.rank))
            for ys, bb in incoming:
                phi.add_incoming(ys[k], bb)
            self.vals[r.id] = phi

    def _lower_while(self, op: ir.WhileOp) -> None:
        """A loop with phis. Outside training loops, with carry slots, every iteration releases
        the arena (carried tensors are kept in alternating global slots), so a long loop runs in
        bounded memory; inside a training step the tape needs every iteration's data."""
        tk = self.tk
        release = self.optimize_depth == 0 and len(op.carry_slots) == len(op.inits)
        mark = tk.rt("noma_arena_mark") if release else None
        pre = tk.b.block
        head = tk.fn.append_basic_block("while.cond")
        body = tk.fn.append_basic_block("while.body")
        exit_ = tk.fn.append_basic_block("while.end")
        tk.b.branch(head)
        tk.b.position_at_end(head)
        phis = []
        for v in op.inits:
            phi = tk.b.phi(self.mc.value_type(v.rank))
            phi.add_incoming(self.get(v), pre)
            phis.append(phi)
        if release:
            odd = tk.b.phi(ll.IntType(1), name="odd")
            odd.add_incoming(ll.Constant(ll.IntType(1), 0), pre)
        (flag,) = self.lower_block(op.cond, phis)
        tk.b.cbranch(tk.truth(flag), body, exit_)
        tk.b.position_at_end(body)
        # an interrupt stops any loop, also one that never reaches a training step boundary
        tk.rt("noma_check_interrupt_loop", tk.span_c())
        nxt = self.lower_block(op.body, phis)
        if release:
            nxt = self.keep_carried(op.inits, nxt, op.carry_slots, odd)
            tk.rt("noma_arena_release", mark)
            odd.add_incoming(tk.b.not_(odd), tk.b.block)
        for phi, v in zip(phis, nxt):
            phi.add_incoming(v, tk.b.block)
        tk.b.branch(head)
        tk.b.position_at_end(exit_)
        for r, phi in zip(op.results, phis):
            # slot-backed results are copied out: the slots are reused if this loop runs again
            self.vals[r.id] = tk.copy_to_arena(phi, r.rank) if release and r.rank > 0 else phi

    def keep_carried(self, inits: list[ir.Value], values: list[ll.Value],
                     slots: list[Optional[tuple[int, int]]], odd: ll.Value) -> list[ll.Value]:
        """Store each carried tensor in its even/odd global slot and reload it from there."""
        tk = self.tk
        b = tk.b
        kept = []
        for v, value, s in zip(inits, values, slots):
            if v.rank == 0 or s is None:
                kept.append(value)
                continue
            slot = b.select(odd, tk.i64(s[1]), tk.i64(s[0]))
            tk.rt("noma_global_store_at", slot, tk.tensor_ptr(value), tk.span_c())
            kept.append(tk.load_tensor(tk.rt("noma_global", slot)))
        return kept
