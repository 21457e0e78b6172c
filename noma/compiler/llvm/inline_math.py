"""Library-free, vectorizable exp, tanh and sigmoid for the LLVM lowering.

Owns: `InlineMath`, the polynomial/rational approximations emitted inline so elementwise loops
vectorize without libm calls: f64 exp and tanh (within 2 ulp of NumPy) and sigmoid (3 ulp, one
division), f32 exp, tanh and sigmoid computed in single precision (Cephes), with exact overflow,
subnormal, NaN and signed-zero behaviour.
Every function works on scalars or, while the toolkit's `vl` > 0 (an explicitly vectorized loop
body, vector.py), on <vl x T> vectors: constants and types go through `lanes` / `f64c` / `f32c`
/ `lane_int`, so one definition serves both (each lane computes what the scalar code computes).
Input: a toolkit.Toolkit (builder, real type, constants, intrinsics). Output: llvmlite.ir values.
Imports: llvmlite.ir, basics, toolkit.
"""

from __future__ import annotations

from typing import Callable, Sequence

from llvmlite import ir as ll

from noma.compiler.llvm.basics import I64
from noma.compiler.llvm.toolkit import Toolkit


class InlineMath:
    """Emits exp, tanh and sigmoid inline through the toolkit `tk` (scalar or vector lanes)."""

    def __init__(self, tk: Toolkit):
        self.tk = tk

    def _poly(self, x: ll.Value, coeffs: Sequence[float], leading_one: bool = False) -> ll.Value:
        """Horner: c0*x^k + ... + ck (with an implicit leading 1 when leading_one); each step
        acc*x + c is an llvm.fmuladd (one fused multiply-add where the CPU has them: these loops
        are bound by floating-point throughput)."""
        tk = self.tk
        acc: ll.Value = tk.b.fadd(x, self.f64c(coeffs[0])) if leading_one else self.f64c(coeffs[0])
        for c in coeffs[1:]:
            acc = tk.intr("llvm.fmuladd", acc, x, self.f64c(c))
        return acc

    def f64c(self, v: float) -> ll.Constant:
        return self.tk.lane_const(ll.DoubleType(), v)

    def _in_f64(self, x: ll.Value, kernel: Callable[[ll.Value], ll.Value]) -> ll.Value:
        """Run a double-precision kernel on a real (f32 reals are widened and rounded back)."""
        tk = self.tk
        if tk.mc.dtype == "f64":
            return kernel(x)
        return tk.b.fptrunc(kernel(tk.b.fpext(x, tk.lanes(ll.DoubleType()))), tk.lanes(tk.real))

    def exp_real(self, x: ll.Value) -> ll.Value:
        """exp without a library call (so loops vectorize): Cephes' exp (Padé form, about 1 ulp),
        branch-free, exact IEEE edge cases (overflow inf, underflow to subnormals and 0, NaN)."""
        if self.tk.mc.dtype == "f32":
            return self._exp_f32(x)
        return self._in_f64(x, self._exp_f64)

    def _exp_f64_parts(self, xs: ll.Value) -> tuple[ll.Value, ll.Value, ll.Value]:
        """Cephes' reduction of a finite xs: exp(xs) = 2^n (q + p) / (q - p); returns (n as an
        i64, p, q)."""
        tk = self.tk
        b = tk.b
        px = tk.intr("llvm.floor", b.fadd(b.fmul(xs, self.f64c(1.4426950408889634073599)), self.f64c(0.5)))
        n = b.fptosi(px, tk.lanes(I64))
        r = b.fsub(xs, b.fmul(px, self.f64c(6.93145751953125e-1)))
        r = b.fsub(r, b.fmul(px, self.f64c(1.42860682030941723212e-6)))
        rr = b.fmul(r, r)
        p = b.fmul(r, self._poly(rr, (1.26177193074810590878e-4, 3.02994407707441961300e-2,
                                      9.99999999999999999910e-1)))
        q = self._poly(rr, (3.00198505138664455042e-6, 2.52448340349684104192e-3,
                            2.27265548208155028766e-1, 2.00000000000000000009e0))
        return n, p, q

    def _pow2_f64(self, k: ll.Value) -> ll.Value:
        """2^k as a double for an i64 k in [-1022, 1023]."""
        tk = self.tk
        b = tk.b
        return b.bitcast(b.shl(b.add(k, tk.lane_int(1023)), tk.lane_int(52)), tk.lanes(ll.DoubleType()))

    def _exp_f64(self, x: ll.Value) -> ll.Value:
        tk = self.tk
        b = tk.b
        big = b.fcmp_ordered(">", x, self.f64c(709.782712893384))
        small = b.fcmp_ordered("<", x, self.f64c(-745.1332191019412))
        nan = b.fcmp_unordered("uno", x, x)
        xs = b.select(b.or_(b.or_(big, small), nan), self.f64c(0.0), x)
        n, p, q = self._exp_f64_parts(xs)
        e = b.fadd(self.f64c(1.0), b.fmul(self.f64c(2.0), b.fdiv(p, b.fsub(q, p))))
        n1 = b.ashr(n, tk.lane_int(1))
        n2 = b.sub(n, n1)
        core = b.fmul(b.fmul(e, self._pow2_f64(n1)), self._pow2_f64(n2))
        out = b.select(small, self.f64c(0.0), core)
        out = b.select(big, self.f64c(float("inf")), out)
        return b.select(nan, x, out)

    def sigmoid_real(self, x: ll.Value) -> ll.Value:
        """1 / (1 + exp(-x)). f64: one division instead of two (they are the latency of a tiny
        training step): with exp(-x) = 2^n (q + p) / (q - p) (Cephes' rational form), the
        sigmoid is (q - p) / ((q - p) + 2^n (q + p)); within 3 ulp of NumPy (subnormal results
        included), exact 0 / 1 where exp(-x) overflows / underflows, NaN kept. f32:
        1 / (1 + expf(-x)) (expf divides none)."""
        tk = self.tk
        b = tk.b
        if tk.mc.dtype == "f32":
            one = self.f32c(1.0)
            return b.fdiv(one, b.fadd(one, self._exp_f32(b.fneg(x))))
        t = b.fneg(x)
        big = b.fcmp_ordered(">", t, self.f64c(709.782712893384))
        small = b.fcmp_ordered("<", t, self.f64c(-745.1332191019412))
        nan = b.fcmp_unordered("uno", t, t)
        ts = b.select(b.or_(b.or_(big, small), nan), self.f64c(0.0), t)
        n, p, q = self._exp_f64_parts(ts)
        # both terms scaled by 1/4 (exact): q + p < 2.4, so (q + p) 2^(n-2) stays finite for
        # every n up to 1024 (exp(-x) just below its overflow)
        qmp = b.fmul(b.fsub(q, p), self.f64c(0.25))
        m = b.sub(n, tk.lane_int(2))
        n1 = b.ashr(m, tk.lane_int(1))
        n2 = b.sub(m, n1)
        scaled = b.fmul(b.fmul(b.fadd(q, p), self._pow2_f64(n1)), self._pow2_f64(n2))
        out = b.fdiv(qmp, b.fadd(qmp, scaled))
        out = b.select(small, self.f64c(1.0), out)
        out = b.select(big, self.f64c(0.0), out)
        return b.select(nan, x, out)

    def tanh_real(self, x: ll.Value) -> ll.Value:
        """tanh without a library call: Cephes' tanh (rational form below 0.625, through exp
        above), branch-free."""
        if self.tk.mc.dtype == "f32":
            return self._tanh_f32(x)
        return self._in_f64(x, self._tanh_f64)

    def f32c(self, v: float) -> ll.Constant:
        return self.tk.lane_const(ll.FloatType(), v)

    def _exp_f32(self, x: ll.Value) -> ll.Value:
        """Single-precision exp in single precision (vectorizes 2x wider than the f64 kernel):
        Cephes' expf (degree-5 polynomial after a two-constant ln 2 reduction, about 1 ulp),
        branch-free, IEEE edge cases (overflow inf, underflow through subnormals to 0, NaN)."""
        tk = self.tk
        b, f, i32 = tk.b, tk.lanes(ll.FloatType()), tk.lanes(ll.IntType(32))
        big = b.fcmp_ordered(">", x, self.f32c(88.72283935546875))
        small = b.fcmp_ordered("<", x, self.f32c(-103.97208404541016))
        nan = b.fcmp_unordered("uno", x, x)
        xs = b.select(b.or_(b.or_(big, small), nan), self.f32c(0.0), x)
        px = tk.intr("llvm.floor", b.fadd(b.fmul(xs, self.f32c(1.44269504088896341)), self.f32c(0.5)))
        n = b.fptosi(px, i32)
        r = b.fsub(xs, b.fmul(px, self.f32c(0.693359375)))
        r = b.fsub(r, b.fmul(px, self.f32c(-2.12194440e-4)))
        z = b.fmul(r, r)
        acc = self.f32c(1.9875691500e-4)
        for c in (1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1):
            acc = b.fadd(b.fmul(acc, r), self.f32c(c))
        y = b.fadd(b.fadd(b.fmul(acc, z), r), self.f32c(1.0))
        n1 = b.ashr(n, tk.lane_int(1, 32))
        n2 = b.sub(n, n1)

        def pow2(k: ll.Value) -> ll.Value:
            return b.bitcast(b.shl(b.add(k, tk.lane_int(127, 32)), tk.lane_int(23, 32)), f)
        core = b.fmul(b.fmul(y, pow2(n1)), pow2(n2))
        out = b.select(small, self.f32c(0.0), core)
        out = b.select(big, self.f32c(float("inf")), out)
        return b.select(nan, x, out)

    def _tanh_f32(self, x: ll.Value) -> ll.Value:
        """Single-precision tanh in single precision: Cephes' tanhf (odd polynomial below 0.625,
        1 - 2 / (exp(2|x|) + 1) above; about 2 ulp), branch-free, one division."""
        tk = self.tk
        b = tk.b
        z = tk.intr("llvm.fabs", x)
        s = self._exp_f32(b.fmul(self.f32c(2.0), z))
        large = tk.intr("llvm.copysign", b.fsub(self.f32c(1.0), b.fdiv(self.f32c(2.0), b.fadd(s, self.f32c(1.0)))), x)
        x2 = b.fmul(x, x)
        acc = self.f32c(-5.70498872745e-3)
        for c in (2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1, -3.33332819422e-1):
            acc = b.fadd(b.fmul(acc, x2), self.f32c(c))
        small = b.fadd(b.fmul(b.fmul(acc, x2), x), x)
        small = b.select(b.fcmp_ordered("==", x, self.f32c(0.0)), x, small)  # keeps -0
        return b.select(b.fcmp_ordered(">=", z, self.f32c(0.625)), large, small)

    def _tanh_f64(self, x: ll.Value) -> ll.Value:
        """One division per lane (divisions bound this loop): the large branch (|x| >= 0.625)
        is 1 - 2 / (exp(2|x|) + 1) with exp(w) = 2^n (q + p) / (q - p) (Cephes' rational form)
        folded in: 2 (q - p) / (2^n (q + p) + (q - p)); the small one is x + x^3 P(x^2) / Q(x^2).
        Numerator and denominator are chosen per lane, then divided once. 2|x| is clamped to 44
        (tanh is 1 in double precision from |x| = 19.1), so 2^n never overflows; NaN takes the
        small branch. Within 2 ulp of NumPy."""
        tk = self.tk
        b = tk.b
        z = tk.intr("llvm.fabs", x)
        big = b.fcmp_ordered(">=", z, self.f64c(0.625))
        w = b.fmul(self.f64c(2.0), z)
        w = b.select(b.fcmp_ordered("<", w, self.f64c(44.0)), w, self.f64c(44.0))
        n, p, q = self._exp_f64_parts(w)
        qmp = b.fsub(q, p)
        big_num = b.fmul(self.f64c(2.0), qmp)
        big_den = b.fadd(b.fmul(self._pow2_f64(n), b.fadd(q, p)), qmp)
        x2 = b.fmul(x, x)
        sp = self._poly(x2, (-9.64399179425052238628e-1, -9.92877231001918586564e1,
                             -1.61468768441708447952e3))
        sq = self._poly(x2, (1.12811678491632931402e2, 2.23548839060100448583e3,
                             4.84406305325125486048e3), leading_one=True)
        ratio = b.fdiv(b.select(big, big_num, sp), b.select(big, big_den, sq))
        large = tk.intr("llvm.copysign", b.fsub(self.f64c(1.0), ratio), x)
        small = b.fadd(x, b.fmul(b.fmul(x, x2), ratio))
        small = b.select(b.fcmp_ordered("==", x, self.f64c(0.0)), x, small)  # keeps -0
        return b.select(big, large, small)
