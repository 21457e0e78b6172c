"""The elementwise and reduction kernels of the LLVM lowering.

Owns: the broadcasting elementwise kernel (a flat contiguous fast path when every operand has the
result's dims; operands of lower rank broadcast along leading axes (biases) in the same flat
vector loop when their counts allow (vector.py), else expanded to the result's shape by
the runtime (noma_expand) and read by that same loop; operands of one rank that broadcast against
each other run a strided loop nest with stride 0 on broadcast axes), the inline broadcast shape
checks (a mismatch calls one cold helper per pair of ranks), the full and per-axis reductions
(whole-tensor sums in 32 lanes with a fixed combining order), and outlined kernels: a loop big
enough to matter for compile time becomes a function `noma.k.<hash of its text>` (noinline;
defined once per module, and declared instead of compiled again when an earlier module of the
session's JIT defines it), so the same loop is optimised and code-generated once per session.
Small loops stay inline (a call would cost more run time than it saves compile time).
Owns `Kernels` and the reductions' table REDUCTIONS (Op -> identity, combining intrinsic, word).
Input: a toolkit.Toolkit and a vector.VectorLoops. Output: llvmlite.ir values.
Imports: llvmlite.ir, ir (Op), basics, toolkit, vector.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, NamedTuple, Optional, Sequence

from llvmlite import ir as ll

from noma.compiler.llvm.basics import ERR_RUNTIME, I32, I64, PTR, VOID, descriptor
from noma.compiler.llvm.toolkit import Toolkit
from noma.compiler.llvm.vector import LONG_MATH_OPS, SCALAR_ONLY_OPS, VectorLoops
from noma.compiler.middle.ir import Op

#: Loops of fewer LLVM instructions than this stay inline. Measured on the notebooks and the
#: step-time workloads: outlining the small flat loops (a plain add or multiply: 12-18
#: instructions) slowed the XOR step (batch 4) by ~12% for little compile time; strided loop
#: nests (60+) and flat loops with exp/tanh (50+) are outlined, which left step times unchanged.
OUTLINE_MIN_INSTRUCTIONS = 45

#: The scalar function an elementwise loop applies: operand elements (or vectors) -> result.
ScalarFn = Callable[[list[ll.Value]], ll.Value]


class Reduction(NamedTuple):
    """How a reduction op combines elements."""

    init: float               # its identity (the value of an empty sum)
    combine: Optional[str]    # the intrinsic combining two values (None: fadd)
    word: str                 # its name in messages


#: The reduction ops (SUM, MAX_R, MIN_R), for reduce_all and reduce_axis.
REDUCTIONS: dict[Op, Reduction] = {
    Op.SUM: Reduction(0.0, None, "sum"),
    Op.MAX_R: Reduction(float("-inf"), "llvm.maximum", "max"),
    Op.MIN_R: Reduction(float("inf"), "llvm.minimum", "min"),
}

#: (key, kernel type, dtype, min size) -> (inline?, kernel name) of outline calls made with a key.
_OUTLINED: dict[Any, tuple[bool, str]] = {}


class Kernels:
    """Emits elementwise and reduction loops and outlined kernels through the toolkit `tk`
    (vector loops through `vec`)."""

    def __init__(self, tk: Toolkit, vec: VectorLoops):
        self.tk = tk
        self.vec = vec

    # ------------------------------------------------------------------ elementwise kernel

    def elementwise(self, operands: Sequence[tuple[ll.Value, int]],
                    fn: Callable[[list[ll.Value]], ll.Value],
                    plan: Sequence[tuple[Op, int, Sequence[int]]], key: Any = None) -> ll.Value:
        """Apply scalar `fn` to the (value, rank) `operands` elementwise with NumPy broadcasting;
        rank-0 operands are splatted.

        `plan` orders the shape checks, one step per (possibly fused) op, post-order:
        (op, span, refs) where a ref k >= 0 is operand k and k < 0 the result of step -1-k.
        The result has the shape of the last step. When every tensor operand has the same dims
        (checked at run time) the checks are skipped and one flat loop runs. `key` (hashable):
        what determines fn's code, so the loops' kernels are named without building them again
        (see outline).
        """
        tk = self.tk
        tensors = [k for k, (_, r) in enumerate(operands) if r > 0]
        if not tensors:
            return fn([v for v, _ in operands])
        rank = max(r for _, r in operands)
        datas = {k: tk.data(operands[k][0]) for k in tensors}

        vec = not any(op in SCALAR_ONLY_OPS for op, _, _ in plan)
        one_body = any(op in LONG_MATH_OPS for op, _, _ in plan)

        def flat(n: ll.Value, out: ll.Value) -> None:
            def emit(p: list[ll.Value]) -> None:  # p: n, out, then one per operand
                if vec:
                    kinds = [(p[2 + k], "c" if k in datas else "s", None) for k in range(len(operands))]
                    self.vec.vec_elementwise(p[0], p[1], kinds, fn, one_body)
                    return

                def step(i: ll.Value, _c: list) -> None:
                    xs = [tk.load_elem(p[2 + k], i) if k in datas else p[2 + k] for k in range(len(operands))]
                    tk.store_elem(fn(xs), p[1], i)
                tk.loop(tk.i64(0), p[0], step)
            self.outline([n, out] + [datas.get(k, v) for k, (v, _) in enumerate(operands)], emit,
                         key=key and ("flat", key, one_body))

        def broadcast(dims: list[ll.Value], out: ll.Value) -> None:
            if vec:
                self._broadcast_vec(operands, tensors, datas, dims, out, fn, key, one_body)
            else:
                self._strided(operands, tensors, datas, dims, out, fn, key)

        if len(tensors) == 1:
            k = tensors[0]
            dims = tk.dims(operands[k][0], rank)
            out, t = tk.new_tensor(dims)
            flat(tk.numel(dims), out)
            return t
        if all(operands[k][1] == rank for k in tensors):
            # Run-time check: every tensor operand has exactly the same dims -> flat loop.
            first = tk.dims(operands[tensors[0]][0], rank)
            eq = tk.all_of([tk.b.icmp_unsigned("==", d0, dk) for k in tensors[1:]
                            for d0, dk in zip(first, tk.dims(operands[k][0], rank))])
            fast_bb = tk.b.block
            with tk.b.if_then(tk.b.not_(eq), likely=False):
                slow_dims = self._broadcast_plan(operands, plan, rank)
                slow_bb = tk.b.block
            dims = [tk.join(d_fast, fast_bb, d_slow, slow_bb, I64) for d_fast, d_slow in zip(first, slow_dims)]
            out, t = tk.new_tensor(dims)
            # operands of one rank broadcast against each other ([m, k] with [m, 1] in a softmax):
            # the strided nest (expanding the column first, as for mixed ranks, slowed W3 by 9%)
            with tk.b.if_else(eq) as (then, other):
                with then:
                    flat(tk.numel(dims), out)
                with other:  # operands of one rank broadcast against each other: rare
                    self._strided(operands, tensors, datas, dims, out, fn, key)
            return t
        dims = self._broadcast_plan(operands, plan, rank)
        out, t = tk.new_tensor(dims)
        broadcast(dims, out)
        return t

    def _broadcast_plan(self, operands: Sequence[tuple[ll.Value, int]],
                        plan: Sequence[tuple[Op, int, Sequence[int]]], rank: int) -> list[ll.Value]:
        """Run the plan's broadcasting checks (NumPy rules, inline); the dims of the last step's
        shape. A mismatch calls noma_broadcast_dims on the two shapes, which fails with its
        message naming both."""
        shapes: list[Optional[list[ll.Value]]] = []  # per step: dims (None: scalar)
        for op, span, refs in plan:
            dims_list = []
            for ref in refs:
                if ref >= 0:
                    if operands[ref][1] > 0:
                        dims_list.append(self.tk.dims(operands[ref][0], operands[ref][1]))
                else:
                    step = shapes[-1 - ref]
                    if step is not None:
                        dims_list.append(step)
            if len(dims_list) <= 1:
                shapes.append(dims_list[0] if dims_list else None)
                continue
            out = dims_list[0]
            for extra in dims_list[1:]:
                out = self._broadcast_pair(out, extra, span, op)
            shapes.append(out)
        final = shapes[-1]
        assert final is not None and len(final) == rank
        return final

    def _broadcast_pair(self, a: list[ll.Value], c: list[ll.Value], span: int, op: Op) -> list[ll.Value]:
        tk = self.tk
        b = tk.b
        r = max(len(a), len(c))
        one = tk.i64(1)
        a1 = [one] * (r - len(a)) + a
        c1 = [one] * (r - len(c)) + c
        bad: Optional[ll.Value] = None
        out = []
        for x, y in zip(a1, c1):
            if x is one or y is one:  # an axis the shorter shape lacks: it takes the other's size
                out.append(y if x is one else x)
                continue
            x_one = b.icmp_unsigned("==", x, one)
            differ = b.and_(b.icmp_unsigned("!=", x, y), b.not_(b.or_(x_one, b.icmp_unsigned("==", y, one))))
            bad = differ if bad is None else b.or_(bad, differ)
            out.append(b.select(x_one, y, x))
        if bad is None:
            return out
        with b.if_then(bad, likely=False):
            b.call(self._broadcast_failure(len(a), len(c)), [tk.i64(span), tk.cstr(op.value), *a, *c])
        return out

    def _broadcast_failure(self, ra: int, rc: int) -> ll.Function:
        """`void (i64 span, ptr op, i64 dims of a..., i64 dims of c...)`: calls noma_broadcast_dims
        on two shapes that do not broadcast (it fails naming both). One cold function per pair of
        ranks and module, so a call site of a broadcasting op is one call, not two descriptors."""
        tk = self.tk
        name = f"noma.fail.broadcast.{ra}.{rc}"
        fn = tk.mc.module.globals.get(name)
        if fn is not None:
            return fn
        fn = ll.Function(tk.mc.module, ll.FunctionType(VOID, [I64, PTR] + [I64] * (ra + rc)), name)
        fn.linkage = "internal"
        for attr in ("cold", "noinline", "nounwind"):
            fn.attributes.add(attr)
        b = ll.IRBuilder(fn.append_basic_block("entry"))
        slots = [b.alloca(tk.T) for _ in range(3)]

        dims, null = list(fn.args[2:]), ll.Constant(PTR, None)
        b.store(descriptor(b, tk.T, null, dims[:ra]), slots[0])
        b.store(descriptor(b, tk.T, null, dims[ra:]), slots[1])
        b.call(tk.mc.runtime("noma_broadcast_dims"), [fn.args[0], fn.args[1], *slots])
        b.ret_void()
        return fn

    def broadcast_strides(self, t: ll.Value, rank: int, out_rank: int) -> list[Optional[ll.Value]]:
        """Per result axis: the element stride of `t` (0 on broadcast axes)."""
        return self.strides_of_dims(self.tk.dims(t, rank), out_rank)

    def strides_of_dims(self, dims: Sequence[ll.Value], out_rank: int) -> list[ll.Value]:
        """Per result axis: the element stride of a contiguous tensor of `dims` broadcast to
        `out_rank` axes (0 on leading and size-1 axes)."""
        tk = self.tk
        rank = len(dims)
        contig: list[ll.Value] = [tk.i64(1)] * rank
        for a in range(rank - 2, -1, -1):
            contig[a] = tk.b.mul(contig[a + 1], dims[a + 1])
        out: list[ll.Value] = []
        off = out_rank - rank
        for j in range(out_rank):
            if j < off:
                out.append(tk.i64(0))
            else:
                a = j - off
                one = tk.b.icmp_unsigned("==", dims[a], tk.i64(1))
                out.append(tk.b.select(one, tk.i64(0), contig[a]))
        return out

    def _broadcast_vec(self, operands: Sequence[tuple[ll.Value, int]], tensors: list[int],
                       datas: dict[int, ll.Value], dims: list[ll.Value], out: ll.Value, fn: ScalarFn,
                       key: Any, one_body: bool = False) -> None:
        """The vector loop over all elements, reading each tensor operand broadcast along leading
        axes with a count it can read (VectorLoops); an operand that is broadcast otherwise (rare)
        is first expanded to the result's dims (count = all elements), so fn is emitted once."""
        tk = self.tk
        n = tk.numel(dims)
        conds = []
        counts = {}
        for k in tensors:
            trail, nb = self.vec.trailing_count(operands[k][0], operands[k][1], dims)
            conds += [trail, self.vec.vector_count_ok(nb, n)]
            counts[k] = nb
        ok = tk.all_of(conds)
        srcs, nbs = dict(datas), dict(counts)
        if not isinstance(ok, ll.Constant):  # some operand may need expanding
            fast_bb = tk.b.block
            with tk.b.if_then(tk.b.not_(ok), likely=False):
                expanded = {k: self._expand(operands[k][0], operands[k][1], dims) for k in tensors}
                slow_bb = tk.b.block
            for k in tensors:
                srcs[k] = tk.join(datas[k], fast_bb, expanded[k], slow_bb, PTR)
                nbs[k] = tk.join(counts[k], fast_bb, n, slow_bb, I64)

        def emit(p: list[ll.Value]) -> None:  # p: n, out, one per operand, nb per tensor
            p_nbs = dict(zip(tensors, p[2 + len(operands):]))
            kinds = [(p[2 + k], "w" if k in datas else "s", p_nbs.get(k)) for k in range(len(operands))]
            self.vec.vec_elementwise(p[0], p[1], kinds, fn, one_body)
        args = [n, out] + [srcs.get(k, v) for k, (v, _) in enumerate(operands)]
        self.outline(args + [nbs[k] for k in tensors], emit, key=key and ("vector", key, one_body))

    def _expand(self, t: ll.Value, rank: int, dims: Sequence[ll.Value]) -> ll.Value:
        """The data of tensor t broadcast to `dims` (NumPy rules, checked before), copied into a
        fresh contiguous arena buffer by the runtime (noma_expand: nothing to compile)."""
        tk = self.tk
        data, out = tk.new_tensor(dims)
        tk.rt("noma_expand", tk.tensor_ptr(out), tk.tensor_ptr(t))
        return data

    def _strided(self, operands: Sequence[tuple[ll.Value, int]], tensors: list[int],
                 datas: dict[int, ll.Value], dims: list[ll.Value], out: ll.Value, fn: ScalarFn,
                 key: Any = None) -> None:
        """The general broadcasting loop nest (stride 0 on broadcast axes). The kernel takes the
        result's and the operands' dims and derives the strides itself, so a call site (one per
        elementwise op, rarely run) stays a single call."""
        tk = self.tk
        rank = len(dims)
        ranks = [operands[k][1] for k in tensors]
        own_dims = [tk.dims(operands[k][0], r) for k, r in zip(tensors, ranks)]

        def emit(p: list[ll.Value]) -> None:  # p: rank, out, result dims, dims per tensor, operands
            at = 2 + rank
            strides = []
            for r in ranks:
                strides.append(self.strides_of_dims(p[at:at + r], rank))
                at += r
            ops = p[at:]
            unit = tk.all_of([tk.b.icmp_unsigned("==", st[rank - 1], tk.i64(1)) for st in strides])

            def body(offs: list[ll.Value], lin: ll.Value) -> None:
                xs = [tk.load_elem(ops[k], offs[tensors.index(k)]) if k in datas else ops[k]
                      for k in range(len(operands))]
                tk.store_elem(fn(xs), p[1], lin)

            tk.nest(p[2:2 + rank], strides, body, inner_unit=unit)

        args = [tk.i64(rank), out, *dims, *[d for ds in own_dims for d in ds]]
        self.outline(args + [datas.get(k, v) for k, (v, _) in enumerate(operands)], emit,
                     key=key and ("strided", key, rank, tuple(ranks)))

    # ------------------------------------------------------------------ outlined kernels

    def outline(self, args: Sequence[ll.Value], emit: Callable[[list[ll.Value]], None],
                min_size: int = OUTLINE_MIN_INSTRUCTIONS, key: Any = None) -> None:
        """Run the loop that `emit(params)` builds from its parameters on `args`: as a call of an
        outlined kernel (see the module docstring), or inline when it is small. params[1] must
        be the output buffer (a fresh allocation: noalias, so no run-time overlap checks).
        `key`: hashable, what (with the argument types and the dtype) determines the kernel's
        text; its name and size are then remembered by the process (building and printing a
        kernel to hash it was a third of a training cell's lowering)."""
        tk = self.tk
        fnty = ll.FunctionType(VOID, [a.type for a in args])
        memo_key = None if key is None else (key, str(fnty), tk.mc.dtype, min_size)
        known = _OUTLINED.get(memo_key) if memo_key is not None else None
        if known is None:
            probe = self._kernel(ll.Module(context=tk.mc.module.context), fnty, "k", emit)
            small = sum(len(bb.instructions) for bb in probe.basic_blocks) < min_size
            known = (small, "" if small else "noma.k." + hashlib.sha256(str(probe).encode()).hexdigest()[:24])
            if memo_key is not None:
                _OUTLINED[memo_key] = known
        small, name = known
        if small:
            emit(list(args))
            return
        kernel = tk.mc.module.globals.get(name)
        if kernel is None:
            kernel = (ll.Function(tk.mc.module, fnty, name) if tk.mc.shared(name)
                      else self._kernel(tk.mc.module, fnty, name, emit))
        tk.b.call(kernel, list(args))

    def _kernel(self, module: ll.Module, fnty: ll.FunctionType, name: str,
                emit: Callable[[list[ll.Value]], None]) -> ll.Function:
        tk = self.tk
        kernel = ll.Function(module, fnty, name)
        kernel.attributes.add("noinline")
        kernel.attributes.add("nounwind")
        kernel.args[1].add_attribute("noalias")
        with tk.emitting_into(kernel):
            emit(list(kernel.args))
            tk.b.ret_void()
        return kernel

    # ------------------------------------------------------------------ reductions

    def reduce_all(self, data: ll.Value, n: ll.Value, kind: Op) -> ll.Value:
        """Sum / max / min of n contiguous elements, deterministic on every CPU: W lanes
        (independent vector accumulators) in a fixed order, the lanes combined by a fixed
        halving tree, then the scalar tail."""
        tk = self.tk
        width = 32 if tk.mc.dtype == "f64" else 64
        vt = ll.VectorType(tk.real, width)
        init, comb, _ = REDUCTIONS[kind]

        def op(a: ll.Value, x: ll.Value) -> ll.Value:
            return tk.b.fadd(a, x) if comb is None else tk.intr(comb, a, x)

        nblocks = tk.b.lshr(n, tk.i64(width.bit_length() - 1))

        def vec_step(blk: ll.Value, c: list) -> list:
            p = tk.elem_ptr(data, tk.b.mul(blk, tk.i64(width)))
            v = tk.b.load(p, typ=vt, align=tk.mc.elem_size)
            return [op(c[0], v)]

        (acc,) = tk.loop(tk.i64(0), nblocks, vec_step, [ll.Constant(vt, [init] * width)])
        w = width
        while w > 1:
            half = w // 2
            lo = tk.b.shuffle_vector(acc, acc, ll.Constant(ll.VectorType(I32, half), list(range(half))))
            hi = tk.b.shuffle_vector(acc, acc, ll.Constant(ll.VectorType(I32, half), list(range(half, w))))
            acc = op(lo, hi)
            w = half
        total = tk.b.extract_element(acc, tk.i32(0))
        tail_start = tk.b.mul(nblocks, tk.i64(width))
        (tail,) = tk.loop(tail_start, n, lambda i, c: [op(c[0], tk.load_elem(data, i))], [total])
        return tail

    def sum_rows(self, x: ll.Value, rx: int, like: ll.Value, rl: int) -> ll.Value:
        """out[j] = sum over r of x[r, j] with x viewed as [rows, numel(like)], added in row
        order from +0. The first row is added to +0 in the loop that writes out (no separate
        zeroing: a memset call cost more than a bias gradient's whole sum)."""
        tk = self.tk
        out_dims = tk.dims(like, rl)
        inner = tk.numel(out_dims)
        rows = tk.numel(tk.dims(x, rx)[:rx - rl])
        data, t = tk.new_tensor(out_dims)
        src = tk.data(x)
        zero = tk.rconst(0.0)
        with tk.b.if_else(tk.b.icmp_unsigned("==", rows, tk.i64(0)), likely=False) as (empty, some):
            with empty:
                tk.memzero(data, inner)
            with some:
                tk.loop(tk.i64(0), inner, lambda j, c: tk.store_elem(
                    tk.b.fadd(zero, tk.load_elem(src, j)), data, j))

        def row(r: ll.Value, _c: list) -> None:
            base = tk.elem_ptr(src, tk.b.mul(r, inner))

            def col(j: ll.Value, _c2: list) -> None:
                tk.store_elem(tk.b.fadd(tk.load_elem(data, j), tk.load_elem(base, j)), data, j)
            tk.loop(tk.i64(0), inner, col)
        tk.loop(tk.i64(1), rows, row)
        return t

    def reduce_axis(self, x: ll.Value, rank: int, axis: int, kind: Op, keepdims: bool) -> ll.Value:
        """Reduce along `axis` of a rank-`rank` tensor: [outer, len, inner] -> [outer, inner]."""
        tk = self.tk
        dims = tk.dims(x, rank)
        outer = tk.numel(dims[:axis])
        length = dims[axis]
        inner = tk.numel(dims[axis + 1:])
        out_dims = dims[:axis] + ([tk.i64(1)] if keepdims else []) + dims[axis + 1:]
        out, t = tk.new_tensor(out_dims)
        red = REDUCTIONS[kind]
        init = tk.rconst(red.init)
        if red.combine is not None:
            tk.fail_if(tk.b.and_(tk.b.icmp_unsigned("==", length, tk.i64(0)),
                                 tk.b.icmp_unsigned("!=", tk.b.mul(outer, inner), tk.i64(0))),
                       ERR_RUNTIME, f"{red.word} over an empty axis")
        total = tk.b.mul(outer, inner)

        def emit(p: list[ll.Value]) -> None:  # p: total, out, src, outer, length, inner
            total, out, src, outer, length, inner = p
            tk.loop(tk.i64(0), total, lambda i, c: tk.store_elem(init, out, i))

            def per_outer(o: ll.Value, _c: list) -> None:
                obase = tk.b.mul(o, inner)

                def per_k(k: ll.Value, _c2: list) -> None:
                    ibase = tk.b.mul(tk.b.add(tk.b.mul(o, length), k), inner)

                    def per_i(i: ll.Value, _c3: list) -> None:
                        oi = tk.b.add(obase, i)
                        acc = tk.load_elem(out, oi)
                        v = tk.load_elem(src, tk.b.add(ibase, i))
                        if red.combine is None:
                            r = tk.b.fadd(acc, v)
                        else:
                            r = tk.intr(red.combine, acc, v)
                        tk.store_elem(r, out, oi)
                    tk.loop(tk.i64(0), inner, per_i)
                tk.loop(tk.i64(0), length, per_k)
            tk.loop(tk.i64(0), outer, per_outer)
        # one kernel per kind and dtype for every shape: the nest is compiled once per session
        self.outline([total, out, tk.data(x), outer, length, inner], emit, min_size=0,
                     key=("reduce_axis", kind))
        return t
