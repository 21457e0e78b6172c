"""The builder-level toolkit of the LLVM lowering: one LLVM function under construction.

Owns: `Toolkit` (the builder `b`, the function being emitted `fn` (an outlined kernel or shared
helper while one is emitted: `emitting_into`), the entry-block allocas and per-instruction scratch
slots, the current span, the lanes of the vector body being emitted (`vl`: `vector_body`),
constants (scalar or splatted), runtime and intrinsic calls, conversions, descriptor helpers,
arena allocation (bumped from the context's window by the shared helper `noma.k.alloc_at`), small
shared helper functions (`shared_helper`), memcpy / memset, the located failure helpers, counted
loops with carried values and loop nests). Every other collaborator of the lowering (inline_math,
vector, kernels, linalg, the op handlers) emits through one Toolkit it is given.
Input: a module.ModuleContext and an llvmlite function. Output: llvmlite.ir values and code.
Imports: llvmlite.ir, basics, module.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional, Sequence

from llvmlite import ir as ll

from noma.compiler.llvm.basics import ERR_RUNTIME, ERR_SHAPE, I1, I8, I32, I64, PTR, VOID, descriptor
from noma.compiler.llvm.module import NORETURN, ModuleContext

#: The largest size of one axis (the runtime's bound on a parameter's entries, 2^40).
MAX_AXIS = 1 << 40


class RuntimeCall(ll.CallInstr):
    """A plain call of a runtime function (no calling convention, tail marker, fast-math flags
    or attributes on the call), printed exactly as llvmlite's CallInstr prints it. Built and
    printed with a fraction of CallInstr's work: a runtime call is most of what long top-level
    code lowers to (a 1 MB source makes ~90,000), and CallInstr re-validated every argument type
    and created empty attribute sets for each. The arguments are the lowering's own values of
    the declared types (LLVM's parser verifies them)."""

    _NO_FASTMATH = ll.instructions.FastMathFlags(())
    _NO_ATTRIBUTES = ll.instructions.CallInstrAttributes(())

    def __init__(self, parent: ll.Block, func: ll.Function, args: list[ll.Value]):
        self.cconv = None
        self.tail = ""
        self.fastmath = self._NO_FASTMATH
        self.attributes = self._NO_ATTRIBUTES
        self.arg_attributes: dict[int, Any] = {}
        ll.Instruction.__init__(self, parent, func.function_type.return_type, "call", [func, *args])

    def descr(self, buf: list[str]) -> None:
        if self.metadata:
            super().descr(buf)
            return
        args = ", ".join([f"{a.type} {a.get_reference()}" for a in self.operands[1:]])
        callee = self.operands[0]
        buf.append(f"call {callee.function_type.return_type} {callee.get_reference()}({args})\n")


class SplatConstant(ll.Constant):
    """`<n x T> splat (T c)`: a vector constant written once (the element list would make the
    text of an exp kernel several times longer, and the lowering hashes and prints it)."""

    def __init__(self, vt: ll.VectorType, scalar: ll.Constant):
        super().__init__(vt, None)
        self.scalar = scalar

    def _get_reference(self) -> str:
        return f"splat ({self.scalar.type} {self.scalar.get_reference()})"


class Toolkit:
    """Helpers bound to one LLVM function under construction (`self.b` is the builder)."""

    def __init__(self, mc: ModuleContext, fn: ll.Function):
        self.mc = mc
        #: the function being emitted: `home`, or an outlined kernel / shared helper meanwhile
        self.fn = fn
        #: the LLVM function this toolkit was made for
        self.home = fn
        self.real = mc.real
        self.T = mc.tensor
        self.entry = fn.append_basic_block("entry")
        self._alloca_b = ll.IRBuilder(self.entry)
        self.b = ll.IRBuilder(fn.append_basic_block("start"))
        self._scratch: dict[str, list[ll.Value]] = {}
        self._scratch_used: dict[str, int] = {}
        #: the span of the instruction being lowered (runtime errors report it)
        self.span = -1
        #: lanes of the vector body being emitted (0: scalar code; see vector.VectorLoops)
        self.vl = 0
        #: id() of an LLVM function -> its pointer to the context's NomaBump (see alloc)
        self._bump_windows: dict[int, ll.Value] = {}

    # ------------------------------------------------------------------ lanes

    def lanes(self, t: ll.Type) -> ll.Type:
        """t, or <vl x t> inside a vector body."""
        return ll.VectorType(t, self.vl) if self.vl else t

    def lane_const(self, t: ll.Type, v: Any) -> ll.Constant:
        """A constant of type t (splatted inside a vector body)."""
        return SplatConstant(ll.VectorType(t, self.vl), ll.Constant(t, v)) if self.vl else ll.Constant(t, v)

    @contextmanager
    def vector_body(self, vl: int) -> Iterator[None]:
        """Within the with-body, constants and types are vectors of vl lanes (see vl)."""
        self.vl = vl
        try:
            yield
        finally:
            self.vl = 0

    def lane_int(self, v: int, bits: int = 64) -> ll.Constant:
        """An integer constant (splatted inside a vector body)."""
        return self.lane_const(ll.IntType(bits), int(v))

    def choose(self, cond: ll.Value, then_fn: Callable[[], ll.Value],
               else_fn: Callable[[], ll.Value]) -> ll.Value:
        """if cond then then_fn() else else_fn(), merged with a phi."""
        with self.b.if_else(cond) as (then, other):
            with then:
                a = then_fn()
                a_bb = self.b.block
            with other:
                c = else_fn()
                c_bb = self.b.block
        phi = self.b.phi(a.type)
        phi.add_incoming(a, a_bb)
        phi.add_incoming(c, c_bb)
        return phi

    def finish_entry(self) -> None:
        """Close the entry block (allocas only) with a branch to the code."""
        self._alloca_b.branch(self.fn.basic_blocks[1])

    # ------------------------------------------------------------------ constants and calls

    def all_of(self, conds: Sequence[ll.Value]) -> ll.Value:
        """The conjunction of i1 values (true when there are none); constant-true ones are left
        out, so no `and` with a constant is emitted."""
        out: Optional[ll.Value] = None
        for c in conds:
            if isinstance(c, ll.Constant) and c.constant == 1:
                continue
            out = c if out is None else self.b.and_(out, c)
        return ll.Constant(I1, 1) if out is None else out

    def i64(self, v: int) -> ll.Constant:
        return ll.Constant(I64, int(v))

    def i32(self, v: int) -> ll.Constant:
        return ll.Constant(I32, int(v))

    def rconst(self, v: float) -> ll.Constant:
        """A real constant (splatted inside a vector body, see vl)."""
        return self.lane_const(self.real, float(v))

    def span_c(self) -> ll.Constant:
        return self.i64(self.span)

    def rt(self, name: str, *args: ll.Value) -> ll.Instruction:
        call = RuntimeCall(self.b.block, self.mc.runtime(name), list(args))
        self.b._insert(call)  # what IRBuilder.call does with the CallInstr it makes
        if name in NORETURN:
            self.b.unreachable()
            self.b.position_at_end(self.fn.append_basic_block("dead"))
        return call

    def intr(self, name: str, *args: ll.Value) -> ll.Value:
        """Call a one-type overloaded floating-point intrinsic (llvm.exp, llvm.maximum, ...)."""
        ty = args[0].type
        fn = self.mc.intrinsic(name, ty, [a.type for a in args], [ty])
        return self.b.call(fn, list(args))

    def to_index(self, x: ll.Value) -> ll.Value:
        """real -> i64, truncating toward zero (saturating; NaN -> 0)."""
        fn = self.mc.intrinsic("llvm.fptosi.sat", I64, [self.real], [I64, self.real])
        return self.b.call(fn, [x])

    def whole(self, x: ll.Value) -> ll.Value:
        """real -> i64 for an index, a size or a bound: like to_index, but a NaN fails (runtime
        error at the current span) instead of becoming 0."""
        self.fail_if(self.b.fcmp_unordered("uno", x, x), ERR_RUNTIME, "expected a whole number, got nan")
        return self.to_index(x)

    def to_real(self, i: ll.Value) -> ll.Value:
        return self.b.sitofp(i, self.real)

    def truth(self, x: ll.Value) -> ll.Value:
        """x != 0 (NaN counts as true, like C)."""
        return self.b.fcmp_unordered("!=", x, self.rconst(0.0))

    def cstr(self, text: str) -> ll.Value:
        return self.mc.cstring(text)

    # ------------------------------------------------------------------ stack slots

    def new_stage(self) -> None:
        """Start a new instruction: scratch slots may be reused."""
        for key in self._scratch_used:
            self._scratch_used[key] = 0

    def alloca(self, typ: ll.Type, name: str = "") -> ll.Value:
        return self._alloca_b.alloca(typ, name=name)

    def scratch(self, typ: ll.Type, key: str) -> ll.Value:
        """A per-instruction stack slot of `typ` (reused by later instructions)."""
        pool = self._scratch.setdefault(key, [])
        used = self._scratch_used.get(key, 0)
        if used == len(pool):
            pool.append(self.alloca(typ, name=f"scratch.{key}"))
        self._scratch_used[key] = used + 1
        return pool[used]

    def tensor_ptr(self, t: ll.Value) -> ll.Value:
        """Store a descriptor value into a scratch slot and return its address."""
        slot = self.scratch(self.T, "t")
        self.b.store(t, slot)
        return slot

    def empty_tensor_slot(self) -> ll.Value:
        return self.scratch(self.T, "t")

    def any_ptr(self, v: ll.Value, rank: int) -> ll.Value:
        """NomaTensor* for a tensor value, or a rank-0 descriptor wrapping a scalar."""
        if rank > 0:
            return self.tensor_ptr(v)
        cell = self.scratch(self.real, "r")
        self.b.store(v, cell)
        return self.tensor_ptr(self.make_tensor(cell, []))

    def dims_array(self, dims: Sequence[ll.Value]) -> ll.Value:
        arr = self.scratch(ll.ArrayType(I64, 4), "dims")
        for i in range(4):
            val = dims[i] if i < len(dims) else self.i64(0)
            self.b.store(val, self.b.gep(arr, [self.i64(0), self.i32(i)], inbounds=True))
        return arr

    # ------------------------------------------------------------------ descriptors

    def data(self, t: ll.Value) -> ll.Value:
        return self.b.extract_value(t, 0)

    def dim(self, t: ll.Value, i: int) -> ll.Value:
        return self.b.extract_value(t, [2, i])

    def dims(self, t: ll.Value, rank: int) -> list[ll.Value]:
        return [self.dim(t, i) for i in range(rank)]

    def make_tensor(self, data: ll.Value, dims: Sequence[ll.Value]) -> ll.Value:
        return descriptor(self.b, self.T, data, dims)

    def load_tensor(self, ptr: ll.Value) -> ll.Value:
        return self.b.load(ptr, typ=self.T)

    def numel(self, dims: Sequence[ll.Value]) -> ll.Value:
        n: Optional[ll.Value] = None
        for d in dims:
            n = d if n is None else self.b.mul(n, d)
        return self.i64(1) if n is None else n

    def elem_ptr(self, base: ll.Value, index: ll.Value) -> ll.Value:
        return self.b.gep(base, [index], inbounds=True, source_etype=self.real)

    def load_elem(self, base: ll.Value, index: ll.Value) -> ll.Value:
        return self.b.load(self.elem_ptr(base, index), typ=self.real)

    def store_elem(self, value: ll.Value, base: ll.Value, index: ll.Value) -> None:
        self.b.store(value, self.elem_ptr(base, index))

    def alloc(self, n: ll.Value) -> ll.Value:
        """An arena block for n reals: bumped from the context's window (noma_arena_bump, fetched
        once per function) by a helper shared by the session's modules (`noma.k.alloc`, a direct
        call), 64-byte rounded as the runtime does; noma_alloc when it does not fit (new chunk,
        errors)."""
        fn = self.shared_helper("noma.k.alloc_at", ll.FunctionType(PTR, [PTR, I64, I64]), self._emit_alloc)
        fn.return_value.add_attribute("noalias")
        return self.b.call(fn, [self._bump_window(), n, self.span_c()])

    def _bump_window(self) -> ll.Value:
        """This function's pointer to the context's NomaBump (a call at the top of its code)."""
        cache = self._bump_windows
        window = cache.get(id(self.fn))
        if window is None:
            top = ll.IRBuilder(self.fn.basic_blocks[1])
            top.position_at_start(self.fn.basic_blocks[1])
            window = cache[id(self.fn)] = top.call(self.mc.runtime("noma_arena_bump"), [])
            self.b.position_at_end(self.b.block)  # the insertion shifted this builder's block
        return window

    def _emit_alloc(self, fn: ll.Function) -> None:
        b = self.b
        window, n, span = fn.args
        size = b.select(b.icmp_unsigned("==", n, self.i64(0)), self.i64(1), n)
        nbytes = b.and_(b.add(b.mul(size, self.i64(self.mc.elem_size)), self.i64(63)), self.i64(-64))
        end_slot = b.gep(window, [self.i64(1)], inbounds=True, source_etype=PTR)
        cur = b.load(window, typ=PTR)
        room = b.sub(b.ptrtoint(b.load(end_slot, typ=PTR), I64), b.ptrtoint(cur, I64))
        fits = b.and_(b.icmp_unsigned("<", n, self.i64(1 << 40)), b.icmp_unsigned("<=", nbytes, room))
        with b.if_then(b.not_(fits), likely=False):
            b.ret(self.rt("noma_alloc_at", n, span))
        b.store(b.gep(cur, [nbytes], source_etype=I8), window)
        b.ret(cur)

    def shared_helper(self, name: str, fnty: ll.FunctionType,
                      emit: Callable[[ll.Function], None]) -> ll.Function:
        """A small function of fixed text named like an outlined kernel (kernels.outline):
        defined by the first module of the session that needs it, declared by the others.
        `emit(fn)` builds its body (ending with returns) with self.b."""
        fn = self.mc.module.globals.get(name)
        if fn is not None:
            return fn
        fn = ll.Function(self.mc.module, fnty, name)
        fn.attributes.add("nounwind")
        if self.mc.shared(name):
            return fn
        fn.attributes.add("noinline")
        with self.emitting_into(fn):
            emit(fn)
        return fn

    @contextmanager
    def emitting_into(self, fn: ll.Function) -> Iterator[None]:
        """Within the with-body, code goes to a new entry block of `fn` (a shared helper or an
        outlined kernel: `self.fn` is fn meanwhile); then the builder returns where it was."""
        outer = self.fn
        self.fn = fn
        try:
            with self.b.goto_block(fn.append_basic_block("entry")):
                yield
        finally:
            self.fn = outer

    def join(self, a: ll.Value, a_bb: ll.Block, c: ll.Value, c_bb: ll.Block, typ: ll.Type) -> ll.Value:
        """a when control came from a_bb, c when from c_bb (a phi in the current block)."""
        phi = self.b.phi(typ)
        phi.add_incoming(a, a_bb)
        phi.add_incoming(c, c_bb)
        return phi

    def copy_to_arena(self, t: ll.Value, rank: int) -> ll.Value:
        """A fresh arena copy of tensor t."""
        dims = self.dims(t, rank)
        data, out = self.new_tensor(dims)
        self.memcpy(data, self.data(t), self.numel(dims))
        return out

    def new_tensor(self, dims: Sequence[ll.Value]) -> tuple[ll.Value, ll.Value]:
        """(data, descriptor) of a fresh arena tensor of `dims`."""
        data = self.alloc(self.numel(dims))
        return data, self.make_tensor(data, dims)

    def memcpy(self, dst: ll.Value, src: ll.Value, count: ll.Value) -> None:
        fn = self.mc.intrinsic("llvm.memcpy", VOID, [PTR, PTR, I64, I1], [PTR, PTR, I64])
        nbytes = self.b.mul(count, self.i64(self.mc.elem_size))
        self.b.call(fn, [dst, src, nbytes, ll.Constant(I1, 0)])

    def memzero(self, dst: ll.Value, count: ll.Value) -> None:
        fn = self.mc.intrinsic("llvm.memset", VOID, [PTR, I8, I64, I1], [PTR, I64])
        nbytes = self.b.mul(count, self.i64(self.mc.elem_size))
        self.b.call(fn, [dst, ll.Constant(I8, 0), nbytes, ll.Constant(I1, 0)])

    def checked_dims(self, reals: Sequence[ll.Value], what: str) -> list[ll.Value]:
        """Convert run-time sizes to i64; negative or overflowing sizes, and a size past MAX_AXIS
        even when another axis is 0 (`zeros([0, 1e308])`), fail (shape error)."""
        dims = [self.whole(x) for x in reals]
        bad: ll.Value = ll.Constant(I1, 0)
        n: ll.Value = self.i64(1)
        mul = self.mc.intrinsic("llvm.umul.with.overflow", ll.LiteralStructType([I64, I1]),
                                [I64, I64], [I64])
        for d in dims:
            bad = self.b.or_(bad, self.b.icmp_unsigned(">", d, self.i64(MAX_AXIS)))  # also < 0
            r = self.b.call(mul, [n, d])
            bad = self.b.or_(bad, self.b.extract_value(r, 1))
            n = self.b.extract_value(r, 0)
        self.fail_if(bad, ERR_SHAPE, f"{what}: invalid size (negative or too large)")
        return dims

    # ------------------------------------------------------------------ failure helpers

    @contextmanager
    def failing_when(self, cond: ll.Value) -> Iterator[None]:
        """The with-body (a call of a noreturn runtime function) runs when `cond` holds; the code
        after it continues on the other edge. The failing block ends in `unreachable` (no
        fall-through block to clean up: a tenth of a training cell's blocks used to be such)."""
        fail = self.fn.append_basic_block("fail")
        cont = self.fn.append_basic_block("ok")
        self.b.cbranch(cond, fail, cont).set_weights([1, 99])
        self.b.position_at_end(fail)
        yield
        self.b.unreachable()
        self.b.position_at_end(cont)

    def fail_if(self, cond: ll.Value, kind: int, message: str) -> None:
        with self.failing_when(cond):
            self.b.call(self.mc.runtime("noma_fail"), [self.i32(kind), self.span_c(), self.cstr(message)])

    def fail_shape_if(self, cond: ll.Value, opname: str, a: tuple[ll.Value, int],
                      b: tuple[ll.Value, int]) -> None:
        """Fail with a shape error naming the shapes of (value, rank) a and b when cond holds."""
        with self.failing_when(cond):
            a_ptr, b_ptr = self.any_ptr(*a), self.any_ptr(*b)
            self.b.call(self.mc.runtime("noma_fail_shape"), [self.span_c(), self.cstr(opname), a_ptr, b_ptr])

    def fail_index_if(self, cond: ll.Value, index: ll.Value, size: ll.Value) -> None:
        with self.failing_when(cond):
            self.b.call(self.mc.runtime("noma_fail_index"), [self.span_c(), index, size])

    def check_index(self, i: ll.Value, size: ll.Value) -> None:
        """Fail with an index error unless 0 <= i < size."""
        self.fail_index_if(self.b.icmp_unsigned(">=", i, size), i, size)

    # ------------------------------------------------------------------ loops

    def loop(self, start: ll.Value, end: ll.Value,
             body: Callable[[ll.Value, list[ll.Value]], Optional[list[ll.Value]]],
             carried: Sequence[ll.Value] = (), step: int = 1) -> list[ll.Value]:
        """for i in [start, end) step `step`: carried = body(i, carried); returns the final carried."""
        b = self.b
        pre = b.block
        head = self.fn.append_basic_block("loop.head")
        bodyb = self.fn.append_basic_block("loop.body")
        exit_ = self.fn.append_basic_block("loop.exit")
        b.branch(head)
        b.position_at_end(head)
        i = b.phi(I64, name="i")
        i.add_incoming(start, pre)
        phis = []
        for c in carried:
            p = b.phi(c.type)
            p.add_incoming(c, pre)
            phis.append(p)
        b.cbranch(b.icmp_signed("<", i, end), bodyb, exit_)
        b.position_at_end(bodyb)
        nxt = body(i, list(phis)) or []
        inext = b.add(i, self.i64(step), flags=["nsw"])
        latch = b.block
        i.add_incoming(inext, latch)
        for p, v in zip(phis, nxt):
            p.add_incoming(v, latch)
        b.branch(head)
        b.position_at_end(exit_)
        return list(phis)

    def nest(self, dims: Sequence[ll.Value], strides: Sequence[Sequence[ll.Value]],
             body: Callable[[list[ll.Value], ll.Value], None],
             inner_unit: Optional[ll.Value] = None) -> None:
        """Row-major loop nest over `dims` with one offset per operand (strides per axis) and the
        contiguous linear index of the element. When `inner_unit` (i1) holds at run time, a second
        copy of the nest is used whose innermost axis has unit strides (a vectorizable loop)."""
        rank = len(dims)
        nops = len(strides)

        def level(j: int, offs: list[ll.Value], lin: ll.Value, unit: bool) -> None:
            if j == rank:
                body(offs, lin)
                return
            base_lin = self.b.mul(lin, dims[j])

            def step(i: ll.Value, _c: list) -> None:
                if unit and j == rank - 1:
                    inner = [self.b.add(o, i) for o in offs]
                else:
                    inner = [self.b.add(offs[k], self.b.mul(i, strides[k][j])) for k in range(nops)]
                level(j + 1, inner, self.b.add(base_lin, i), unit)
            self.loop(self.i64(0), dims[j], step)

        start = [self.i64(0)] * nops
        if inner_unit is None:
            level(0, start, self.i64(0), False)
            return
        with self.b.if_else(inner_unit) as (then, other):
            with then:
                level(0, start, self.i64(0), True)
            with other:
                level(0, start, self.i64(0), False)
