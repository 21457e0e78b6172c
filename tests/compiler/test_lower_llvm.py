"""lower_llvm + jit: hand-built IR lowered to LLVM, JIT-compiled, run through the native runtime
and compared with NumPy.

Inputs reach the code through global slots (set from Python), results leave through global
slots (read back from Python) or captured print output.
"""

from __future__ import annotations

import ctypes
import itertools
import math
import os
import signal
import threading

import numpy as np
import pytest

from noma.compiler.middle import ir
from noma.compiler.llvm.jit import JIT, UndefinedSymbolError, emit_assembly, emit_object
from noma.compiler.llvm.lower_llvm import fn_pointer_name, lower_module
from noma.rt import native_lib
from noma.rt.native_lib import NomaTensor

Op = ir.Op
_ids = itertools.count()
OUT = 100  # first output global slot


class Session:
    """One JIT and one runtime context (like a REPL session)."""

    def __init__(self, dtype: str = "f64"):
        self.dtype = dtype
        self.jit = JIT(dtype=dtype)
        self.lib = native_lib.load_runtime(dtype)
        self.ctx = self.lib.noma_ctx_new()
        self.lib.noma_set_capture(self.ctx, 1)

    def close(self) -> None:
        self.lib.noma_ctx_free(self.ctx)

    def compile(self, module: ir.Module, own=None, symbols=None) -> dict[str, str]:
        n = next(_ids)
        ir.verify(module)
        symbols = symbols or {f: f"t{n}.{f}" for f in module.functions}
        own = {f for f in module.functions if not f.startswith("__")} if own is None else own
        text = lower_module(module, symbols=symbols, own_pointers=own, name=f"m{n}")
        self.jit.add_ir(text, f"m{n}")
        return symbols

    def invoke(self, symbol: str) -> int:
        return self.lib.noma_invoke(self.ctx, ctypes.c_void_p(self.jit.function_address(symbol)))

    def run(self, module: ir.Module, entry: str = "__t") -> int:
        return self.invoke(self.compile(module)[entry])

    def put(self, slot: int, value) -> None:
        self.lib.noma_ctx_activate(self.ctx)
        arr = np.asarray(value, dtype=native_lib.numpy_dtype(self.dtype))
        if arr.ndim == 0:
            self.lib.noma_global_store_s(slot, float(arr))
        else:
            t = NomaTensor.from_array(arr, self.dtype)
            self.lib.noma_global_store(slot, ctypes.byref(t))

    def get(self, slot: int):
        self.lib.noma_ctx_activate(self.ctx)
        t = self.lib.noma_global(slot).contents
        if t.rank == 0:
            return float(self.lib.noma_global_load_s(slot))
        return t.to_numpy(self.dtype)

    def param(self, slot: int):
        self.lib.noma_ctx_activate(self.ctx)
        t = self.lib.noma_param(slot).contents
        if t.rank == 0:
            return float(ctypes.cast(t.data, ctypes.POINTER(native_lib.real_ctype(self.dtype)))[0])
        return t.to_numpy(self.dtype)

    def output(self) -> str:
        n = self.lib.noma_output_len(self.ctx)
        text = ctypes.string_at(self.lib.noma_output_data(self.ctx), n).decode()
        self.lib.noma_output_clear(self.ctx)
        return text

    def warnings(self) -> str:
        n = self.lib.noma_warnings_len(self.ctx)
        text = ctypes.string_at(self.lib.noma_warnings_data(self.ctx), n).decode()
        self.lib.noma_warnings_clear(self.ctx)
        return text

    def error(self) -> tuple[int, int, str]:
        msg = self.lib.noma_error_message(self.ctx)
        return (self.lib.noma_error_kind(self.ctx), self.lib.noma_error_span(self.ctx),
                msg.decode() if isinstance(msg, bytes) else ctypes.string_at(msg).decode())

    def losses(self) -> np.ndarray:
        n = self.lib.noma_log_len(self.ctx)
        out = (native_lib.real_ctype(self.dtype) * max(n, 1))()
        n = self.lib.noma_log_copy(self.ctx, out, n)
        return np.array(out[:n], dtype=np.float64)


@pytest.fixture
def sess():
    s = Session()
    yield s
    s.close()


class Prog:
    """A module with an entry `__t` under construction (b: its builder)."""

    def __init__(self, dtype: str = "f64"):
        self.m = ir.Module(dtype=dtype)
        self.fn = ir.Function("__t", [], ir.Block(), None)
        self.m.functions["__t"] = self.fn
        self.b = ir.Builder(self.m, self.fn.body)

    def load(self, slot: int, rank: int) -> ir.Value:
        return self.b.value(Op.GLOBAL_LOAD, slot=slot, name=f"g{slot}", rank=rank)

    def store(self, slot: int, v: ir.Value) -> None:
        self.b.emit(Op.GLOBAL_STORE, (v,), slot=slot, name=f"g{slot}")

    def c(self, x: float) -> ir.Value:
        return self.b.const(x)

    def v(self, op: Op, *args: ir.Value, span: int = -1, **attrs) -> ir.Value:
        return self.b.value(op, *args, span=span, **attrs)


def run_op(sess: Session, op: Op, inputs: list, span: int = 5, **attrs):
    """Apply op to inputs (NumPy arrays / floats) and return the result (status must be 0)."""
    p = Prog()
    args = []
    for k, x in enumerate(inputs):
        sess.put(k, x)
        args.append(p.load(k, np.ndim(x)))
    p.store(OUT, p.v(op, *args, span=span, **attrs))
    status = sess.run(p.m)
    assert status == 0, sess.error()
    return sess.get(OUT)


# ----------------------------------------------------------------------------- elementwise

RNG = np.random.default_rng(0)
X = RNG.normal(size=(3, 5))
POS = np.abs(X) + 0.1

UNARY = [
    (Op.NEG, X, lambda x: -x), (Op.EXP, X, np.exp), (Op.LOG, POS, np.log), (Op.SQRT, POS, np.sqrt),
    (Op.SIN, X, np.sin), (Op.COS, X, np.cos), (Op.TAN, X, np.tan), (Op.TANH, X, np.tanh),
    (Op.SIGMOID, X, lambda x: 1 / (1 + np.exp(-x))), (Op.RELU, X, lambda x: np.maximum(x, 0)),
    (Op.ABS, X, np.abs), (Op.SIGN, np.array([-2.0, 0.0, 3.0, -0.5]), np.sign),
    (Op.FLOOR, X * 3, np.floor), (Op.CEIL, X * 3, np.ceil),
    (Op.NOT, np.array([0.0, 1.0, -2.0, 0.0]), lambda x: (x == 0).astype(float)),
    (Op.STOP_GRAD, X, lambda x: x),
]


@pytest.mark.parametrize("op,x,ref", UNARY, ids=[u[0].value for u in UNARY])
def test_unary(sess, op, x, ref):
    np.testing.assert_allclose(run_op(sess, op, [x]), ref(x), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(run_op(sess, op, [x.flat[1]]), ref(x.flat[1]), rtol=1e-14)


@pytest.mark.parametrize("to,ref", [
    ("f32", lambda x: x.astype(np.float32).astype(np.float64)),
    ("i32", np.trunc), ("i64", np.trunc), ("f64", lambda x: x)])
def test_cast(sess, to, ref):
    x = X * 1e3 + 1e-9
    np.testing.assert_array_equal(run_op(sess, Op.CAST, [x], to=to), ref(x))


BINARY = {
    Op.ADD: np.add, Op.SUB: np.subtract, Op.MUL: np.multiply, Op.DIV: np.divide,
    Op.POW: lambda a, b: np.power(np.abs(a) + 0.5, b), Op.MOD: np.fmod,
    Op.MIN: np.minimum, Op.MAX: np.maximum,
    Op.LT: lambda a, b: (a < b) * 1.0, Op.LE: lambda a, b: (a <= b) * 1.0,
    Op.GT: lambda a, b: (a > b) * 1.0, Op.GE: lambda a, b: (a >= b) * 1.0,
    Op.EQ: lambda a, b: (a == b) * 1.0, Op.NE: lambda a, b: (a != b) * 1.0,
    Op.AND: lambda a, b: np.logical_and(a, b) * 1.0, Op.OR: lambda a, b: np.logical_or(a, b) * 1.0,
}
SHAPES = [((2, 3), (2, 3)), ((2, 3), (3,)), ((2, 1), (1, 3)), ((3,), ()), ((), (2, 3)),
          ((4, 1, 3), (2, 3)), ((), ()), ((2, 3, 1, 2), (3, 4, 1)), ((5, 1), (5, 7))]


@pytest.mark.parametrize("op", list(BINARY), ids=[o.value for o in BINARY])
def test_binary_broadcasting(sess, op):
    for sa, sb in SHAPES:
        a = np.round(RNG.normal(size=sa) * 2, 1)
        b = np.round(RNG.normal(size=sb) * 2, 1)
        if op is Op.AND or op is Op.OR:
            a = np.where(np.asarray(RNG.random(size=sa)) < 0.4, 0.0, a)
        if op is Op.DIV or op is Op.MOD:
            b = np.where(b == 0, 0.7, b)
        if op is Op.POW:
            got = run_op(sess, op, [np.abs(a) + 0.5, b])
        else:
            got = run_op(sess, op, [a, b])
        np.testing.assert_allclose(got, BINARY[op](a, b), rtol=1e-14, err_msg=f"{sa} {sb}")


def test_min_max_propagate_nan(sess):
    a = np.array([1.0, np.nan, 3.0])
    b = np.array([np.nan, 2.0, 1.0])
    np.testing.assert_array_equal(run_op(sess, Op.MAX, [a, b]), np.maximum(a, b))
    np.testing.assert_array_equal(run_op(sess, Op.MIN, [a, b]), np.minimum(a, b))


def test_select_three_way_broadcast(sess):
    c = np.array([[1.0], [0.0]])
    a = np.array([1.0, 2.0, 3.0])
    got = run_op(sess, Op.SELECT, [c, a, -1.0])
    np.testing.assert_array_equal(got, np.where(c != 0, a, -1.0))
    got = run_op(sess, Op.SELECT, [c, a, np.array([[7.0, 8.0, 9.0]])])
    np.testing.assert_array_equal(got, np.where(c != 0, a, [[7.0, 8.0, 9.0]]))


def test_large_contiguous_and_strided(sess):
    a = RNG.normal(size=(37, 129))
    b = RNG.normal(size=(129,))
    np.testing.assert_allclose(run_op(sess, Op.MUL, [a, b]), a * b, rtol=1e-15)
    c = RNG.normal(size=(37, 1))
    np.testing.assert_allclose(run_op(sess, Op.SUB, [a, c]), a - c, rtol=1e-15)
    np.testing.assert_allclose(run_op(sess, Op.ADD, [a, a]), a + a, rtol=1e-15)


def test_shape_error(sess):
    p = Prog()
    sess.put(0, np.zeros((2, 3)))
    sess.put(1, np.zeros(4))
    p.store(OUT, p.v(Op.ADD, p.load(0, 2), p.load(1, 1), span=17))
    assert sess.run(p.m) == 1
    kind, span, msg = sess.error()
    assert (kind, span) == (3, 17)
    assert "[2, 3]" in msg and "[4]" in msg


# ----------------------------------------------------------------------------- reductions


@pytest.mark.parametrize("op,ref", [(Op.SUM, np.sum), (Op.MAX_R, np.max), (Op.MIN_R, np.min)])
def test_reductions(sess, op, ref):
    x = RNG.normal(size=(3, 4, 5))
    np.testing.assert_allclose(run_op(sess, op, [x], axis=None), ref(x), rtol=1e-13)
    big = RNG.normal(size=(1003,))
    np.testing.assert_allclose(run_op(sess, op, [big], axis=None), ref(big), rtol=1e-12)
    for axis in (0, 1, 2, -1):
        for keep in (False, True):
            got = run_op(sess, op, [x], axis=axis, keepdims=keep)
            np.testing.assert_allclose(got, ref(x, axis=axis, keepdims=keep), rtol=1e-13)


def test_max_of_empty_fails(sess):
    p = Prog()
    sess.put(0, np.zeros((0,)))
    p.store(OUT, p.v(Op.MAX_R, p.load(0, 1), axis=None, span=3))
    assert sess.run(p.m) == 1
    assert sess.error()[1] == 3


def test_argmax(sess):
    x = np.array([[1.0, 5.0, 5.0, 2.0], [9.0, 0.0, 9.5, -1.0], [-3.0, -2.0, -4.0, -2.0]])
    np.testing.assert_array_equal(run_op(sess, Op.ARGMAX, [x]), np.argmax(x, axis=-1))
    assert run_op(sess, Op.ARGMAX, [x[1]]) == 2.0
    x3 = RNG.normal(size=(2, 3, 4))
    np.testing.assert_array_equal(run_op(sess, Op.ARGMAX, [x3]), np.argmax(x3, axis=-1))


def test_sum_to_and_broadcast_to(sess):
    x = RNG.normal(size=(4, 2, 3))
    np.testing.assert_allclose(run_op(sess, Op.SUM_TO, [x, np.zeros((2, 1))]),
                               x.sum(axis=(0, 2)).reshape(2, 1), rtol=1e-14)
    np.testing.assert_allclose(run_op(sess, Op.SUM_TO, [x, np.zeros(3)]), x.sum(axis=(0, 1)), rtol=1e-14)
    np.testing.assert_allclose(run_op(sess, Op.SUM_TO, [x, 0.0]), x.sum(), rtol=1e-14)
    np.testing.assert_array_equal(run_op(sess, Op.SUM_TO, [x, np.zeros((4, 2, 3))]), x)
    y = np.array([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(run_op(sess, Op.BROADCAST_TO, [y, np.zeros((2, 3))]),
                                  np.broadcast_to(y, (2, 3)))
    col = np.array([[1.0], [2.0]])
    np.testing.assert_array_equal(run_op(sess, Op.BROADCAST_TO, [col, np.zeros((2, 3))]),
                                  np.broadcast_to(col, (2, 3)))
    np.testing.assert_array_equal(run_op(sess, Op.BROADCAST_TO, [2.5, np.zeros((2, 2))]), np.full((2, 2), 2.5))
    np.testing.assert_array_equal(run_op(sess, Op.BROADCAST_TO, [x, np.zeros((4, 2, 3))]), x)
    p = Prog()
    sess.put(0, y)
    sess.put(1, np.zeros((2, 4)))
    p.store(OUT, p.v(Op.BROADCAST_TO, p.load(0, 1), p.load(1, 2), span=9))
    assert sess.run(p.m) == 1
    assert sess.error()[:2] == (3, 9)


# ----------------------------------------------------------------------------- linear algebra, shape


@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_matmul(sess, ta, tb):
    a = RNG.normal(size=(3, 4))
    b = RNG.normal(size=(4, 5))
    A = a.T.copy() if ta else a
    B = b.T.copy() if tb else b
    np.testing.assert_allclose(run_op(sess, Op.MATMUL, [A, B], ta=ta, tb=tb), a @ b, rtol=1e-13)
    big_a, big_b = RNG.normal(size=(70, 90)), RNG.normal(size=(90, 65))
    np.testing.assert_allclose(run_op(sess, Op.MATMUL, [big_a, big_b], ta=False, tb=False), big_a @ big_b,
                               rtol=1e-12)


def test_matmul_shape_error(sess):
    p = Prog()
    sess.put(0, np.zeros((2, 3)))
    sess.put(1, np.zeros((2, 3)))
    p.store(OUT, p.v(Op.MATMUL, p.load(0, 2), p.load(1, 2), span=4, ta=False, tb=False))
    assert sess.run(p.m) == 1
    assert sess.error()[:2] == (3, 4)


def test_transpose_reshape_concat(sess):
    x = RNG.normal(size=(3, 5))
    np.testing.assert_array_equal(run_op(sess, Op.TRANSPOSE, [x]), x.T)
    np.testing.assert_array_equal(run_op(sess, Op.RESHAPE, [x, 5.0, 3.0]), x.reshape(5, 3))
    np.testing.assert_array_equal(run_op(sess, Op.RESHAPE, [x, 15.0]), x.reshape(15))
    np.testing.assert_array_equal(run_op(sess, Op.RESHAPE_LIKE, [x, np.zeros((1, 15))]), x.reshape(1, 15))
    y = RNG.normal(size=(2, 5))
    np.testing.assert_array_equal(run_op(sess, Op.CONCAT, [x, y]), np.concatenate([x, y]))
    for op, args in ((Op.RESHAPE, [x, 4.0, 4.0]), (Op.CONCAT, [x, np.zeros((2, 4))])):
        p = Prog()
        loads = []
        for k, a in enumerate(args):
            sess.put(k, a)
            loads.append(p.load(k, np.ndim(a)))
        p.store(OUT, p.v(op, *loads, span=8))
        assert sess.run(p.m) == 1
        assert sess.error()[:2] == (3, 8), op


def test_slice_index(sess):
    x = RNG.normal(size=(5, 3))
    np.testing.assert_array_equal(run_op(sess, Op.SLICE, [x, 1.0, 4.0]), x[1:4])
    np.testing.assert_array_equal(run_op(sess, Op.SLICE, [x, 2.0, 2.0]), x[2:2])
    np.testing.assert_array_equal(run_op(sess, Op.INDEX, [x, 3.0]), x[3])
    assert run_op(sess, Op.INDEX, [x[:, 0].copy(), 4.0]) == x[4, 0]
    np.testing.assert_array_equal(run_op(sess, Op.SLICE_GRAD, [x[:2], np.zeros((5, 3)), 2.0]),
                                  np.concatenate([np.zeros((2, 3)), x[:2], np.zeros((1, 3))]))
    g = np.zeros((5, 3))
    g[1] = x[0]
    np.testing.assert_array_equal(run_op(sess, Op.INDEX_GRAD, [x[0], np.zeros((5, 3)), 1.0]), g)
    np.testing.assert_array_equal(run_op(sess, Op.INDEX_GRAD, [2.0, np.zeros(4), 3.0]), [0, 0, 0, 2.0])


@pytest.mark.parametrize("op,args,kind", [
    (Op.INDEX, [np.zeros((3, 2)), 5.0], 4), (Op.INDEX, [np.zeros(3), -1.0], 4),
    (Op.SLICE, [np.zeros((3, 2)), 0.0, 4.0], 4), (Op.SLICE, [np.zeros((3, 2)), -1.0, 2.0], 4),
    (Op.SLICE, [np.zeros((3, 2)), 2.0, 1.0], 3)])
def test_bounds_errors(sess, op, args, kind):
    p = Prog()
    loads = []
    for k, a in enumerate(args):
        sess.put(k, a)
        loads.append(p.load(k, np.ndim(a)))
    p.store(OUT, p.v(op, *loads, span=12))
    assert sess.run(p.m) == 1
    got_kind, span, msg = sess.error()
    assert span == 12 and got_kind == kind, msg
    if op is Op.INDEX:
        assert "out of range" in msg


def test_one_hot_dim_shape_zeros(sess):
    idx = np.array([2.0, 0.0, 1.0])
    np.testing.assert_array_equal(run_op(sess, Op.ONE_HOT, [idx, 4.0]), np.eye(4)[[2, 0, 1]])
    np.testing.assert_array_equal(run_op(sess, Op.ONE_HOT, [1.0, 3.0]), [0, 1, 0])
    x = np.zeros((2, 7, 3))
    assert run_op(sess, Op.DIM, [x], axis=1) == 7
    assert run_op(sess, Op.DIM, [x], axis=-1) == 3
    np.testing.assert_array_equal(run_op(sess, Op.SHAPE, [x]), [2, 7, 3])
    np.testing.assert_array_equal(run_op(sess, Op.ZEROS_LIKE, [X]), np.zeros_like(X))
    p = Prog()
    sess.put(0, idx)
    p.store(OUT, p.v(Op.ONE_HOT, p.load(0, 1), p.c(2.0), span=2))
    assert sess.run(p.m) == 1
    assert sess.error()[1] == 2


def test_creation_and_random(sess):
    p = Prog()
    vals = [p.c(float(i)) for i in range(6)]
    p.store(OUT, p.v(Op.PACK, *vals, shape=(3, 2)))
    p.store(OUT + 1, p.v(Op.FILL, p.c(1.5), p.c(2.0), p.c(3.0)))
    p.b.emit(Op.SEED, (p.c(7.0),))
    p.store(OUT + 2, p.v(Op.RANDOM, p.c(0.0), p.c(1.0), p.c(4000.0), kind="uniform"))
    p.store(OUT + 3, p.v(Op.RANDOM, p.c(2.0), p.c(3.0), p.c(4000.0), kind="normal"))
    p.store(OUT + 4, p.v(Op.RAND_SCALAR, p.c(10.0), p.c(11.0), kind="uniform"))
    p.b.emit(Op.SEED, (p.c(7.0),))
    p.store(OUT + 5, p.v(Op.RANDOM, p.c(0.0), p.c(1.0), p.c(4000.0), kind="uniform"))
    assert sess.run(p.m) == 0, sess.error()
    np.testing.assert_array_equal(sess.get(OUT), np.arange(6.0).reshape(3, 2))
    np.testing.assert_array_equal(sess.get(OUT + 1), np.full((2, 3), 1.5))
    u, nrm = sess.get(OUT + 2), sess.get(OUT + 3)
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.03
    assert abs(nrm.mean() - 2.0) < 0.15 and abs(nrm.std() - 3.0) < 0.15
    assert 10 <= sess.get(OUT + 4) < 11
    np.testing.assert_array_equal(sess.get(OUT + 5), u)


# ----------------------------------------------------------------------------- control flow and calls


def test_if_and_while(sess):
    p = Prog()
    # while (i < 10) { acc = acc * 2 + v; i = i + 1 }   with a tensor accumulator
    sess.put(0, np.array([1.0, -1.0]))
    v = p.load(0, 1)
    i0, acc0 = p.c(0.0), v
    w = ir.WhileOp([i0, acc0], ir.Block(), ir.Block(), [])
    ci, cacc = p.m.new_value(0), p.m.new_value(1)
    w.cond.params = [ci, cacc]
    cb = ir.Builder(p.m, w.cond)
    w.cond.yields = [cb.value(Op.LT, ci, cb.const(10.0))]
    bi, bacc = p.m.new_value(0), p.m.new_value(1)
    w.body.params = [bi, bacc]
    bb = ir.Builder(p.m, w.body)
    nacc = bb.value(Op.ADD, bb.value(Op.MUL, bacc, bb.const(2.0)), v)
    w.body.yields = [bb.value(Op.ADD, bi, bb.const(1.0)), nacc]
    w.results = [p.m.new_value(0), p.m.new_value(1)]
    p.fn.body.ops.append(w)
    p.store(OUT, w.results[0])
    p.store(OUT + 1, w.results[1])
    # if (count > 5) { acc + 1 } else { acc * 0 }
    cond = p.v(Op.GT, w.results[0], p.c(5.0))
    f = ir.IfOp(cond, ir.Block(), ir.Block(), [p.m.new_value(1), p.m.new_value(0)])
    tb = ir.Builder(p.m, f.then)
    f.then.yields = [tb.value(Op.ADD, w.results[1], tb.const(1.0)), tb.const(1.0)]
    eb = ir.Builder(p.m, f.else_)
    f.else_.yields = [eb.value(Op.MUL, w.results[1], eb.const(0.0)), eb.const(2.0)]
    p.fn.body.ops.append(f)
    p.store(OUT + 2, f.results[0])
    p.store(OUT + 3, f.results[1])
    assert sess.run(p.m) == 0, sess.error()
    acc = np.array([1.0, -1.0])
    for _ in range(10):
        acc = acc * 2 + np.array([1.0, -1.0])
    assert sess.get(OUT) == 10
    np.testing.assert_array_equal(sess.get(OUT + 1), acc)
    np.testing.assert_array_equal(sess.get(OUT + 2), acc + 1)
    assert sess.get(OUT + 3) == 1.0


def _fn(m: ir.Module, name: str, ranks, result_rank, body) -> ir.Function:
    params = [m.new_value(r) for r in ranks]
    fn = ir.Function(name, params, ir.Block(), result_rank, span=-1)
    b = ir.Builder(m, fn.body)
    out = body(b, *params)
    fn.body.yields = [] if out is None or result_rank is None else [out]
    m.functions[name] = fn
    return fn


def _fact_module() -> ir.Module:
    """fact(n) = n <= 1 ? 1 : n * fact(n - 1), recursive through its pointer global."""
    m = ir.Module()

    def fact(b, n):
        f = ir.IfOp(b.value(Op.LE, n, b.const(1.0)), ir.Block(), ir.Block(), [m.new_value(0)])
        f.then.yields = [ir.Builder(m, f.then).const(1.0)]
        eb = ir.Builder(m, f.else_)
        rec = eb.value(Op.CALL, eb.value(Op.SUB, n, eb.const(1.0)), callee="fact", result_rank=0)
        f.else_.yields = [eb.value(Op.MUL, n, rec)]
        b.block.ops.append(f)
        return f.results[0]
    _fn(m, "fact", [0], 0, fact)
    return m


def test_calls_recursion_and_redefinition(sess):
    m = _fact_module()

    def entry(b):
        x = b.value(Op.CALL, b.const(6.0), callee="fact", result_rank=0)
        b.emit(Op.GLOBAL_STORE, (x,), slot=OUT, name="out")
        sq = b.value(Op.CALL, b.value(Op.GLOBAL_LOAD, slot=0, name="g", rank=1), callee="twice",
                     result_rank=1)
        b.emit(Op.GLOBAL_STORE, (sq,), slot=OUT + 1, name="out2")
    _fn(m, "twice", [1], 1, lambda b, t: b.value(Op.ADD, t, t))
    _fn(m, "__a", [], None, entry)
    sess.put(0, np.array([1.0, 2.0]))
    syms = sess.compile(m)
    assert sess.invoke(syms["__a"]) == 0, sess.error()
    assert sess.get(OUT) == 720
    np.testing.assert_array_equal(sess.get(OUT + 1), [2.0, 4.0])

    # A newer `fact` in a later module: the session writes its address into the pointer global;
    # code compiled earlier (the entry, and the recursive calls) now reaches the new version.
    m2 = ir.Module()
    _fn(m2, "fact", [0], 0, lambda b, n: b.value(Op.MUL, n, b.const(10.0)))
    syms2 = sess.compile(m2, own=set(), symbols={"fact": "fact.v2"})
    gaddr = sess.jit.global_address(fn_pointer_name("fact"))
    ctypes.c_void_p.from_address(gaddr).value = sess.jit.function_address(syms2["fact"])
    assert sess.invoke(syms["__a"]) == 0
    assert sess.get(OUT) == 60

    # A third module calls `fact` as an extern through the existing global.
    m3 = ir.Module(externs={"fact": ((0,), 0)})
    _fn(m3, "__b", [], None, lambda b: b.emit(
        Op.GLOBAL_STORE, (b.value(Op.CALL, b.const(3.0), callee="fact", result_rank=0),), slot=OUT, name="o"))
    syms3 = sess.compile(m3, own={"__b"})
    assert sess.invoke(syms3["__b"]) == 0
    assert sess.get(OUT) == 30


def test_undefined_symbol(sess):
    m = ir.Module(externs={"nowhere": ((0,), 0)})
    _fn(m, "__c", [], None, lambda b: b.emit(Op.CALL, (b.const(1.0),), callee="nowhere", result_rank=0))
    with pytest.raises(UndefinedSymbolError, match="noma.fp.nowhere"):
        sess.compile(m, own={"__c"})


def test_recursion_limit(sess):
    m = ir.Module()
    _fn(m, "down", [0], 0, lambda b, n: b.value(Op.CALL, b.value(Op.ADD, n, b.const(1.0)),
                                                 callee="down", result_rank=0))
    _fn(m, "__d", [], None, lambda b: b.emit(Op.CALL, (b.const(0.0),), callee="down", result_rank=0))
    syms = sess.compile(m)
    assert sess.invoke(syms["__d"]) == 1
    assert "recursion" in sess.error()[2]


def test_identical_ir_is_not_recompiled(sess):
    m = _fact_module()
    text = lower_module(m, symbols={"fact": "dup.fact"}, own_pointers={"fact"}, name="dup")
    sess.jit.add_ir(text, "dup")
    sess.jit.add_ir(text, "dup-again")  # no duplicate-definition error: already there
    other = JIT()
    hits: list[bool] = []
    original_get = other._cache_get

    def recording_get(module):
        found = original_get(module)
        hits.append(found is not None)
        return found

    other.engine.set_object_cache(other._cache_notify, recording_get)
    other.add_ir(text, "dup")  # object cache: no optimisation / code generation
    assert hits and all(hits), "the second JIT compiled the same IR again instead of reusing its object"
    assert other.function_address("dup.fact")


def test_print_capture(sess):
    p = Prog()
    sess.put(0, np.array([[1.0, 2.0], [3.0, 4.5]]))
    p.b.emit(Op.PRINT, (p.c(1 / 3), p.load(0, 2)), parts=("x =", None, "and", None))
    p.b.emit(Op.PRINT, (p.c(720.0),), parts=(None,))
    assert sess.run(p.m) == 0
    assert sess.output() == "x = 0.333333 and [[1, 2], [3, 4.5]]\n720\n"


def test_state_ops(sess):
    p = Prog()
    w = p.v(Op.FILL, p.c(2.0), p.c(3.0))
    p.b.emit(Op.PARAM_SET, (w,), slot=1, name="w")
    p.b.emit(Op.PARAM_SET, (p.c(4.0),), slot=2, name="s")
    old = p.v(Op.PARAM_LOAD, slot=1, name="w", rank=1)
    p.b.emit(Op.PARAM_SET, (p.v(Op.FILL, p.c(-1.0), p.c(3.0)),), slot=1, name="w")
    p.store(OUT, old)  # the value loaded before the re-initialisation
    p.store(OUT + 1, p.v(Op.PARAM_LOAD, slot=1, name="w", rank=1))
    p.store(OUT + 2, p.v(Op.PARAM_LOAD, slot=2, name="s", rank=0))
    p.b.emit(Op.DIM_SET, (p.c(16.0),), dim=3, name="hidden")
    p.store(OUT + 3, p.v(Op.DIM_LOAD, dim=3, name="hidden"))
    p.b.emit(Op.TAPE_PUSH, (p.c(5.0),))
    p.b.emit(Op.TAPE_PUSH, (w,))
    t = p.v(Op.TAPE_POP, rank=1)
    s = p.v(Op.TAPE_POP, rank=0)
    p.store(OUT + 4, t)
    p.store(OUT + 5, s)
    p.b.emit(Op.PARAM_RESIZE, (p.c(0.0), p.c(0.0), p.c(5.0)), slot=1, name="w", policy=1)
    p.store(OUT + 6, p.v(Op.PARAM_LOAD, slot=1, name="w", rank=1))
    p.b.emit(Op.PARAM_FREE, (), slot=2, name="s")
    assert sess.run(p.m) == 0, sess.error()
    np.testing.assert_array_equal(sess.get(OUT), [2.0, 2.0, 2.0])
    np.testing.assert_array_equal(sess.get(OUT + 1), [-1.0, -1.0, -1.0])
    assert sess.get(OUT + 2) == 4.0
    assert sess.get(OUT + 3) == 16.0
    np.testing.assert_array_equal(sess.get(OUT + 4), [2.0, 2.0, 2.0])
    assert sess.get(OUT + 5) == 5.0
    np.testing.assert_array_equal(sess.get(OUT + 6), [-1.0, -1.0, -1.0, 0.0, 0.0])
    # a freed param: name error
    p2 = Prog()
    p2.store(OUT, p2.v(Op.PARAM_LOAD, slot=2, name="s", rank=0))
    assert sess.run(p2.m) == 1
    assert sess.error()[0] == 1


def test_files(sess, tmp_path):
    x = RNG.normal(size=(3, 4))
    csv, st = str(tmp_path / "x.csv"), str(tmp_path / "x.safetensors")
    p = Prog()
    sess.put(0, x)
    v = p.load(0, 2)
    p.b.emit(Op.SAVE_CSV, (v,), path=csv)
    p.b.emit(Op.SAVE_ST, (v, p.c(2.5)), path=st, names=("x", "s"))
    p.store(OUT, p.v(Op.LOAD_CSV, path=csv))
    p.store(OUT + 1, p.v(Op.LOAD_ST, path=st, name="x", rank=2))
    p.store(OUT + 2, p.v(Op.LOAD_ST, path=st, name="s", rank=0))
    assert sess.run(p.m) == 0, sess.error()
    np.testing.assert_allclose(sess.get(OUT), x, rtol=1e-12)
    np.testing.assert_array_equal(sess.get(OUT + 1), x)
    assert sess.get(OUT + 2) == 2.5


# ----------------------------------------------------------------------------- f32


def test_f32_module():
    s = Session("f32")
    try:
        x = RNG.normal(size=(4, 33)).astype(np.float32)
        p = Prog("f32")
        s.put(0, x)
        v = p.load(0, 2)
        e = p.v(Op.TANH, p.v(Op.MUL, v, p.c(0.5)))
        p.store(OUT, e)
        p.store(OUT + 1, p.v(Op.SUM, e, axis=None))
        p.store(OUT + 2, p.v(Op.CAST, v, to="f32"))
        p.b.emit(Op.PRINT, (p.c(0.1),), parts=(None,))
        assert s.run(p.m) == 0, s.error()
        ref = np.tanh(x * np.float32(0.5))
        np.testing.assert_allclose(s.get(OUT), ref, rtol=2e-6)
        np.testing.assert_allclose(s.get(OUT + 1), ref.sum(dtype=np.float64), rtol=1e-4)
        np.testing.assert_array_equal(s.get(OUT + 2), x)
        assert s.output() == "0.1\n"
    finally:
        s.close()


# ----------------------------------------------------------------------------- optimize

HYPER_NAN = float("nan")


def _optimize_prog(opt: int, lr: float, max_iter: float, threshold=None, *, scalar_param=False,
                   carried=True, until="loss < 0.001", **hyper) -> Prog:
    """optimize(w) { loss = sum((w - t)^2); stop = loss < threshold }, grad = 2 (w - t).
    Carried: k (a step counter) and acc (sum of w over steps, a tensor)."""
    p = Prog()
    m = p.m
    hv = [p.c(HYPER_NAN) for _ in range(ir.HYPER_LEN)]
    hv[0] = p.c(lr)
    for k, v in hyper.items():
        hv[ir.HYPER_NAMES.index(k)] = p.c(v)
    rank = 0 if scalar_param else 1
    target = p.load(0, rank)
    inits = [p.c(0.0), p.v(Op.ZEROS_LIKE, target)] if carried else []
    o = ir.OptimizeOp([ir.ParamRef(1, "w", rank)], opt, hv, p.c(max_iter), inits, ir.Block(), [],
                      until_text=until, span=30,
                      carry_slots=[None, (200, 201) if rank else None] if carried else [])
    bparams = [m.new_value(0), m.new_value(rank)] if carried else []
    o.body.params = bparams
    b = ir.Builder(m, o.body)
    w = b.value(Op.PARAM_LOAD, slot=1, name="w", rank=rank)
    d = b.value(Op.SUB, w, target)
    loss = b.value(Op.SUM, b.value(Op.MUL, d, d), axis=None)
    stop = b.value(Op.LT, loss, b.const(threshold)) if threshold is not None else b.const(0.0)
    nxt = [b.value(Op.ADD, bparams[0], b.const(1.0)), b.value(Op.ADD, bparams[1], w)] if carried else []
    o.body.yields = [loss, stop] + nxt
    o.grad = ir.Block()
    gb = ir.Builder(m, o.grad)
    o.grad.yields = [gb.value(Op.MUL, d, gb.const(2.0))]
    o.results = [m.new_value(0)] + ([m.new_value(0), m.new_value(rank)] if carried else [])
    p.fn.body.ops.append(o)
    for k, r in enumerate(o.results):
        p.store(OUT + k, r)
    return p


def _numpy_train(w0, t, steps, update):
    w, losses, acc = w0.copy(), [], np.zeros_like(w0)
    state: dict = {}
    for k in range(steps):
        d = w - t
        losses.append(float(np.sum(d * d)))
        acc = acc + w
        w = update(w, 2 * d, k + 1, state)
    return w, np.array(losses), acc


def test_optimize_sgd_max_iter_warning(sess):
    w0, t = np.array([1.0, -2.0, 0.5]), np.array([0.0, 1.0, 2.0])
    sess.put(0, t)
    p = _optimize_prog(1, 0.1, 5)
    p_init = Prog()
    sess.put(5, w0)
    p_init.b.emit(Op.PARAM_SET, (p_init.load(5, 1),), slot=1, name="w")
    assert sess.run(p_init.m) == 0
    assert sess.run(p.m) == 0, sess.error()
    w, losses, acc = _numpy_train(w0, t, 5, lambda w, g, k, s: w - 0.1 * g)
    np.testing.assert_allclose(sess.param(1), w, rtol=1e-14)
    np.testing.assert_allclose(sess.losses(), losses, rtol=1e-14)
    assert sess.get(OUT) == pytest.approx(losses[-1])
    assert sess.get(OUT + 1) == 5
    np.testing.assert_allclose(sess.get(OUT + 2), acc, rtol=1e-14)
    assert "optimize reached its iteration bound before `loss < 0.001` held" in sess.warnings()


def test_optimize_adam_step_for_step(sess):
    w0, t = np.array([[1.0, -2.0], [0.5, 3.0]]), np.array([[0.0, 1.0], [2.0, 2.0]])
    sess.put(0, t)
    init = Prog()
    sess.put(5, w0)
    init.b.emit(Op.PARAM_SET, (init.load(5, 2),), slot=1, name="w")
    assert sess.run(init.m) == 0
    p = Prog()
    hv = [p.c(HYPER_NAN) for _ in range(ir.HYPER_LEN)]
    hv[0] = p.c(0.05)
    target = p.load(0, 2)
    o = ir.OptimizeOp([ir.ParamRef(1, "w", 2)], 2, hv, p.c(40.0), [], ir.Block(), [], span=1)
    b = ir.Builder(p.m, o.body)
    w = b.value(Op.PARAM_LOAD, slot=1, name="w", rank=2)
    d = b.value(Op.SUB, w, target)
    o.body.yields = [b.value(Op.SUM, b.value(Op.MUL, d, d), axis=None), b.const(0.0)]
    o.grad = ir.Block()
    gb = ir.Builder(p.m, o.grad)
    o.grad.yields = [gb.value(Op.MUL, d, gb.const(2.0))]
    o.results = [p.m.new_value(0)]
    p.fn.body.ops.append(o)
    assert sess.run(p.m) == 0, sess.error()

    def adam(w, g, k, s, lr=0.05, b1=0.9, b2=0.999, eps=1e-8):
        s["m"] = b1 * s.get("m", 0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0) + (1 - b2) * g * g
        mhat = s["m"] / (1 - b1 ** k)
        vhat = s["v"] / (1 - b2 ** k)
        return w - lr * mhat / (np.sqrt(vhat) + eps)
    w, losses, _ = _numpy_train(w0, t, 40, adam)
    np.testing.assert_allclose(sess.losses(), losses, rtol=1e-12)
    np.testing.assert_allclose(sess.param(1), w, rtol=1e-12)
    assert "iteration bound" in sess.warnings()


def test_optimize_stop_condition_and_scalar_param(sess):
    sess.put(0, 3.0)
    init = Prog()
    init.b.emit(Op.PARAM_SET, (init.c(0.0),), slot=1, name="w")
    assert sess.run(init.m) == 0
    p = _optimize_prog(1, 0.25, 1000, threshold=1e-6, scalar_param=True)
    assert sess.run(p.m) == 0, sess.error()
    # w_k = 3 - 3 * 0.5^k, loss_k = 9 * 0.25^k < 1e-6 first at k = 12 (no update at that step)
    k = next(k for k in range(100) if 9 * 0.25 ** k < 1e-6)
    assert len(sess.losses()) == k + 1
    assert sess.param(1) == pytest.approx(3 - 3 * 0.5 ** k, rel=1e-14)
    assert sess.get(OUT) == pytest.approx(9 * 0.25 ** k, rel=1e-12)
    assert sess.get(OUT + 1) == k + 1
    assert sess.get(OUT + 2) == pytest.approx(sum(3 - 3 * 0.5 ** j for j in range(k + 1)), rel=1e-12)
    assert sess.warnings() == ""


def test_optimize_interrupt(sess):
    lib = sess.lib
    sess.put(0, np.zeros(4))
    init = Prog()
    sess.put(5, np.ones(4))
    init.b.emit(Op.PARAM_SET, (init.load(5, 1),), slot=1, name="w")
    assert sess.run(init.m) == 0
    lr = 1e-7
    p = _optimize_prog(1, lr, 1e12)
    syms = sess.compile(p.m)
    lib.noma_clear_interrupt()
    lib.noma_sigint_install()
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    try:
        timer.start()
        status = sess.invoke(syms["__t"])
    finally:
        timer.cancel()
        lib.noma_sigint_restore()
        lib.noma_clear_interrupt()
    assert status == 2
    steps = int(lib.noma_global_step())  # the loss log keeps only the last steps exactly
    assert steps > 10
    # every logged step completed its update: w = (1 - 2 lr)^steps exactly as SGD computes it
    w = np.ones(4)
    expected = w * math.exp(steps * math.log1p(-2 * lr))
    np.testing.assert_allclose(sess.param(1), expected, rtol=1e-9)
    lib.noma_arena_release(0)


# ----------------------------------------------------------------------------- build helpers


def test_emit_object_and_assembly():
    text = lower_module(_fact_module(), symbols={"fact": "fact"}, own_pointers={"fact"}, name="b")
    obj = emit_object(text, cpu="x86-64-v3")
    assert obj[:4] == b"\x7fELF"
    asm = emit_assembly(text)
    assert "fact" in asm


# ----------------------------------------------------------------------------- fusion


def _chain_prog(sess, shapes, spans=(21, 22, 23)) -> Prog:
    """out = exp(((a + b) * c) - d) / a, built from elementwise ops of single use."""
    p = Prog()
    loads = []
    for k, sh in enumerate(shapes):
        sess.put(k, RNG.normal(size=sh) if sh else 0.25)
        loads.append(p.load(k, len(sh)))
    a, b, c, d = loads
    e1 = p.v(Op.ADD, a, b, span=spans[0])
    e2 = p.v(Op.MUL, e1, c, span=spans[1])
    e3 = p.v(Op.SUB, e2, d, span=spans[2])
    p.store(OUT, p.v(Op.DIV, p.v(Op.EXP, e3), a))
    return p


def test_fused_chain_broadcasting(sess):
    for shapes in (((2, 3), (3,), (2, 1), ()), ((4, 5), (4, 5), (4, 5), (4, 5)), ((3,), (2, 3), (), (2, 1))):
        p = _chain_prog(sess, shapes)
        text = lower_module(p.m, symbols={"__t": "x"}, own_pointers=set(), name="x")
        assert text.count('call ptr @"noma_alloc_at"') == 1  # one loop, one result buffer
        assert sess.run(p.m) == 0, sess.error()
        a, b, c, d = (sess.get(k) for k in range(4))
        np.testing.assert_allclose(sess.get(OUT), np.exp((a + b) * c - d) / a, rtol=1e-13)


def test_fused_shape_error_keeps_inner_span(sess):
    p = _chain_prog(sess, ((2, 3), (4,), (2, 1), ()))
    assert sess.run(p.m) == 1
    assert sess.error()[:2] == (3, 21)
    p = _chain_prog(sess, ((2, 3), (3,), (5, 1), ()))
    assert sess.run(p.m) == 1
    assert sess.error()[:2] == (3, 22)


def test_no_fusion_across_effects_or_multiple_uses(sess):
    p = Prog()
    sess.put(0, np.array([1.0, 2.0]))
    x = p.load(0, 1)
    twice = p.v(Op.MUL, x, p.c(2.0))
    p.b.emit(Op.PRINT, (twice,), parts=(None,))  # a second use and an effect
    p.store(OUT, p.v(Op.ADD, twice, x))
    y = p.v(Op.MUL, x, p.c(3.0))
    p.b.emit(Op.GLOBAL_STORE, (p.c(5.0),), slot=7, name="g7")  # barrier between y and its use
    p.store(OUT + 1, p.v(Op.ADD, y, x))
    assert sess.run(p.m) == 0
    np.testing.assert_array_equal(sess.get(OUT), [3.0, 6.0])
    np.testing.assert_array_equal(sess.get(OUT + 1), [4.0, 8.0])
    assert sess.output() == "[2, 4]\n"


# ----------------------------------------------------------------------------- inline exp / tanh


def _ulps(got: np.ndarray, want: np.ndarray) -> float:
    fin = np.isfinite(want) & (want != 0)
    return float(np.max(np.abs(got[fin] - want[fin]) / np.spacing(np.abs(want[fin]))))


def test_inline_exp_tanh_sigmoid_accuracy(sess):
    rng = np.random.default_rng(3)
    xs = np.concatenate([rng.uniform(-750, 712, 20000), rng.normal(size=20000), rng.uniform(-20, 20, 20000),
                         np.linspace(-745.1, -708.5, 2001)])
    edges = np.array([0.0, -0.0, 709.78, 709.79, -745.13, -745.14, 800, -800, np.inf, -np.inf, np.nan,
                      0.625, -0.625, 1e-300, 354.0, 400.0])
    with np.errstate(over="ignore"):
        for op, ref, tol in ((Op.EXP, np.exp, 2), (Op.TANH, np.tanh, 2),
                             (Op.SIGMOID, lambda x: 1 / (1 + np.exp(-x)), 3)):
            assert _ulps(run_op(sess, op, [xs]), ref(xs)) <= tol, op
            got, want = run_op(sess, op, [edges]), ref(edges)
            np.testing.assert_allclose(got, want, rtol=4e-16, atol=0, err_msg=str(op))
            num = ~np.isnan(want)
            assert np.array_equal(np.signbit(got[num]), np.signbit(want[num])), op
            assert np.isnan(got[~num]).all()
    assert run_op(sess, Op.EXP, [-740.0]) == np.exp(-740.0)  # a subnormal result


def test_param_rank_changed_is_a_type_error(sess):
    p = Prog()
    p.b.emit(Op.PARAM_SET, (p.v(Op.FILL, p.c(1.0), p.c(3.0)),), slot=4, name="w")
    assert sess.run(p.m) == 0
    p = Prog()
    p.store(OUT, p.v(Op.PARAM_LOAD, slot=4, name="w", rank=2, span=6))
    assert sess.run(p.m) == 1
    kind, span, msg = sess.error()
    assert (kind, span) == (2, 6) and "`w`" in msg
