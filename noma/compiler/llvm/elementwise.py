"""Lowering of the IR's elementwise ops: fusion trees and the scalar function of every op.

Owns: SCALAR_RULES (Op -> the scalar or vector code computing it on loaded elements), the
casts, the fusion of elementwise ops into the loop of their only user (a fused op is deferred
until its user, or a later reader, emits the tree) and HANDLERS, the lowering of every op of
ir.ELEMENTWISE: one broadcasting loop per tree through kernels.Kernels.elementwise; STOP_GRAD
and casts to a real type are aliases; `x as i32|i64` checks its operand whole first.
A scalar rule works on scalars or, while the toolkit's `vl` > 0, on vectors of vl lanes.
Input: ir.Instr through function.FunctionLowering. Output: llvmlite.ir values.
Imports: ir, basics, toolkit, inline_math, llvmlite.ir (function only for types).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from llvmlite import ir as ll

from noma.compiler.llvm.basics import LoweringError
from noma.compiler.middle import ir

if TYPE_CHECKING:
    from noma.compiler.llvm.function import FunctionLowering, Handler

Op = ir.Op
#: The scalar function of a node: operand values (scalars or vectors) -> its value.
Scalar = Callable[[Sequence[ll.Value]], ll.Value]
#: How an op computes one element: (the function's lowering, operand values) -> value.
ScalarRule = Callable[["FunctionLowering", Sequence[ll.Value]], ll.Value]

#: Marker result of a handler: the value is fused into its user (emitted later).
DEFERRED = ll.Constant(ll.IntType(1), 0)


# ----------------------------------------------------------------------------- scalar rules


def _bool(fl: FunctionLowering, c: ll.Value) -> ll.Value:
    """An i1 (or vector of i1) as a real 0 / 1."""
    return fl.tk.b.uitofp(c, fl.tk.lanes(fl.tk.real))


def _intr(name: str) -> ScalarRule:
    return lambda fl, x: fl.tk.intr(name, *x)


def _libm(name: str) -> ScalarRule:
    return lambda fl, x: fl.tk.b.call(fl.mc.libm(name), [x[0]])


def _cmp(ordered: bool, sym: str) -> ScalarRule:
    if ordered:
        return lambda fl, x: _bool(fl, fl.tk.b.fcmp_ordered(sym, x[0], x[1]))
    return lambda fl, x: _bool(fl, fl.tk.b.fcmp_unordered(sym, x[0], x[1]))


def _relu(fl: FunctionLowering, x: Sequence[ll.Value]) -> ll.Value:
    b, zero = fl.tk.b, fl.tk.rconst
    return b.select(b.fcmp_unordered(">", x[0], zero(0.0)), x[0], zero(0.0))


def _sign(fl: FunctionLowering, x: Sequence[ll.Value]) -> ll.Value:
    b, c = fl.tk.b, fl.tk.rconst
    return b.select(b.fcmp_ordered(">", x[0], c(0.0)), c(1.0),
                    b.select(b.fcmp_ordered("<", x[0], c(0.0)), c(-1.0), x[0]))


#: Op -> its scalar code (CAST: see cast_fn, its code depends on the target type). Constants are
#: made when a rule runs, so the same rule emits scalar or vector code.
SCALAR_RULES: dict[Op, ScalarRule] = {
    Op.NEG: lambda fl, x: fl.tk.b.fneg(x[0]),
    Op.EXP: lambda fl, x: fl.math.exp_real(x[0]), Op.LOG: _intr("llvm.log"), Op.SQRT: _intr("llvm.sqrt"),
    Op.SIN: _intr("llvm.sin"), Op.COS: _intr("llvm.cos"), Op.TAN: _libm("tan"),
    Op.TANH: lambda fl, x: fl.math.tanh_real(x[0]), Op.ABS: _intr("llvm.fabs"),
    Op.FLOOR: _intr("llvm.floor"), Op.CEIL: _intr("llvm.ceil"),
    Op.SIGMOID: lambda fl, x: fl.math.sigmoid_real(x[0]),
    Op.RELU: _relu,
    Op.SIGN: _sign,
    Op.NOT: lambda fl, x: _bool(fl, fl.tk.b.fcmp_ordered("==", x[0], fl.tk.rconst(0.0))),
    Op.ADD: lambda fl, x: fl.tk.b.fadd(x[0], x[1]), Op.SUB: lambda fl, x: fl.tk.b.fsub(x[0], x[1]),
    Op.MUL: lambda fl, x: fl.tk.b.fmul(x[0], x[1]), Op.DIV: lambda fl, x: fl.tk.b.fdiv(x[0], x[1]),
    Op.MOD: lambda fl, x: fl.tk.b.frem(x[0], x[1]), Op.POW: _intr("llvm.pow"),
    Op.MIN: _intr("llvm.minimum"), Op.MAX: _intr("llvm.maximum"),
    Op.LT: _cmp(True, "<"), Op.LE: _cmp(True, "<="), Op.GT: _cmp(True, ">"),
    Op.GE: _cmp(True, ">="), Op.EQ: _cmp(True, "=="), Op.NE: _cmp(False, "!="),
    Op.AND: lambda fl, x: _bool(fl, fl.tk.b.and_(fl.tk.truth(x[0]), fl.tk.truth(x[1]))),
    Op.OR: lambda fl, x: _bool(fl, fl.tk.b.or_(fl.tk.truth(x[0]), fl.tk.truth(x[1]))),
    Op.SELECT: lambda fl, x: fl.tk.b.select(fl.tk.truth(x[0]), x[1], x[2]),
    Op.STOP_GRAD: lambda fl, x: x[0],
}


def scalar_fn(fl: FunctionLowering, op: Op, attrs: dict[str, Any]) -> Scalar:
    """The scalar function computing `op` on loaded elements."""
    if op is Op.CAST:
        return cast_fn(fl, attrs.get("to"))
    rule = SCALAR_RULES.get(op)
    if rule is None:
        raise LoweringError(f"{op.value} is not elementwise")
    return lambda xs: rule(fl, xs)


def cast_fn(fl: FunctionLowering, to: Optional[str]) -> Scalar:
    """The scalar function of `x as to`."""
    b = fl.tk.b
    if to in ("f64", None) or (to == "f32" and fl.mc.dtype == "f32"):
        return lambda x: x[0]
    if to == "f32":
        return lambda x: b.fpext(b.fptrunc(x[0], fl.tk.lanes(ll.FloatType())), fl.tk.lanes(fl.tk.real))
    if to in ("i32", "i64"):
        def to_int(x: Sequence[ll.Value]) -> ll.Value:  # types made when it runs: scalar or vector code
            ity, rty = fl.tk.lanes(ll.IntType(32 if to == "i32" else 64)), fl.tk.lanes(fl.tk.real)
            fn = fl.mc.intrinsic("llvm.fptosi.sat", ity, [rty], [ity, rty])
            return b.sitofp(b.call(fn, [x[0]]), rty)
        return to_int
    raise LoweringError(f"cast to {to!r}")


def _cast_is_identity(fl: FunctionLowering, ins: ir.Instr) -> bool:
    to = ins.attr("to")
    return bool(to == "f64" or (to == "f32" and fl.mc.dtype == "f32"))


# ----------------------------------------------------------------------------- handlers


def lower_elementwise(fl: FunctionLowering, ins: ir.Instr) -> ll.Value:
    """An elementwise op: an alias (STOP_GRAD, a cast to the real type), deferred (fused into
    its user's loop: DEFERRED) or one loop computing its tree."""
    if ins.op is Op.STOP_GRAD or (ins.op is Op.CAST and _cast_is_identity(fl, ins)):
        return fl.get(ins.args[0])
    if id(ins) in fl.fused:
        assert ins.result is not None
        fl.deferred[ins.result.id] = ins
        return DEFERRED
    if ins.result is not None and ins.result.rank == 0 and not any(a.id in fl.deferred for a in ins.args):
        # scalar code (most of a long program): the same instruction without the tree
        return scalar_fn(fl, ins.op, dict(ins.attrs))([fl.get(a) for a in ins.args])
    return elementwise_tree(fl, ins)


def elementwise_tree(fl: FunctionLowering, root: ir.Instr) -> ll.Value:
    """One loop computing `root` and the deferred (fused) elementwise ops feeding it."""
    leaves: list[ir.Value] = []
    index: dict[int, int] = {}
    plan: list[tuple[Op, int, list[int]]] = []

    sig: list[tuple[Any, ...]] = []  # the tree without spans: with the operand ranks, its kernels' text

    def node(ins: ir.Instr) -> tuple[int, Scalar]:
        kids = [tree(a) for a in ins.args]
        f = scalar_fn(fl, ins.op, dict(ins.attrs))
        plan.append((ins.op, ins.span, [ref for ref, _ in kids]))
        sig.append((ins.op, repr(sorted(dict(ins.attrs).items())), tuple(ref for ref, _ in kids)))
        evals = [e for _, e in kids]
        return -len(plan), (lambda xs: f([e(xs) for e in evals]))

    def tree(v: ir.Value) -> tuple[int, Scalar]:
        ins = fl.deferred.pop(v.id, None)
        if ins is not None:
            return node(ins)
        k = index.get(v.id)
        if k is None:
            k = index[v.id] = len(leaves)
            leaves.append(v)
        return k, (lambda xs: xs[k])

    _, fn = node(root)
    operands = [(fl.get(v), v.rank) for v in leaves]
    return fl.kern.elementwise(operands, fn, plan, key=(tuple(sig), tuple(r for _, r in operands)))


def lower_cast(fl: FunctionLowering, ins: ir.Instr) -> ll.Value:
    """`x as i32|i64` checks every element first (NaN or a truncation out of the type's range is
    a runtime error at the cast; noma_check_int_cast words it), then truncates in its own loop
    (never fused: the check reads the operand whole). Other casts are plain elementwise ops."""
    to = ins.attr("to")
    if to not in ir.INT_RANGES:
        return lower_elementwise(fl, ins)
    tk = fl.tk
    x, r = fl.get(ins.args[0]), ins.args[0].rank
    bits = tk.i32(32 if to == "i32" else 64)
    if r == 0:
        lo, hi = ir.INT_RANGES[to]
        t = tk.intr("llvm.trunc", x)
        ok = tk.b.and_(tk.b.fcmp_ordered(">=", t, tk.rconst(lo)),
                       tk.b.fcmp_ordered("<", t, tk.rconst(hi)))
        with tk.failing_when(tk.b.not_(ok)):
            tk.rt("noma_check_int_cast", tk.any_ptr(x, 0), bits, tk.span_c())
    else:
        tk.rt("noma_check_int_cast", tk.tensor_ptr(x), bits, tk.span_c())
    return elementwise_tree(fl, ins)


#: Every elementwise op's lowering.
HANDLERS: dict[Op, Handler] = {op: lower_elementwise for op in ir.ELEMENTWISE}
HANDLERS[Op.CAST] = lower_cast
