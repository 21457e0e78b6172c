"""Lowering of the convolution, pooling, ranking and keep ops: each one call of the runtime.

Owns: HANDLERS for CONV2D, CONV2D_GRAD_X, CONV2D_GRAD_W, POOL2D, POOL2D_GRAD, ARGSORT and TOPK
(the kernels of noma_rt_conv.c / noma_rt_rank.c check the operands, fail located at the op's span
and write a fresh arena tensor into a scratch descriptor, which becomes the op's value), and
PARAM_KEEP / DIM_KEEP (noma_param_keep / noma_dim_keep, noma_rt_params.c).
Input: ir.Instr (through lower_llvm_ops.OpLowering). Output: llvmlite.ir calls.
Imports: ir, llvmlite.ir (part of the lower_llvm* component).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from llvmlite import ir as ll

from noma.compiler.middle import ir

Op = ir.Op
POOL_KINDS = {"max": 0, "avg": 1}


def _call(lo: Any, name: str, ins: ir.Instr, kind: Optional[int] = None) -> ll.Value:
    """name(tensor and scalar operands in order, [kind,] &out, span) -> out."""
    args = [lo.tensor_ptr(lo.get(a)) if a.rank else lo.get(a) for a in ins.args]
    if kind is not None:
        args.append(lo.i32(kind))
    slot = lo.empty_tensor_slot()
    lo.rt(name, *args, slot, lo.span_c())
    return lo.load_tensor(slot)


def _keep(lo: Any, ins: ir.Instr, name: str, *ids: ll.Value) -> None:
    """noma_param_keep(slot, axis, &idx, span) / noma_dim_keep(dim, &idx, span): no value."""
    lo.rt(name, *ids, lo.tensor_ptr(lo.get(ins.args[0])), lo.span_c())


def _pool(name: str) -> Callable[[Any, ir.Instr], ll.Value]:
    return lambda lo, ins: _call(lo, name, ins, POOL_KINDS[ins.attr("kind")])


HANDLERS: dict[Op, Callable[[Any, ir.Instr], Optional[ll.Value]]] = {
    Op.CONV2D: lambda lo, ins: _call(lo, "noma_conv2d", ins),
    Op.CONV2D_GRAD_X: lambda lo, ins: _call(lo, "noma_conv2d_grad_x", ins),
    Op.CONV2D_GRAD_W: lambda lo, ins: _call(lo, "noma_conv2d_grad_w", ins),
    Op.POOL2D: _pool("noma_pool2d"),
    Op.POOL2D_GRAD: _pool("noma_pool2d_grad"),
    Op.ARGSORT: lambda lo, ins: _call(lo, "noma_argsort", ins),
    Op.TOPK: lambda lo, ins: _call(lo, "noma_topk", ins),
    Op.PARAM_KEEP: lambda lo, ins: _keep(lo, ins, "noma_param_keep", lo.i64(ins.attr("slot")),
                                         lo.i32(ins.attr("axis"))),
    Op.DIM_KEEP: lambda lo, ins: _keep(lo, ins, "noma_dim_keep", lo.i64(ins.attr("dim"))),
}
