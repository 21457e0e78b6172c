"""Lowering of the IR's state ops: the instructions that become calls into the native runtime.

Owns: HANDLERS (Op -> handler) for parameters (load with copy-on-load, set, free, bind to a dim,
resize), dims, globals, seed, print, report, CSV and safetensors files, checkpoints, optimizer
reset, calls through function-pointer globals and the tape (push/pop); and `opt_steps`, a
training step's optimizer updates (used by training.py).
Input: ir.Instr through function.FunctionLowering. Output: llvmlite.ir code through its toolkit.
Imports: ir, basics, llvmlite.ir (function only for types).
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING, Optional

from llvmlite import ir as ll

from noma.compiler.llvm.basics import ERR_SHAPE, ERR_TYPE, I64, PTR, LoweringError
from noma.compiler.middle import ir

if TYPE_CHECKING:
    from noma.compiler.llvm.function import FunctionLowering, Handler

#: `dim d = v;` needs a whole number 0 <= v < 2^62 (the interpreter and irgen say the same)
DIM_LIMIT = 2.0 ** 62
DIM_MESSAGE = "a dim's size must be a whole number from 0 to 2^62 - 1"

Op = ir.Op


def _load_descriptor(fl: FunctionLowering, ptr: ll.Value, rank: int, ins: ir.Instr) -> ll.Value:
    """The value of a stored descriptor (param / global) of static rank `rank`; a stored value
    of another rank (redefined since this code was compiled) is a type error."""
    tk = fl.tk
    stored = tk.b.load(tk.b.gep(ptr, [tk.i64(0), tk.i32(1)], inbounds=True, source_etype=tk.T),
                       typ=I64)
    kind = "a scalar" if rank == 0 else f"a rank-{rank} tensor"
    tk.fail_if(tk.b.icmp_signed("!=", stored, tk.i64(rank)), ERR_TYPE,
               f"`{ins.attr('name')}` is no longer {kind}")
    if rank == 0:
        data = tk.b.load(ptr, typ=PTR)
        return tk.load_elem(data, tk.i64(0))
    t = tk.load_tensor(ptr)
    return tk.copy_to_arena(t, rank) if id(ins) in fl.copy_loads else t


def lower_param_load(fl: FunctionLowering, ins: ir.Instr) -> ll.Value:
    tk = fl.tk
    p = tk.rt("noma_param_at", tk.i64(ins.attr("slot")), tk.cstr(ins.attr("name")), tk.span_c())
    return _load_descriptor(fl, p, int(ins.attr("rank")), ins)


def lower_param_set(fl: FunctionLowering, ins: ir.Instr) -> None:
    tk = fl.tk
    v = ins.args[0]
    tk.rt("noma_param_set_at", tk.i64(ins.attr("slot")), tk.cstr(ins.attr("name")),
          tk.any_ptr(fl.get(v), v.rank), tk.span_c())


def opt_steps(fl: FunctionLowering, slots: list[int], grads: list[tuple[ll.Value, int]]) -> None:
    """One training step's optimizer updates: a single noma_opt_steps call with the slots (a
    constant array) and the gradients (an array of descriptors; scalars as rank 0)."""
    tk = fl.tk
    n = len(slots)
    arr_t = ll.ArrayType(I64, n)
    table = ll.GlobalVariable(tk.mc.module, arr_t, f"noma.slots.{len(tk.mc.module.globals)}")
    table.global_constant = True
    table.linkage = "private"
    table.initializer = ll.Constant(arr_t, [int(s) for s in slots])
    descs = tk.alloca(ll.ArrayType(tk.T, n), name="grads")
    for i, (value, rank) in enumerate(grads):
        if rank == 0:
            cell = tk.alloca(tk.real, name="grad.s")
            tk.b.store(value, cell)
            value = tk.make_tensor(cell, [])
        tk.b.store(value, tk.b.gep(descs, [tk.i64(0), tk.i32(i)], inbounds=True))
    first = tk.b.gep(descs, [tk.i64(0), tk.i32(0)], inbounds=True)
    tk.rt("noma_opt_steps", tk.i64(n), table, first)


def lower_param_free(fl: FunctionLowering, ins: ir.Instr) -> None:
    tk = fl.tk
    tk.rt("noma_param_free", tk.i64(ins.attr("slot")))


def lower_param_bind_dim(fl: FunctionLowering, ins: ir.Instr) -> None:
    tk = fl.tk
    tk.rt("noma_param_bind_dim", tk.i64(ins.attr("slot")), tk.i32(ins.attr("axis")),
          tk.i64(ins.attr("dim")))


def lower_param_resize(fl: FunctionLowering, ins: ir.Instr) -> None:
    tk = fl.tk
    a, b = fl.get(ins.args[0]), fl.get(ins.args[1])
    dims = [tk.whole(fl.get(d)) for d in ins.args[2:]]
    arr = tk.dims_array(dims)
    tk.rt("noma_param_resize", tk.i64(ins.attr("slot")), tk.i64(len(dims)), arr,
          tk.i32(ins.attr("policy", 0)), a, b, tk.span_c())


def lower_dim_load(fl: FunctionLowering, ins: ir.Instr) -> ll.Value:
    tk = fl.tk
    return tk.to_real(tk.rt("noma_dim_get", tk.i64(ins.attr("dim"))))


def lower_dim_set(fl: FunctionLowering, ins: ir.Instr) -> None:
    tk = fl.tk
    v = fl.get(ins.args[0])
    whole = tk.b.fcmp_ordered("==", v, tk.intr("llvm.floor", v))
    in_range = tk.b.and_(tk.b.fcmp_ordered(">=", v, tk.rconst(0.0)),
                         tk.b.fcmp_ordered("<", v, tk.rconst(DIM_LIMIT)))
    tk.fail_if(tk.b.not_(tk.b.and_(whole, in_range)), ERR_SHAPE, DIM_MESSAGE)
    tk.rt("noma_dim_set", tk.i64(ins.attr("dim")), tk.to_index(v))
    tk.rt("noma_dim_set_name", tk.i64(ins.attr("dim")), tk.cstr(ins.attr("name")))


def lower_dim_resize(fl: FunctionLowering, ins: ir.Instr) -> None:
    tk = fl.tk
    size, a, b = (fl.get(x) for x in ins.args)
    tk.rt("noma_dim_resize", tk.i64(ins.attr("dim")), tk.whole(size),
          tk.i32(ins.attr("policy", 0)), a, b, tk.span_c())


def lower_global_load(fl: FunctionLowering, ins: ir.Instr) -> ll.Value:
    tk = fl.tk
    slot = tk.i64(ins.attr("slot"))
    rank = int(ins.attr("rank"))
    if rank == 0:
        return tk.rt("noma_global_load_s", slot)
    return _load_descriptor(fl, tk.rt("noma_global", slot), rank, ins)


def lower_global_store(fl: FunctionLowering, ins: ir.Instr) -> None:
    tk = fl.tk
    v = ins.args[0]
    slot = tk.i64(ins.attr("slot"))
    if v.rank == 0:
        tk.rt("noma_global_store_s", slot, fl.get(v))
    else:
        tk.rt("noma_global_store_at", slot, tk.tensor_ptr(fl.get(v)), tk.span_c())


def lower_seed(fl: FunctionLowering, ins: ir.Instr) -> None:
    fl.tk.rt("noma_seed", fl.get(ins.args[0]))


def lower_print(fl: FunctionLowering, ins: ir.Instr) -> None:
    tk = fl.tk
    args = iter(ins.args)
    for k, part in enumerate(ins.attr("parts", ())):
        if k:
            tk.rt("noma_print_sep")
        if part is not None:
            tk.rt("noma_print_str", tk.cstr(part))
            continue
        v = next(args)
        if v.rank == 0:
            tk.rt("noma_print_scalar", fl.get(v))
        else:
            tk.rt("noma_print_tensor", tk.tensor_ptr(fl.get(v)))
        tk.new_stage()
    tk.rt("noma_print_end")


def lower_report(fl: FunctionLowering, ins: ir.Instr) -> None:
    tk = fl.tk
    tk.rt("noma_report", tk.cstr(ins.attr("name")), fl.get(ins.args[0]), tk.span_c())


def lower_load_csv(fl: FunctionLowering, ins: ir.Instr) -> ll.Value:
    tk = fl.tk
    slot = tk.empty_tensor_slot()
    tk.rt("noma_load_csv", tk.cstr(ins.attr("path")), slot, tk.span_c())
    return tk.load_tensor(slot)


def lower_save_csv(fl: FunctionLowering, ins: ir.Instr) -> None:
    tk = fl.tk
    v = ins.args[0]
    tk.rt("noma_save_csv", tk.cstr(ins.attr("path")), tk.any_ptr(fl.get(v), v.rank), tk.span_c())


def lower_load_st_globals(fl: FunctionLowering, ins: ir.Instr) -> None:
    tk = fl.tk
    names = "".join(n + "\0" for n in ins.attr("names")).encode("utf-8")
    ranks = array("q", ins.attr("ranks")).tobytes()
    slots = array("q", ins.attr("slots")).tobytes()
    tk.rt("noma_st_load_globals", tk.cstr(ins.attr("path")), tk.i64(len(ins.attr("names"))),
          tk.mc.bytes_global(names), tk.mc.bytes_global(ranks), tk.mc.bytes_global(slots),
          tk.span_c())


def lower_load_st(fl: FunctionLowering, ins: ir.Instr) -> ll.Value:
    tk = fl.tk
    rank = int(ins.attr("rank"))
    slot = tk.empty_tensor_slot()
    tk.rt("noma_st_load", tk.cstr(ins.attr("path")), tk.cstr(ins.attr("name")), tk.i64(rank),
          slot, tk.span_c())
    if rank == 0:
        return tk.load_elem(tk.b.load(slot, typ=PTR), tk.i64(0))
    return tk.load_tensor(slot)


def lower_save_st(fl: FunctionLowering, ins: ir.Instr) -> None:
    tk = fl.tk
    names = tuple(ins.attr("names"))
    n = len(ins.args)
    arr_t = ll.ArrayType(PTR, max(n, 1))
    name_arr = tk.alloca(arr_t)
    ts_arr = tk.alloca(arr_t)
    for i, (v, name) in enumerate(zip(ins.args, names)):
        tk.b.store(tk.cstr(name), tk.b.gep(name_arr, [tk.i64(0), tk.i32(i)], inbounds=True))
        tk.b.store(tk.any_ptr(fl.get(v), v.rank),
                   tk.b.gep(ts_arr, [tk.i64(0), tk.i32(i)], inbounds=True))
    tk.rt("noma_st_save", tk.cstr(ins.attr("path")), tk.i64(n), name_arr, ts_arr, tk.span_c())


def lower_opt_reset(fl: FunctionLowering, ins: ir.Instr) -> None:
    """Clear all optimizer state; inside a training loop, its parameters then begin their
    optimizer again (fresh state), so the update that ends this step starts from scratch."""
    tk = fl.tk
    tk.rt("noma_opt_reset_all")
    for op, hyper_ptr in fl.training:
        for p in op.params:
            tk.rt("noma_opt_begin", tk.i64(p.slot), tk.i32(op.optimizer), hyper_ptr)


def lower_save_ckpt(fl: FunctionLowering, ins: ir.Instr) -> None:
    tk = fl.tk
    null = ll.Constant(PTR, None)
    tk.rt("noma_checkpoint_save", tk.cstr(ins.attr("path")), tk.i64(0), null, null, tk.span_c())


def lower_load_ckpt(fl: FunctionLowering, ins: ir.Instr) -> None:
    tk = fl.tk
    tk.rt("noma_checkpoint_load", tk.cstr(ins.attr("path")), tk.i32(0), tk.span_c())


def lower_call(fl: FunctionLowering, ins: ir.Instr) -> Optional[ll.Value]:
    tk = fl.tk
    callee = ins.attr("callee")
    fnty = tk.mc.fn_type(callee)
    params, result = tk.mc.signatures[callee]
    got = tuple(a.rank for a in ins.args)
    got_result = None if ins.result is None else ins.result.rank
    if got != params or (got_result is not None and got_result != result):
        raise LoweringError(f"call of {callee}{params} -> {result} with ranks {got} -> {got_result}")
    gv = tk.mc.fn_pointer(callee)
    fp = tk.b.load(gv, typ=fnty.as_pointer())
    args = [fl.get(a) for a in ins.args]
    tk.rt("noma_enter", tk.span_c())
    call = tk.b.call(fp, args)
    tk.rt("noma_leave")
    return None if ins.result is None else call


def lower_tape_push(fl: FunctionLowering, ins: ir.Instr) -> None:
    tk = fl.tk
    v = ins.args[0]
    if v.rank == 0:
        tk.rt("noma_tape_push_s", fl.get(v))
    else:
        tk.rt("noma_tape_push_t", tk.tensor_ptr(fl.get(v)))


def lower_tape_pop(fl: FunctionLowering, ins: ir.Instr) -> ll.Value:
    tk = fl.tk
    if int(ins.attr("rank")) == 0:
        return tk.rt("noma_tape_pop_s")
    slot = tk.empty_tensor_slot()
    tk.rt("noma_tape_pop_t", slot)
    return tk.load_tensor(slot)


#: The lowering of each op this module owns.
HANDLERS: dict[Op, Handler] = {
    Op.PARAM_LOAD: lower_param_load, Op.PARAM_SET: lower_param_set,
    Op.PARAM_FREE: lower_param_free, Op.PARAM_BIND_DIM: lower_param_bind_dim,
    Op.PARAM_RESIZE: lower_param_resize, Op.DIM_LOAD: lower_dim_load,
    Op.DIM_SET: lower_dim_set, Op.DIM_RESIZE: lower_dim_resize,
    Op.GLOBAL_LOAD: lower_global_load, Op.GLOBAL_STORE: lower_global_store,
    Op.SEED: lower_seed, Op.PRINT: lower_print, Op.REPORT: lower_report,
    Op.LOAD_CSV: lower_load_csv,
    Op.SAVE_CSV: lower_save_csv, Op.LOAD_ST: lower_load_st,
    Op.SAVE_ST: lower_save_st, Op.LOAD_ST_GLOBALS: lower_load_st_globals,
    Op.OPT_RESET: lower_opt_reset,
    Op.SAVE_CKPT: lower_save_ckpt, Op.LOAD_CKPT: lower_load_ckpt,
    Op.CALL: lower_call, Op.TAPE_PUSH: lower_tape_push,
    Op.TAPE_POP: lower_tape_pop,
}
