"""Lowering of the IR's state ops: the instructions that become calls into the native runtime.

Owns: parameters (load with copy-on-load, set, free, bind to a dim, resize), dims, globals,
seed, print, CSV and safetensors files, checkpoints, optimizer reset, calls through function-pointer globals,
and the tape (push/pop).
Input: used as a mixin of lower_llvm_ops.OpLowering (relies on its value map, emitter helpers and
runtime declarations). Output: llvmlite.ir code.
Imports: ir, lower_llvm_types, llvmlite.ir (part of the lower_llvm* component).
"""

from __future__ import annotations

from array import array
from typing import Any, Optional

from llvmlite import ir as ll

from noma.compiler.middle import ir
from noma.compiler.llvm.lower_llvm_types import ERR_SHAPE, ERR_TYPE, I64, PTR, LoweringError

#: `dim d = v;` needs a whole number 0 <= v < 2^62 (the interpreter and irgen say the same)
DIM_LIMIT = 2.0 ** 62
DIM_MESSAGE = "a dim's size must be a whole number from 0 to 2^62 - 1"

Op = ir.Op


class StateOps:
    """OpLowering methods for ops with effects on runtime state."""

    b: Any
    mc: Any

    # ------------------------------------------------------------------ state

    def _copy_to_arena(self, t: ll.Value, rank: int) -> ll.Value:
        dims = self.dims(t, rank)
        data, out = self.new_tensor(dims)
        self.memcpy(data, self.data(t), self.numel(dims))
        return out

    def _load_descriptor(self, ptr: ll.Value, rank: int, ins: ir.Instr) -> ll.Value:
        """The value of a stored descriptor (param / global) of static rank `rank`; a stored value
        of another rank (redefined since this code was compiled) is a type error."""
        stored = self.b.load(self.b.gep(ptr, [self.i64(0), self.i32(1)], inbounds=True, source_etype=self.T),
                             typ=I64)
        kind = "a scalar" if rank == 0 else f"a rank-{rank} tensor"
        self.fail_if(self.b.icmp_signed("!=", stored, self.i64(rank)), ERR_TYPE,
                     f"`{ins.attr('name')}` is no longer {kind}")
        if rank == 0:
            data = self.b.load(ptr, typ=PTR)
            return self.load_elem(data, self.i64(0))
        t = self.load_tensor(ptr)
        return self._copy_to_arena(t, rank) if id(ins) in self.copy_loads else t

    def op_param_load(self, ins: ir.Instr) -> ll.Value:
        p = self.rt("noma_param_at", self.i64(ins.attr("slot")), self.span_c())
        return self._load_descriptor(p, int(ins.attr("rank")), ins)

    def op_param_set(self, ins: ir.Instr) -> None:
        v = ins.args[0]
        self.rt("noma_param_set_at", self.i64(ins.attr("slot")), self.cstr(ins.attr("name")),
                self.any_ptr(self.get(v), v.rank), self.span_c())

    def opt_steps(self, slots: list[int], grads: list[tuple[ll.Value, int]]) -> None:
        """One training step's optimizer updates: a single noma_opt_steps call with the slots (a
        constant array) and the gradients (an array of descriptors; scalars as rank 0)."""
        n = len(slots)
        arr_t = ll.ArrayType(I64, n)
        table = ll.GlobalVariable(self.mc.module, arr_t, f"noma.slots.{len(self.mc.module.globals)}")
        table.global_constant = True
        table.linkage = "private"
        table.initializer = ll.Constant(arr_t, [int(s) for s in slots])
        descs = self.alloca(ll.ArrayType(self.T, n), name="grads")
        for i, (value, rank) in enumerate(grads):
            if rank == 0:
                cell = self.alloca(self.real, name="grad.s")
                self.b.store(value, cell)
                value = self.make_tensor(cell, [])
            self.b.store(value, self.b.gep(descs, [self.i64(0), self.i32(i)], inbounds=True))
        first = self.b.gep(descs, [self.i64(0), self.i32(0)], inbounds=True)
        self.rt("noma_opt_steps", self.i64(n), table, first)

    def op_param_free(self, ins: ir.Instr) -> None:
        self.rt("noma_param_free", self.i64(ins.attr("slot")))

    def op_param_bind_dim(self, ins: ir.Instr) -> None:
        self.rt("noma_param_bind_dim", self.i64(ins.attr("slot")), self.i32(ins.attr("axis")),
                self.i64(ins.attr("dim")))

    def op_param_resize(self, ins: ir.Instr) -> None:
        a, b = self.get(ins.args[0]), self.get(ins.args[1])
        dims = [self.whole(self.get(d)) for d in ins.args[2:]]
        arr = self.dims_array(dims)
        self.rt("noma_param_resize", self.i64(ins.attr("slot")), self.i64(len(dims)), arr,
                self.i32(ins.attr("policy", 0)), a, b, self.span_c())

    def op_dim_load(self, ins: ir.Instr) -> ll.Value:
        return self.to_real(self.rt("noma_dim_get", self.i64(ins.attr("dim"))))

    def op_dim_set(self, ins: ir.Instr) -> None:
        v = self.get(ins.args[0])
        whole = self.b.fcmp_ordered("==", v, self.intr("llvm.floor", v))
        in_range = self.b.and_(self.b.fcmp_ordered(">=", v, self.rconst(0.0)),
                               self.b.fcmp_ordered("<", v, self.rconst(DIM_LIMIT)))
        self.fail_if(self.b.not_(self.b.and_(whole, in_range)), ERR_SHAPE, DIM_MESSAGE)
        self.rt("noma_dim_set", self.i64(ins.attr("dim")), self.to_index(v))
        self.rt("noma_dim_set_name", self.i64(ins.attr("dim")), self.cstr(ins.attr("name")))

    def op_dim_resize(self, ins: ir.Instr) -> None:
        size, a, b = (self.get(x) for x in ins.args)
        self.rt("noma_dim_resize", self.i64(ins.attr("dim")), self.whole(size),
                self.i32(ins.attr("policy", 0)), a, b, self.span_c())

    def op_global_load(self, ins: ir.Instr) -> ll.Value:
        slot = self.i64(ins.attr("slot"))
        rank = int(ins.attr("rank"))
        if rank == 0:
            return self.rt("noma_global_load_s", slot)
        return self._load_descriptor(self.rt("noma_global", slot), rank, ins)

    def op_global_store(self, ins: ir.Instr) -> None:
        v = ins.args[0]
        slot = self.i64(ins.attr("slot"))
        if v.rank == 0:
            self.rt("noma_global_store_s", slot, self.get(v))
        else:
            self.rt("noma_global_store_at", slot, self.tensor_ptr(self.get(v)), self.span_c())

    def op_seed(self, ins: ir.Instr) -> None:
        self.rt("noma_seed", self.get(ins.args[0]))

    def op_print(self, ins: ir.Instr) -> None:
        args = iter(ins.args)
        for k, part in enumerate(ins.attr("parts", ())):
            if k:
                self.rt("noma_print_sep")
            if part is not None:
                self.rt("noma_print_str", self.cstr(part))
                continue
            v = next(args)
            if v.rank == 0:
                self.rt("noma_print_scalar", self.get(v))
            else:
                self.rt("noma_print_tensor", self.tensor_ptr(self.get(v)))
            self.new_stage()
        self.rt("noma_print_end")

    def op_report(self, ins: ir.Instr) -> None:
        self.rt("noma_report", self.cstr(ins.attr("name")), self.get(ins.args[0]), self.span_c())

    def op_load_csv(self, ins: ir.Instr) -> ll.Value:
        slot = self.empty_tensor_slot()
        self.rt("noma_load_csv", self.cstr(ins.attr("path")), slot, self.span_c())
        return self.load_tensor(slot)

    def op_save_csv(self, ins: ir.Instr) -> None:
        v = ins.args[0]
        self.rt("noma_save_csv", self.cstr(ins.attr("path")), self.any_ptr(self.get(v), v.rank), self.span_c())

    def op_load_st_globals(self, ins: ir.Instr) -> None:
        names = "".join(n + "\0" for n in ins.attr("names")).encode("utf-8")
        ranks = array("q", ins.attr("ranks")).tobytes()
        slots = array("q", ins.attr("slots")).tobytes()
        self.rt("noma_st_load_globals", self.cstr(ins.attr("path")), self.i64(len(ins.attr("names"))),
                self.mc.bytes_global(names), self.mc.bytes_global(ranks), self.mc.bytes_global(slots),
                self.span_c())

    def op_load_st(self, ins: ir.Instr) -> ll.Value:
        rank = int(ins.attr("rank"))
        slot = self.empty_tensor_slot()
        self.rt("noma_st_load", self.cstr(ins.attr("path")), self.cstr(ins.attr("name")), self.i64(rank),
                slot, self.span_c())
        if rank == 0:
            return self.load_elem(self.b.load(slot, typ=PTR), self.i64(0))
        return self.load_tensor(slot)

    def op_save_st(self, ins: ir.Instr) -> None:
        names = tuple(ins.attr("names"))
        n = len(ins.args)
        arr_t = ll.ArrayType(PTR, max(n, 1))
        name_arr = self.alloca(arr_t)
        ts_arr = self.alloca(arr_t)
        for i, (v, name) in enumerate(zip(ins.args, names)):
            self.b.store(self.cstr(name), self.b.gep(name_arr, [self.i64(0), self.i32(i)], inbounds=True))
            self.b.store(self.any_ptr(self.get(v), v.rank),
                         self.b.gep(ts_arr, [self.i64(0), self.i32(i)], inbounds=True))
        self.rt("noma_st_save", self.cstr(ins.attr("path")), self.i64(n), name_arr, ts_arr, self.span_c())

    def op_opt_reset(self, ins: ir.Instr) -> None:
        """Clear all optimizer state; inside a training loop, its parameters then begin their
        optimizer again (fresh state), so the update that ends this step starts from scratch."""
        self.rt("noma_opt_reset_all")
        for op, hyper_ptr in self.training:
            for p in op.params:
                self.rt("noma_opt_begin", self.i64(p.slot), self.i32(op.optimizer), hyper_ptr)

    def op_save_ckpt(self, ins: ir.Instr) -> None:
        null = ll.Constant(PTR, None)
        self.rt("noma_checkpoint_save", self.cstr(ins.attr("path")), self.i64(0), null, null, self.span_c())

    def op_load_ckpt(self, ins: ir.Instr) -> None:
        self.rt("noma_checkpoint_load", self.cstr(ins.attr("path")), self.i32(0), self.span_c())

    def op_call(self, ins: ir.Instr) -> Optional[ll.Value]:
        callee = ins.attr("callee")
        fnty = self.mc.fn_type(callee)
        params, result = self.mc.signatures[callee]
        got = tuple(a.rank for a in ins.args)
        got_result = None if ins.result is None else ins.result.rank
        if got != params or (got_result is not None and got_result != result):
            raise LoweringError(f"call of {callee}{params} -> {result} with ranks {got} -> {got_result}")
        gv = self.mc.fn_pointer(callee)
        fp = self.b.load(gv, typ=fnty.as_pointer())
        args = [self.get(a) for a in ins.args]
        self.rt("noma_enter", self.span_c())
        call = self.b.call(fp, args)
        self.rt("noma_leave")
        return None if ins.result is None else call

    def op_tape_push(self, ins: ir.Instr) -> None:
        v = ins.args[0]
        if v.rank == 0:
            self.rt("noma_tape_push_s", self.get(v))
        else:
            self.rt("noma_tape_push_t", self.tensor_ptr(self.get(v)))

    def op_tape_pop(self, ins: ir.Instr) -> ll.Value:
        if int(ins.attr("rank")) == 0:
            return self.rt("noma_tape_pop_s")
        slot = self.empty_tensor_slot()
        self.rt("noma_tape_pop_t", slot)
        return self.load_tensor(slot)
