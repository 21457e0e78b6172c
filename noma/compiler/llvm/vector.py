"""Explicitly vectorized elementwise loops of the LLVM lowering.

Owns: `VectorLoops` and its `vec_elementwise`, one loop over the result's elements in vectors of VL
lanes (8 in f64, 16 in f32: one 512-bit register) whose last vector is masked on its loads, so a
tensor of 4 or 8 elements is one vector pass (the auto-vectorizer only vectorizes whole vectors
and leaves the rest to a scalar loop: a 4 x 2 sigmoid was 8 scalar passes). Stores are whole
vectors: results are fresh arena buffers, which the runtime rounds up to 64 bytes, so the lanes
past the end write into the buffer's own padding. Unmasked stores also let the next operation's
loads take their data straight from the store buffer (a masked store would make them wait until
it has left the store buffer, a stall between every two tiny operations).

Operands: scalars (splatted), tensors of the result's element count (contiguous), and tensors
broadcast along leading axes only (a bias [H] of a [B, H] result): the element of result index
i is b[i mod nb]. With nb a power of two below VL its lanes repeat within every vector (one
"tile", loop invariant, kept on the stack); with nb a multiple of VL each vector is a contiguous
piece of b (the offset wraps at nb). Other broadcasts use the strided loop nest
(kernels.py). Also the masked load / store and splat helpers of linalg.py.
Lane for lane the arithmetic is the scalar code's (InlineMath / the scalar rules of
elementwise.py with the toolkit's `vl` set), so the results are the same bits as a scalar loop's.
Input: a toolkit.Toolkit. Output: llvmlite.ir values.
Imports: llvmlite.ir, ir (Op), basics, toolkit.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

from llvmlite import ir as ll

from noma.compiler.llvm.basics import I32, I64, PTR, VOID
from noma.compiler.llvm.toolkit import Toolkit
from noma.compiler.middle.ir import Op

#: Ops whose scalar function has no vector form (a libm call per element).
SCALAR_ONLY_OPS = frozenset({Op.TAN})

#: Ops whose vector form is long inline math (or a vector math call): a loop holding one is
#: emitted with one masked body (vec_elementwise's one_body).
LONG_MATH_OPS = frozenset({Op.EXP, Op.TANH, Op.SIGMOID, Op.LOG, Op.POW, Op.SIN, Op.COS})


def vzero(vt: ll.VectorType) -> ll.Constant:
    """The zero vector, written `zeroinitializer` (llvmlite would list every lane)."""
    c = ll.Constant(vt, None)
    c.constant = None
    return c


class VectorLoops:
    """Emits explicitly vectorized elementwise loops through the toolkit `tk`."""

    def __init__(self, tk: Toolkit):
        self.tk = tk

    def vector_lanes(self) -> int:
        """Lanes of one 512-bit vector of reals."""
        return 8 if self.tk.mc.dtype == "f64" else 16

    def vector_kit(self) -> tuple[int, ll.VectorType, ll.VectorType, ll.Constant, ll.Constant]:
        """(lanes VL, the vector of VL reals, the vector of VL i64, the lane indices 0..VL-1,
        a zero vector of reals): what every vector loop starts from."""
        VL = self.vector_lanes()
        vt = ll.VectorType(self.tk.real, VL)
        it = ll.VectorType(I64, VL)
        return VL, vt, it, ll.Constant(it, list(range(VL))), vzero(vt)

    # ------------------------------------------------------------------ run-time eligibility

    def trailing_count(self, t: ll.Value, rank: int,
                       out_dims: Sequence[ll.Value]) -> tuple[ll.Value, ll.Value]:
        """(ok, nb): whether tensor t (rank `rank`) broadcasts to `out_dims` along leading axes
        only, and its element count nb. Shapes are valid broadcasts (checked before)."""
        tk = self.tk
        b = tk.b
        dims = tk.dims(t, rank)
        off = len(out_dims) - rank
        bcast = [b.icmp_unsigned("!=", d, out_dims[a + off]) for a, d in enumerate(dims)]
        # broadcast axes form a prefix
        ok = tk.all_of([b.not_(b.and_(bcast[a + 1], b.not_(bcast[a]))) for a in range(rank - 1)])
        return ok, tk.numel(dims)

    def vector_count_ok(self, nb: ll.Value, n: ll.Value) -> ll.Value:
        """Whether b[i mod nb] can be read by vec_elementwise: nb == n, a power of two below
        VL, or a multiple of VL."""
        tk = self.tk
        b = tk.b
        VL = tk.i64(self.vector_lanes())
        pow2 = b.icmp_unsigned("==", b.and_(nb, b.sub(nb, tk.i64(1))), tk.i64(0))
        small = b.and_(pow2, b.icmp_unsigned("<", nb, VL))
        whole = b.icmp_unsigned("==", b.urem(nb, VL), tk.i64(0))
        return b.or_(b.icmp_unsigned("==", nb, n), b.or_(small, whole))

    # ------------------------------------------------------------------ the loop

    def vec_elementwise(self, n: ll.Value, out: ll.Value,
                        operands: Sequence[tuple[ll.Value, str, Optional[ll.Value]]],
                        fn: Callable[[list[ll.Value]], ll.Value], one_body: bool = False) -> None:
        """out[i] = fn(x_0[i], ...) for i < n in vectors; operands are (value, kind, nb) with kind
        's' scalar, 'c' contiguous tensor data, 'w' data broadcast along leading axes (nb as in
        the module docstring; nb == n is allowed). `one_body`: one loop whose last, partial
        vector branches to masked loads and joins the whole vectors' path before fn, instead of
        a loop of whole vectors then a masked tail with its own copy of fn: for an fn as long as
        exp/tanh math, whose second copy costs more compile time than the branch costs."""
        tk = self.tk
        b = tk.b
        VL, vt, it, lanes, zeros = self.vector_kit()
        # a broadcast operand is read at base + j, j wrapping at count: b itself, or for a small
        # power-of-two count a stack copy of its tile (count VL, j always 0)
        bases: dict[int, ll.Value] = {}
        counts: dict[int, ll.Value] = {}
        for k, (v, kind, nb) in enumerate(operands):
            if kind == "w":
                assert nb is not None
                small = b.and_(b.icmp_unsigned("<", nb, tk.i64(VL)), b.icmp_unsigned("<", nb, n))
                buf = self.entry_alloca(vt)
                b.store(self._tile(v, nb, zeros), buf)
                bases[k] = b.select(small, buf, v)
                counts[k] = b.select(small, tk.i64(VL), nb)
        starts = [tk.i64(0) for k in bases]

        def loads(i0: ll.Value, offs: list[ll.Value], mask: Optional[ll.Value]) -> list[ll.Value]:
            """The tensor operands' vectors from i0 (offs: the broadcast operands' positions);
            mask None: all VL lanes are in range (plain loads)."""
            xs: list[ll.Value] = []
            w = 0
            for k, (v, kind, nb) in enumerate(operands):
                if kind == "c":
                    xs.append(self._load(tk.elem_ptr(v, i0), mask, zeros))
                elif kind == "w":
                    j = offs[w]
                    w += 1
                    src = tk.elem_ptr(bases[k], j)
                    if mask is None:  # whole vectors lie inside b (count is n or a multiple of VL)
                        xs.append(self._load(src, None, zeros))
                    else:
                        inb = b.icmp_unsigned("<", lanes, self.vsplat(b.sub(counts[k], j), it))
                        xs.append(self._load(src, b.and_(mask, inb), zeros))
            return xs

        def compute(i0: ll.Value, offs: list[ll.Value], loaded: list[ll.Value]) -> list[ll.Value]:
            """fn on the loaded vectors (scalars splatted), stored at i0; the next offs."""
            it_loaded = iter(loaded)
            xs = [self.vsplat(v, vt) if kind == "s" else next(it_loaded) for v, kind, _ in operands]
            nxt: list[ll.Value] = []
            for k, j in zip(bases, offs):
                j2 = b.add(j, tk.i64(VL))
                nxt.append(b.select(b.icmp_unsigned(">=", j2, counts[k]), tk.i64(0), j2))
            with tk.vector_body(VL):
                y = fn(xs)
            b.store(y, tk.elem_ptr(out, i0), align=tk.mc.elem_size)
            return nxt

        def body(i0: ll.Value, offs: list[ll.Value], mask: Optional[ll.Value]) -> list[ll.Value]:
            return compute(i0, offs, loads(i0, offs, mask))

        def body_one(i0: ll.Value, offs: list[ll.Value]) -> list[ll.Value]:
            partial = b.icmp_unsigned(">", b.add(i0, tk.i64(VL)), n)
            with b.if_else(partial, likely=False) as (then, other):
                with then:
                    tail = loads(i0, offs, b.icmp_unsigned("<", lanes, self.vsplat(b.sub(n, i0), it)))
                    tail_bb = b.block
                with other:
                    whole_ = loads(i0, offs, None)
                    whole_bb = b.block
            joined = []
            for xt, xw in zip(tail, whole_):
                phi = b.phi(vt)
                phi.add_incoming(xt, tail_bb)
                phi.add_incoming(xw, whole_bb)
                joined.append(phi)
            return compute(i0, offs, joined)

        if one_body:
            tk.loop(tk.i64(0), n, body_one, starts, step=VL)
            return
        whole = b.mul(b.udiv(n, tk.i64(VL)), tk.i64(VL))
        offs = tk.loop(tk.i64(0), whole, lambda i0, c: body(i0, c, None), starts, step=VL)
        with b.if_then(b.icmp_unsigned("<", whole, n)):
            body(whole, offs, b.icmp_unsigned("<", lanes, self.vsplat(b.sub(n, whole), it)))

    def entry_alloca(self, typ: ll.Type) -> ll.Value:
        """A stack slot in the entry block of the function being emitted: the emitter's own
        function, or an outlined kernel (whose emission starts in its entry block)."""
        tk = self.tk
        if tk.fn is tk.entry.parent:
            return tk.alloca(typ)
        return tk.b.alloca(typ)

    def _load(self, ptr: ll.Value, mask: Optional[ll.Value], zeros: ll.Value) -> ll.Value:
        """A vector from ptr: whole (mask None), else the lanes of mask (the others 0)."""
        tk = self.tk
        if mask is None:
            return tk.b.load(ptr, typ=zeros.type, align=tk.mc.elem_size)
        return self.masked_load(ptr, mask, zeros)

    # ------------------------------------------------------------------ helpers

    def vsplat(self, x: ll.Value, vt: ll.VectorType) -> ll.Value:
        """x in every lane of a vector of type vt."""
        tk = self.tk
        b = tk.b
        v = b.insert_element(ll.Constant(vt, ll.Undefined), x, tk.i32(0))
        zero_mask = ll.Constant(ll.VectorType(I32, vt.count), None)
        return b.shuffle_vector(v, ll.Constant(vt, ll.Undefined), zero_mask)

    def masked_load(self, ptr: ll.Value, mask: ll.Value, passthru: ll.Value) -> ll.Value:
        """The lanes of mask from ptr (the others from passthru); never touches masked-off lanes'
        memory. (LLVM 22 form: the alignment is an attribute of the pointer argument.)"""
        tk = self.tk
        vt = passthru.type
        fn = tk.mc.intrinsic("llvm.masked.load", vt, [PTR, mask.type, vt], [vt, PTR])
        call = tk.b.call(fn, [ptr, mask, passthru])
        call.arg_attributes[0] = ll.values.ArgumentAttributes()
        call.arg_attributes[0].align = tk.mc.elem_size
        return call

    def masked_store(self, value: ll.Value, ptr: ll.Value, mask: ll.Value) -> None:
        """Store the lanes of mask of value at ptr."""
        tk = self.tk
        vt = value.type
        fn = tk.mc.intrinsic("llvm.masked.store", VOID, [vt, PTR, mask.type], [vt, PTR])
        call = tk.b.call(fn, [value, ptr, mask])
        call.arg_attributes[1] = ll.values.ArgumentAttributes()
        call.arg_attributes[1].align = tk.mc.elem_size

    def _tile(self, base: ll.Value, nb: ll.Value, zeros: ll.Value) -> ll.Value:
        """b[lane mod nb] for nb a power of two below VL (anything else when nb is not: the
        tile is then unused): b's first elements, repeated by constant shuffles."""
        tk = self.tk
        b = tk.b
        VL = zeros.type.count
        lanes = ll.Constant(ll.VectorType(I64, VL), list(range(VL)))
        head = self.masked_load(base, b.icmp_unsigned("<", lanes, self.vsplat(nb, lanes.type)), zeros)
        tile = head
        w = VL // 2
        while w >= 1:  # from the widest repeat down: nb == w repeats the first w lanes
            rep = b.shuffle_vector(head, head, ll.Constant(ll.VectorType(I32, VL), [i % w for i in range(VL)]))
            tile = b.select(b.icmp_unsigned("==", nb, tk.i64(w)), rep, tile)
            w //= 2
        return tile
