"""Lowering of the convolution, pooling, ranking and keep ops: each one call of the runtime.

Owns: HANDLERS for CONV2D, CONV2D_GRAD_X, CONV2D_GRAD_W, POOL2D, POOL2D_GRAD, ARGSORT and TOPK
(the kernels of noma_rt_conv.c / noma_rt_rank.c check the operands, fail located at the op's span
and write a fresh arena tensor into a scratch descriptor, which becomes the op's value), and
PARAM_KEEP / DIM_KEEP (noma_param_keep / noma_dim_keep, noma_rt_params.c).
Input: ir.Instr through function.FunctionLowering. Output: llvmlite.ir calls through its toolkit.
Imports: ir, llvmlite.ir (function only for types).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from llvmlite import ir as ll

from noma.compiler.middle import ir

if TYPE_CHECKING:
    from noma.compiler.llvm.function import FunctionLowering, Handler

Op = ir.Op
POOL_KINDS = {"max": 0, "avg": 1}


def _call(fl: FunctionLowering, name: str, ins: ir.Instr, kind: Optional[int] = None) -> ll.Value:
    """name(tensor and scalar operands in order, [kind,] &out, span) -> out."""
    tk = fl.tk
    args = [tk.tensor_ptr(fl.get(a)) if a.rank else fl.get(a) for a in ins.args]
    if kind is not None:
        args.append(tk.i32(kind))
    slot = tk.empty_tensor_slot()
    tk.rt(name, *args, slot, tk.span_c())
    return tk.load_tensor(slot)


def _keep(fl: FunctionLowering, ins: ir.Instr, name: str, *ids: ll.Value) -> None:
    """noma_param_keep(slot, axis, &idx, span) / noma_dim_keep(dim, &idx, span): no value."""
    tk = fl.tk
    tk.rt(name, *ids, tk.tensor_ptr(fl.get(ins.args[0])), tk.span_c())


def _runtime(name: str) -> Handler:
    return lambda fl, ins: _call(fl, name, ins)


def _pool(name: str) -> Handler:
    return lambda fl, ins: _call(fl, name, ins, POOL_KINDS[ins.attr("kind")])


def _lower_param_keep(fl: FunctionLowering, ins: ir.Instr) -> None:
    _keep(fl, ins, "noma_param_keep", fl.tk.i64(ins.attr("slot")), fl.tk.i32(ins.attr("axis")))


def _lower_dim_keep(fl: FunctionLowering, ins: ir.Instr) -> None:
    _keep(fl, ins, "noma_dim_keep", fl.tk.i64(ins.attr("dim")))


#: The lowering of each op this module owns.
HANDLERS: dict[Op, Handler] = {
    Op.CONV2D: _runtime("noma_conv2d"),
    Op.CONV2D_GRAD_X: _runtime("noma_conv2d_grad_x"),
    Op.CONV2D_GRAD_W: _runtime("noma_conv2d_grad_w"),
    Op.POOL2D: _pool("noma_pool2d"),
    Op.POOL2D_GRAD: _pool("noma_pool2d_grad"),
    Op.ARGSORT: _runtime("noma_argsort"),
    Op.TOPK: _runtime("noma_topk"),
    Op.PARAM_KEEP: _lower_param_keep,
    Op.DIM_KEEP: _lower_dim_keep,
}
