"""IR passes: each keeps results (run in the NumPy interpreter) and verify() intact; dce removes dead
ops; cse merges duplicates but never across effects; fold_constants folds scalar CONST arithmetic;
inline_calls inlines nested calls.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from noma.compiler.middle import ir, passes
from noma.compiler.middle.autodiff import differentiate
from noma.compiler.interp.interp import Interpreter, InterpState
from noma.compiler.middle.ir import Block, Builder, Op, Value

X = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])
PASSES: list[Callable[[ir.Module], None]] = [passes.fold_constants, passes.cse, passes.dce, passes.optimize_module]


def count(m: ir.Module, op: Op) -> int:
    return sum(1 for fn in m.functions.values() for blk in ir.walk_blocks(fn.body) for o in blk.ops
               if isinstance(o, ir.Instr) and o.op is op)


def execute(m: ir.Module) -> tuple[object, list[str], dict]:
    state = InterpState()
    state.globals[0] = X
    state.params[0] = np.array([1.0, 2.0, 3.0])
    out = Interpreter(m, state).call("main")
    return out, state.output, {k: v.copy() for k, v in state.params.items()}


def same(a: object, b: object) -> bool:
    return bool(np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True))


def sample() -> ir.Module:
    """Duplicates, foldable constants, dead code, an if, a loop and effects."""
    m = ir.Module()
    body = Block()
    m.functions["main"] = ir.Function("main", [], body, 0)
    b = Builder(m, body)
    x = b.value(Op.GLOBAL_LOAD, slot=0, name="X", rank=2)
    five = b.value(Op.ADD, b.const(2.0), b.const(3.0))
    a1, a2 = b.value(Op.MUL, x, five), b.value(Op.MUL, x, five)
    b.value(Op.EXP, b.value(Op.TANH, a1))                       # dead
    b.value(Op.DIV, b.const(1.0), b.const(0.0))                 # dead, unfoldable
    s = b.value(Op.ADD, a1, a2)
    total = b.value(Op.SUM, s, axis=None, keepdims=False)
    branch = ir.IfOp(b.value(Op.GT, total, b.const(0.0)), Block(), Block(), [m.new_value(2)])
    tb, eb = Builder(m, branch.then), Builder(m, branch.else_)
    branch.then.yields = [tb.value(Op.MUL, x, tb.value(Op.ADD, tb.const(2.0), tb.const(3.0)))]
    branch.else_.yields = [eb.value(Op.NEG, x)]
    body.ops.append(branch)
    dead_if = ir.IfOp(b.const(1.0), Block(), Block(), [m.new_value(0)])
    dead_if.then.yields = [Builder(m, dead_if.then).value(Op.SIN, five)]
    dead_if.else_.yields = [five]
    body.ops.append(dead_if)
    loop = ir.WhileOp([b.const(0.0), branch.results[0]], Block([m.new_value(0), m.new_value(2)]),
                      Block([m.new_value(0), m.new_value(2)]), [m.new_value(0), m.new_value(2)])
    cb, wb = Builder(m, loop.cond), Builder(m, loop.body)
    loop.cond.yields = [cb.value(Op.LT, loop.cond.params[0], cb.const(3.0))]
    i, y = loop.body.params
    inv = wb.value(Op.MUL, x, five)                              # loop invariant, same as a1
    wb.emit(Op.PRINT, (i,), parts=("step", None))
    loop.body.yields = [wb.value(Op.ADD, i, wb.const(1.0)), wb.value(Op.ADD, wb.value(Op.TANH, y), inv)]
    body.ops.append(loop)
    b.emit(Op.PARAM_SET, (b.value(Op.SUM, loop.results[1], axis=0, keepdims=False),), slot=0, name="w")
    body.yields = [b.value(Op.SUM, loop.results[1], axis=None, keepdims=False)]
    ir.verify(m)
    return m


@pytest.mark.parametrize("run_pass", PASSES, ids=lambda f: f.__name__)
def test_pass_keeps_results(run_pass: Callable[[ir.Module], None]) -> None:
    expected = execute(sample())
    m = sample()
    run_pass(m)
    ir.verify(m)
    got = execute(m)
    assert same(got[0], expected[0]) and got[1] == expected[1] and same(got[2][0], expected[2][0])


def test_dce_removes_dead_ops_and_keeps_effects() -> None:
    m = sample()
    passes.dce(m)
    assert count(m, Op.EXP) == 0 and count(m, Op.DIV) == 0 and count(m, Op.SIN) == 0
    assert count(m, Op.PRINT) == 1 and count(m, Op.PARAM_SET) == 1
    assert sum(isinstance(o, ir.IfOp) for o in m.functions["main"].body.ops) == 1
    b = Builder(m, m.functions["main"].body)
    b.value(Op.RANDOM, b.const(0.0), b.const(1.0), b.const(3.0), kind="uniform")  # unused but effectful
    passes.dce(m)
    assert count(m, Op.RANDOM) == 1


def test_cse_merges_duplicates_including_loop_invariants() -> None:
    m = sample()
    before = count(m, Op.MUL)
    passes.cse(m)
    ir.verify(m)
    assert count(m, Op.MUL) == before - 3  # a2, the then-branch copy and the loop copy
    assert count(m, Op.CONST) < 10


def test_cse_does_not_merge_across_effects() -> None:
    m = ir.Module()
    body = Block()
    m.functions["main"] = ir.Function("main", [], body, 1)
    b = Builder(m, body)

    def load() -> Value:
        return b.value(Op.PARAM_LOAD, slot=0, name="w", rank=1)
    l1, l2 = load(), load()                      # no effect between: merged
    b.emit(Op.PARAM_SET, (b.value(Op.MUL, l1, b.const(2.0)),), slot=0, name="w")
    l3 = load()                                  # after an effect: kept
    r1 = b.value(Op.RANDOM, b.const(0.0), b.const(1.0), b.const(3.0), kind="uniform")
    r2 = b.value(Op.RANDOM, b.const(0.0), b.const(1.0), b.const(3.0), kind="uniform")
    z1, z2 = b.const(0.0), b.const(-0.0)
    out = b.value(Op.ADD, b.value(Op.ADD, l1, l2), b.value(Op.ADD, l3, b.value(Op.SUB, r1, r2)))
    body.yields = [b.value(Op.MUL, out, b.value(Op.DIV, b.const(1.0), b.value(Op.ADD, z1, z2)))]
    expected = execute(m)[0]
    passes.cse(m)
    ir.verify(m)
    assert count(m, Op.PARAM_LOAD) == 2 and count(m, Op.RANDOM) == 2
    assert {o.attr("value") for o in body.ops if isinstance(o, ir.Instr) and o.op is Op.CONST} >= {0.0, -0.0}
    assert same(execute(m)[0], expected)
    assert math.copysign(1.0, [o.attr("value") for o in body.ops if isinstance(o, ir.Instr)
                               and o.op is Op.CONST and o.result is z2][0]) == -1.0


def test_fold_constants() -> None:
    m = sample()
    passes.fold_constants(m)
    body = m.functions["main"].body
    folded = [o for o in body.ops if isinstance(o, ir.Instr) and o.op is Op.CONST and o.attr("value") == 5.0]
    assert folded and count(m, Op.DIV) == 1  # 1/0 is left for run time


def test_fold_constants_rounds_in_f32() -> None:
    m = ir.Module(dtype="f32")
    body = Block()
    m.functions["main"] = ir.Function("main", [], body, 0)
    b = Builder(m, body)
    body.yields = [b.value(Op.MUL, b.const(0.1), b.const(0.1))]
    expected = Interpreter(m).call("main")
    passes.fold_constants(m)
    assert body.ops[-1].op is Op.CONST and Interpreter(m).call("main") == expected == float(np.float32(0.1) ** 2)


def _calls_module() -> ir.Module:
    """main(x) = g(x) + g(2); g(y) = h(y) * y; h(z) = sin(z) + 1."""
    m = ir.Module()
    for name, inner in (("h", None), ("g", "h")):
        p = m.new_value(0)
        b = Builder(m, Block())
        if inner is None:
            b.block.yields = [b.value(Op.ADD, b.value(Op.SIN, p), b.const(1.0))]
        else:
            b.block.yields = [b.value(Op.MUL, b.value(Op.CALL, p, callee=inner, result_rank=0), p)]
        m.functions[name] = ir.Function(name, [p], b.block, 0)
    x = m.new_value(0)
    b = Builder(m, Block())
    b.block.yields = [b.value(Op.ADD, b.value(Op.CALL, x, callee="g", result_rank=0),
                              b.value(Op.CALL, b.const(2.0), callee="g", result_rank=0))]
    m.functions["main"] = ir.Function("main", [x], b.block, 0)
    return m


def test_inline_calls() -> None:
    m = _calls_module()
    expected = Interpreter(m).call("main", 0.3)
    passes.inline_calls(m, m.functions["main"].body)
    ir.verify(m)
    assert not any(isinstance(o, ir.Instr) and o.op is Op.CALL for o in m.functions["main"].body.ops)
    assert Interpreter(m).call("main", 0.3) == expected


def test_inline_keeps_recursive_calls() -> None:
    """g and h call each other: their calls stay calls; the rest is inlined."""
    m = _calls_module()
    h = m.functions["h"]
    h.body.yields = [Builder(m, h.body).value(Op.CALL, h.params[0], callee="g", result_rank=0)]
    assert passes.is_recursive(m, "g") and passes.is_recursive(m, "h") and not passes.is_recursive(m, "main")
    assert passes.reachable_functions(m, "main") == {"g", "h"}
    passes.inline_calls(m, m.functions["main"].body)
    ir.verify(m)
    calls = [o.attr("callee") for o in m.functions["main"].body.ops if isinstance(o, ir.Instr) and o.op is Op.CALL]
    assert calls == ["g", "g"]


def test_passes_after_autodiff_keep_training_identical() -> None:
    def build() -> ir.Module:
        m = ir.Module()
        outer = Block()
        m.functions["main"] = ir.Function("main", [], outer, None)
        ob = Builder(m, outer)
        body = Block()
        b = Builder(m, body)
        w = b.value(Op.PARAM_LOAD, slot=0, name="w", rank=1)
        loop = ir.WhileOp([b.const(0.0), w], Block([m.new_value(0), m.new_value(1)]),
                          Block([m.new_value(0), m.new_value(1)]), [m.new_value(0), m.new_value(1)])
        cb, lb = Builder(m, loop.cond), Builder(m, loop.body)
        loop.cond.yields = [cb.value(Op.LT, loop.cond.params[0], cb.const(3.0))]
        i, y = loop.body.params
        loop.body.yields = [lb.value(Op.ADD, i, lb.const(1.0)),
                            lb.value(Op.TANH, lb.value(Op.MUL, y, lb.value(Op.MUL, w, lb.const(2.0))))]
        body.ops.append(loop)
        d = b.value(Op.SUB, loop.results[1], b.value(Op.MUL, b.const(0.5), b.const(1.0)))
        body.yields = [b.value(Op.SUM, b.value(Op.MUL, d, d), axis=None, keepdims=False), b.const(0.0)]
        hyper = [ob.const(math.nan) for _ in range(ir.HYPER_LEN)]
        outer.ops.append(ir.OptimizeOp([ir.ParamRef(0, "w", 1)], ir.OPTIMIZERS["adam"], hyper, ob.const(20.0),
                                       [], body, [m.new_value(0)]))
        differentiate(m)
        return m

    plain, optimized = build(), build()
    passes.optimize_module(optimized)
    ir.verify(optimized)
    assert count(optimized, Op.CONST) < count(plain, Op.CONST)
    a, b = execute(plain), execute(optimized)
    assert np.array_equal(a[2][0], b[2][0])


# ----------------------------------------------------------------------------- random programs

OPS = [Op.ADD, Op.SUB, Op.MUL, Op.MAX, Op.NEG, Op.TANH, Op.SUM, Op.GT, Op.SELECT]


@st.composite
def programs(draw: st.DrawFn) -> list[tuple[Op, tuple[int, ...]]]:
    steps = []
    for n in range(draw(st.integers(1, 25))):
        op = draw(st.sampled_from(OPS))
        arity = 3 if op is Op.SELECT else 1 if op in (Op.NEG, Op.TANH, Op.SUM) else 2
        steps.append((op, tuple(draw(st.integers(0, n + 3)) for _ in range(arity))))
    return steps


def build_program(steps: list[tuple[Op, tuple[int, ...]]]) -> ir.Module:
    m = ir.Module()
    body = Block()
    m.functions["main"] = ir.Function("main", [], body, 0)
    b = Builder(m, body)
    pool = [b.const(2.0), b.const(-0.5), b.const(2.0), b.value(Op.GLOBAL_LOAD, slot=0, name="X", rank=2)]
    for op, args in steps:
        values = [pool[i] for i in args]
        pool.append(b.value(op, *values, axis=None, keepdims=False) if op is Op.SUM else b.value(op, *values))
    last = pool[-1]
    body.yields = [last if last.rank == 0 else b.value(Op.SUM, last, axis=None, keepdims=False)]
    return m


@settings(max_examples=60, deadline=None)
@given(steps=programs())
def test_random_programs_keep_their_value(steps: list) -> None:
    expected = execute(build_program(steps))[0]
    m = build_program(steps)
    passes.optimize_module(m)
    ir.verify(m)
    assert same(execute(m)[0], expected)
