"""IR -> textual LLVM IR: the native backend's front half (jit.py compiles the text).

Owns: `lower_module` and the conventions every caller relies on:

* real = double (module.dtype "f64") or float ("f32"); a scalar is a real SSA value; a tensor
  is an SSA value of `%NomaTensor = type { ptr data, i64 rank, [4 x i64] dims }`, passed to the
  runtime through a scratch alloca of the entry block.
* IR function `f` becomes the external LLVM function `symbols[f]` taking reals / %NomaTensor by
  value and returning real / %NomaTensor / void; `__`-prefixed functions without params and
  result are `void ()` (entry points for noma_invoke).
* Every CALL is bracketed by noma_enter(call span) / noma_leave() (the recursion limit reports
  the call site).
* Every CALL loads the callee from the pointer global `@"noma.fp.<callee>"` (a `ptr`). For a
  callee in `own_pointers` this module defines the global, initialised to the callee's function;
  otherwise it declares it external (defined by an earlier module; the session may overwrite it
  with the address of a newer version).
* Control flow: IfOp -> branches + phis; WhileOp -> a loop with phis; OptimizeOp -> one native
  training loop (see `_lower_optimize`).
* Tensor loads that could be overwritten while live (PARAM_LOAD / GLOBAL_LOAD in a scope that
  also writes params / globals or calls) are copied into the arena (`_loads_needing_copy`).

The lowering is split for size: lower_llvm_loops (types, runtime declarations, loops, kernels),
lower_llvm_ops (one method per Op), this module (functions, regions, optimize, module driver).
Input: a verified ir.Module. Output: LLVM IR text. Imports: ir, lower_llvm_ops, lower_llvm_loops,
llvmlite.ir (never llvmlite.binding, never noma.rt).
"""

from __future__ import annotations

import gc
from typing import Callable, Optional

from llvmlite import ir as ll

from noma.compiler.middle import ir
from noma.compiler.llvm.lower_llvm_loops import RUNTIME_SIGS, ModuleContext
from noma.compiler.llvm.lower_llvm_types import I64, PTR
from noma.compiler.llvm.lower_llvm_ops import OpLowering
from noma.compiler.llvm.lower_llvm_types import LoweringError

__all__ = ["lower_module", "LoweringError", "fn_pointer_name"]


def fn_pointer_name(callee: str) -> str:
    """The symbol of the function-pointer global through which `callee` is called."""
    return f"noma.fp.{callee}"


def lower_module(module: ir.Module, *, symbols: dict[str, str], own_pointers: set[str],
                 name: str, shared: Optional[Callable[[str], bool]] = None) -> str:
    """Lower every function of `module` to LLVM IR text (see the module docstring). `shared(sym)`:
    whether an outlined loop kernel `sym` is defined by an earlier module (then it is declared).

    Python's cyclic garbage collector is paused while the llvmlite module is built and the
    module's objects (tens of thousands, in reference cycles) are collected as soon as the text
    exists, while they are still the young generation: left on, the collector promoted them into
    the old generation, where they waited for a full collection that then cost a later cell
    tens of milliseconds (the more so the more a session holds)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        text = _lower_module(module, symbols=symbols, own_pointers=own_pointers, name=name, shared=shared)
    finally:
        if enabled:
            gc.enable()
    gc.collect(0)
    return text


def _lower_module(module: ir.Module, *, symbols: dict[str, str], own_pointers: set[str],
                  name: str, shared: Optional[Callable[[str], bool]]) -> str:
    for fname, sym in symbols.items():
        if sym in RUNTIME_SIGS or sym.startswith("llvm."):
            raise LoweringError(f"symbol {sym!r} of function {fname!r} clashes with a runtime/LLVM name")
    mc = ModuleContext(name, module.dtype)
    mc.symbols = dict(symbols)
    mc.own_pointers = set(own_pointers)
    if shared is not None:
        mc.shared = shared
    for fname, sig in module.externs.items():
        mc.signatures[fname] = (tuple(sig[0]), sig[1])
    for fname, fn in module.functions.items():
        mc.signatures[fname] = (tuple(p.rank for p in fn.params), fn.result_rank)
    defined = {fname: mc.function(fname) for fname in sorted(module.functions)}
    for fname in sorted(own_pointers):
        mc.fn_pointer(fname)
    for fname in sorted(module.functions):
        _lower_function(mc, module.functions[fname], defined[fname])
    return str(mc.module)


def _lower_function(mc: ModuleContext, fn: ir.Function, llfn: ll.Function) -> None:
    llfn.attributes.add("nounwind")
    fl = FunctionLowering(mc, llfn, _loads_needing_copy(fn), _fusible(fn))
    fl.producers = {ins.result.id: ins for blk in ir.walk_blocks(fn.body) for ins in blk.ops
                    if isinstance(ins, ir.Instr) and ins.result is not None}
    for p, arg in zip(fn.params, llfn.args):
        arg.name = f"p{p.id}"
        fl.vals[p.id] = arg
    ys = fl.lower_block(fn.body, [])
    if fn.result_rank is None:
        fl.b.ret_void()
    else:
        if len(ys) != 1:
            raise LoweringError(f"{fn.name}: body yields {len(ys)} values for one result")
        fl.b.ret(ys[0])
    fl.finish_entry()


class FunctionLowering(OpLowering):
    """Blocks and structured control flow of one function."""

    #: result id -> the instruction computing it, over the whole IR function (set by
    #: _lower_function; a training loop's replay re-lowers the constants its body reads).
    producers: dict[int, ir.Instr]

    def lower_block(self, block: ir.Block, params: list[ll.Value]) -> list[ll.Value]:
        for p, v in zip(block.params, params):
            self.vals[p.id] = v
        for op in block.ops:
            if isinstance(op, ir.Instr):
                self.lower_instr(op)
            elif isinstance(op, ir.IfOp):
                self._lower_if(op)
            elif isinstance(op, ir.WhileOp):
                self._lower_while(op)
            elif isinstance(op, ir.OptimizeOp):
                self._lower_optimize(op)
            else:
                raise LoweringError(f"unknown operation {op!r}")
        return [self.get(v) for v in block.yields]

    def _type(self, rank: int) -> ll.Type:
        return self.mc.value_type(rank)

    def _lower_if(self, op: ir.IfOp) -> None:
        cond = self.truth(self.get(op.cond))
        then_bb = self.fn.append_basic_block("if.then")
        else_bb = self.fn.append_basic_block("if.else")
        merge = self.fn.append_basic_block("if.end")
        self.b.cbranch(cond, then_bb, else_bb)
        incoming = []
        for bb, block in ((then_bb, op.then), (else_bb, op.else_)):
            self.b.position_at_end(bb)
            ys = self.lower_block(block, [])
            incoming.append((ys, self.b.block))
            self.b.branch(merge)
        self.b.position_at_end(merge)
        for k, r in enumerate(op.results):
            phi = self.b.phi(self._type(r.rank))
            for ys, bb in incoming:
                phi.add_incoming(ys[k], bb)
            self.vals[r.id] = phi

    def _lower_while(self, op: ir.WhileOp) -> None:
        """A loop with phis. Outside training loops, with carry slots, every iteration releases
        the arena (carried tensors are kept in alternating global slots), so a long loop runs in
        bounded memory; inside a training step the tape needs every iteration's data."""
        release = self.optimize_depth == 0 and len(op.carry_slots) == len(op.inits)
        mark = self.rt("noma_arena_mark") if release else None
        pre = self.b.block
        head = self.fn.append_basic_block("while.cond")
        body = self.fn.append_basic_block("while.body")
        exit_ = self.fn.append_basic_block("while.end")
        self.b.branch(head)
        self.b.position_at_end(head)
        phis = []
        for v in op.inits:
            phi = self.b.phi(self._type(v.rank))
            phi.add_incoming(self.get(v), pre)
            phis.append(phi)
        if release:
            odd = self.b.phi(ll.IntType(1), name="odd")
            odd.add_incoming(ll.Constant(ll.IntType(1), 0), pre)
        (flag,) = self.lower_block(op.cond, phis)
        self.b.cbranch(self.truth(flag), body, exit_)
        self.b.position_at_end(body)
        # an interrupt stops any loop, also one that never reaches a training step boundary
        self.rt("noma_check_interrupt_loop", self.span_c())
        nxt = self.lower_block(op.body, phis)
        if release:
            nxt = self._keep_carried(op.inits, nxt, op.carry_slots, odd)
            self.rt("noma_arena_release", mark)
            odd.add_incoming(self.b.not_(odd), self.b.block)
        for phi, v in zip(phis, nxt):
            phi.add_incoming(v, self.b.block)
        self.b.branch(head)
        self.b.position_at_end(exit_)
        for r, phi in zip(op.results, phis):
            # slot-backed results are copied out: the slots are reused if this loop runs again
            self.vals[r.id] = self._copy_to_arena(phi, r.rank) if release and r.rank > 0 else phi

    def _keep_carried(self, inits: list[ir.Value], values: list[ll.Value],
                      slots: list[Optional[tuple[int, int]]], odd: ll.Value) -> list[ll.Value]:
        """Store each carried tensor in its even/odd global slot and reload it from there."""
        b = self.b
        kept = []
        for v, value, s in zip(inits, values, slots):
            if v.rank == 0 or s is None:
                kept.append(value)
                continue
            slot = b.select(odd, self.i64(s[1]), self.i64(s[0]))
            self.rt("noma_global_store_at", slot, self.tensor_ptr(value), self.span_c())
            kept.append(self.load_tensor(self.rt("noma_global", slot)))
        return kept

    def _lower_optimize(self, op: ir.OptimizeOp) -> None:
        """One native training loop:

        before: noma_opt_begin per param (hyper: 16 reals), noma_defer_begin
        head:   step == max_iter -> warn, leave
        body:   mark = arena_mark; tape_reset (if the step uses the tape); body; log_loss(loss);
                carried tensors -> global carry slot (even/odd step) and reloaded from it;
                stop != 0 or the live controls' stop (noma_ctl_take_stop) -> release mark, leave
        grad:   grad block; noma_opt_steps; apply queued resizes (if the body can queue any);
                noma_check_interrupt (SIGINT -> unwind, status 2; the step is complete);
                arena_release(mark); step += 1
        after:  noma_defer_end; results = last loss, carried values (slot-backed)
        """
        if op.grad is None:
            raise LoweringError("optimize without a gradient block (run autodiff first)")
        self.optimize_depth += 1
        b = self.b
        self.span = op.span
        self.new_stage()
        hyper = self.alloca(ll.ArrayType(self.real, ir.HYPER_LEN), name="hyper")
        for i in range(ir.HYPER_LEN):
            value = self.get(op.hyper[i]) if i < len(op.hyper) else self.rconst(float("nan"))
            b.store(value, b.gep(hyper, [self.i64(0), self.i32(i)], inbounds=True))
        hyper_ptr = b.gep(hyper, [self.i64(0), self.i32(0)], inbounds=True)
        replay = self._replay_function(op)
        self.rt("noma_probe_replay", replay if replay is not None else ll.Constant(PTR, None))
        for p in op.params:
            self.rt("noma_opt_begin_at", self.i64(p.slot), self.i32(op.optimizer), hyper_ptr, self.span_c())
        self.training.append((op, hyper_ptr))  # reset_optimizer() in the body begins them again
        self.rt("noma_defer_begin")
        self.rt("noma_check_interrupt", self.span_c())  # a request before the first step: no step runs
        if op.result_slot >= 0:
            self.rt("noma_opt_result_begin", self.i64(op.result_slot))
        max_iter = self.to_index(self.get(op.max_iter))
        inits = [self.get(v) for v in op.inits]
        slots = list(op.carry_slots) + [None] * (len(inits) - len(op.carry_slots))
        for v, s in zip(op.inits, slots):
            if v.rank > 0 and s is None:
                raise LoweringError("optimize: a carried tensor has no carry slots")

        pre = b.block
        head = self.fn.append_basic_block("opt.head")
        body = self.fn.append_basic_block("opt.body")
        grad = self.fn.append_basic_block("opt.grad")
        latch = self.fn.append_basic_block("opt.latch")
        maxed = self.fn.append_basic_block("opt.max")
        stopped = self.fn.append_basic_block("opt.stop")
        exit_ = self.fn.append_basic_block("opt.end")
        b.branch(head)

        b.position_at_end(head)
        step = b.phi(I64, name="step")
        step.add_incoming(self.i64(0), pre)
        last_loss = b.phi(self.real, name="last_loss")
        last_loss.add_incoming(self.rconst(float("nan")), pre)
        carried = []
        for v, init in zip(op.inits, inits):
            phi = b.phi(self._type(v.rank))
            phi.add_incoming(init, pre)
            carried.append(phi)
        b.cbranch(b.icmp_signed(">=", step, max_iter), maxed, body)

        b.position_at_end(body)
        mark = self.rt("noma_arena_mark")
        if _uses(op.body, {ir.Op.TAPE_PUSH, ir.Op.TAPE_POP, ir.Op.CALL}) or \
                _uses(op.grad, {ir.Op.TAPE_PUSH, ir.Op.TAPE_POP, ir.Op.CALL}):
            self.rt("noma_tape_reset")  # else the step never touches the tape
        ys = self.lower_block(op.body, carried)
        loss, stop, nxt = ys[0], ys[1], ys[2:]
        self.span = op.span
        self.new_stage()
        self.rt("noma_log_loss", loss)
        if op.result_slot >= 0:
            self.rt("noma_opt_result_set", loss)
        kept = self._keep_carried(op.inits, nxt, slots, b.trunc(step, ll.IntType(1)))
        # the live controls' stop (noma_rt_controls.c) ends the loop as its `until` would
        halt = b.icmp_signed("!=", self.rt("noma_ctl_take_stop"), self.i32(0))
        b.cbranch(b.or_(self.truth(stop), halt), stopped, grad)

        b.position_at_end(grad)
        gys = self.lower_block(op.grad, [])
        self.span = op.span
        self.new_stage()
        self.opt_steps([p.slot for p in op.params], [(gv, g.rank) for g, gv in zip(op.grad.yields, gys)])
        self.new_stage()
        if _resizes(op.body):
            self._probe_and_apply_resizes(op, carried, replay)
        elif _uses(op.body, {ir.Op.CALL}):
            self.rt("noma_defer_apply")  # a called function may have queued one
        # SIGINT arrived -> unwind to noma_invoke (status 2); the step is complete.
        self.rt("noma_check_interrupt", self.span_c())
        b.branch(latch)

        b.position_at_end(latch)
        self.rt("noma_arena_release", mark)
        step.add_incoming(b.add(step, self.i64(1), flags=["nsw"]), b.block)
        last_loss.add_incoming(loss, b.block)
        for phi, value in zip(carried, kept):
            phi.add_incoming(value, b.block)
        b.branch(head)

        b.position_at_end(stopped)
        self.rt("noma_arena_release", mark)
        stop_end = b.block
        b.branch(exit_)

        b.position_at_end(maxed)
        msg = "optimize reached its iteration bound"
        if op.until_text:
            msg += f" before `{op.until_text}` held"
        self.rt("noma_warn", self.cstr(msg))
        max_end = b.block
        b.branch(exit_)

        b.position_at_end(exit_)
        loss_phi = b.phi(self.real)
        loss_phi.add_incoming(last_loss, max_end)
        loss_phi.add_incoming(loss, stop_end)
        results = [loss_phi]
        for v, phi, value in zip(op.inits, carried, kept):
            out = b.phi(self._type(v.rank))
            out.add_incoming(phi, max_end)
            out.add_incoming(value, stop_end)
            results.append(out)
        self.rt("noma_defer_end")
        if op.result_slot >= 0:
            self.rt("noma_opt_result_end")
        self.optimize_depth -= 1
        self.training.pop()
        for r, v in zip(op.results, results):
            # slot-backed results are copied out: the slots are reused if this loop runs again
            self.vals[r.id] = self._copy_to_arena(v, r.rank) if r.rank > 0 else v


    def _probe_and_apply_resizes(self, op: ir.OptimizeOp, carried: list[ll.Value],
                                 replay: Optional[ll.Function]) -> None:
        """Apply the resizes the step queued, measuring their output change (noma_rt_probe.c).

        Only when some are queued: the body's forward pass runs again (pass 0), the resizes are
        applied, it runs once more (pass 1); each pass hands its outputs to the runtime, which
        stores the largest change in the resize events. The probe's copy of the body leaves out
        its effects (print, resizes, files; see PROBE_LEFT_OUT) and the runtime puts the globals
        and the random generator back after each pass, so training continues exactly as without
        the probe. The passes call `replay` (see _replay_function) when the loop has one, else
        they run a copy of the body lowered here (it reads values of the enclosing function).
        """
        b = self.b
        probe = self.fn.append_basic_block("opt.probe")
        plain = self.fn.append_basic_block("opt.apply")
        done = self.fn.append_basic_block("opt.applied")
        wanted = self.rt("noma_probe_wanted")
        before = b.block
        b.cbranch(b.icmp_signed("!=", wanted, self.i32(0)), probe, plain)

        b.position_at_end(plain)
        self.rt("noma_defer_apply")
        b.branch(done)

        b.position_at_end(probe)
        pass_ = b.phi(ll.IntType(32), name="probe.pass")
        pass_.add_incoming(self.i32(0), before)
        self.rt("noma_probe_begin", pass_)
        if replay is not None:
            b.call(replay, [pass_])
        else:
            saved_vals, saved_deferred, saved_fused = dict(self.vals), dict(self.deferred), self.fused
            self._lower_probe_outputs(op, carried, pass_)
            self.vals, self.deferred, self.fused = saved_vals, saved_deferred, saved_fused
        self.span = op.span
        self.rt("noma_probe_end", pass_)
        pass_.add_incoming(self.i32(1), b.block)
        b.cbranch(b.icmp_signed("==", pass_, self.i32(0)), probe, done)

        b.position_at_end(done)


    def _replay_function(self, op: ir.OptimizeOp) -> Optional[ll.Function]:
        """The loop body's forward pass as a function of its own, `void (i32 pass)`, that hands
        the step's outputs to noma_probe_value: what a resize outside the loop is measured against
        (noma_rt_probe.c). Effects are left out as in the in-loop probe. None when the body reads
        values of the enclosing function other than constants (locals, arguments, the carried
        values): those are gone once the function returns."""
        consts = []
        for vid in sorted(_free_values(op.body)):
            ins = self.producers.get(vid)
            if ins is None or ins.op is not ir.Op.CONST:
                return None
            consts.append(ins)
        name = f"noma.replay.{sum(g.startswith('noma.replay.') for g in self.mc.module.globals)}"
        llfn = ll.Function(self.mc.module, ll.FunctionType(ll.VoidType(), [ll.IntType(32)]), name)
        llfn.linkage = "internal"
        # run once per resizing cell: not worth optimising (optnone keeps the cell's compile time)
        for attr in ("nounwind", "noinline", "optnone", "cold"):
            llfn.attributes.add(attr)
        replay = FunctionLowering(self.mc, llfn, self.copy_loads, self.fused)
        replay.producers = self.producers
        for ins in consts:
            replay.lower_instr(ins)
        replay._lower_probe_outputs(op, [], llfn.args[0])
        replay.b.ret_void()
        replay.finish_entry()
        return llfn

    def _lower_probe_outputs(self, op: ir.OptimizeOp, carried: list[ll.Value], pass_: ll.Value) -> None:
        """A copy of the body's forward pass with its effects left out, handing the step's outputs
        (the loss, then those of _probe_outputs) to noma_probe_value(pass_, index, value)."""
        found = [ins for ins in _probe_outputs(op.body) if ins.result.id != op.body.yields[0].id]
        self.fused = self.fused - {id(ins) for ins in found}  # outputs are materialised
        self.probing = True
        ys = self.lower_block(op.body, carried)
        self.probing = False
        outputs = [(op.body.yields[0], ys[0])]
        outputs += [(ins.result, self.get(ins.result)) for ins in found]
        for index, (v, value) in enumerate(outputs):
            self.rt("noma_probe_value", pass_, self.i64(index), self.any_ptr(value, v.rank))


def _reads(block: ir.Block) -> set[int]:
    """Ids of the values read anywhere in `block` (nested blocks included)."""
    read: set[int] = set()
    for blk in ir.walk_blocks(block):
        read.update(v.id for v in blk.yields)
        for op in blk.ops:
            read.update(v.id for v in ir.operands(op))
    return read


def _free_values(block: ir.Block) -> set[int]:
    """Ids of the values `block` reads but neither it nor a block inside it defines (its own
    params count as free: they are the carried values its loop passes in)."""
    defined: set[int] = set()
    for blk in ir.walk_blocks(block):
        if blk is not block:
            defined.update(v.id for v in blk.params)
        for op in blk.ops:
            defined.update(v.id for v in ir.results(op))
    return _reads(block) - defined


def _uses(block: ir.Block, ops: set) -> bool:
    """Whether `block` (nested blocks included) has an instruction with one of `ops`."""
    return any(isinstance(op, ir.Instr) and op.op in ops for blk in ir.walk_blocks(block) for op in blk.ops)


def _resizes(block: ir.Block) -> bool:
    """Whether a training-step body can queue a resize (then its loop measures output changes)."""
    return _uses(block, {ir.Op.PARAM_RESIZE, ir.Op.DIM_RESIZE, ir.Op.PARAM_KEEP, ir.Op.DIM_KEEP})


def _probe_outputs(body: ir.Block) -> list[ir.Instr]:
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


def _loads_needing_copy(fn: ir.Function) -> set[int]:
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


def _fusible(fn: ir.Function) -> set[int]:
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
