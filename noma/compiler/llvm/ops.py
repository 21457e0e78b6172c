"""Per-instruction lowering of the compute ops that are not elementwise.

Owns: HANDLERS (Op -> handler) for creation (CONST, PACK, CONST_TENSOR, FILL, random draws,
ZEROS_LIKE), reductions (SUM / MAX_R / MIN_R, ARGMAX, SUM_TO, BROADCAST_TO), linear algebra and
shape (MATMUL, TRANSPOSE, the aliasing RESHAPE, SLICE and INDEX, CONCAT, the gradients of SLICE
and INDEX, ONE_HOT, DIM, SHAPE) and CHECK. A handler receives the function's lowering and the
instruction and returns the result's LLVM value (None for an op without a result).
Input: ir.Instr through function.FunctionLowering. Output: llvmlite.ir code through its toolkit,
kernels and linalg collaborators.
Imports: ir, basics, kernels, llvmlite.ir (function only for types).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from llvmlite import ir as ll

from noma.compiler.llvm.basics import ERR_RUNTIME, ERR_SHAPE, I1, LoweringError
from noma.compiler.llvm.kernels import REDUCTIONS
from noma.compiler.middle import ir

if TYPE_CHECKING:
    from noma.compiler.llvm.function import FunctionLowering, Handler

Op = ir.Op


# ----------------------------------------------------------------------------- creation


def lower_const(fl: FunctionLowering, ins: ir.Instr) -> ll.Value:
    return fl.tk.rconst(ins.attr("value"))


def lower_pack(fl: FunctionLowering, ins: ir.Instr) -> ll.Value:
    tk = fl.tk
    shape = tuple(ins.attr("shape"))
    if not shape:
        return fl.get(ins.args[0])
    n = math.prod(shape)
    if n != len(ins.args):
        raise LoweringError(f"pack of {len(ins.args)} values into shape {shape}")
    data, t = tk.new_tensor([tk.i64(d) for d in shape])
    for i, a in enumerate(ins.args):
        tk.store_elem(fl.get(a), data, tk.i64(i))
    return t


def lower_const_tensor(fl: FunctionLowering, ins: ir.Instr) -> ll.Value:
    tk = fl.tk
    shape = tuple(ins.attr("shape"))
    data, t = tk.new_tensor([tk.i64(d) for d in shape])
    tk.memcpy(data, tk.mc.data_global(ins.attr("data")), tk.i64(math.prod(shape)))
    return t


def lower_fill(fl: FunctionLowering, ins: ir.Instr) -> ll.Value:
    tk = fl.tk
    value = fl.get(ins.args[0])
    if len(ins.args) == 1:
        return value
    dims = tk.checked_dims([fl.get(a) for a in ins.args[1:]], Op.FILL.value)
    data, t = tk.new_tensor(dims)
    tk.loop(tk.i64(0), tk.numel(dims), lambda i, c: tk.store_elem(value, data, i))
    return t


def lower_random(fl: FunctionLowering, ins: ir.Instr) -> ll.Value:
    tk = fl.tk
    a, b = fl.get(ins.args[0]), fl.get(ins.args[1])
    if len(ins.args) == 2:
        return _rand_scalar(fl, ins.attr("kind"), a, b)
    kind = {"uniform": 1, "normal": 2}[ins.attr("kind")]
    dims = tk.checked_dims([fl.get(x) for x in ins.args[2:]], Op.RANDOM.value)
    n = tk.numel(dims)
    data, t = tk.new_tensor(dims)
    tk.rt("noma_fill", data, n, tk.i32(kind), a, b)
    return t


def _rand_scalar(fl: FunctionLowering, kind: str, a: ll.Value, b: ll.Value) -> ll.Value:
    tk = fl.tk
    if kind == "normal":
        return tk.b.fadd(a, tk.b.fmul(b, tk.rt("noma_randn")))
    return tk.b.fadd(a, tk.b.fmul(tk.b.fsub(b, a), tk.rt("noma_rand")))


def lower_rand_scalar(fl: FunctionLowering, ins: ir.Instr) -> ll.Value:
    return _rand_scalar(fl, ins.attr("kind"), fl.get(ins.args[0]), fl.get(ins.args[1]))


def lower_zeros_like(fl: FunctionLowering, ins: ir.Instr) -> ll.Value:
    tk = fl.tk
    x, r = fl.get(ins.args[0]), ins.args[0].rank
    if r == 0:
        return tk.rconst(0.0)
    dims = tk.dims(x, r)
    data, t = tk.new_tensor(dims)
    tk.memzero(data, tk.numel(dims))
    return t


# ----------------------------------------------------------------------------- reductions


def lower_reduce(fl: FunctionLowering, ins: ir.Instr) -> ll.Value:
    tk = fl.tk
    kind = ins.op
    x, r = fl.get(ins.args[0]), ins.args[0].rank
    axis = ins.attr("axis")
    if r == 0:
        return x
    if axis is None:
        n = tk.numel(tk.dims(x, r))
        if kind is not Op.SUM:
            tk.fail_if(tk.b.icmp_unsigned("==", n, tk.i64(0)), ERR_RUNTIME,
                       f"{REDUCTIONS[kind].word} of an empty tensor")
        return fl.kern.reduce_all(tk.data(x), n, kind)
    ax = axis + r if axis < 0 else axis
    if not 0 <= ax < r:
        raise LoweringError(f"{ins.op.value}: axis {axis} out of range for rank {r}")
    return fl.kern.reduce_axis(x, r, ax, kind, bool(ins.attr("keepdims")))


def lower_argmax(fl: FunctionLowering, ins: ir.Instr) -> ll.Value:
    tk = fl.tk
    x, r = fl.get(ins.args[0]), ins.args[0].rank
    if r == 0:
        return tk.rconst(0.0)
    dims = tk.dims(x, r)
    length = dims[-1]
    rows = tk.numel(dims[:-1])
    tk.fail_if(tk.b.and_(tk.b.icmp_unsigned("==", length, tk.i64(0)),
                         tk.b.icmp_unsigned("!=", rows, tk.i64(0))),
               ERR_RUNTIME, "argmax of an empty axis")
    src = tk.data(x)

    def row_argmax(row: ll.Value) -> ll.Value:
        base = tk.b.mul(row, length)

        def step(k: ll.Value, c: list) -> list:
            v = tk.load_elem(src, tk.b.add(base, k))
            better = tk.b.or_(tk.b.fcmp_ordered(">", v, c[0]),
                              tk.b.and_(tk.b.fcmp_unordered("uno", v, v),
                                        tk.b.fcmp_ordered("ord", c[0], c[0])))
            return [tk.b.select(better, v, c[0]), tk.b.select(better, k, c[1])]
        _, best = tk.loop(tk.i64(1), length, step, [tk.load_elem(src, base), tk.i64(0)])
        return tk.to_real(best)

    if r == 1:
        return row_argmax(tk.i64(0))
    out, t = tk.new_tensor(dims[:-1])
    tk.loop(tk.i64(0), rows, lambda i, c: tk.store_elem(row_argmax(i), out, i))
    return t


def lower_sum_to(fl: FunctionLowering, ins: ir.Instr) -> ll.Value:
    tk = fl.tk
    x, rx = fl.get(ins.args[0]), ins.args[0].rank
    like, rl = fl.get(ins.args[1]), ins.args[1].rank
    if rl == 0:
        if rx == 0:
            return x
        return fl.kern.reduce_all(tk.data(x), tk.numel(tk.dims(x, rx)), Op.SUM)
    rank = max(rx, rl)
    xd = [tk.i64(1)] * (rank - rx) + (tk.dims(x, rx) if rx else [])
    ld = [tk.i64(1)] * (rank - rl) + tk.dims(like, rl)
    bad: ll.Value = ll.Constant(I1, 0)
    same: ll.Value = ll.Constant(I1, int(rx == rl))
    for a, b in zip(xd, ld):
        eq = tk.b.icmp_unsigned("==", a, b)
        bad = tk.b.or_(bad, tk.b.and_(tk.b.not_(eq), tk.b.icmp_unsigned("!=", b, tk.i64(1))))
        same = tk.b.and_(same, eq)
    tk.fail_shape_if(bad, Op.SUM_TO.value, (x, rx), (like, rl))
    if rx == 0:
        return _splat(fl, x, tk.dims(like, rl))

    def general() -> ll.Value:
        out_dims = tk.dims(like, rl)
        data, t = tk.new_tensor(out_dims)
        tk.memzero(data, tk.numel(out_dims))
        contig = [tk.i64(1)] * rank
        for a in range(rank - 2, -1, -1):
            contig[a] = tk.b.mul(contig[a + 1], ld[a + 1])
        strides = [[tk.b.select(tk.b.icmp_unsigned("==", ld[a], tk.i64(1)), tk.i64(0), contig[a])
                    for a in range(rank)]]
        src = tk.data(x)

        def emit(p: list) -> None:  # p: src, out, x's dims, out's strides (a rarely run path: outlined)
            def body(offs: list, lin: ll.Value) -> None:
                tk.store_elem(tk.b.fadd(tk.load_elem(p[1], offs[0]), tk.load_elem(p[0], lin)),
                              p[1], offs[0])
            tk.nest(p[2:2 + rank], [p[2 + rank:]], body)
        fl.kern.outline([src, data, *xd, *strides[0]], emit, min_size=0, key=(Op.SUM_TO, rank))
        return t

    if rx > rl:
        # The common case (bias gradients): like's dims are the trailing dims of x, so the
        # sum runs over whole leading rows -- a contiguous, vectorizable inner loop. Rows are
        # added in the same order as by the general loop, so the result is identical.
        suffix = tk.all_of([tk.b.icmp_unsigned("==", a, b) for a, b in zip(xd[rank - rl:], ld[rank - rl:])])
        return tk.choose(suffix, lambda: fl.kern.sum_rows(x, rx, like, rl), general)
    return tk.choose(same, lambda: x, general)


def _splat(fl: FunctionLowering, value: ll.Value, dims: list) -> ll.Value:
    tk = fl.tk
    data, t = tk.new_tensor(dims)
    tk.loop(tk.i64(0), tk.numel(dims), lambda i, c: tk.store_elem(value, data, i))
    return t


def lower_broadcast_to(fl: FunctionLowering, ins: ir.Instr) -> ll.Value:
    tk = fl.tk
    x, rx = fl.get(ins.args[0]), ins.args[0].rank
    like, rl = fl.get(ins.args[1]), ins.args[1].rank
    if rl == 0:
        if rx == 0:
            return x
        n = tk.numel(tk.dims(x, rx))
        tk.fail_shape_if(tk.b.icmp_unsigned("!=", n, tk.i64(1)), Op.BROADCAST_TO.value, (x, rx), (like, 0))
        return tk.load_elem(tk.data(x), tk.i64(0))
    ld = tk.dims(like, rl)
    if rx == 0:
        return _splat(fl, x, ld)
    if rx > rl:
        tk.rt("noma_fail_shape", tk.span_c(), tk.cstr(Op.BROADCAST_TO.value), tk.tensor_ptr(x),
              tk.tensor_ptr(like))
        return like
    xd = tk.dims(x, rx)
    bad: ll.Value = ll.Constant(I1, 0)
    same: ll.Value = ll.Constant(I1, int(rx == rl))
    for a, b in zip(xd, ld[rl - rx:]):
        eq = tk.b.icmp_unsigned("==", a, b)
        bad = tk.b.or_(bad, tk.b.and_(tk.b.not_(eq), tk.b.icmp_unsigned("!=", a, tk.i64(1))))
        same = tk.b.and_(same, eq)
    tk.fail_shape_if(bad, Op.BROADCAST_TO.value, (x, rx), (like, rl))

    def general() -> ll.Value:
        data, t = tk.new_tensor(ld)
        strides = [fl.kern.broadcast_strides(x, rx, rl)]
        unit = tk.b.icmp_unsigned("==", strides[0][rl - 1], tk.i64(1))
        src = tk.data(x)

        def emit(p: list) -> None:  # p: unit, out, dims, x's strides, src (outlined, see sum_to)
            tk.nest(p[2:2 + rl], [p[2 + rl:2 + 2 * rl]],
                    lambda offs, lin: tk.store_elem(tk.load_elem(p[-1], offs[0]), p[1], lin),
                    inner_unit=p[0])
        fl.kern.outline([unit, data, *ld, *strides[0], src], emit, min_size=0, key=(Op.BROADCAST_TO, rl))
        return t

    if rx != rl:
        return general()
    return tk.choose(same, lambda: x, general)


# ----------------------------------------------------------------------------- linear algebra and shape


def lower_matmul(fl: FunctionLowering, ins: ir.Instr) -> ll.Value:
    tk = fl.tk
    a, b = fl.get(ins.args[0]), fl.get(ins.args[1])
    ta, tb = bool(ins.attr("ta")), bool(ins.attr("tb"))
    a0, a1 = tk.dims(a, 2)
    b0, b1 = tk.dims(b, 2)
    m, k = (a1, a0) if ta else (a0, a1)
    k2, n = (b1, b0) if tb else (b0, b1)
    tk.fail_shape_if(tk.b.icmp_unsigned("!=", k, k2), Op.MATMUL.value, (a, 2), (b, 2))
    data, t = tk.new_tensor([m, n])
    fl.linalg.matmul_into(tk.data(a), tk.data(b), data, m, k, n, ta, tb)
    return t


def lower_transpose(fl: FunctionLowering, ins: ir.Instr) -> ll.Value:
    tk = fl.tk
    x = fl.get(ins.args[0])
    rows, cols = tk.dims(x, 2)
    data, t = tk.new_tensor([cols, rows])
    src = tk.data(x)

    def outer(i: ll.Value, _c: list) -> None:
        base = tk.b.mul(i, rows)
        tk.loop(tk.i64(0), rows, lambda j, c: tk.store_elem(
            tk.load_elem(src, tk.b.add(tk.b.mul(j, cols), i)), data, tk.b.add(base, j)))
    tk.loop(tk.i64(0), cols, outer)
    return t


def _reshape(fl: FunctionLowering, x: ll.Value, rx: int, dims: list) -> ll.Value:
    """x viewed with `dims` (aliasing its data); element counts must match."""
    tk = fl.tk
    if rx == 0:
        data = tk.alloc(tk.i64(1))
        tk.store_elem(x, data, tk.i64(0))
        n_old: ll.Value = tk.i64(1)
    else:
        data = tk.data(x)
        n_old = tk.numel(tk.dims(x, rx))
    if not dims:
        tk.fail_shape_if(tk.b.icmp_unsigned("!=", n_old, tk.i64(1)), Op.RESHAPE.value,
                         (x, rx), (tk.rconst(0.0), 0))
        return tk.load_elem(data, tk.i64(0))
    t = tk.make_tensor(data, dims)
    tk.fail_shape_if(tk.b.icmp_unsigned("!=", n_old, tk.numel(dims)), Op.RESHAPE.value, (x, rx), (t, len(dims)))
    return t


def lower_reshape(fl: FunctionLowering, ins: ir.Instr) -> ll.Value:
    dims = fl.tk.checked_dims([fl.get(a) for a in ins.args[1:]], Op.RESHAPE.value)
    return _reshape(fl, fl.get(ins.args[0]), ins.args[0].rank, dims)


def lower_reshape_like(fl: FunctionLowering, ins: ir.Instr) -> ll.Value:
    like, rl = fl.get(ins.args[1]), ins.args[1].rank
    return _reshape(fl, fl.get(ins.args[0]), ins.args[0].rank, fl.tk.dims(like, rl) if rl else [])


def lower_concat(fl: FunctionLowering, ins: ir.Instr) -> ll.Value:
    tk = fl.tk
    a, b = fl.get(ins.args[0]), fl.get(ins.args[1])
    r = ins.args[0].rank
    if r == 0 or ins.args[1].rank != r:
        raise LoweringError("concat needs two tensors of the same rank")
    ad, bd = tk.dims(a, r), tk.dims(b, r)
    bad: ll.Value = ll.Constant(I1, 0)
    for x, y in zip(ad[1:], bd[1:]):
        bad = tk.b.or_(bad, tk.b.icmp_unsigned("!=", x, y))
    tk.fail_shape_if(bad, Op.CONCAT.value, (a, r), (b, r))
    row = tk.numel(ad[1:])
    data, t = tk.new_tensor([tk.b.add(ad[0], bd[0])] + ad[1:])
    na = tk.b.mul(ad[0], row)
    tk.memcpy(data, tk.data(a), na)
    tk.memcpy(tk.elem_ptr(data, na), tk.data(b), tk.b.mul(bd[0], row))
    return t


def lower_slice(fl: FunctionLowering, ins: ir.Instr) -> ll.Value:
    tk = fl.tk
    x, r = fl.get(ins.args[0]), ins.args[0].rank
    start, end = tk.whole(fl.get(ins.args[1])), tk.whole(fl.get(ins.args[2]))
    dims = tk.dims(x, r)
    n = dims[0]
    tk.fail_index_if(tk.b.icmp_unsigned(">", start, n), start, n)
    tk.fail_index_if(tk.b.icmp_unsigned(">", end, n), end, n)
    tk.fail_if(tk.b.icmp_signed("<", end, start), ERR_SHAPE, "slice: end is before start")
    row = tk.numel(dims[1:])
    data = tk.elem_ptr(tk.data(x), tk.b.mul(start, row))
    return tk.make_tensor(data, [tk.b.sub(end, start)] + dims[1:])


def lower_slice_grad(fl: FunctionLowering, ins: ir.Instr) -> ll.Value:
    tk = fl.tk
    g, rg = fl.get(ins.args[0]), ins.args[0].rank
    like, rl = fl.get(ins.args[1]), ins.args[1].rank
    start = tk.whole(fl.get(ins.args[2]))
    ld = tk.dims(like, rl)
    data, t = tk.new_tensor(ld)
    tk.memzero(data, tk.numel(ld))
    gd = tk.dims(g, rg)
    row = tk.numel(ld[1:])
    tk.fail_shape_if(tk.b.icmp_signed(">", tk.b.add(start, gd[0]), ld[0]), Op.SLICE_GRAD.value,
                     (g, rg), (like, rl))
    tk.memcpy(tk.elem_ptr(data, tk.b.mul(start, row)), tk.data(g), tk.numel(gd))
    return t


def lower_index(fl: FunctionLowering, ins: ir.Instr) -> ll.Value:
    tk = fl.tk
    x, r = fl.get(ins.args[0]), ins.args[0].rank
    i = tk.whole(fl.get(ins.args[1]))
    dims = tk.dims(x, r)
    tk.check_index(i, dims[0])
    if r == 1:
        return tk.load_elem(tk.data(x), i)
    row = tk.numel(dims[1:])
    return tk.make_tensor(tk.elem_ptr(tk.data(x), tk.b.mul(i, row)), dims[1:])


def lower_index_grad(fl: FunctionLowering, ins: ir.Instr) -> ll.Value:
    tk = fl.tk
    g, rg = fl.get(ins.args[0]), ins.args[0].rank
    like, rl = fl.get(ins.args[1]), ins.args[1].rank
    i = tk.whole(fl.get(ins.args[2]))
    ld = tk.dims(like, rl)
    data, t = tk.new_tensor(ld)
    tk.memzero(data, tk.numel(ld))
    tk.check_index(i, ld[0])
    if rg == 0:
        tk.store_elem(g, data, i)
    else:
        row = tk.numel(ld[1:])
        tk.memcpy(tk.elem_ptr(data, tk.b.mul(i, row)), tk.data(g), row)
    return t


def lower_one_hot(fl: FunctionLowering, ins: ir.Instr) -> ll.Value:
    tk = fl.tk
    idx, ri = fl.get(ins.args[0]), ins.args[0].rank
    (n,) = tk.checked_dims([fl.get(ins.args[1])], Op.ONE_HOT.value)
    one = tk.rconst(1.0)
    if ri == 0:
        data, t = tk.new_tensor([n])
        tk.memzero(data, n)
        k = tk.whole(idx)
        tk.check_index(k, n)
        tk.store_elem(one, data, k)
        return t
    rows = tk.dim(idx, 0)
    data, t = tk.new_tensor([rows, n])
    tk.memzero(data, tk.b.mul(rows, n))
    src = tk.data(idx)

    def step(i: ll.Value, _c: list) -> None:
        k = tk.whole(tk.load_elem(src, i))
        tk.check_index(k, n)
        tk.store_elem(one, data, tk.b.add(tk.b.mul(i, n), k))
    tk.loop(tk.i64(0), rows, step)
    return t


def lower_dim(fl: FunctionLowering, ins: ir.Instr) -> ll.Value:
    tk = fl.tk
    x, r = fl.get(ins.args[0]), ins.args[0].rank
    axis = int(ins.attr("axis"))
    ax = axis + r if axis < 0 else axis
    if not 0 <= ax < r:
        tk.rt("noma_fail", tk.i32(ERR_SHAPE), tk.span_c(),
              tk.cstr(f"axis {axis} is out of range for a value of rank {r}"))
        return tk.rconst(0.0)
    return tk.to_real(tk.dim(x, ax))


def lower_shape(fl: FunctionLowering, ins: ir.Instr) -> ll.Value:
    tk = fl.tk
    x, r = fl.get(ins.args[0]), ins.args[0].rank
    data, t = tk.new_tensor([tk.i64(r)])
    for i in range(r):
        tk.store_elem(tk.to_real(tk.dim(x, i)), data, tk.i64(i))
    return t


def lower_check(fl: FunctionLowering, ins: ir.Instr) -> ll.Value:
    """CHECK: the scalar unchanged, or a runtime error at the op's span (ir.CHECK_RULES)."""
    tk = fl.tk
    x = fl.get(ins.args[0])
    rule = ins.attr("rule")
    b = tk.b
    if rule == "mean_count":
        with b.if_then(b.fcmp_ordered("==", x, tk.rconst(0.0)), likely=False):
            tk.rt("noma_warn_once", tk.span_c(), tk.cstr(ir.CHECK_RULES[rule]))
        return x
    if rule != "batch_size":
        raise LoweringError(f"unknown check rule {rule!r}")
    whole = b.fcmp_ordered("==", tk.intr("llvm.floor", x), x)
    ok = b.and_(b.and_(whole, b.fcmp_ordered(">=", x, tk.rconst(1.0))),
                b.fcmp_ordered("<", x, tk.rconst(math.inf)))
    with tk.failing_when(b.not_(ok)):
        b.call(tk.mc.runtime("noma_fail_check"), [tk.cstr(ir.CHECK_RULES[rule]), x, tk.span_c()])
    return x


#: The lowering of each op this module owns.
HANDLERS: dict[Op, Handler] = {
    Op.CHECK: lower_check,
    Op.CONST: lower_const, Op.PACK: lower_pack, Op.FILL: lower_fill,
    Op.CONST_TENSOR: lower_const_tensor,
    Op.RANDOM: lower_random, Op.RAND_SCALAR: lower_rand_scalar,
    Op.SUM: lower_reduce, Op.MAX_R: lower_reduce, Op.MIN_R: lower_reduce,
    Op.ARGMAX: lower_argmax, Op.SUM_TO: lower_sum_to,
    Op.BROADCAST_TO: lower_broadcast_to, Op.MATMUL: lower_matmul,
    Op.TRANSPOSE: lower_transpose, Op.RESHAPE: lower_reshape,
    Op.RESHAPE_LIKE: lower_reshape_like, Op.CONCAT: lower_concat,
    Op.SLICE: lower_slice, Op.SLICE_GRAD: lower_slice_grad,
    Op.INDEX: lower_index, Op.INDEX_GRAD: lower_index_grad,
    Op.ONE_HOT: lower_one_hot, Op.DIM: lower_dim, Op.SHAPE: lower_shape,
    Op.ZEROS_LIKE: lower_zeros_like,
}
