"""The builder-level toolkit of the LLVM lowering: types, runtime declarations, tensor descriptors,
loops and the elementwise / reduction kernels.

Owns: `ModuleContext` (one llvmlite module: the `%NomaTensor` type, lazily declared runtime
functions, intrinsics, string constants, function-pointer globals) and `Emitter` (one function
being generated: the entry-block allocas and per-instruction scratch slots, descriptor helpers,
counted loops with carried values, arena allocation (bumped from the context's window by the
shared helper `noma.k.alloc`), small shared helper functions (`shared_helper`), and through its
mixins the elementwise kernels, vector loops, reductions and library-free (vectorizable)
exp / tanh).
Input: called by lower_llvm_ops / lower_llvm. Output: llvmlite.ir values and instructions.
Imports: llvmlite.ir, noma.rt.abi (the runtime's declarations, read from noma_rt.h),
lower_llvm_kernels, lower_llvm_vector, lower_llvm_math, lower_llvm_types.
The lower_llvm* modules are one component split for size; no other module of NOMA imports
llvmlite.ir.
"""

from __future__ import annotations

import sys
from array import array
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Sequence

from llvmlite import ir as ll

from noma.rt import abi

from noma.compiler.llvm.lower_llvm_kernels import Kernels
from noma.compiler.llvm.lower_llvm_math import InlineMath
from noma.compiler.llvm.lower_llvm_vector import VectorLoops
from noma.compiler.llvm.lower_llvm_types import (
    ERR_RUNTIME,
    ERR_SHAPE,
    I1,
    I8,
    I32,
    I64,
    PTR,
    VOID,
    descriptor,
)

#: The largest size of one axis (the runtime's bound on a parameter's entries, 2^40).
MAX_AXIS = 1 << 40

#: Runtime functions generated code may call: name -> signature "ret:args" with
#: r = real, p = pointer, l = int64, i = int32, v = void, generated from noma_rt.h (noma.rt.abi).
RUNTIME_SIGS = abi.llvm_signatures()
NORETURN = frozenset({"noma_fail", "noma_fail_shape", "noma_fail_index", "noma_fail_check"})


def _mangle(t: ll.Type) -> str:
    """The overload suffix of type t in an intrinsic name (f64, v8f64, i64, p0)."""
    if isinstance(t, ll.VectorType):
        return f"v{t.count}{_mangle(t.element)}"
    if isinstance(t, ll.DoubleType):
        return "f64"
    if isinstance(t, ll.FloatType):
        return "f32"
    if isinstance(t, ll.IntType):
        return f"i{t.width}"
    if isinstance(t, ll.PointerType):
        return "p0"
    raise TypeError(f"no intrinsic suffix for {t}")


class _Bytes(ll.Constant):
    """An i8 array constant written as LLVM's `c"\\xx..."` text in one C-level pass (llvmlite
    formats a bytearray byte by byte in Python: seconds for the 8 MB of a 10^6-entry literal)."""

    def __init__(self, typ: ll.ArrayType, raw: bytes):
        self.type = typ
        self.constant = raw
        self._text = 'c"\\' + raw.hex("\\") + '"'

    def _get_reference(self) -> str:
        return self._text


class ModuleContext:
    """One llvmlite module under construction and its module-level declarations."""

    def __init__(self, name: str, dtype: str):
        if dtype not in ("f64", "f32"):
            raise ValueError(f"unsupported dtype {dtype!r}")
        self.module = ll.Module(name=name)
        self.dtype = dtype
        self.real = ll.DoubleType() if dtype == "f64" else ll.FloatType()
        self.elem_size = 8 if dtype == "f64" else 4
        tensor = self.module.context.get_identified_type("NomaTensor")
        if tensor.is_opaque:
            tensor.set_body(PTR, I64, ll.ArrayType(I64, 4))
        self.tensor = tensor
        self._strings: dict[str, ll.GlobalVariable] = {}
        self._data: dict[bytes, ll.GlobalVariable] = {}
        self._fn_pointers: dict[str, ll.GlobalVariable] = {}
        #: IR function name -> (param ranks, result rank), for this module's and extern functions.
        self.signatures: dict[str, tuple[tuple[int, ...], Optional[int]]] = {}
        #: IR function name -> LLVM symbol name.
        self.symbols: dict[str, str] = {}
        #: IR function names whose pointer global this module defines.
        self.own_pointers: set[str] = set()
        #: whether an outlined kernel (lower_llvm_kernels.outline) is defined by an earlier module
        #: (then this module declares it instead of compiling it again)
        self.shared: Callable[[str], bool] = lambda symbol: False

    # ------------------------------------------------------------------ declarations

    def _type(self, code: str) -> ll.Type:
        return {"r": self.real, "p": PTR, "l": I64, "i": I32, "v": VOID}[code]

    def runtime(self, name: str) -> ll.Function:
        """The declaration of runtime function `name` (declared on first use)."""
        existing = self.module.globals.get(name)
        if existing is not None:
            return existing
        ret, args = RUNTIME_SIGS[name].split(":")
        fnty = ll.FunctionType(self._type(ret), [self._type(c) for c in args])
        fn = ll.Function(self.module, fnty, name)
        fn.attributes.add("nounwind")
        if name in NORETURN:
            fn.attributes.add("noreturn")
            fn.attributes.add("cold")
        if name in ("noma_alloc", "noma_alloc_at"):
            fn.return_value.add_attribute("noalias")
            fn.return_value.attributes.align = 64
        return fn

    def libm(self, base: str, nargs: int = 1) -> ll.Function:
        """A libm function (`tanh` / `tanhf` by dtype)."""
        name = base if self.dtype == "f64" else base + "f"
        existing = self.module.globals.get(name)
        if existing is not None:
            return existing
        fn = ll.Function(self.module, ll.FunctionType(self.real, [self.real] * nargs), name)
        fn.attributes.add("nounwind")
        return fn

    def intrinsic(self, name: str, ret: ll.Type, args: Sequence[ll.Type],
                  suffix_types: Sequence[ll.Type]) -> ll.Function:
        """Declare the overloaded intrinsic `name` mangled with `suffix_types`."""
        full = ".".join([name] + [_mangle(t) for t in suffix_types])
        existing = self.module.globals.get(full)
        if existing is not None:
            return existing
        return ll.Function(self.module, ll.FunctionType(ret, list(args)), full)

    def bytes_global(self, raw: bytes) -> ll.GlobalVariable:
        """A private constant array of raw bytes (names, native-endian integer arrays)."""
        gv = self._data.get(b"raw:" + raw)
        if gv is not None:
            return gv
        gv = ll.GlobalVariable(self.module, ll.ArrayType(I8, len(raw)), f"noma.bytes.{len(self._data)}")
        gv.global_constant = True
        gv.linkage = "private"
        gv.unnamed_addr = True
        gv.align = 8
        gv.initializer = _Bytes(gv.value_type, raw)
        self._data[b"raw:" + raw] = gv
        return gv

    def data_global(self, data: bytes) -> ll.GlobalVariable:
        """A private constant array holding the f64 values `data` (little-endian) in the module's
        dtype: a numeric tensor literal is data in the object file, copied once when it runs."""
        gv = self._data.get(data)
        if gv is None:
            raw = data if self.dtype == "f64" else array("f", array("d", data)).tobytes()
            if sys.byteorder != "little":
                swapped = array("d" if self.dtype == "f64" else "f", raw)
                swapped.byteswap()
                raw = swapped.tobytes()
            typ = ll.ArrayType(I8, len(raw))
            gv = ll.GlobalVariable(self.module, typ, f"noma.data.{len(self._data)}")
            gv.global_constant = True
            gv.linkage = "private"
            gv.unnamed_addr = True
            gv.align = 64
            gv.initializer = _Bytes(typ, raw)
            self._data[data] = gv
        return gv

    def cstring(self, text: str) -> ll.GlobalVariable:
        """A private NUL-terminated constant holding `text` (UTF-8)."""
        gv = self._strings.get(text)
        if gv is None:
            data = bytearray(text.encode("utf-8") + b"\0")
            typ = ll.ArrayType(I8, len(data))
            gv = ll.GlobalVariable(self.module, typ, f"noma.str.{len(self._strings)}")
            gv.global_constant = True
            gv.linkage = "private"
            gv.unnamed_addr = True
            gv.initializer = ll.Constant(typ, data)
            self._strings[text] = gv
        return gv

    def value_type(self, rank: Optional[int]) -> ll.Type:
        return VOID if rank is None else self.real if rank == 0 else self.tensor

    def fn_type(self, name: str) -> ll.FunctionType:
        """The LLVM type of IR function `name`: reals / %NomaTensor by value, void when no result."""
        if name not in self.signatures:
            raise KeyError(f"call to unknown function {name!r} (not in the module nor its externs)")
        params, result = self.signatures[name]
        return ll.FunctionType(self.value_type(result), [self.value_type(r) for r in params])

    def function(self, name: str) -> ll.Function:
        """The LLVM function of IR function `name` (declared here when defined elsewhere)."""
        sym = self.symbols.get(name, name)
        fn = self.module.globals.get(sym)
        if fn is None:
            fn = ll.Function(self.module, self.fn_type(name), sym)
        return fn

    def fn_pointer(self, callee: str) -> ll.GlobalVariable:
        """`@"noma.fp.<callee>"`: defined here (initialised to the callee) when callee is in
        own_pointers, else declared external."""
        gv = self._fn_pointers.get(callee)
        if gv is None:
            gv = ll.GlobalVariable(self.module, PTR, f"noma.fp.{callee}")
            gv.align = 8
            if callee in self.own_pointers:
                gv.initializer = self.function(callee)
            else:
                gv.linkage = "external"
            self._fn_pointers[callee] = gv
        return gv


class Emitter(Kernels, VectorLoops, InlineMath):
    """Helpers bound to one LLVM function under construction (`self.b` is the builder)."""

    def __init__(self, mc: ModuleContext, fn: ll.Function):
        self.mc = mc
        self.fn = fn
        self.real = mc.real
        self.T = mc.tensor
        self._entry = fn.append_basic_block("entry")
        self._alloca_b = ll.IRBuilder(self._entry)
        self.b = ll.IRBuilder(fn.append_basic_block("start"))
        self._scratch: dict[str, list] = {}
        self._scratch_used: dict[str, int] = {}
        self.span = -1

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
        """A real constant (splatted inside a vector body, see InlineMath.vl)."""
        return self._lane_const(self.real, float(v))

    def span_c(self) -> ll.Constant:
        return self.i64(self.span)

    def rt(self, name: str, *args: ll.Value) -> ll.Instruction:
        call = self.b.call(self.mc.runtime(name), list(args))
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
        cache = self.__dict__.setdefault("_bump_windows", {})
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
        """A small function of fixed text named like an outlined kernel (lower_llvm_kernels):
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
        outer = self.fn
        self.fn = fn
        try:
            with self.b.goto_block(fn.append_basic_block("entry")):
                emit(fn)
        finally:
            self.fn = outer
        return fn

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
    def _failing_when(self, cond: ll.Value) -> Iterator[None]:
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
        with self._failing_when(cond):
            self.b.call(self.mc.runtime("noma_fail"), [self.i32(kind), self.span_c(), self.cstr(message)])

    def fail_shape_if(self, cond: ll.Value, opname: str, a: tuple[ll.Value, int],
                      b: tuple[ll.Value, int]) -> None:
        """Fail with a shape error naming the shapes of (value, rank) a and b when cond holds."""
        with self._failing_when(cond):
            a_ptr, b_ptr = self.any_ptr(*a), self.any_ptr(*b)
            self.b.call(self.mc.runtime("noma_fail_shape"), [self.span_c(), self.cstr(opname), a_ptr, b_ptr])

    def fail_index_if(self, cond: ll.Value, index: ll.Value, size: ll.Value) -> None:
        with self._failing_when(cond):
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
