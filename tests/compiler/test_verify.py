"""ir.verify(): accepts well-formed IR and rejects each broken invariant (use before definition,
a value defined twice, a block's value used after the block, a gradient block that reads the
body's nested values, result ranks, region arities), whatever the nesting.
"""

from __future__ import annotations

from typing import Callable

import pytest

from noma.compiler.front.budget import compiling
from noma.compiler.middle import ir
from noma.compiler.middle.ir import Block, Builder, IfOp, Op, OptimizeOp, Value, WhileOp


def module() -> tuple[ir.Module, Block, Builder]:
    m = ir.Module()
    body = Block()
    m.functions["main"] = ir.Function("main", [], body, None)
    return m, body, Builder(m, body)


def if_op(m: ir.Module, cond: Value, then: list[ir.Operation], then_yield: Value) -> IfOp:
    else_ = Block()
    other = Builder(m, else_).const(0.0)
    return IfOp(cond, Block([], then, [then_yield]), Block([], else_.ops, [other]), [m.new_value(0)])


def ok_nested() -> ir.Module:
    """An if inside an if; each branch yields its own values; values of the outer block are used
    inside and the if's result after it."""
    m, body, b = module()
    x = b.const(1.0)
    inner_block = Block()
    y = Builder(m, inner_block).value(Op.ADD, x, x)
    inner = if_op(m, x, inner_block.ops, y)
    outer = if_op(m, x, [inner], inner.results[0])
    body.ops.append(outer)
    b.emit(Op.PRINT, (outer.results[0],), parts=(None,))
    return m


def test_well_formed_ir_passes() -> None:
    ir.verify(ok_nested())


def _raises(build: Callable[[], ir.Module], message: str) -> None:
    with pytest.raises(ir.VerifyError, match=message):
        ir.verify(build())


def test_use_before_definition() -> None:
    def build() -> ir.Module:
        m, body, b = module()
        later = m.new_value(0)
        b.value(Op.ADD, later, later)
        body.ops.append(ir.Instr(Op.CONST, (), later, (("value", 1.0),)))
        return m
    _raises(build, "used before definition")


def test_defined_twice_in_a_nested_block() -> None:
    def build() -> ir.Module:
        m, body, b = module()
        x = b.const(1.0)
        again = ir.Instr(Op.CONST, (), x, (("value", 2.0),))
        body.ops.append(if_op(m, x, [again], x))
        return m
    _raises(build, "defined twice")


def test_value_of_a_block_is_not_visible_after_it() -> None:
    def build() -> ir.Module:
        m, body, b = module()
        x = b.const(1.0)
        branch = Block()
        y = Builder(m, branch).value(Op.ADD, x, x)
        body.ops.append(if_op(m, x, branch.ops, y))
        b.emit(Op.PRINT, (y,), parts=(None,))  # y belongs to the branch
        return m
    _raises(build, "used before definition")


def test_value_of_one_branch_is_not_visible_in_the_other() -> None:
    def build() -> ir.Module:
        m, body, b = module()
        x = b.const(1.0)
        then = Block()
        y = Builder(m, then).value(Op.ADD, x, x)
        op = if_op(m, x, then.ops, y)
        op.else_.yields = [y]
        body.ops.append(op)
        return m
    _raises(build, "yield of undefined")


def test_sibling_blocks_may_not_see_each_other_but_outer_values_stay() -> None:
    """After a nested block, the enclosing block's own values are still defined (the scope is
    restored, not emptied)."""
    m = ok_nested()
    body = m.functions["main"].body
    first = body.ops[0]
    assert isinstance(first, ir.Instr) and first.result is not None
    Builder(m, body).emit(Op.PRINT, (first.result,), parts=(None,))
    ir.verify(m)


def _optimize(nested_use: bool) -> ir.Module:
    """An optimize loop whose gradient reads the body's top-level value (allowed) or a value of
    an if nested in the body (not allowed)."""
    m, body, b = module()
    hyper = [b.const(float("nan")) for _ in range(ir.HYPER_LEN)]
    max_iter = b.const(1.0)
    opt_body = Block()
    ob = Builder(m, opt_body)
    w = ob.value(Op.PARAM_LOAD, slot=0, name="w", rank=0)
    branch = Block()
    inner = Builder(m, branch).value(Op.MUL, w, w)
    cond = if_op(m, w, branch.ops, inner)
    opt_body.ops.append(cond)
    opt_body.yields = [cond.results[0], ob.const(0.0)]
    grad = Block()
    grad.yields = [Builder(m, grad).value(Op.ADD, inner if nested_use else w, w)]
    opt = OptimizeOp([ir.ParamRef(0, "w", 0)], 0, hyper, max_iter, [], opt_body, [m.new_value(0)], grad)
    body.ops.append(opt)
    return m


def test_gradient_sees_the_body_top_level_only() -> None:
    ir.verify(_optimize(nested_use=False))
    _raises(lambda: _optimize(nested_use=True), "used before definition")


def test_body_values_are_not_visible_after_the_optimize() -> None:
    def build() -> ir.Module:
        m = _optimize(nested_use=False)
        body = m.functions["main"].body
        opt = body.ops[-1]
        assert isinstance(opt, OptimizeOp)
        Builder(m, body).emit(Op.PRINT, (opt.body.yields[1],), parts=(None,))
        return m
    _raises(build, "used before definition")


def test_result_rank() -> None:
    def build() -> ir.Module:
        m, body, b = module()
        x = b.const(1.0)
        body.ops.append(ir.Instr(Op.ADD, (x, x), m.new_value(2)))
        return m
    _raises(build, "result rank 2, expected 0")


def test_while_arity() -> None:
    def build() -> ir.Module:
        m, body, b = module()
        x = b.const(1.0)
        p, q = m.new_value(0), m.new_value(0)
        loop = WhileOp([x], Block([p], [], [p, p]), Block([q], [], [q]), [m.new_value(0)])
        body.ops.append(loop)
        return m
    _raises(build, "while yields malformed")


def test_deep_nesting() -> None:
    """2,000 nested ifs, each using a value of the outermost block (verify runs inside the
    compiler's recursion budget, as the pipeline runs it)."""
    m, body, b = module()
    x = b.const(1.0)
    op: ir.Operation = ir.Instr(Op.ADD, (x, x), m.new_value(0))
    for _ in range(2000):
        assert isinstance(op, (ir.Instr, IfOp))
        result = op.result if isinstance(op, ir.Instr) else op.results[0]
        assert result is not None
        op = if_op(m, x, [op], result)
    body.ops.append(op)
    with compiling():
        ir.verify(m)
