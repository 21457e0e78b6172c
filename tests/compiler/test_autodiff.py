"""autodiff: hand-built optimize bodies, differentiated, and their grad blocks run in the NumPy
interpreter against central finite differences in f64 (fourth-order stencil; error ≤ 1e-6 relative
to max(1, |gradient|)), on random shapes and values drawn by hypothesis.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from noma.compiler.middle import ir, passes
from noma.compiler.middle.autodiff import differentiate
from noma.compiler.interp.interp import Interpreter, InterpState
from noma.compiler.middle.ir import Block, Builder, Op, Value
from noma.diagnostics import Kind, NomaError

SETTINGS = settings(max_examples=25, deadline=None)
FEW = settings(max_examples=12, deadline=None)
NAN = math.nan


class Prog:
    """An optimize op in `main`, built by hand: parameters, data (globals) and a loss."""

    def __init__(self, seed: int = 0):
        self.m = ir.Module()
        self.outer = Block()
        self.m.functions["main"] = ir.Function("main", [], self.outer, None)
        self.body = Block()
        self.b = Builder(self.m, self.body)
        self.refs: list[ir.ParamRef] = []
        self.state = InterpState()
        self.rng = np.random.default_rng(seed)
        self.slot = 100
        self.opt: ir.OptimizeOp

    def param(self, value: np.ndarray | float, b: Builder | None = None) -> Value:
        value = np.array(value, dtype=np.float64)
        ref = ir.ParamRef(len(self.refs), f"p{len(self.refs)}", value.ndim)
        self.refs.append(ref)
        self.state.params[ref.slot] = value
        return self.load(ref, b)

    def load(self, ref: ir.ParamRef, b: Builder | None = None) -> Value:
        return (b or self.b).value(Op.PARAM_LOAD, slot=ref.slot, name=ref.name, rank=ref.rank)

    def data(self, value: np.ndarray | float, b: Builder | None = None) -> Value:
        value = np.array(value, dtype=np.float64)
        self.slot += 1
        self.state.globals[self.slot] = float(value) if value.ndim == 0 else value
        return (b or self.b).value(Op.GLOBAL_LOAD, slot=self.slot, name=f"g{self.slot}", rank=value.ndim)

    def finish(self, y: Value, shape: Sequence[int]) -> "Prog":
        """loss = sum(y * C) with random weights C of y's shape."""
        c = self.data(self.rng.normal(size=tuple(shape)))
        prod = self.b.value(Op.MUL, y, c)
        loss = prod if prod.rank == 0 else self.b.value(Op.SUM, prod, axis=None, keepdims=False)
        return self.finish_loss(loss)

    def finish_loss(self, loss: Value) -> "Prog":
        self.body.yields = [loss, self.b.const(0.0)]
        ob = Builder(self.m, self.outer)
        hyper = [ob.const(NAN) for _ in range(ir.HYPER_LEN)]
        self.opt = ir.OptimizeOp(list(self.refs), 1, hyper, ob.const(1.0), [], self.body,
                                 [self.m.new_value(0)])
        self.outer.ops.append(self.opt)
        return self

    # --- structured control flow helpers

    def if_(self, b: Builder, cond: Value, then: Callable[[Builder], list[Value]],
            else_: Callable[[Builder], list[Value]]) -> list[Value]:
        op = ir.IfOp(cond, Block(), Block(), [])
        op.then.yields = then(Builder(self.m, op.then))
        op.else_.yields = else_(Builder(self.m, op.else_))
        op.results = [self.m.new_value(v.rank) for v in op.then.yields]
        b.block.ops.append(op)
        return op.results

    def while_(self, b: Builder, inits: list[Value], cond: Callable[..., Value],
               body: Callable[..., list[Value]]) -> list[Value]:
        op = ir.WhileOp(list(inits), Block([self.m.new_value(v.rank) for v in inits]),
                        Block([self.m.new_value(v.rank) for v in inits]), [self.m.new_value(v.rank) for v in inits])
        op.cond.yields = [cond(Builder(self.m, op.cond), *op.cond.params)]
        op.body.yields = body(Builder(self.m, op.body), *op.body.params)
        b.block.ops.append(op)
        return op.results


def fd_gradient(it: Interpreter, opt: ir.OptimizeOp, env: dict, slot: int, h: float = 1e-4) -> np.ndarray:
    p0 = it.state.params[slot]
    out = np.zeros_like(p0)
    for idx in np.ndindex(p0.shape):
        def f(t: float) -> float:
            p = p0.copy()
            p[idx] += t
            it.state.params[slot] = p
            return float(it.forward(opt, env)[0])
        out[idx] = (8 * (f(h) - f(-h)) - (f(2 * h) - f(-2 * h))) / (12 * h)
    it.state.params[slot] = p0
    return out


def check(p: Prog, optimize: bool = False) -> list[np.ndarray]:
    """Differentiate, verify, and compare every gradient with finite differences."""
    differentiate(p.m)
    ir.verify(p.m)
    assert "grad {" in ir.print_module(p.m)
    if optimize:
        passes.optimize_module(p.m)
        ir.verify(p.m)
    it = Interpreter(p.m, p.state)
    env = it.prelude("main", p.opt)
    _, grads = it.gradients(p.opt, env)
    for ref, g in zip(p.refs, grads):
        g = np.asarray(g, dtype=np.float64)
        # a strongly curved loss (nested sin of a large weight) needs a smaller step before the
        # difference quotient converges: h = 1e-4 was 2e-5 off the exact gradient that h = 1e-5
        # and 1e-6 both gave (test_nested_loops_and_while_inside_if, n=3, m=3, seed=3889)
        for h in FD_STEPS:
            fd = fd_gradient(it, p.opt, env, ref.slot, h)
            assert g.shape == fd.shape
            err = float(np.max(np.abs(g - fd), initial=0.0))
            if err <= 1e-6 * max(1.0, float(np.max(np.abs(fd), initial=0.0))):
                break
        else:
            raise AssertionError((ref.name, g, fd))
    return [np.asarray(g) for g in grads]


#: Steps of the finite differences, tried in order until one agrees with the gradient.
FD_STEPS = (1e-4, 1e-5)


def shapes(min_rank: int = 0, max_rank: int = 3) -> st.SearchStrategy:
    return st.lists(st.integers(1, 4), min_size=min_rank, max_size=max_rank).map(tuple)


# ----------------------------------------------------------------------------- unary ops

UNARY = {  # op -> a transform of N(0, 1) samples into the op's smooth domain
    Op.NEG: lambda x: x, Op.EXP: lambda x: x, Op.LOG: lambda x: np.abs(x) + 0.2,
    Op.SQRT: lambda x: np.abs(x) + 0.2, Op.SIN: lambda x: x, Op.COS: lambda x: x,
    Op.TAN: lambda x: np.tanh(x), Op.TANH: lambda x: x, Op.SIGMOID: lambda x: x,
    Op.RELU: lambda x: np.sign(x) * (np.abs(x) + 0.1), Op.ABS: lambda x: np.sign(x) * (np.abs(x) + 0.1),
}


@pytest.mark.parametrize("op", list(UNARY), ids=lambda o: o.value)
@SETTINGS
@given(shape=shapes(), seed=st.integers(0, 2**16))
def test_unary(op: Op, shape: tuple, seed: int) -> None:
    p = Prog(seed)
    x = p.param(UNARY[op](p.rng.normal(size=shape)))
    check(p.finish(p.b.value(op, x), shape))


@pytest.mark.parametrize("to,expected", [("f64", 1.0), ("f32", 1.0), ("i32", 0.0), ("i64", 0.0)])
def test_cast(to: str, expected: float) -> None:
    p = Prog()
    x = p.param([0.5, 1.5, -2.25])
    y = p.b.value(Op.CAST, x, to=to)
    p.finish_loss(p.b.value(Op.SUM, p.b.value(Op.MUL, y, p.b.const(1.0)), axis=None, keepdims=False))
    differentiate(p.m)
    ir.verify(p.m)
    _, (g,) = Interpreter(p.m, p.state).gradients(p.opt)
    assert np.array_equal(g, np.full(3, expected))


@pytest.mark.parametrize("op", [Op.SIGN, Op.FLOOR, Op.CEIL, Op.NOT, Op.STOP_GRAD, Op.ZEROS_LIKE, Op.LT, Op.EQ])
def test_zero_gradient_ops(op: Op) -> None:
    p = Prog()
    x = p.param([0.5, 1.5, -2.25])
    y = p.b.value(op, x, x) if op in ir.BINARY_ELEMENTWISE else p.b.value(op, x)
    p.finish(y, (3,))
    differentiate(p.m)
    ir.verify(p.m)
    _, (g,) = Interpreter(p.m, p.state).gradients(p.opt)
    assert g.tolist() == [0.0, 0.0, 0.0]


# ----------------------------------------------------------------------------- binary ops, broadcasting

BROADCAST_PAIRS = [((), (3, 4)), ((3, 4), ()), ((3, 1), (1, 4)), ((4,), (3, 4)), ((3, 4), (4,)), ((2, 1, 3), (4, 1))]


@st.composite
def shape_pairs(draw: st.DrawFn) -> tuple[tuple, tuple]:
    if draw(st.booleans()):
        return draw(st.sampled_from(BROADCAST_PAIRS))
    s = draw(shapes())
    return s, s


def _domain(op: Op, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if op is Op.POW:
        return np.abs(a) + 0.3, b
    if op is Op.DIV:
        return a, np.sign(b) * (np.abs(b) + 0.3)
    if op is Op.MOD:
        return a * 3, np.sign(b) * (np.abs(b) + 0.5)
    return a, b


@pytest.mark.parametrize("op", [Op.ADD, Op.SUB, Op.MUL, Op.DIV, Op.POW, Op.MIN, Op.MAX, Op.MOD],
                         ids=lambda o: o.value)
@SETTINGS
@given(pair=shape_pairs(), seed=st.integers(0, 2**16))
def test_binary_broadcasting(op: Op, pair: tuple, seed: int) -> None:
    sa, sb = pair
    p = Prog(seed)
    a, b = _domain(op, p.rng.normal(size=sa), p.rng.normal(size=sb))
    if op in (Op.MIN, Op.MAX):
        assume(np.min(np.abs(a - b), initial=1.0) > 0.01)
    if op is Op.MOD:
        q = a / b
        assume(np.min(np.abs(q - np.round(q)), initial=1.0) > 0.01)
    check(p.finish(p.b.value(op, p.param(a), p.param(b)), np.broadcast_shapes(sa, sb)))


def test_mod_gradients_are_pytorchs_fmod() -> None:
    """d fmod(a, b) = (1, -trunc(a / b)): torch.fmod's derivatives."""
    p = Prog()
    a, b = p.param([5.5, -3.0, 0.5]), p.param([2.0, 2.5, -0.2])
    p.finish(p.b.value(Op.MOD, a, b), (3,))
    differentiate(p.m)
    _, (ga, gb) = Interpreter(p.m, p.state).gradients(p.opt)
    c = p.state.globals[p.slot]
    assert np.array_equal(ga, c) and np.array_equal(gb, -np.array([2.0, -1.0, -2.0]) * c)


def test_pow_negative_base_constant_exponent() -> None:
    p = Prog()
    x = p.param([-1.5, 0.7, -0.3])
    check(p.finish(p.b.value(Op.POW, x, p.b.const(3.0)), (3,)))


def test_pow_exponent_gradient_is_zero_for_nonpositive_base() -> None:
    p = Prog()
    base = p.data([-2.0, 0.0, 2.0])
    e = p.param(2.0)
    p.finish_loss(p.b.value(Op.SUM, p.b.value(Op.POW, base, e), axis=None, keepdims=False))
    differentiate(p.m)
    _, (g,) = Interpreter(p.m, p.state).gradients(p.opt)
    assert g == pytest.approx(4 * math.log(2.0))


def test_div_gradient_of_the_divisor() -> None:
    p = Prog()
    a, b = p.param(3.0), p.param(2.0)
    p.finish_loss(p.b.value(Op.DIV, a, b))
    differentiate(p.m)
    _, (ga, gb) = Interpreter(p.m, p.state).gradients(p.opt)
    assert (ga, gb) == (0.5, -0.75)


def test_min_max_ties_go_to_the_first_operand() -> None:
    p = Prog()
    a, b = p.param([1.0, 2.0]), p.param([1.0, 3.0])
    mx = p.b.value(Op.SUM, p.b.value(Op.MAX, a, b), axis=None, keepdims=False)
    mn = p.b.value(Op.SUM, p.b.value(Op.MIN, a, b), axis=None, keepdims=False)
    p.finish_loss(p.b.value(Op.ADD, mx, p.b.value(Op.MUL, mn, p.b.const(10.0))))
    differentiate(p.m)
    _, (ga, gb) = Interpreter(p.m, p.state).gradients(p.opt)
    assert ga.tolist() == [11.0, 10.0] and gb.tolist() == [0.0, 1.0]


@SETTINGS
@given(pair=shape_pairs(), seed=st.integers(0, 2**16), cshape=st.sampled_from([(), (1, 1), (4,)]))
def test_select(pair: tuple, seed: int, cshape: tuple) -> None:
    sa, sb = pair
    p = Prog(seed)
    out = np.broadcast_shapes(sa, sb)
    cshape = cshape if len(out) >= len(cshape) and all(c in (1, o) for c, o in zip(cshape[::-1], out[::-1])) else ()
    c = p.data((p.rng.normal(size=cshape) > 0).astype(float))
    y = p.b.value(Op.SELECT, c, p.param(p.rng.normal(size=sa)), p.param(p.rng.normal(size=sb)))
    check(p.finish(y, np.broadcast_shapes(cshape, out)))


# ----------------------------------------------------------------------------- reductions


@pytest.mark.parametrize("op", [Op.SUM, Op.MAX_R, Op.MIN_R], ids=lambda o: o.value)
@SETTINGS
@given(shape=shapes(1, 3), seed=st.integers(0, 2**16), axis=st.integers(-1, 2), keep=st.booleans())
def test_reductions(op: Op, shape: tuple, seed: int, axis: int, keep: bool) -> None:
    p = Prog(seed)
    x = p.rng.normal(size=shape)
    ax = None if axis == -1 else axis % len(shape)
    if op is not Op.SUM:  # keep the extreme separated from the runner-up
        srt = np.sort(x.reshape(-1) if ax is None else np.moveaxis(x, ax, -1), axis=-1)
        assume(np.min(np.abs(np.diff(srt, axis=-1)), initial=1.0) > 0.01)
    y = p.b.value(op, p.param(x), axis=ax, keepdims=keep)
    out = np.sum(x, axis=ax, keepdims=keep and ax is not None).shape
    check(p.finish(y, out))


def test_max_reduction_splits_ties() -> None:
    p = Prog()
    x = p.param([2.0, 1.0, 2.0])
    p.finish_loss(p.b.value(Op.MAX_R, x, axis=None, keepdims=False))
    differentiate(p.m)
    _, (g,) = Interpreter(p.m, p.state).gradients(p.opt)
    assert g.tolist() == [0.5, 0.0, 0.5]


@pytest.mark.parametrize("xs,like", [((3, 4), (1, 4)), ((3, 4), (4,)), ((3, 4), ()), ((2, 3), (2, 1))])
@FEW
@given(seed=st.integers(0, 2**16))
def test_sum_to(xs: tuple, like: tuple, seed: int) -> None:
    p = Prog(seed)
    y = p.b.value(Op.SUM_TO, p.param(p.rng.normal(size=xs)), p.data(np.zeros(like)))
    check(p.finish(y, like))


@pytest.mark.parametrize("xs,like", [((4,), (3, 4)), ((), (2, 3)), ((3, 1), (3, 5)), ((1, 2), (2, 3, 2))])
@FEW
@given(seed=st.integers(0, 2**16))
def test_broadcast_to(xs: tuple, like: tuple, seed: int) -> None:
    p = Prog(seed)
    y = p.b.value(Op.BROADCAST_TO, p.param(p.rng.normal(size=xs)), p.data(np.zeros(like)))
    check(p.finish(y, like))


@FEW
@given(shape=shapes(0, 2), seed=st.integers(0, 2**16))
def test_fill(shape: tuple, seed: int) -> None:
    p = Prog(seed)
    v = p.param(p.rng.normal())
    y = p.b.value(Op.FILL, p.b.value(Op.SIN, v), *[p.b.const(d) for d in shape])
    check(p.finish(y, shape))


# ----------------------------------------------------------------------------- linear algebra and shape


@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)])
@SETTINGS
@given(m=st.integers(1, 4), k=st.integers(1, 4), n=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_matmul(ta: bool, tb: bool, m: int, k: int, n: int, seed: int) -> None:
    p = Prog(seed)
    a = p.param(p.rng.normal(size=(k, m) if ta else (m, k)))
    b = p.param(p.rng.normal(size=(n, k) if tb else (k, n)))
    check(p.finish(p.b.value(Op.MATMUL, a, b, ta=ta, tb=tb), (m, n)))


@FEW
@given(r=st.integers(1, 4), c=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_transpose_and_reshape(r: int, c: int, seed: int) -> None:
    p = Prog(seed)
    x = p.param(p.rng.normal(size=(r, c)))
    t = p.b.value(Op.TRANSPOSE, x)
    flat = p.b.value(Op.RESHAPE, p.b.value(Op.TANH, t), p.b.const(r * c))
    back = p.b.value(Op.RESHAPE_LIKE, p.b.value(Op.MUL, flat, flat), x)
    check(p.finish(p.b.value(Op.ADD, back, x), (r, c)))


@FEW
@given(shape=shapes(1, 3), seed=st.integers(0, 2**16), data=st.data())
def test_index_and_slice(shape: tuple, seed: int, data: st.DataObject) -> None:
    p = Prog(seed)
    x = p.param(p.rng.normal(size=shape))
    i = data.draw(st.integers(0, shape[0] - 1))
    s = data.draw(st.integers(0, shape[0]))
    e = data.draw(st.integers(s, shape[0]))
    row = p.b.value(Op.INDEX, x, p.data(float(i)))   # a run-time index
    part = p.b.value(Op.SLICE, p.b.value(Op.EXP, x), p.b.const(s), p.b.const(e))
    total = p.b.value(Op.ADD, p.b.value(Op.SUM, p.b.value(Op.MUL, row, row), axis=None, keepdims=False),
                      p.b.value(Op.SUM, part, axis=None, keepdims=False))
    check(p.finish(total, ()))


@FEW
@given(ra=st.integers(1, 3), rb=st.integers(1, 3), c=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_concat(ra: int, rb: int, c: int, seed: int) -> None:
    p = Prog(seed)
    a, b = p.param(p.rng.normal(size=(ra, c))), p.param(p.rng.normal(size=(rb, c)))
    check(p.finish(p.b.value(Op.CONCAT, p.b.value(Op.SIN, a), b), (ra + rb, c)))


@FEW
@given(shape=st.sampled_from([(3,), (2, 2), (2, 1, 2)]), seed=st.integers(0, 2**16))
def test_pack(shape: tuple, seed: int) -> None:
    p = Prog(seed)
    v = p.param(p.rng.normal(size=(4,)))
    s = p.param(p.rng.normal())
    items = [p.b.value(Op.INDEX, v, p.b.const(k % 4)) for k in range(int(np.prod(shape)) - 1)]
    items.append(p.b.value(Op.SIN, s))
    check(p.finish(p.b.value(Op.PACK, *items, shape=shape), shape))


def test_non_scalar_loss_is_summed_and_unused_parameter_gets_zeros() -> None:
    p = Prog()
    x = p.param([1.0, 2.0])
    p.param([[1.0, 2.0]])
    p.finish_loss(p.b.value(Op.MUL, x, x))
    differentiate(p.m)
    ir.verify(p.m)
    _, (gx, gu) = Interpreter(p.m, p.state).gradients(p.opt)
    assert gx.tolist() == [2.0, 4.0] and gu.tolist() == [[0.0, 0.0]]


# ----------------------------------------------------------------------------- control flow


@SETTINGS
@given(shape=shapes(0, 2), seed=st.integers(0, 2**16), flag=st.booleans(), by_param=st.booleans())
def test_if_chooses_between_expressions(shape: tuple, seed: int, flag: bool, by_param: bool) -> None:
    p = Prog(seed)
    w = p.param(p.rng.normal(size=shape))
    v = p.param(p.rng.normal())
    if by_param:  # the condition itself depends on a parameter (non-differentiable)
        total = float(np.sum(p.state.params[0]))
        assume(abs(total) > 0.01)
        cond = p.b.value(Op.GT, p.b.value(Op.SUM, w, axis=None, keepdims=False), p.b.const(0.0))
    else:
        cond = p.data(1.0 if flag else 0.0)
    y, = p.if_(p.b, cond,
               lambda b: [b.value(Op.MUL, b.value(Op.TANH, w), v)],
               lambda b: [b.value(Op.ADD, b.value(Op.MUL, w, w), b.value(Op.EXP, v))])
    check(p.finish(p.b.value(Op.MUL, y, w), shape), optimize=flag)


def test_if_yielding_outer_values_and_constants() -> None:
    p = Prog()
    w, s = p.param([0.5, -1.0]), p.param(0.3)
    c = p.b.const(2.0)
    for flag in (0.0, 1.0):
        y, k = p.if_(p.b, p.data(flag), lambda b: [w, c], lambda b: [b.value(Op.SIN, w), s])
        w = p.b.value(Op.MUL, y, k)
    check(p.finish(w, (2,)))


def _tanh_loop(p: Prog, x0: Value, w: Value, n: Value) -> Value:
    """x = tanh(x·W) n times (n a run-time value)."""
    _, x = p.while_(p.b, [p.b.const(0.0), x0],
                    lambda b, i, x: b.value(Op.LT, i, n),
                    lambda b, i, x: [b.value(Op.ADD, i, b.const(1.0)), b.value(Op.TANH, b.value(Op.MATMUL, x, w))])
    return x


@SETTINGS
@given(n=st.integers(0, 4), rows=st.integers(1, 3), k=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_while_with_runtime_trip_count(n: int, rows: int, k: int, seed: int) -> None:
    p = Prog(seed)
    w = p.param(p.rng.normal(size=(k, k)))
    x0 = p.param(p.rng.normal(size=(rows, k)))
    x = _tanh_loop(p, x0, w, p.data(float(n)))
    check(p.finish(x, (rows, k)), optimize=n % 2 == 1)


@SETTINGS
@given(n=st.integers(0, 5), seed=st.integers(0, 2**16))
def test_nested_if_inside_while(n: int, seed: int) -> None:
    p = Prog(seed)
    w = p.param(p.rng.normal(size=(3, 3)))
    s = p.param(p.rng.normal())

    def body(b: Builder, i: Value, x: Value, acc: Value) -> list[Value]:
        even = b.value(Op.EQ, b.value(Op.MOD, i, b.const(2.0)), b.const(0.0))
        y, = p.if_(b, even, lambda t: [t.value(Op.TANH, t.value(Op.MATMUL, x, w))],
                   lambda e: [e.value(Op.MUL, e.value(Op.SIN, x), e.value(Op.INDEX, w, e.const(1.0)))])
        acc = b.value(Op.ADD, acc, b.value(Op.MUL, s, b.value(Op.SUM, y, axis=None, keepdims=False)))
        return [b.value(Op.ADD, i, b.const(1.0)), y, acc]

    x0 = p.data(p.rng.normal(size=(2, 3)))
    nv = p.data(float(n))
    _, x, acc = p.while_(p.b, [p.b.const(0.0), x0, p.b.const(0.0)], lambda b, i, x, a: b.value(Op.LT, i, nv), body)
    loss = p.b.value(Op.ADD, acc, p.b.value(Op.SUM, p.b.value(Op.MUL, x, x), axis=None, keepdims=False))
    check(p.finish_loss(loss))


@FEW
@given(n=st.integers(0, 3), m=st.integers(0, 3), seed=st.integers(0, 2**16))
@example(n=3, m=3, seed=3889)  # strongly curved: the finite differences need h = 1e-5 (check)
def test_nested_loops_and_while_inside_if(n: int, m: int, seed: int) -> None:
    p = Prog(seed)
    w = p.param(p.rng.normal(size=(2,)))
    nv, mv = p.data(float(n)), p.data(float(m))

    def outer(b: Builder, i: Value, x: Value) -> list[Value]:
        def inner_loop(t: Builder) -> list[Value]:
            _, y = p.while_(t, [t.const(0.0), x], lambda c, j, y: c.value(Op.LT, j, mv),
                            lambda c, j, y: [c.value(Op.ADD, j, c.const(1.0)),
                                             c.value(Op.SIN, c.value(Op.MUL, y, p.load(p.refs[0], c)))])
            return [y]
        y, = p.if_(b, b.value(Op.GT, i, b.const(0.5)), inner_loop, lambda e: [e.value(Op.MUL, x, w)])
        return [b.value(Op.ADD, i, b.const(1.0)), b.value(Op.ADD, y, b.const(0.1))]

    _, x = p.while_(p.b, [p.b.const(0.0), w], lambda b, i, x: b.value(Op.LT, i, nv), outer)
    check(p.finish(x, (2,)))


def test_loop_carried_scalar_and_tape_is_balanced() -> None:
    p = Prog()
    w = p.param(0.7)
    n = p.data(4.0)
    _, acc = p.while_(p.b, [p.b.const(0.0), p.b.const(1.0)], lambda b, i, a: b.value(Op.LT, i, n),
                      lambda b, i, a: [b.value(Op.ADD, i, b.const(1.0)), b.value(Op.MUL, a, b.value(Op.COS, w))])
    grads = check(p.finish(acc, ()))
    assert grads[0] == pytest.approx(-4 * math.cos(0.7) ** 3 * math.sin(0.7) * float(p.state.globals[p.slot]))
    text = ir.print_module(p.m)
    assert "tape_push" in text and "tape_pop" in text


# ----------------------------------------------------------------------------- inlined functions


def _functions(m: ir.Module) -> None:
    """h(x) = x·x + sin(x); g(x, w) = h(x·w) + w."""
    hx = m.new_value(2)
    hb = Builder(m, Block())
    hb.block.yields = [hb.value(Op.ADD, hb.value(Op.MUL, hx, hx), hb.value(Op.SIN, hx))]
    m.functions["h"] = ir.Function("h", [hx], hb.block, 2)
    gx, gw = m.new_value(2), m.new_value(0)
    gb = Builder(m, Block())
    inner = gb.value(Op.CALL, gb.value(Op.MUL, gx, gw), callee="h", result_rank=2)
    gb.block.yields = [gb.value(Op.ADD, inner, gw)]
    m.functions["g"] = ir.Function("g", [gx, gw], gb.block, 2)


@FEW
@given(r=st.integers(1, 3), c=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_inlined_user_functions(r: int, c: int, seed: int) -> None:
    p = Prog(seed)
    _functions(p.m)
    x = p.param(p.rng.normal(size=(r, c)))
    w = p.param(p.rng.normal())
    y = p.b.value(Op.CALL, x, w, callee="g", result_rank=2)
    y2, = p.if_(p.b, p.data(1.0), lambda b: [b.value(Op.CALL, y, w, callee="g", result_rank=2)], lambda b: [y])
    check(p.finish(y2, (r, c)))
    assert "call" not in ir.print_function(p.m, "main")


def test_missing_callee_is_a_type_error() -> None:
    p = Prog()
    p.finish_loss(p.b.value(Op.CALL, p.param(1.0), callee="missing", result_rank=0))
    with pytest.raises(NomaError) as info:
        differentiate(p.m)
    assert info.value.diagnostics[0].kind is Kind.TYPE
    assert "missing" in info.value.diagnostics[0].message


def _power(m: ir.Module, rank: int) -> None:
    """pw(x, n) = n <= 0 ? x·0 + 1 : x · pw(x, n - 1) (elementwise, recursive)."""
    x, n = m.new_value(rank), m.new_value(0)
    b = Builder(m, Block())
    op = ir.IfOp(b.value(Op.LE, n, b.const(0.0)), Block(), Block(), [m.new_value(rank)])
    tb, eb = Builder(m, op.then), Builder(m, op.else_)
    op.then.yields = [tb.value(Op.ADD, tb.value(Op.MUL, x, tb.const(0.0)), tb.const(1.0))]
    inner = eb.value(Op.CALL, x, eb.value(Op.SUB, n, eb.const(1.0)), callee="pw", result_rank=rank)
    op.else_.yields = [eb.value(Op.MUL, x, inner)]
    b.block.ops.append(op)
    b.block.yields = list(op.results)
    m.functions["pw"] = ir.Function("pw", [x, n], b.block, rank)


@FEW
@given(shape=shapes(0, 2), depth=st.integers(0, 4), seed=st.integers(0, 2**16))
def test_recursive_call_is_differentiated_through_the_tape(shape: tuple, depth: int, seed: int) -> None:
    p = Prog(seed)
    _power(p.m, len(shape))
    x = p.param(p.rng.uniform(0.5, 1.5, size=shape))
    w = p.param(p.rng.normal())
    y = p.b.value(Op.CALL, p.b.value(Op.MUL, x, w), p.data(float(depth)), callee="pw", result_rank=len(shape))
    y2, = p.if_(p.b, p.data(1.0), lambda b: [b.value(Op.CALL, y, b.const(2.0), callee="pw", result_rank=len(shape))],
                lambda b: [y])
    check(p.finish(y2, shape), optimize=True)
    assert "call" in ir.print_function(p.m, "main")  # recursive calls stay calls


def test_parameter_loaded_in_several_places_sums() -> None:
    p = Prog()
    w = p.param([1.0, -2.0])
    n = p.data(2.0)
    _, x = p.while_(p.b, [p.b.const(0.0), w], lambda b, i, x: b.value(Op.LT, i, n),
                    lambda b, i, x: [b.value(Op.ADD, i, b.const(1.0)), b.value(Op.MUL, x, p.load(p.refs[0], b))])
    check(p.finish(p.b.value(Op.ADD, x, p.load(p.refs[0])), (2,)), optimize=True)
