"""Per-instruction lowering of the LLVM backend: one method per IR `Op`.

Owns: `OpLowering`, the map from IR values to LLVM values and the code of every `ir.Instr`:
elementwise math (through Emitter.elementwise), reductions, shape ops (aliasing RESHAPE, SLICE
and INDEX), creation and random ops; the state ops that become runtime calls are in lower_llvm_state.
Input: ir.Instr. Output: llvmlite.ir code via lower_llvm_loops.Emitter.
Imports: ir, lower_llvm_loops, lower_llvm_state, lower_llvm_linalg, lower_llvm_types, llvmlite.ir.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

from llvmlite import ir as ll

from noma.compiler.middle import ir
from noma.compiler.llvm import lower_llvm_conv
from noma.compiler.llvm.lower_llvm_linalg import InlineLinalg
from noma.compiler.llvm.lower_llvm_loops import Emitter, ModuleContext
from noma.compiler.llvm.lower_llvm_state import StateOps
from noma.compiler.llvm.lower_llvm_types import LoweringError, ERR_RUNTIME, ERR_SHAPE, I1

Op = ir.Op
Scalar = Callable[[list], ll.Value]


_DEFERRED = ll.Constant(ll.IntType(1), 0)  # marker: the value is fused into its user

#: Effects the output probe's copy of a training step leaves out: everything that changes state
#: or the outside world, except global stores (the runtime puts the globals back after each
#: pass) and what computes values (random draws -- the generator is put back too --, reads, the
#: tape).
PROBE_LEFT_OUT = ir.EFFECTFUL - {Op.CALL, Op.TAPE_PUSH, Op.TAPE_POP, Op.RANDOM, Op.RAND_SCALAR,
                                 Op.LOAD_CSV, Op.LOAD_ST, Op.GLOBAL_STORE}




class OpLowering(StateOps, InlineLinalg, Emitter):
    """Lowers the instructions of one function; `vals` maps IR value ids to LLVM values."""

    def __init__(self, mc: ModuleContext, fn: ll.Function, copy_loads: set[int], fused: set[int]):
        super().__init__(mc, fn)
        self.vals: dict[int, ll.Value] = {}
        #: id() of PARAM_LOAD / GLOBAL_LOAD instructions whose tensor must be copied to the arena
        #: (something in scope may overwrite the stored buffer while the value is live).
        self.copy_loads = copy_loads
        #: id() of elementwise instructions computed inside the loop of their only user.
        self.fused = fused
        self.optimize_depth = 0  # > 0 while lowering the body or gradient of a training loop
        #: the training loops being lowered, innermost last, with their hyperparameter arrays
        self.training: list[tuple[ir.OptimizeOp, ll.Value]] = []
        #: True while lowering the output probe's copy of a training step's body: effects are
        #: left out (see FunctionLowering._probe_and_apply_resizes).
        self.probing = False
        #: result id -> fused instruction not emitted yet.
        self.deferred: dict[int, ir.Instr] = {}

    def get(self, v: ir.Value) -> ll.Value:
        value = self.vals.get(v.id)
        if value is not None:
            return value
        ins = self.deferred.pop(v.id, None)
        if ins is not None:  # a fused value needed on its own after all: emit it here
            saved = self.span
            self.span = ins.span
            value = self.vals[v.id] = self._elementwise_tree(ins)
            self.span = saved
            return value
        raise LoweringError(f"{v} used before definition")

    def lower_instr(self, ins: ir.Instr) -> None:
        if self.probing and ins.result is None and ins.op in PROBE_LEFT_OUT:
            return
        self.span = ins.span
        self.new_stage()
        handler = _HANDLERS.get(ins.op)
        if handler is None:
            if ins.op in ir.ELEMENTWISE:
                result = self._elementwise(ins)
            else:
                raise LoweringError(f"no lowering for {ins.op.value}")
        else:
            result = handler(self, ins)
        if ins.result is not None and result is not _DEFERRED:
            if result is None:
                raise LoweringError(f"{ins.op.value} produced no value")
            self.vals[ins.result.id] = result

    # ------------------------------------------------------------------ elementwise

    def _elementwise(self, ins: ir.Instr) -> Optional[ll.Value]:
        if ins.op is Op.STOP_GRAD or (ins.op is Op.CAST and self._cast_is_identity(ins)):
            return self.get(ins.args[0])
        if id(ins) in self.fused:
            self.deferred[ins.result.id] = ins
            return _DEFERRED
        return self._elementwise_tree(ins)

    def _elementwise_tree(self, root: ir.Instr) -> ll.Value:
        """One loop computing `root` and the deferred (fused) elementwise ops feeding it."""
        leaves: list[ir.Value] = []
        index: dict[int, int] = {}
        plan: list[tuple[str, int, list[int]]] = []

        sig: list[tuple] = []  # the tree without spans: with the operand ranks, its kernels' text

        def node(ins: ir.Instr) -> tuple[int, Scalar]:
            kids = [tree(a) for a in ins.args]
            f = self.scalar_fn(ins.op, dict(ins.attrs))
            plan.append((ins.op.value, ins.span, [ref for ref, _ in kids]))
            sig.append((ins.op.value, repr(sorted(dict(ins.attrs).items())), tuple(ref for ref, _ in kids)))
            evals = [e for _, e in kids]
            return -len(plan), (lambda xs: f([e(xs) for e in evals]))

        def tree(v: ir.Value) -> tuple[int, Scalar]:
            ins = self.deferred.pop(v.id, None)
            if ins is not None:
                return node(ins)
            k = index.get(v.id)
            if k is None:
                k = index[v.id] = len(leaves)
                leaves.append(v)
            return k, (lambda xs: xs[k])

        _, fn = node(root)
        operands = [(self.get(v), v.rank) for v in leaves]
        return self.elementwise(operands, fn, plan, key=(tuple(sig), tuple(r for _, r in operands)))

    def _cast_is_identity(self, ins: ir.Instr) -> bool:
        to = ins.attr("to")
        return to == "f64" or (to == "f32" and self.mc.dtype == "f32")

    def _bool(self, c: ll.Value) -> ll.Value:
        return self.b.uitofp(c, self.lanes(self.real))

    def scalar_fn(self, op: Op, attrs: dict) -> Scalar:
        """The scalar function computing `op` on loaded elements."""
        b = self.b

        def zero() -> ll.Value:  # constants made when the function runs: scalar or vector code
            return self.rconst(0.0)

        def one() -> ll.Value:
            return self.rconst(1.0)

        def intr(name: str) -> Scalar:
            return lambda x: self.intr(name, *x)

        def libm(name: str) -> Scalar:
            return lambda x: b.call(self.mc.libm(name), [x[0]])

        def cmp(ordered: bool, sym: str) -> Scalar:
            if ordered:
                return lambda x: self._bool(b.fcmp_ordered(sym, x[0], x[1]))
            return lambda x: self._bool(b.fcmp_unordered(sym, x[0], x[1]))

        table: dict[Op, Scalar] = {
            Op.NEG: lambda x: b.fneg(x[0]),
            Op.EXP: lambda x: self.exp_real(x[0]), Op.LOG: intr("llvm.log"), Op.SQRT: intr("llvm.sqrt"),
            Op.SIN: intr("llvm.sin"), Op.COS: intr("llvm.cos"), Op.TAN: libm("tan"),
            Op.TANH: lambda x: self.tanh_real(x[0]), Op.ABS: intr("llvm.fabs"),
            Op.FLOOR: intr("llvm.floor"), Op.CEIL: intr("llvm.ceil"),
            Op.SIGMOID: lambda x: self.sigmoid_real(x[0]),
            Op.RELU: lambda x: b.select(b.fcmp_unordered(">", x[0], zero()), x[0], zero()),
            Op.SIGN: lambda x: b.select(b.fcmp_ordered(">", x[0], zero()), one(),
                                        b.select(b.fcmp_ordered("<", x[0], zero()), self.rconst(-1.0), x[0])),
            Op.NOT: lambda x: self._bool(b.fcmp_ordered("==", x[0], zero())),
            Op.ADD: lambda x: b.fadd(x[0], x[1]), Op.SUB: lambda x: b.fsub(x[0], x[1]),
            Op.MUL: lambda x: b.fmul(x[0], x[1]), Op.DIV: lambda x: b.fdiv(x[0], x[1]),
            Op.MOD: lambda x: b.frem(x[0], x[1]), Op.POW: intr("llvm.pow"),
            Op.MIN: intr("llvm.minimum"), Op.MAX: intr("llvm.maximum"),
            Op.LT: cmp(True, "<"), Op.LE: cmp(True, "<="), Op.GT: cmp(True, ">"),
            Op.GE: cmp(True, ">="), Op.EQ: cmp(True, "=="), Op.NE: cmp(False, "!="),
            Op.AND: lambda x: self._bool(b.and_(self.truth(x[0]), self.truth(x[1]))),
            Op.OR: lambda x: self._bool(b.or_(self.truth(x[0]), self.truth(x[1]))),
            Op.SELECT: lambda x: b.select(self.truth(x[0]), x[1], x[2]),
            Op.STOP_GRAD: lambda x: x[0],
        }
        if op is Op.CAST:
            return self._cast_fn(attrs.get("to"))
        if op not in table:
            raise LoweringError(f"{op.value} is not elementwise")
        return table[op]

    def _cast_fn(self, to: str) -> Scalar:
        b = self.b
        if to in ("f64", None) or (to == "f32" and self.mc.dtype == "f32"):
            return lambda x: x[0]
        if to == "f32":
            return lambda x: b.fpext(b.fptrunc(x[0], self.lanes(ll.FloatType())), self.lanes(self.real))
        if to in ("i32", "i64"):
            def to_int(x: list) -> ll.Value:  # types made when it runs: scalar or vector code
                ity, rty = self.lanes(ll.IntType(32 if to == "i32" else 64)), self.lanes(self.real)
                fn = self.mc.intrinsic("llvm.fptosi.sat", ity, [rty], [ity, rty])
                return b.sitofp(b.call(fn, [x[0]]), rty)
            return to_int
        raise LoweringError(f"cast to {to!r}")

    # ------------------------------------------------------------------ creation

    def op_const(self, ins: ir.Instr) -> ll.Value:
        return self.rconst(ins.attr("value"))

    def op_pack(self, ins: ir.Instr) -> ll.Value:
        shape = tuple(ins.attr("shape"))
        if not shape:
            return self.get(ins.args[0])
        n = math.prod(shape)
        if n != len(ins.args):
            raise LoweringError(f"pack of {len(ins.args)} values into shape {shape}")
        data, t = self.new_tensor([self.i64(d) for d in shape])
        for i, a in enumerate(ins.args):
            self.store_elem(self.get(a), data, self.i64(i))
        return t

    def op_const_tensor(self, ins: ir.Instr) -> ll.Value:
        shape = tuple(ins.attr("shape"))
        data, t = self.new_tensor([self.i64(d) for d in shape])
        self.memcpy(data, self.mc.data_global(ins.attr("data")), self.i64(math.prod(shape)))
        return t

    def op_fill(self, ins: ir.Instr) -> ll.Value:
        value = self.get(ins.args[0])
        if len(ins.args) == 1:
            return value
        dims = self.checked_dims([self.get(a) for a in ins.args[1:]], "fill")
        data, t = self.new_tensor(dims)
        self.loop(self.i64(0), self.numel(dims), lambda i, c: self.store_elem(value, data, i))
        return t

    def op_random(self, ins: ir.Instr) -> ll.Value:
        a, b = self.get(ins.args[0]), self.get(ins.args[1])
        if len(ins.args) == 2:
            return self._rand_scalar(ins.attr("kind"), a, b)
        kind = {"uniform": 1, "normal": 2}[ins.attr("kind")]
        dims = self.checked_dims([self.get(x) for x in ins.args[2:]], "random")
        n = self.numel(dims)
        data, t = self.new_tensor(dims)
        self.rt("noma_fill", data, n, self.i32(kind), a, b)
        return t

    def _rand_scalar(self, kind: str, a: ll.Value, b: ll.Value) -> ll.Value:
        if kind == "normal":
            return self.b.fadd(a, self.b.fmul(b, self.rt("noma_randn")))
        return self.b.fadd(a, self.b.fmul(self.b.fsub(b, a), self.rt("noma_rand")))

    def op_rand_scalar(self, ins: ir.Instr) -> ll.Value:
        return self._rand_scalar(ins.attr("kind"), self.get(ins.args[0]), self.get(ins.args[1]))

    def op_zeros_like(self, ins: ir.Instr) -> ll.Value:
        x, r = self.get(ins.args[0]), ins.args[0].rank
        if r == 0:
            return self.rconst(0.0)
        dims = self.dims(x, r)
        data, t = self.new_tensor(dims)
        self.memzero(data, self.numel(dims))
        return t

    # ------------------------------------------------------------------ reductions

    def op_reduce(self, ins: ir.Instr) -> ll.Value:
        kind = {Op.SUM: "sum", Op.MAX_R: "max", Op.MIN_R: "min"}[ins.op]
        x, r = self.get(ins.args[0]), ins.args[0].rank
        axis = ins.attr("axis")
        if r == 0:
            return x
        if axis is None:
            n = self.numel(self.dims(x, r))
            if kind != "sum":
                self.fail_if(self.b.icmp_unsigned("==", n, self.i64(0)), ERR_RUNTIME,
                             f"{kind} of an empty tensor")
            return self.reduce_all(self.data(x), n, kind)
        ax = axis + r if axis < 0 else axis
        if not 0 <= ax < r:
            raise LoweringError(f"{ins.op.value}: axis {axis} out of range for rank {r}")
        return self.reduce_axis(x, r, ax, kind, bool(ins.attr("keepdims")))

    def op_argmax(self, ins: ir.Instr) -> ll.Value:
        x, r = self.get(ins.args[0]), ins.args[0].rank
        if r == 0:
            return self.rconst(0.0)
        dims = self.dims(x, r)
        length = dims[-1]
        rows = self.numel(dims[:-1])
        self.fail_if(self.b.and_(self.b.icmp_unsigned("==", length, self.i64(0)),
                                 self.b.icmp_unsigned("!=", rows, self.i64(0))),
                     ERR_RUNTIME, "argmax of an empty axis")
        src = self.data(x)

        def row_argmax(row: ll.Value) -> ll.Value:
            base = self.b.mul(row, length)

            def step(k: ll.Value, c: list) -> list:
                v = self.load_elem(src, self.b.add(base, k))
                better = self.b.or_(self.b.fcmp_ordered(">", v, c[0]),
                                    self.b.and_(self.b.fcmp_unordered("uno", v, v),
                                                self.b.fcmp_ordered("ord", c[0], c[0])))
                return [self.b.select(better, v, c[0]), self.b.select(better, k, c[1])]
            _, best = self.loop(self.i64(1), length, step, [self.load_elem(src, base), self.i64(0)])
            return self.to_real(best)

        if r == 1:
            return row_argmax(self.i64(0))
        out, t = self.new_tensor(dims[:-1])
        self.loop(self.i64(0), rows, lambda i, c: self.store_elem(row_argmax(i), out, i))
        return t

    def op_sum_to(self, ins: ir.Instr) -> ll.Value:
        x, rx = self.get(ins.args[0]), ins.args[0].rank
        like, rl = self.get(ins.args[1]), ins.args[1].rank
        if rl == 0:
            if rx == 0:
                return x
            return self.reduce_all(self.data(x), self.numel(self.dims(x, rx)), "sum")
        rank = max(rx, rl)
        xd = [self.i64(1)] * (rank - rx) + (self.dims(x, rx) if rx else [])
        ld = [self.i64(1)] * (rank - rl) + self.dims(like, rl)
        bad: ll.Value = ll.Constant(I1, 0)
        same: ll.Value = ll.Constant(I1, int(rx == rl))
        for a, b in zip(xd, ld):
            eq = self.b.icmp_unsigned("==", a, b)
            bad = self.b.or_(bad, self.b.and_(self.b.not_(eq), self.b.icmp_unsigned("!=", b, self.i64(1))))
            same = self.b.and_(same, eq)
        self.fail_shape_if(bad, "sum_to", (x, rx), (like, rl))
        if rx == 0:
            return self._splat(x, self.dims(like, rl))

        def general() -> ll.Value:
            out_dims = self.dims(like, rl)
            data, t = self.new_tensor(out_dims)
            self.memzero(data, self.numel(out_dims))
            contig = [self.i64(1)] * rank
            for a in range(rank - 2, -1, -1):
                contig[a] = self.b.mul(contig[a + 1], ld[a + 1])
            strides = [[self.b.select(self.b.icmp_unsigned("==", ld[a], self.i64(1)), self.i64(0), contig[a])
                        for a in range(rank)]]
            src = self.data(x)

            def emit(p: list) -> None:  # p: src, out, x's dims, out's strides (a rarely run path: outlined)
                def body(offs: list, lin: ll.Value) -> None:
                    self.store_elem(self.b.fadd(self.load_elem(p[1], offs[0]), self.load_elem(p[0], lin)),
                                    p[1], offs[0])
                self.nest(p[2:2 + rank], [p[2 + rank:]], body)
            self.outline([src, data, *xd, *strides[0]], emit, min_size=0, key=("sum_to", rank))
            return t

        if rx > rl:
            # The common case (bias gradients): like's dims are the trailing dims of x, so the
            # sum runs over whole leading rows -- a contiguous, vectorizable inner loop. Rows are
            # added in the same order as by the general loop, so the result is identical.
            suffix = self.all_of([self.b.icmp_unsigned("==", a, b) for a, b in zip(xd[rank - rl:], ld[rank - rl:])])
            return self.choose(suffix, lambda: self.sum_rows(x, rx, like, rl), general)
        return self.choose(same, lambda: x, general)

    def _splat(self, value: ll.Value, dims: list) -> ll.Value:
        data, t = self.new_tensor(dims)
        self.loop(self.i64(0), self.numel(dims), lambda i, c: self.store_elem(value, data, i))
        return t

    def op_broadcast_to(self, ins: ir.Instr) -> ll.Value:
        x, rx = self.get(ins.args[0]), ins.args[0].rank
        like, rl = self.get(ins.args[1]), ins.args[1].rank
        if rl == 0:
            if rx == 0:
                return x
            n = self.numel(self.dims(x, rx))
            self.fail_shape_if(self.b.icmp_unsigned("!=", n, self.i64(1)), "broadcast_to", (x, rx), (like, 0))
            return self.load_elem(self.data(x), self.i64(0))
        ld = self.dims(like, rl)
        if rx == 0:
            return self._splat(x, ld)
        if rx > rl:
            self.rt("noma_fail_shape", self.span_c(), self.cstr("broadcast_to"), self.tensor_ptr(x),
                    self.tensor_ptr(like))
            return like
        xd = self.dims(x, rx)
        bad: ll.Value = ll.Constant(I1, 0)
        same: ll.Value = ll.Constant(I1, int(rx == rl))
        for a, b in zip(xd, ld[rl - rx:]):
            eq = self.b.icmp_unsigned("==", a, b)
            bad = self.b.or_(bad, self.b.and_(self.b.not_(eq), self.b.icmp_unsigned("!=", a, self.i64(1))))
            same = self.b.and_(same, eq)
        self.fail_shape_if(bad, "broadcast_to", (x, rx), (like, rl))

        def general() -> ll.Value:
            data, t = self.new_tensor(ld)
            strides = [self.broadcast_strides(x, rx, rl)]
            unit = self.b.icmp_unsigned("==", strides[0][rl - 1], self.i64(1))
            src = self.data(x)

            def emit(p: list) -> None:  # p: unit, out, dims, x's strides, src (outlined, see sum_to)
                self.nest(p[2:2 + rl], [p[2 + rl:2 + 2 * rl]],
                          lambda offs, lin: self.store_elem(self.load_elem(p[-1], offs[0]), p[1], lin),
                          inner_unit=p[0])
            self.outline([unit, data, *ld, *strides[0], src], emit, min_size=0, key=("broadcast_to", rl))
            return t

        if rx != rl:
            return general()
        return self.choose(same, lambda: x, general)

    # ------------------------------------------------------------------ linear algebra and shape

    def op_matmul(self, ins: ir.Instr) -> ll.Value:
        a, b = self.get(ins.args[0]), self.get(ins.args[1])
        ta, tb = bool(ins.attr("ta")), bool(ins.attr("tb"))
        a0, a1 = self.dims(a, 2)
        b0, b1 = self.dims(b, 2)
        m, k = (a1, a0) if ta else (a0, a1)
        k2, n = (b1, b0) if tb else (b0, b1)
        self.fail_shape_if(self.b.icmp_unsigned("!=", k, k2), "matmul", (a, 2), (b, 2))
        data, t = self.new_tensor([m, n])
        self.matmul_into(self.data(a), self.data(b), data, m, k, n, ta, tb)
        return t

    def op_transpose(self, ins: ir.Instr) -> ll.Value:
        x = self.get(ins.args[0])
        rows, cols = self.dims(x, 2)
        data, t = self.new_tensor([cols, rows])
        src = self.data(x)

        def outer(i: ll.Value, _c: list) -> None:
            base = self.b.mul(i, rows)
            self.loop(self.i64(0), rows, lambda j, c: self.store_elem(
                self.load_elem(src, self.b.add(self.b.mul(j, cols), i)), data, self.b.add(base, j)))
        self.loop(self.i64(0), cols, outer)
        return t

    def _reshape(self, x: ll.Value, rx: int, dims: list) -> ll.Value:
        """x viewed with `dims` (aliasing its data); element counts must match."""
        if rx == 0:
            data = self.alloc(self.i64(1))
            self.store_elem(x, data, self.i64(0))
            n_old: ll.Value = self.i64(1)
        else:
            data = self.data(x)
            n_old = self.numel(self.dims(x, rx))
        if not dims:
            self.fail_shape_if(self.b.icmp_unsigned("!=", n_old, self.i64(1)), "reshape",
                               (x, rx), (self.rconst(0.0), 0))
            return self.load_elem(data, self.i64(0))
        t = self.make_tensor(data, dims)
        self.fail_shape_if(self.b.icmp_unsigned("!=", n_old, self.numel(dims)), "reshape", (x, rx), (t, len(dims)))
        return t

    def op_reshape(self, ins: ir.Instr) -> ll.Value:
        dims = self.checked_dims([self.get(a) for a in ins.args[1:]], "reshape")
        return self._reshape(self.get(ins.args[0]), ins.args[0].rank, dims)

    def op_reshape_like(self, ins: ir.Instr) -> ll.Value:
        like, rl = self.get(ins.args[1]), ins.args[1].rank
        return self._reshape(self.get(ins.args[0]), ins.args[0].rank, self.dims(like, rl) if rl else [])

    def op_concat(self, ins: ir.Instr) -> ll.Value:
        a, b = self.get(ins.args[0]), self.get(ins.args[1])
        r = ins.args[0].rank
        if r == 0 or ins.args[1].rank != r:
            raise LoweringError("concat needs two tensors of the same rank")
        ad, bd = self.dims(a, r), self.dims(b, r)
        bad: ll.Value = ll.Constant(I1, 0)
        for x, y in zip(ad[1:], bd[1:]):
            bad = self.b.or_(bad, self.b.icmp_unsigned("!=", x, y))
        self.fail_shape_if(bad, "concat", (a, r), (b, r))
        row = self.numel(ad[1:])
        data, t = self.new_tensor([self.b.add(ad[0], bd[0])] + ad[1:])
        na = self.b.mul(ad[0], row)
        self.memcpy(data, self.data(a), na)
        self.memcpy(self.elem_ptr(data, na), self.data(b), self.b.mul(bd[0], row))
        return t

    def op_slice(self, ins: ir.Instr) -> ll.Value:
        x, r = self.get(ins.args[0]), ins.args[0].rank
        start, end = self.whole(self.get(ins.args[1])), self.whole(self.get(ins.args[2]))
        dims = self.dims(x, r)
        n = dims[0]
        self.fail_index_if(self.b.icmp_unsigned(">", start, n), start, n)
        self.fail_index_if(self.b.icmp_unsigned(">", end, n), end, n)
        self.fail_if(self.b.icmp_signed("<", end, start), ERR_SHAPE, "slice: end is before start")
        row = self.numel(dims[1:])
        data = self.elem_ptr(self.data(x), self.b.mul(start, row))
        return self.make_tensor(data, [self.b.sub(end, start)] + dims[1:])

    def op_slice_grad(self, ins: ir.Instr) -> ll.Value:
        g, rg = self.get(ins.args[0]), ins.args[0].rank
        like, rl = self.get(ins.args[1]), ins.args[1].rank
        start = self.whole(self.get(ins.args[2]))
        ld = self.dims(like, rl)
        data, t = self.new_tensor(ld)
        self.memzero(data, self.numel(ld))
        gd = self.dims(g, rg)
        row = self.numel(ld[1:])
        self.fail_shape_if(self.b.icmp_signed(">", self.b.add(start, gd[0]), ld[0]), "slice_grad",
                           (g, rg), (like, rl))
        self.memcpy(self.elem_ptr(data, self.b.mul(start, row)), self.data(g), self.numel(gd))
        return t

    def op_index(self, ins: ir.Instr) -> ll.Value:
        x, r = self.get(ins.args[0]), ins.args[0].rank
        i = self.whole(self.get(ins.args[1]))
        dims = self.dims(x, r)
        self.check_index(i, dims[0])
        if r == 1:
            return self.load_elem(self.data(x), i)
        row = self.numel(dims[1:])
        return self.make_tensor(self.elem_ptr(self.data(x), self.b.mul(i, row)), dims[1:])

    def op_index_grad(self, ins: ir.Instr) -> ll.Value:
        g, rg = self.get(ins.args[0]), ins.args[0].rank
        like, rl = self.get(ins.args[1]), ins.args[1].rank
        i = self.whole(self.get(ins.args[2]))
        ld = self.dims(like, rl)
        data, t = self.new_tensor(ld)
        self.memzero(data, self.numel(ld))
        self.check_index(i, ld[0])
        if rg == 0:
            self.store_elem(g, data, i)
        else:
            row = self.numel(ld[1:])
            self.memcpy(self.elem_ptr(data, self.b.mul(i, row)), self.data(g), row)
        return t

    def op_one_hot(self, ins: ir.Instr) -> ll.Value:
        idx, ri = self.get(ins.args[0]), ins.args[0].rank
        (n,) = self.checked_dims([self.get(ins.args[1])], "one_hot")
        one = self.rconst(1.0)
        if ri == 0:
            data, t = self.new_tensor([n])
            self.memzero(data, n)
            k = self.whole(idx)
            self.check_index(k, n)
            self.store_elem(one, data, k)
            return t
        rows = self.dim(idx, 0)
        data, t = self.new_tensor([rows, n])
        self.memzero(data, self.b.mul(rows, n))
        src = self.data(idx)

        def step(i: ll.Value, _c: list) -> None:
            k = self.whole(self.load_elem(src, i))
            self.check_index(k, n)
            self.store_elem(one, data, self.b.add(self.b.mul(i, n), k))
        self.loop(self.i64(0), rows, step)
        return t

    def op_dim(self, ins: ir.Instr) -> ll.Value:
        x, r = self.get(ins.args[0]), ins.args[0].rank
        axis = int(ins.attr("axis"))
        ax = axis + r if axis < 0 else axis
        if not 0 <= ax < r:
            self.rt("noma_fail", self.i32(ERR_SHAPE), self.span_c(),
                    self.cstr(f"axis {axis} is out of range for a value of rank {r}"))
            return self.rconst(0.0)
        return self.to_real(self.dim(x, ax))

    def op_shape(self, ins: ir.Instr) -> ll.Value:
        x, r = self.get(ins.args[0]), ins.args[0].rank
        data, t = self.new_tensor([self.i64(r)])
        for i in range(r):
            self.store_elem(self.to_real(self.dim(x, i)), data, self.i64(i))
        return t


    def op_cast(self, ins: ir.Instr) -> Optional[ll.Value]:
        """`x as i32|i64` checks every element first (NaN or a truncation out of the type's range is
        a runtime error at the cast; noma_check_int_cast words it), then truncates in its own loop
        (never fused: the check reads the operand whole). Other casts are plain elementwise ops."""
        to = ins.attr("to")
        if to not in ir.INT_RANGES:
            return self._elementwise(ins)
        x, r = self.get(ins.args[0]), ins.args[0].rank
        bits = self.i32(32 if to == "i32" else 64)
        if r == 0:
            lo, hi = ir.INT_RANGES[to]
            t = self.intr("llvm.trunc", x)
            ok = self.b.and_(self.b.fcmp_ordered(">=", t, self.rconst(lo)),
                             self.b.fcmp_ordered("<", t, self.rconst(hi)))
            with self._failing_when(self.b.not_(ok)):
                self.rt("noma_check_int_cast", self.any_ptr(x, 0), bits, self.span_c())
        else:
            self.rt("noma_check_int_cast", self.tensor_ptr(x), bits, self.span_c())
        return self._elementwise_tree(ins)

    def op_check(self, ins: ir.Instr) -> ll.Value:
        """CHECK: the scalar unchanged, or a runtime error at the op's span (ir.CHECK_RULES)."""
        x = self.get(ins.args[0])
        rule = ins.attr("rule")
        b = self.b
        if rule == "mean_count":
            with b.if_then(b.fcmp_ordered("==", x, self.rconst(0.0)), likely=False):
                self.rt("noma_warn_once", self.span_c(), self.cstr(ir.CHECK_RULES[rule]))
            return x
        if rule != "batch_size":
            raise LoweringError(f"unknown check rule {rule!r}")
        whole = b.fcmp_ordered("==", self.intr("llvm.floor", x), x)
        ok = b.and_(b.and_(whole, b.fcmp_ordered(">=", x, self.rconst(1.0))),
                    b.fcmp_ordered("<", x, self.rconst(math.inf)))
        with self._failing_when(b.not_(ok)):
            b.call(self.mc.runtime("noma_fail_check"), [self.cstr(ir.CHECK_RULES[rule]), x, self.span_c()])
        return x


_HANDLERS: dict[Op, Callable[[OpLowering, ir.Instr], Optional[ll.Value]]] = {
    Op.CAST: OpLowering.op_cast, Op.CHECK: OpLowering.op_check,
    Op.CONST: OpLowering.op_const, Op.PACK: OpLowering.op_pack, Op.FILL: OpLowering.op_fill,
    Op.CONST_TENSOR: OpLowering.op_const_tensor,
    Op.RANDOM: OpLowering.op_random, Op.RAND_SCALAR: OpLowering.op_rand_scalar,
    Op.SUM: OpLowering.op_reduce, Op.MAX_R: OpLowering.op_reduce, Op.MIN_R: OpLowering.op_reduce,
    Op.ARGMAX: OpLowering.op_argmax, Op.SUM_TO: OpLowering.op_sum_to,
    Op.BROADCAST_TO: OpLowering.op_broadcast_to, Op.MATMUL: OpLowering.op_matmul,
    Op.TRANSPOSE: OpLowering.op_transpose, Op.RESHAPE: OpLowering.op_reshape,
    Op.RESHAPE_LIKE: OpLowering.op_reshape_like, Op.CONCAT: OpLowering.op_concat,
    Op.SLICE: OpLowering.op_slice, Op.SLICE_GRAD: OpLowering.op_slice_grad,
    Op.INDEX: OpLowering.op_index, Op.INDEX_GRAD: OpLowering.op_index_grad,
    Op.ONE_HOT: OpLowering.op_one_hot, Op.DIM: OpLowering.op_dim, Op.SHAPE: OpLowering.op_shape,
    Op.ZEROS_LIKE: OpLowering.op_zeros_like,
    Op.PARAM_LOAD: OpLowering.op_param_load, Op.PARAM_SET: OpLowering.op_param_set,
    Op.PARAM_FREE: OpLowering.op_param_free, Op.PARAM_BIND_DIM: OpLowering.op_param_bind_dim,
    Op.PARAM_RESIZE: OpLowering.op_param_resize, Op.DIM_LOAD: OpLowering.op_dim_load,
    Op.DIM_SET: OpLowering.op_dim_set, Op.DIM_RESIZE: OpLowering.op_dim_resize,
    Op.GLOBAL_LOAD: OpLowering.op_global_load, Op.GLOBAL_STORE: OpLowering.op_global_store,
    Op.SEED: OpLowering.op_seed, Op.PRINT: OpLowering.op_print, Op.REPORT: OpLowering.op_report,
    Op.LOAD_CSV: OpLowering.op_load_csv,
    Op.SAVE_CSV: OpLowering.op_save_csv, Op.LOAD_ST: OpLowering.op_load_st,
    Op.SAVE_ST: OpLowering.op_save_st, Op.LOAD_ST_GLOBALS: OpLowering.op_load_st_globals,
    Op.OPT_RESET: OpLowering.op_opt_reset,
    Op.SAVE_CKPT: OpLowering.op_save_ckpt, Op.LOAD_CKPT: OpLowering.op_load_ckpt,
    Op.CALL: OpLowering.op_call, Op.TAPE_PUSH: OpLowering.op_tape_push,
    Op.TAPE_POP: OpLowering.op_tape_pop,
}
_HANDLERS.update(lower_llvm_conv.HANDLERS)
