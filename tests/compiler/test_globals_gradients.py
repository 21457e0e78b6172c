"""Gradients through globals written and read inside one training step (issue 13, classes 1, 2).

Each program takes one `sgd(lr = 1) max 1` step. Three computations must agree:
* the oracle: central finite differences of the program's own loss, computed by the NumPy
  interpreter on the IR *before* autodiff (globals are plain state there: GLOBAL_STORE writes,
  GLOBAL_LOAD reads, calls are calls), so the oracle shares nothing with the pass that turns
  globals into SSA values (globals_ssa) or with autodiff;
* the gradient the compiled grad block gives in the interpreter;
* the parameters after the step in the JIT (a session), which are p - gradient.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

import noma
from noma.compiler.middle import ir
from noma.compiler.interp.interp import Interpreter, InterpState
from noma.diagnostics import Source
from noma.emit import ENTRY, compile_ir

PROGRAMS = {
    "for_after_top_level_assignment": ("""
        learn w = 1.3; let loss = 0;
        optimize(w) with sgd(lr = 1) max 1 { loss = 0; for i in 0..3 { loss = loss + w * w * i; } minimize loss; }
    """, ["w"]),
    "if_else_without_top_level_assignment": ("""
        learn w = tensor [0.5, -1.5, 2.0]; let a = tensor [0, 0, 0]; let b = 0;
        optimize(w) with sgd(lr = 1) max 1 {
            if sum(w) > 0 { a = w * w; } else { a = w; }
            if max(w) < 0 { b = 1; } else { b = sum(a * w); }
            let loss = sum(a) + b;
            minimize loss;
        }
    """, ["w"]),
    "read_in_loop_before_write_branches": ("""
        learn w = 1.3; let s = 0;
        optimize(w) with sgd(lr = 1) max 1 {
            s = w;
            for i in 0..3 { let t = s * w; if t > 2 { s = t - 1; } else { s = t + s; } }
            minimize s * s;
        }
    """, ["w"]),
    "while_batch_break_continue": ("""
        learn w = tensor [0.3, -0.2]; let X = tensor [[1, 2], [3, 4], [5, 6]]; let acc = tensor [0, 0]; let k = 0;
        optimize(w) with sgd(lr = 1) max 1 {
            acc = w;
            batch xb, j in X with 2 { if j == 5 { continue; } acc = acc + sum(xb, 0) * w; }
            k = 0;
            while k < 10 { acc = tanh(acc) * w + acc; k = k + 1; if k >= 3 { break; } }
            let loss = sum(acc * acc);
            minimize loss;
        }
    """, ["w"]),
    "body_writes_function_reads": ("""
        learn w = 1.0; let g = 0;
        fn getg() { return g; }
        optimize(w) with sgd(lr = 1) max 1 { g = w * 3; let loss = getg() * getg(); minimize loss; }
    """, ["w"]),
    "function_writes_and_returns": ("""
        learn w = 0.8; let h = 0; let s = 0;
        fn seth(x) { h = x * x; }
        fn sets(x) { s = x + h; return s; }
        fn acc(x) { for i in 0..3 { s = s * x + 1; } return s; }
        optimize(w) with sgd(lr = 1) max 1 { seth(w); let r = sets(w); let q = acc(w); minimize h * r + s * q; }
    """, ["w"]),
    "function_chain_in_loop": ("""
        learn w = 0.9; learn u = -0.4; let a = 0; let b = 0;
        fn inner() { b = a * a + u; return b + 1; }
        fn outer(x) { return inner() * x; }
        optimize(w, u) with sgd(lr = 1) max 1 {
            a = w;
            let y = 0;
            for i in 0..2 { a = a + outer(w); if b > 0 { y = y + b; } else { y = y - a; } }
            minimize y + a;
        }
    """, ["w", "u"]),
    "while_condition_writes_a_global": ("""
        learn w = 0.7; let c = 0; let v = 0;
        fn step(x) { c = c + x; return c; }
        optimize(w) with sgd(lr = 1) max 1 {
            c = 0; v = 1;
            while step(w) < 2 { v = v * c + w; }
            minimize v * c;
        }
    """, ["w"]),
    "recursive_function_reads_globals": ("""
        learn w = tensor [0.4, -0.7]; learn u = 0.6; let g = tensor [0, 0]; let s = 0;
        fn mix(x) { return tanh(x * g + s); }
        fn deep(x, n) { if n <= 0 { return sum(x); } return deep(mix(x), n - 1); }
        optimize(w, u) with sgd(lr = 1) max 1 {
            g = w * u; s = u;
            for i in 0..2 { if sum(g) < 0 { g = g * 0.5 + w; } }
            minimize deep(w, 3) + s * s;
        }
    """, ["w", "u"]),
    "hidden_layer_in_a_global": ("""
        let X = tensor [[0, 0], [0, 1], [1, 0], [1, 1]];
        let Y = tensor [[0], [1], [1], [0]];
        learn W1 = tensor [[0.5, -0.4], [0.3, 0.8]];
        learn b1 = tensor [0.1, -0.1];
        learn W2 = tensor [[0.7], [-0.6]];
        let H = zeros([4, 2]);
        fn out() { return sigmoid(matmul(H, W2)); }
        optimize(W1, b1, W2) with sgd(lr = 1) max 1 {
            H = tanh(matmul(X, W1) + b1);
            let loss = mean((out() - Y) ^ 2);
            minimize loss;
        }
    """, ["W1", "b1", "W2"]),
}


def _optimize_op(module: ir.Module) -> ir.OptimizeOp:
    ops = [op for op in module.functions[ENTRY].body.ops if isinstance(op, ir.OptimizeOp)]
    assert len(ops) == 1
    return ops[0]


def _param_slots(module: ir.Module) -> dict[str, int]:
    return {p.name: p.slot for p in _optimize_op(module).params}


def finite_differences(source: str, names: list[str], h: float = 1e-5) -> dict[str, np.ndarray]:
    """d(loss)/d(param) by central differences of the interpreter running the IR before autodiff."""
    module, _ = compile_ir(Source("<fd>", source), differentiate=False)
    opt, slots = _optimize_op(module), _param_slots(module)
    it = Interpreter(module, InterpState())
    env = it.prelude(ENTRY, opt)
    globals0 = copy.deepcopy(it.state.globals)
    out = {}
    for name in names:
        p0 = np.array(it.state.params[slots[name]], dtype=np.float64)
        grad = np.zeros_like(p0)
        for idx in np.ndindex(p0.shape):
            def loss(t: float) -> float:
                p = p0.copy()
                p[idx] += t
                it.state.params[slots[name]] = p if p.ndim else float(p)
                it.state.globals = copy.deepcopy(globals0)
                return float(it.forward(opt, env)[0])
            grad[idx] = (loss(h) - loss(-h)) / (2 * h)
        it.state.params[slots[name]] = p0 if p0.ndim else float(p0)
        out[name] = grad
    return out


def compiled_gradients(source: str) -> dict[str, np.ndarray]:
    """The gradients of the differentiated module, run by the interpreter."""
    module, _ = compile_ir(Source("<grad>", source))
    opt = _optimize_op(module)
    it = Interpreter(module, InterpState())
    env = it.prelude(ENTRY, opt)
    _, grads = it.gradients(opt, env)
    return {p.name: np.asarray(g, dtype=np.float64) for p, g in zip(opt.params, grads)}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_gradient_through_globals(name: str) -> None:
    source, params = PROGRAMS[name]
    fd = finite_differences(source, params)
    grads = compiled_gradients(source)
    for p in params:
        assert np.any(fd[p] != 0), f"{p}: the program should have a gradient"
        np.testing.assert_allclose(grads[p], fd[p], rtol=1e-6, atol=1e-7, err_msg=p)
    session = noma.Session()
    before = {p: np.array(session.execute(source.split("optimize(")[0]) and session.params[p]) for p in params}
    result = session.execute("optimize(" + source.split("optimize(", 1)[1])
    assert result.ok, [d.render() for d in result.diagnostics]
    for p in params:  # sgd(lr = 1): one step subtracts the gradient
        np.testing.assert_allclose(before[p] - np.asarray(session.params[p]), fd[p], rtol=1e-6, atol=1e-7, err_msg=p)


# ----------------------------------------------------------------------------- calls that stay calls


def _kept_call_body(store_value: str, callee_writes: bool, read_after: bool) -> tuple[ir.Module, ir.Block]:
    """body: g = <w * 3 | 2>; r = rec(1); loss = r (+ g). rec(x) reads g (or writes g = x * w)
    and calls itself: a call that autodiff keeps. Slot 7 is g, parameter slot 0 is w."""
    m = ir.Module()
    x = m.new_value(0)
    fb = ir.Builder(m, ir.Block())
    if callee_writes:
        w_in = fb.value(ir.Op.PARAM_LOAD, slot=0, name="w", rank=0)
        fb.emit(ir.Op.GLOBAL_STORE, (fb.value(ir.Op.MUL, x, w_in),), slot=7, name="g")
        seen = x
    else:
        seen = fb.value(ir.Op.GLOBAL_LOAD, slot=7, name="g", rank=0)
    again = fb.value(ir.Op.CALL, fb.value(ir.Op.SUB, x, fb.const(1.0)), callee="rec", result_rank=0)
    fb.block.yields = [fb.value(ir.Op.ADD, seen, again)]
    m.functions["rec"] = ir.Function("rec", [x], fb.block, 0)
    b = ir.Builder(m, ir.Block())
    w = b.value(ir.Op.PARAM_LOAD, slot=0, name="w", rank=0)
    value = b.value(ir.Op.MUL, w, b.const(3.0)) if store_value == "w" else b.const(2.0)
    b.emit(ir.Op.GLOBAL_STORE, (value,), slot=7, name="g")
    loss = b.value(ir.Op.CALL, b.const(1.0), callee="rec", result_rank=0)
    if read_after:
        loss = b.value(ir.Op.ADD, loss, b.value(ir.Op.GLOBAL_LOAD, slot=7, name="g", rank=0))
    b.block.yields = [loss, b.const(0.0)]
    return m, b.block


@pytest.mark.parametrize("store_value, callee_writes, read_after, refused", [
    ("2", True, True, "assigns the global `g`"),    # the call writes x * w, the body reads it back
    ("2", True, False, None),                       # written but never read again
])
def test_gradient_through_a_global_across_a_kept_call_is_refused(store_value: str, callee_writes: bool,
                                                                  read_after: bool, refused: str | None) -> None:
    from noma.compiler.middle.globals_ssa import promote_globals
    from noma.diagnostics import Kind, NomaError

    module, body = _kept_call_body(store_value, callee_writes, read_after)
    if refused is None:
        promote_globals(module, body, frozenset({0}))
        return
    with pytest.raises(NomaError) as info:
        promote_globals(module, body, frozenset({0}))
    assert info.value.diagnostics[0].kind is Kind.TYPE and refused in info.value.diagnostics[0].message


def test_a_kept_call_forgets_only_the_globals_it_may_write() -> None:
    """g = w * 3; rec(1) (writes only h); loss = g + h: g keeps its SSA value, h is read back."""
    from noma.compiler.middle.globals_ssa import promote_globals

    m = ir.Module()
    x = m.new_value(0)
    fb = ir.Builder(m, ir.Block())
    fb.emit(ir.Op.GLOBAL_STORE, (x,), slot=8, name="h")
    fb.block.yields = [fb.value(ir.Op.CALL, fb.value(ir.Op.SUB, x, fb.const(1.0)), callee="rec", result_rank=0)]
    m.functions["rec"] = ir.Function("rec", [x], fb.block, 0)
    b = ir.Builder(m, ir.Block())
    g = b.value(ir.Op.MUL, b.value(ir.Op.PARAM_LOAD, slot=0, name="w", rank=0), b.const(3.0))
    b.emit(ir.Op.GLOBAL_STORE, (g,), slot=7, name="g")
    b.emit(ir.Op.CALL, (b.const(1.0),), callee="rec", result_rank=0)
    loss = b.value(ir.Op.ADD, b.value(ir.Op.GLOBAL_LOAD, slot=7, name="g", rank=0),
                   b.value(ir.Op.GLOBAL_LOAD, slot=8, name="h", rank=0))
    b.block.yields = [loss, b.const(0.0)]
    promote_globals(m, b.block, frozenset({0}))
    loads = [op.attr("slot") for op in b.block.ops if isinstance(op, ir.Instr) and op.op is ir.Op.GLOBAL_LOAD]
    assert loads == [8]
    add = next(op for op in b.block.ops if isinstance(op, ir.Instr) and op.op is ir.Op.ADD)
    assert add.args[0] is g


def _recursive_reader(store_value: str) -> tuple[ir.Module, ir.Block]:
    """rec(x) = x > 0 ? g * x + rec(x - 1) : 0 reads global slot 7 (g); body: g = w * 3 (or 2);
    loss = rec(3)."""
    m = ir.Module()
    x = m.new_value(0)
    fb = ir.Builder(m, ir.Block())
    cond = fb.value(ir.Op.GT, x, fb.const(0.0))
    tb, eb = ir.Builder(m, ir.Block()), ir.Builder(m, ir.Block())
    g = tb.value(ir.Op.GLOBAL_LOAD, slot=7, name="g", rank=0)
    inner = tb.value(ir.Op.CALL, tb.value(ir.Op.SUB, x, tb.const(1.0)), callee="rec", result_rank=0)
    tb.block.yields = [tb.value(ir.Op.ADD, tb.value(ir.Op.MUL, g, x), inner)]
    eb.block.yields = [eb.const(0.0)]
    result = m.new_value(0)
    fb.block.ops.append(ir.IfOp(cond, tb.block, eb.block, [result]))
    fb.block.yields = [result]
    m.functions["rec"] = ir.Function("rec", [x], fb.block, 0)
    b = ir.Builder(m, ir.Block())
    w = b.value(ir.Op.PARAM_LOAD, slot=0, name="w", rank=0)
    b.emit(ir.Op.GLOBAL_STORE, (b.value(ir.Op.MUL, w, b.const(3.0)) if store_value == "w" else b.const(2.0),),
           slot=7, name="g")
    b.block.yields = [b.value(ir.Op.CALL, b.const(3.0), callee="rec", result_rank=0), b.const(0.0)]
    return m, b.block


@pytest.mark.parametrize("store_value", ["w", "2"])
def test_globals_a_kept_call_only_reads_become_arguments(store_value: str) -> None:
    """The body calls rec.gl.7(3, g): a copy of rec whose loads of g are its second parameter and
    whose recursive call passes it on; it computes what rec computes with g in memory."""
    from noma.compiler.middle.globals_ssa import promote_globals

    module, body = _recursive_reader(store_value)
    promote_globals(module, body, frozenset({0}))
    call = next(op for op in body.ops if isinstance(op, ir.Instr) and op.op is ir.Op.CALL)
    assert call.attr("callee") == "rec.gl.7" and len(call.args) == 2
    ops = [op for b in ir.walk_blocks(module.functions["rec.gl.7"].body) for op in b.ops if isinstance(op, ir.Instr)]
    assert not [op for op in ops if op.op is ir.Op.GLOBAL_LOAD]
    assert [(op.attr("callee"), len(op.args)) for op in ops if op.op is ir.Op.CALL] == [("rec.gl.7", 2)]
    ir.verify(module)
    state = InterpState()
    state.globals[7] = 6.0
    it = Interpreter(module, state)
    assert it.call("rec", 3.0) == it.call("rec.gl.7", 3.0, 6.0) == 36.0
