"""The elementwise and reduction kernels of the LLVM lowering.

Owns: the broadcasting elementwise kernel (a flat contiguous fast path when every operand has the
result's dims; operands of lower rank broadcast along leading axes (biases) in the same flat
vector loop when their counts allow (lower_llvm_vector), else expanded to the result's shape by
the runtime (noma_expand) and read by that same loop; operands of one rank that broadcast against
each other run a strided loop nest with stride 0 on broadcast axes), the inline broadcast shape
checks (a mismatch calls one cold helper per pair of ranks), the full and per-axis reductions
(whole-tensor sums in 32 lanes with a fixed combining order), and outlined kernels: a loop big
enough to matter for compile time becomes a function `noma.k.<hash of its text>` (noinline;
defined once per module, and declared instead of compiled again when an earlier module of the
session's JIT defines it), so the same loop is optimised and code-generated once per session.
Small loops stay inline (a call would cost more run time than it saves compile time).
Input: used as a mixin of lower_llvm_loops.Emitter (it relies on the emitter's builder, loops and
descriptor helpers). Output: llvmlite.ir values.
Imports: llvmlite.ir, lower_llvm_types, lower_llvm_vector (part of the lower_llvm* component).
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Optional, Sequence

from llvmlite import ir as ll

from noma.compiler.llvm.lower_llvm_types import ERR_RUNTIME, I32, I64, PTR, VOID, descriptor
from noma.compiler.llvm.lower_llvm_vector import LONG_MATH_OPS, SCALAR_ONLY_OPS

#: Loops of fewer LLVM instructions than this stay inline. Measured on the notebooks and the
#: step-time workloads: outlining the small flat loops (a plain add or multiply: 12-18
#: instructions) slowed the XOR step (batch 4) by ~12% for little compile time; strided loop
#: nests (60+) and flat loops with exp/tanh (50+) are outlined, which left step times unchanged.
OUTLINE_MIN_INSTRUCTIONS = 45

#: (key, kernel type, dtype, min size) -> (inline?, kernel name) of outline calls made with a key.
_OUTLINED: dict[Any, tuple[bool, str]] = {}


class Kernels:
    """Emitter methods that generate elementwise and reduction loops."""

    b: Any
    real: Any
    fn: Any
    mc: Any

    # ------------------------------------------------------------------ elementwise kernel

    def elementwise(self, operands: Sequence[tuple[ll.Value, int]],
                    fn: Callable[[list[ll.Value]], ll.Value],
                    plan: Sequence[tuple[str, int, Sequence[int]]], key: Any = None) -> ll.Value:
        """Apply scalar `fn` to the (value, rank) `operands` elementwise with NumPy broadcasting;
        rank-0 operands are splatted.

        `plan` orders the shape checks, one step per (possibly fused) op, post-order:
        (op name, span, refs) where a ref k >= 0 is operand k and k < 0 the result of step -1-k.
        The result has the shape of the last step. When every tensor operand has the same dims
        (checked at run time) the checks are skipped and one flat loop runs. `key` (hashable):
        what determines fn's code, so the loops' kernels are named without building them again
        (see outline).
        """
        tensors = [k for k, (_, r) in enumerate(operands) if r > 0]
        if not tensors:
            return fn([v for v, _ in operands])
        rank = max(r for _, r in operands)
        datas = {k: self.data(operands[k][0]) for k in tensors}

        vec = not any(name in SCALAR_ONLY_OPS for name, _, _ in plan)
        one_body = any(name in LONG_MATH_OPS for name, _, _ in plan)

        def flat(n: ll.Value, out: ll.Value) -> None:
            def emit(p: list[ll.Value]) -> None:  # p: n, out, then one per operand
                if vec:
                    kinds = [(p[2 + k], "c" if k in datas else "s", None) for k in range(len(operands))]
                    self.vec_elementwise(p[0], p[1], kinds, fn, one_body)
                    return

                def step(i: ll.Value, _c: list) -> None:
                    xs = [self.load_elem(p[2 + k], i) if k in datas else p[2 + k] for k in range(len(operands))]
                    self.store_elem(fn(xs), p[1], i)
                self.loop(self.i64(0), p[0], step)
            self.outline([n, out] + [datas.get(k, v) for k, (v, _) in enumerate(operands)], emit,
                         key=key and ("flat", key, one_body))

        def broadcast(dims: list[ll.Value], out: ll.Value) -> None:
            if vec:
                self._broadcast_vec(operands, tensors, datas, dims, out, fn, key, one_body)
            else:
                self._strided(operands, tensors, datas, dims, out, fn, key)

        if len(tensors) == 1:
            k = tensors[0]
            dims = self.dims(operands[k][0], rank)
            out, t = self.new_tensor(dims)
            flat(self.numel(dims), out)
            return t
        if all(operands[k][1] == rank for k in tensors):
            # Run-time check: every tensor operand has exactly the same dims -> flat loop.
            first = self.dims(operands[tensors[0]][0], rank)
            eq = self.all_of([self.b.icmp_unsigned("==", d0, dk) for k in tensors[1:]
                              for d0, dk in zip(first, self.dims(operands[k][0], rank))])
            fast_bb = self.b.block
            with self.b.if_then(self.b.not_(eq), likely=False):
                slow_dims = self._broadcast_plan(operands, plan, rank)
                slow_bb = self.b.block
            dims = [self._join(d_fast, fast_bb, d_slow, slow_bb, I64) for d_fast, d_slow in zip(first, slow_dims)]
            out, t = self.new_tensor(dims)
            # operands of one rank broadcast against each other ([m, k] with [m, 1] in a softmax):
            # the strided nest (expanding the column first, as for mixed ranks, slowed W3 by 9%)
            with self.b.if_else(eq) as (then, other):
                with then:
                    flat(self.numel(dims), out)
                with other:  # operands of one rank broadcast against each other: rare
                    self._strided(operands, tensors, datas, dims, out, fn, key)
            return t
        dims = self._broadcast_plan(operands, plan, rank)
        out, t = self.new_tensor(dims)
        broadcast(dims, out)
        return t

    def _broadcast_plan(self, operands: Sequence[tuple[ll.Value, int]],
                        plan: Sequence[tuple[str, int, Sequence[int]]], rank: int) -> list[ll.Value]:
        """Run the plan's broadcasting checks (NumPy rules, inline); the dims of the last step's
        shape. A mismatch calls noma_broadcast_dims on the two shapes, which fails with its
        message naming both."""
        shapes: list[Optional[list[ll.Value]]] = []  # per step: dims (None: scalar)
        for opname, span, refs in plan:
            dims_list = []
            for ref in refs:
                if ref >= 0:
                    if operands[ref][1] > 0:
                        dims_list.append(self.dims(operands[ref][0], operands[ref][1]))
                elif shapes[-1 - ref] is not None:
                    dims_list.append(shapes[-1 - ref])
            if len(dims_list) <= 1:
                shapes.append(dims_list[0] if dims_list else None)
                continue
            out = dims_list[0]
            for extra in dims_list[1:]:
                out = self._broadcast_pair(out, extra, span, opname)
            shapes.append(out)
        final = shapes[-1]
        assert final is not None and len(final) == rank
        return final

    def _broadcast_pair(self, a: list[ll.Value], c: list[ll.Value], span: int, opname: str) -> list[ll.Value]:
        b = self.b
        r = max(len(a), len(c))
        one = self.i64(1)
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
            b.call(self._broadcast_failure(len(a), len(c)), [self.i64(span), self.cstr(opname), *a, *c])
        return out

    def _broadcast_failure(self, ra: int, rc: int) -> ll.Function:
        """`void (i64 span, ptr op, i64 dims of a..., i64 dims of c...)`: calls noma_broadcast_dims
        on two shapes that do not broadcast (it fails naming both). One cold function per pair of
        ranks and module, so a call site of a broadcasting op is one call, not two descriptors."""
        name = f"noma.fail.broadcast.{ra}.{rc}"
        fn = self.mc.module.globals.get(name)
        if fn is not None:
            return fn
        fn = ll.Function(self.mc.module, ll.FunctionType(VOID, [I64, PTR] + [I64] * (ra + rc)), name)
        fn.linkage = "internal"
        for attr in ("cold", "noinline", "nounwind"):
            fn.attributes.add(attr)
        b = ll.IRBuilder(fn.append_basic_block("entry"))
        slots = [b.alloca(self.T) for _ in range(3)]

        dims, null = list(fn.args[2:]), ll.Constant(PTR, None)
        b.store(descriptor(b, self.T, null, dims[:ra]), slots[0])
        b.store(descriptor(b, self.T, null, dims[ra:]), slots[1])
        b.call(self.mc.runtime("noma_broadcast_dims"), [fn.args[0], fn.args[1], *slots])
        b.ret_void()
        return fn

    def broadcast_strides(self, t: ll.Value, rank: int, out_rank: int) -> list[Optional[ll.Value]]:
        """Per result axis: the element stride of `t` (0 on broadcast axes)."""
        return self.strides_of_dims(self.dims(t, rank), out_rank)

    def strides_of_dims(self, dims: Sequence[ll.Value], out_rank: int) -> list[ll.Value]:
        """Per result axis: the element stride of a contiguous tensor of `dims` broadcast to
        `out_rank` axes (0 on leading and size-1 axes)."""
        rank = len(dims)
        contig: list[ll.Value] = [self.i64(1)] * rank
        for a in range(rank - 2, -1, -1):
            contig[a] = self.b.mul(contig[a + 1], dims[a + 1])
        out: list[ll.Value] = []
        off = out_rank - rank
        for j in range(out_rank):
            if j < off:
                out.append(self.i64(0))
            else:
                a = j - off
                one = self.b.icmp_unsigned("==", dims[a], self.i64(1))
                out.append(self.b.select(one, self.i64(0), contig[a]))
        return out

    def _broadcast_vec(self, operands, tensors, datas, dims, out, fn, key, one_body: bool = False) -> None:
        """The vector loop over all elements, reading each tensor operand broadcast along leading
        axes with a count it can read (VectorLoops); an operand that is broadcast otherwise (rare)
        is first expanded to the result's dims (count = all elements), so fn is emitted once."""
        n = self.numel(dims)
        conds = []
        counts = {}
        for k in tensors:
            trail, nb = self.trailing_count(operands[k][0], operands[k][1], dims)
            conds += [trail, self.vector_count_ok(nb, n)]
            counts[k] = nb
        ok = self.all_of(conds)
        srcs, nbs = dict(datas), dict(counts)
        if not isinstance(ok, ll.Constant):  # some operand may need expanding
            fast_bb = self.b.block
            with self.b.if_then(self.b.not_(ok), likely=False):
                expanded = {k: self._expand(operands[k][0], operands[k][1], dims) for k in tensors}
                slow_bb = self.b.block
            for k in tensors:
                srcs[k] = self._join(datas[k], fast_bb, expanded[k], slow_bb, PTR)
                nbs[k] = self._join(counts[k], fast_bb, n, slow_bb, I64)

        def emit(p: list[ll.Value]) -> None:  # p: n, out, one per operand, nb per tensor
            p_nbs = dict(zip(tensors, p[2 + len(operands):]))
            kinds = [(p[2 + k], "w" if k in datas else "s", p_nbs.get(k)) for k in range(len(operands))]
            self.vec_elementwise(p[0], p[1], kinds, fn, one_body)
        args = [n, out] + [srcs.get(k, v) for k, (v, _) in enumerate(operands)]
        self.outline(args + [nbs[k] for k in tensors], emit, key=key and ("vector", key, one_body))

    def _join(self, a: ll.Value, a_bb: ll.Block, c: ll.Value, c_bb: ll.Block, typ: ll.Type) -> ll.Value:
        """a when control came from a_bb, c when from c_bb (a phi in the current block)."""
        phi = self.b.phi(typ)
        phi.add_incoming(a, a_bb)
        phi.add_incoming(c, c_bb)
        return phi

    def _expand(self, t: ll.Value, rank: int, dims: Sequence[ll.Value]) -> ll.Value:
        """The data of tensor t broadcast to `dims` (NumPy rules, checked before), copied into a
        fresh contiguous arena buffer by the runtime (noma_expand: nothing to compile)."""
        data, out = self.new_tensor(dims)
        self.rt("noma_expand", self.tensor_ptr(out), self.tensor_ptr(t))
        return data

    def _strided(self, operands, tensors, datas, dims, out, fn, key=None) -> None:
        """The general broadcasting loop nest (stride 0 on broadcast axes). The kernel takes the
        result's and the operands' dims and derives the strides itself, so a call site (one per
        elementwise op, rarely run) stays a single call."""
        rank = len(dims)
        ranks = [operands[k][1] for k in tensors]
        own_dims = [self.dims(operands[k][0], r) for k, r in zip(tensors, ranks)]

        def emit(p: list[ll.Value]) -> None:  # p: rank, out, result dims, dims per tensor, operands
            at = 2 + rank
            strides = []
            for r in ranks:
                strides.append(self.strides_of_dims(p[at:at + r], rank))
                at += r
            ops = p[at:]
            unit = self.all_of([self.b.icmp_unsigned("==", st[rank - 1], self.i64(1)) for st in strides])

            def body(offs: list[ll.Value], lin: ll.Value) -> None:
                xs = [self.load_elem(ops[k], offs[tensors.index(k)]) if k in datas else ops[k]
                      for k in range(len(operands))]
                self.store_elem(fn(xs), p[1], lin)

            self.nest(p[2:2 + rank], strides, body, inner_unit=unit)

        args = [self.i64(rank), out, *dims, *[d for ds in own_dims for d in ds]]
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
        fnty = ll.FunctionType(VOID, [a.type for a in args])
        memo_key = None if key is None else (key, str(fnty), self.mc.dtype, min_size)
        known = _OUTLINED.get(memo_key) if memo_key is not None else None
        if known is None:
            probe = self._kernel(ll.Module(context=self.mc.module.context), fnty, "k", emit)
            small = sum(len(bb.instructions) for bb in probe.basic_blocks) < min_size
            known = (small, "" if small else "noma.k." + hashlib.sha256(str(probe).encode()).hexdigest()[:24])
            if memo_key is not None:
                _OUTLINED[memo_key] = known
        small, name = known
        if small:
            emit(list(args))
            return
        kernel = self.mc.module.globals.get(name)
        if kernel is None:
            kernel = (ll.Function(self.mc.module, fnty, name) if self.mc.shared(name)
                      else self._kernel(self.mc.module, fnty, name, emit))
        self.b.call(kernel, list(args))

    def _kernel(self, module: ll.Module, fnty: ll.FunctionType, name: str,
                emit: Callable[[list[ll.Value]], None]) -> ll.Function:
        kernel = ll.Function(module, fnty, name)
        kernel.attributes.add("noinline")
        kernel.attributes.add("nounwind")
        kernel.args[1].add_attribute("noalias")
        outer = self.fn
        self.fn = kernel
        try:
            with self.b.goto_block(kernel.append_basic_block("entry")):
                emit(list(kernel.args))
                self.b.ret_void()
        finally:
            self.fn = outer
        return kernel

    # ------------------------------------------------------------------ reductions

    def reduce_all(self, data: ll.Value, n: ll.Value, kind: str) -> ll.Value:
        """Sum / max / min of n contiguous elements, deterministic on every CPU: W lanes
        (independent vector accumulators) in a fixed order, the lanes combined by a fixed
        halving tree, then the scalar tail."""
        width = 32 if self.mc.dtype == "f64" else 64
        vt = ll.VectorType(self.real, width)
        init = {"sum": 0.0, "max": float("-inf"), "min": float("inf")}[kind]
        comb = {"sum": None, "max": "llvm.maximum", "min": "llvm.minimum"}[kind]

        def op(a: ll.Value, x: ll.Value) -> ll.Value:
            return self.b.fadd(a, x) if comb is None else self.intr(comb, a, x)

        nblocks = self.b.lshr(n, self.i64(width.bit_length() - 1))

        def vec_step(blk: ll.Value, c: list) -> list:
            p = self.elem_ptr(data, self.b.mul(blk, self.i64(width)))
            v = self.b.load(p, typ=vt, align=self.mc.elem_size)
            return [op(c[0], v)]

        (acc,) = self.loop(self.i64(0), nblocks, vec_step, [ll.Constant(vt, [init] * width)])
        w = width
        while w > 1:
            half = w // 2
            lo = self.b.shuffle_vector(acc, acc, ll.Constant(ll.VectorType(I32, half), list(range(half))))
            hi = self.b.shuffle_vector(acc, acc, ll.Constant(ll.VectorType(I32, half), list(range(half, w))))
            acc = op(lo, hi)
            w = half
        total = self.b.extract_element(acc, self.i32(0))
        tail_start = self.b.mul(nblocks, self.i64(width))
        (tail,) = self.loop(tail_start, n, lambda i, c: [op(c[0], self.load_elem(data, i))], [total])
        return tail

    def sum_rows(self, x: ll.Value, rx: int, like: ll.Value, rl: int) -> ll.Value:
        """out[j] = sum over r of x[r, j] with x viewed as [rows, numel(like)], added in row
        order from +0. The first row is added to +0 in the loop that writes out (no separate
        zeroing: a memset call cost more than a bias gradient's whole sum)."""
        out_dims = self.dims(like, rl)
        inner = self.numel(out_dims)
        rows = self.numel(self.dims(x, rx)[:rx - rl])
        data, t = self.new_tensor(out_dims)
        src = self.data(x)
        zero = self.rconst(0.0)
        with self.b.if_else(self.b.icmp_unsigned("==", rows, self.i64(0)), likely=False) as (empty, some):
            with empty:
                self.memzero(data, inner)
            with some:
                self.loop(self.i64(0), inner, lambda j, c: self.store_elem(
                    self.b.fadd(zero, self.load_elem(src, j)), data, j))

        def row(r: ll.Value, _c: list) -> None:
            base = self.elem_ptr(src, self.b.mul(r, inner))

            def col(j: ll.Value, _c2: list) -> None:
                self.store_elem(self.b.fadd(self.load_elem(data, j), self.load_elem(base, j)), data, j)
            self.loop(self.i64(0), inner, col)
        self.loop(self.i64(1), rows, row)
        return t

    def reduce_axis(self, x: ll.Value, rank: int, axis: int, kind: str, keepdims: bool) -> ll.Value:
        """Reduce along `axis` of a rank-`rank` tensor: [outer, len, inner] -> [outer, inner]."""
        dims = self.dims(x, rank)
        outer = self.numel(dims[:axis])
        length = dims[axis]
        inner = self.numel(dims[axis + 1:])
        out_dims = dims[:axis] + ([self.i64(1)] if keepdims else []) + dims[axis + 1:]
        out, t = self.new_tensor(out_dims)
        init = self.rconst({"sum": 0.0, "max": float("-inf"), "min": float("inf")}[kind])
        if kind != "sum":
            self.fail_if(self.b.and_(self.b.icmp_unsigned("==", length, self.i64(0)),
                                     self.b.icmp_unsigned("!=", self.b.mul(outer, inner), self.i64(0))),
                         ERR_RUNTIME, f"{kind} over an empty axis")
        total = self.b.mul(outer, inner)

        def emit(p: list[ll.Value]) -> None:  # p: total, out, src, outer, length, inner
            total, out, src, outer, length, inner = p
            self.loop(self.i64(0), total, lambda i, c: self.store_elem(init, out, i))

            def per_outer(o: ll.Value, _c: list) -> None:
                obase = self.b.mul(o, inner)

                def per_k(k: ll.Value, _c2: list) -> None:
                    ibase = self.b.mul(self.b.add(self.b.mul(o, length), k), inner)

                    def per_i(i: ll.Value, _c3: list) -> None:
                        oi = self.b.add(obase, i)
                        acc = self.load_elem(out, oi)
                        v = self.load_elem(src, self.b.add(ibase, i))
                        if kind == "sum":
                            r = self.b.fadd(acc, v)
                        else:
                            r = self.intr("llvm.maximum" if kind == "max" else "llvm.minimum", acc, v)
                        self.store_elem(r, out, oi)
                    self.loop(self.i64(0), inner, per_i)
                self.loop(self.i64(0), length, per_k)
            self.loop(self.i64(0), outer, per_outer)
        # one kernel per kind and dtype for every shape: the nest is compiled once per session
        self.outline([total, out, self.data(x), outer, length, inner], emit, min_size=0,
                     key=("reduce_axis", kind))
        return t
