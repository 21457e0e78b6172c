"""Matrix products of the LLVM lowering: tiny products inline, the others through the runtime.

Owns: `Linalg.matmul_into`, C[m,n] = op(A) . op(B) into a fresh buffer. Products of at
most SMALL_MATMUL_WORK multiply-adds (checked at run time: shapes are dynamic) run as an inline
loop nest; larger ones call `noma_matmul` (noma_rt_linalg.c). Both compute every element of C as
the same fused multiply-add chain over p = 0..k-1 in order, starting from +0 (the runtime's
native kernel does, and it is the one used for products this small whatever BLAS is registered),
so which path runs never changes a result. A call and the runtime's blocking set-up cost more
than a batch-4 XOR layer's whole product (2 x 2 x 4 multiply-adds).
Input: a toolkit.Toolkit and a vector.VectorLoops. Output: llvmlite.ir code.
Imports: llvmlite.ir, basics, toolkit, vector.
"""

from __future__ import annotations

from llvmlite import ir as ll

from noma.compiler.llvm.basics import I1, I64, PTR, VOID
from noma.compiler.llvm.toolkit import Toolkit
from noma.compiler.llvm.vector import VectorLoops

#: Largest product (m * n * k multiply-adds) computed inline. The batch-4 XOR layers (2-16-1:
#: at most 128) are inline; a digits layer (64 x 64 x 128) calls the runtime's vector kernel.
SMALL_MATMUL_WORK = 256


class Linalg:
    """Emits matrix products through the toolkit `tk` (vector loads and stores through `vec`)."""

    def __init__(self, tk: Toolkit, vec: VectorLoops):
        self.tk = tk
        self.vec = vec

    def matmul_into(self, A: ll.Value, B: ll.Value, C: ll.Value, m: ll.Value, k: ll.Value,
                    n: ll.Value, ta: bool, tb: bool) -> None:
        """C (m x n, fresh) = op(A) . op(B); op transposes when ta / tb (A stored k x m, B n x k).
        One call of a helper per (ta, tb), shared by the session's modules (`noma.k.matmul.<ta><tb>`,
        see Toolkit.shared_helper): the size check, the loops and the runtime call are compiled
        once, not at every product."""
        tk = self.tk
        fnty = ll.FunctionType(VOID, [PTR, PTR, PTR, I64, I64, I64])
        fn = tk.shared_helper(f"noma.k.matmul.{int(ta)}{int(tb)}", fnty,
                              lambda f: self._emit_matmul(f, ta, tb))
        tk.b.call(fn, [A, B, C, m, k, n])

    def _emit_matmul(self, fn: ll.Function, ta: bool, tb: bool) -> None:
        tk = self.tk
        A, B, C, m, k, n = fn.args
        C.add_attribute("noalias")  # a fresh buffer
        b = tk.b
        limit = tk.i64(SMALL_MATMUL_WORK)
        small: ll.Value = ll.Constant(I1, 1)
        for d in (m, k, n):  # each bounded first, so the product cannot overflow
            small = b.and_(small, b.icmp_unsigned("<=", d, limit))
        small = b.and_(small, b.icmp_unsigned("<=", b.mul(b.mul(m, n), k), limit))
        if tb:  # B's rows are strided: the vector loops read a transposed B only as a column
            small = b.and_(small, b.icmp_unsigned("==", k, tk.i64(1)))
        with b.if_then(b.not_(small), likely=False):
            tk.rt("noma_matmul", A, B, C, m, k, n, tk.i32(ta), tk.i32(tb))
            b.ret_void()
        self._matmul_vec(A, B, C, m, k, n, ta)
        b.ret_void()

    def _matmul_vec(self, A: ll.Value, B: ll.Value, C: ll.Value, m: ll.Value, k: ll.Value,
                    n: ll.Value, ta: bool) -> None:
        """Rows of C in panels of one vector (the last one masked): the panel's accumulators
        stay in a register through the chain over p; B[p, j0:j0+VL] is contiguous (B not
        transposed, or a transposed column: k == 1)."""
        tk = self.tk
        b = tk.b
        VL, vt, it, lanes, zeros = self.vec.vector_kit()

        def row(i: ll.Value, _c: list) -> None:
            a_row = b.mul(i, tk.i64(1) if ta else k)
            a_step = m if ta else tk.i64(1)
            c_row = b.mul(i, n)

            def panel(j0: ll.Value, _c2: list) -> None:
                mask = b.icmp_unsigned("<", lanes, self.vec.vsplat(b.sub(n, j0), it))

                def dot(p: ll.Value, acc: list) -> list:
                    x = self.vec.vsplat(tk.load_elem(A, b.add(a_row, b.mul(p, a_step))), vt)
                    y = self.vec.masked_load(tk.elem_ptr(B, b.add(b.mul(p, n), j0)), mask, zeros)
                    return [tk.intr("llvm.fmuladd", x, y, acc[0])]
                (acc,) = tk.loop(tk.i64(0), k, dot, [zeros])
                self.vec.masked_store(acc, tk.elem_ptr(C, b.add(c_row, j0)), mask)
            tk.loop(tk.i64(0), n, panel, step=VL)
        tk.loop(tk.i64(0), m, row)
