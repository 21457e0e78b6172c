"""Lowering of a training loop (ir.OptimizeOp) to one native loop, and the output probe of resizes.

Owns: `lower_optimize` (the loop: optimizer set-up, the step's body, gradient block and
optimizer updates, carried values in even/odd global slots, interrupts, the iteration bound) and
the measurement of a resize's output change: the probe re-running the step's forward pass around
queued resizes, in the loop or as a replay function of its own (noma_rt_probe.c).
Input: an ir.OptimizeOp through function.FunctionLowering. Output: llvmlite.ir code.
Imports: ir, basics, analysis, state, llvmlite.ir (function only for types).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from llvmlite import ir as ll

from noma.compiler.llvm.analysis import free_values, probe_outputs, resizes, uses_any
from noma.compiler.llvm.basics import I64, PTR, LoweringError
from noma.compiler.llvm.state import opt_steps
from noma.compiler.middle import ir

if TYPE_CHECKING:
    from noma.compiler.llvm.function import FunctionLowering


def lower_optimize(fl: FunctionLowering, op: ir.OptimizeOp) -> None:
    """One native training loop:

    before: noma_opt_begin per param (hyper: 16 reals), noma_defer_begin, noma_log_begin
    head:   step == max_iter -> warn, leave
    body:   mark = arena_mark; tape_reset (if the step uses the tape); body; log_loss(loss);
            carried tensors -> global carry slot (even/odd step) and reloaded from it;
            stop != 0 or the live controls' stop (noma_ctl_take_stop) -> release mark, leave
    grad:   grad block; noma_opt_steps; apply queued resizes (if the body can queue any);
            noma_check_interrupt (SIGINT -> unwind, status 2; the step is complete);
            arena_release(mark); step += 1
    after:  noma_defer_end; results = last loss, carried values (slot-backed)
    """
    tk = fl.tk
    if op.grad is None:
        raise LoweringError("optimize without a gradient block (run autodiff first)")
    fl.optimize_depth += 1
    b = tk.b
    tk.span = op.span
    tk.new_stage()
    hyper = tk.alloca(ll.ArrayType(tk.real, ir.HYPER_LEN), name="hyper")
    for i in range(ir.HYPER_LEN):
        value = fl.get(op.hyper[i]) if i < len(op.hyper) else tk.rconst(float("nan"))
        b.store(value, b.gep(hyper, [tk.i64(0), tk.i32(i)], inbounds=True))
    hyper_ptr = b.gep(hyper, [tk.i64(0), tk.i32(0)], inbounds=True)
    replay = _replay_function(fl, op)
    tk.rt("noma_probe_replay", replay if replay is not None else ll.Constant(PTR, None))
    for p in op.params:
        tk.rt("noma_opt_begin_at", tk.i64(p.slot), tk.i32(op.optimizer), hyper_ptr, tk.span_c())
    fl.training.append((op, hyper_ptr))  # reset_optimizer() in the body begins them again
    tk.rt("noma_defer_begin")
    tk.rt("noma_log_begin", tk.span_c())  # the loss log: allocated here, located here if refused
    tk.rt("noma_check_interrupt", tk.span_c())  # a request before the first step: no step runs
    if op.result_slot >= 0:
        tk.rt("noma_opt_result_begin", tk.i64(op.result_slot))
    max_iter = tk.to_index(fl.get(op.max_iter))
    inits = [fl.get(v) for v in op.inits]
    slots = list(op.carry_slots) + [None] * (len(inits) - len(op.carry_slots))
    for v, s in zip(op.inits, slots):
        if v.rank > 0 and s is None:
            raise LoweringError("optimize: a carried tensor has no carry slots")

    pre = b.block
    head = tk.fn.append_basic_block("opt.head")
    body = tk.fn.append_basic_block("opt.body")
    grad = tk.fn.append_basic_block("opt.grad")
    latch = tk.fn.append_basic_block("opt.latch")
    maxed = tk.fn.append_basic_block("opt.max")
    stopped = tk.fn.append_basic_block("opt.stop")
    exit_ = tk.fn.append_basic_block("opt.end")
    b.branch(head)

    b.position_at_end(head)
    step = b.phi(I64, name="step")
    step.add_incoming(tk.i64(0), pre)
    last_loss = b.phi(tk.real, name="last_loss")
    last_loss.add_incoming(tk.rconst(float("nan")), pre)
    carried = []
    for v, init in zip(op.inits, inits):
        phi = b.phi(fl.mc.value_type(v.rank))
        phi.add_incoming(init, pre)
        carried.append(phi)
    b.cbranch(b.icmp_signed(">=", step, max_iter), maxed, body)

    b.position_at_end(body)
    mark = tk.rt("noma_arena_mark")
    if uses_any(op.body, {ir.Op.TAPE_PUSH, ir.Op.TAPE_POP, ir.Op.CALL}) or \
            uses_any(op.grad, {ir.Op.TAPE_PUSH, ir.Op.TAPE_POP, ir.Op.CALL}):
        tk.rt("noma_tape_reset")  # else the step never touches the tape
    ys = fl.lower_block(op.body, carried)
    loss, stop, nxt = ys[0], ys[1], ys[2:]
    tk.span = op.span
    tk.new_stage()
    tk.rt("noma_log_loss", loss)
    if op.result_slot >= 0:
        tk.rt("noma_opt_result_set", loss)
    kept = fl.keep_carried(op.inits, nxt, slots, b.trunc(step, ll.IntType(1)))
    # the live controls' stop (noma_rt_controls.c) ends the loop as its `until` would
    halt = b.icmp_signed("!=", tk.rt("noma_ctl_take_stop"), tk.i32(0))
    b.cbranch(b.or_(tk.truth(stop), halt), stopped, grad)

    b.position_at_end(grad)
    gys = fl.lower_block(op.grad, [])
    tk.span = op.span
    tk.new_stage()
    opt_steps(fl, [p.slot for p in op.params], [(gv, g.rank) for g, gv in zip(op.grad.yields, gys)])
    tk.new_stage()
    if resizes(op.body):
        _probe_and_apply_resizes(fl, op, carried, replay)
    elif uses_any(op.body, {ir.Op.CALL}):
        tk.rt("noma_defer_apply")  # a called function may have queued one
    # SIGINT arrived -> unwind to noma_invoke (status 2); the step is complete.
    tk.rt("noma_check_interrupt", tk.span_c())
    b.branch(latch)

    b.position_at_end(latch)
    tk.rt("noma_arena_release", mark)
    step.add_incoming(b.add(step, tk.i64(1), flags=["nsw"]), b.block)
    last_loss.add_incoming(loss, b.block)
    for phi, value in zip(carried, kept):
        phi.add_incoming(value, b.block)
    b.branch(head)

    b.position_at_end(stopped)
    tk.rt("noma_arena_release", mark)
    stop_end = b.block
    b.branch(exit_)

    b.position_at_end(maxed)
    msg = "optimize reached its iteration bound"
    if op.until_text:
        msg += f" before `{op.until_text}` held"
    tk.rt("noma_warn", tk.i64(op.span), tk.cstr(msg))  # located at the optimize statement
    max_end = b.block
    b.branch(exit_)

    b.position_at_end(exit_)
    loss_phi = b.phi(tk.real)
    loss_phi.add_incoming(last_loss, max_end)
    loss_phi.add_incoming(loss, stop_end)
    results = [loss_phi]
    for v, phi, value in zip(op.inits, carried, kept):
        out = b.phi(fl.mc.value_type(v.rank))
        out.add_incoming(phi, max_end)
        out.add_incoming(value, stop_end)
        results.append(out)
    tk.rt("noma_defer_end")
    if op.result_slot >= 0:
        tk.rt("noma_opt_result_end")
    fl.optimize_depth -= 1
    fl.training.pop()
    for r, v in zip(op.results, results):
        # slot-backed results are copied out: the slots are reused if this loop runs again
        fl.vals[r.id] = tk.copy_to_arena(v, r.rank) if r.rank > 0 else v


def _probe_and_apply_resizes(fl: FunctionLowering, op: ir.OptimizeOp, carried: list[ll.Value],
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
    tk = fl.tk
    b = tk.b
    probe = tk.fn.append_basic_block("opt.probe")
    plain = tk.fn.append_basic_block("opt.apply")
    done = tk.fn.append_basic_block("opt.applied")
    wanted = tk.rt("noma_probe_wanted")
    before = b.block
    b.cbranch(b.icmp_signed("!=", wanted, tk.i32(0)), probe, plain)

    b.position_at_end(plain)
    tk.rt("noma_defer_apply")
    b.branch(done)

    b.position_at_end(probe)
    pass_ = b.phi(ll.IntType(32), name="probe.pass")
    pass_.add_incoming(tk.i32(0), before)
    tk.rt("noma_probe_begin", pass_)
    if replay is not None:
        b.call(replay, [pass_])
    else:
        saved_vals, saved_deferred, saved_fused = dict(fl.vals), dict(fl.deferred), fl.fused
        _lower_probe_outputs(fl, op, carried, pass_)
        fl.vals, fl.deferred, fl.fused = saved_vals, saved_deferred, saved_fused
    tk.span = op.span
    tk.rt("noma_probe_end", pass_)
    pass_.add_incoming(tk.i32(1), b.block)
    b.cbranch(b.icmp_signed("==", pass_, tk.i32(0)), probe, done)

    b.position_at_end(done)


def _replay_function(fl: FunctionLowering, op: ir.OptimizeOp) -> Optional[ll.Function]:
    """The loop body's forward pass as a function of its own, `void (i32 pass)`, that hands
    the step's outputs to noma_probe_value: what a resize outside the loop is measured against
    (noma_rt_probe.c). Effects are left out as in the in-loop probe. None when the body reads
    values of the enclosing function other than constants (locals, arguments, the carried
    values): those are gone once the function returns."""
    tk = fl.tk
    consts = []
    for vid in sorted(free_values(op.body)):
        ins = fl.producers.get(vid)
        if ins is None or ins.op is not ir.Op.CONST:
            return None
        consts.append(ins)
    name = f"noma.replay.{sum(g.startswith('noma.replay.') for g in tk.mc.module.globals)}"
    llfn = ll.Function(tk.mc.module, ll.FunctionType(ll.VoidType(), [ll.IntType(32)]), name)
    llfn.linkage = "internal"
    # run once per resizing cell: not worth optimising (optnone keeps the cell's compile time)
    for attr in ("nounwind", "noinline", "optnone", "cold"):
        llfn.attributes.add(attr)
    replay = fl.derive(llfn)
    for ins in consts:
        replay.lower_instr(ins)
    _lower_probe_outputs(replay, op, [], llfn.args[0])
    replay.tk.b.ret_void()
    replay.tk.finish_entry()
    return llfn


def _lower_probe_outputs(fl: FunctionLowering, op: ir.OptimizeOp, carried: list[ll.Value],
                         pass_: ll.Value) -> None:
    """A copy of the body's forward pass with its effects left out, handing the step's outputs
    (the loss, then those of analysis.probe_outputs) to noma_probe_value(pass_, index, value)."""
    tk = fl.tk
    found = [(ins, ins.result) for ins in probe_outputs(op.body)
             if ins.result is not None and ins.result.id != op.body.yields[0].id]
    fl.fused = fl.fused - {id(ins) for ins, _ in found}  # outputs are materialised
    fl.probing = True
    ys = fl.lower_block(op.body, carried)
    fl.probing = False
    outputs = [(op.body.yields[0], ys[0])]
    outputs += [(result, fl.get(result)) for _, result in found]
    for index, (v, value) in enumerate(outputs):
        tk.rt("noma_probe_value", pass_, tk.i64(index), tk.any_ptr(value, v.rank))
