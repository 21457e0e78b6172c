"""conv2d, max_pool2d and avg_pool2d: gradients against central finite differences (f64, the
interpreter), the JIT's values and gradients against the interpreter's, and both against PyTorch's
conv2d / max_pool2d / avg_pool2d where torch is installed; argsort, topk and norm against NumPy.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import noma
from noma.compiler.interp.interp import Interpreter, InterpState
from noma.compiler.middle.ir import Op
from noma.diagnostics import Source

from test_autodiff import Prog, check

FEW = settings(max_examples=8, deadline=None)


@st.composite
def conv_cases(draw: st.DrawFn) -> tuple[tuple, tuple, int, int]:
    n, c, o = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    s, p = draw(st.integers(1, 2)), draw(st.integers(0, 2))
    h, w = draw(st.integers(max(1, kh - 2 * p), 5)), draw(st.integers(max(1, kw - 2 * p), 5))
    return (n, c, h, w), (o, c, kh, kw), s, p


def _out(h: int, k: int, s: int, p: int) -> int:
    return (h + 2 * p - k) // s + 1


@FEW
@given(case=conv_cases(), seed=st.integers(0, 2**16))
def test_conv2d_gradients_match_finite_differences(case: tuple, seed: int) -> None:
    xs, ws, s, pad = case
    p = Prog(seed)
    x, w = p.param(p.rng.normal(size=xs)), p.param(p.rng.normal(size=ws))
    y = p.b.value(Op.CONV2D, x, w, p.b.const(s), p.b.const(pad))
    p.finish(y, (xs[0], ws[0], _out(xs[2], ws[2], s, pad), _out(xs[3], ws[3], s, pad)))
    check(p)


@pytest.mark.parametrize("kind", ["max", "avg"])
@FEW
@given(k=st.integers(1, 3), s=st.integers(1, 3), hw=st.tuples(st.integers(3, 6), st.integers(3, 6)),
       seed=st.integers(0, 2**16))
def test_pool_gradients_match_finite_differences(kind: str, k: int, s: int, hw: tuple, seed: int) -> None:
    p = Prog(seed)
    # distinct values far apart (no ties within a step of the stencil): the max is differentiable
    vals = p.rng.permutation(2 * 3 * hw[0] * hw[1]).reshape(2, 3, *hw) * 0.01 + p.rng.normal(size=(2, 3, *hw)) * 1e-4
    x = p.param(vals)
    y = p.b.value(Op.POOL2D, x, p.b.const(k), p.b.const(s), kind=kind)
    p.finish(y, (2, 3, (hw[0] - k) // s + 1, (hw[1] - k) // s + 1))
    check(p)


CNN = """
seed(7);
let X = rand_normal_tensor(0, 1, 3, 2, 7, 6);
let Y = rand_normal_tensor(0, 1, 3, 2);
learn W1 = normal([4, 2, 3, 3], 0, 0.3);
learn W2 = normal([3, 4, 2, 2], 0, 0.3);
learn V = normal([3, 2], 0, 0.3);
optimize(W1, W2, V) with adam(lr = 0.01) max 5 {
    let h = relu(conv2d(X, W1, 1, 1));
    let p = max_pool2d(h, 2, 2);
    let q = avg_pool2d(conv2d(p, W2, 2, 1), 2, 1);
    let f = reshape(q, [3, 3]);
    let loss = mean((matmul(f, V) - Y) ^ 2);
    minimize loss;
}
let out = conv2d(X, W1, 2, 0);
"""


def test_jit_equals_interpreter_on_a_small_cnn() -> None:
    session = noma.Session()
    module, cell, _, _ = session.compile(Source("<test>", CNN))
    state = InterpState()
    Interpreter(module, state).call(cell)
    result = session.execute(CNN)
    assert result.ok, [d.render() for d in result.diagnostics]
    for pname, var in session.symbols.params.items():
        np.testing.assert_allclose(session.params[pname], state.params[var.slot], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(session.history.losses, np.asarray(state.loss_log), rtol=1e-12)
    out = session.symbols.globals["out"].slot
    np.testing.assert_allclose(np.asarray(session.globals()["out"]), state.globals[out], rtol=1e-12, atol=1e-14)


def test_ranking_builtins_match_numpy() -> None:
    src = """
    let s = tensor [0.5, -1, 3, 0.5, 2, -7];
    let a = argsort(s);
    let t = topk(s, 4);
    let W = reshape(tensor [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [3, 2, 2]);
    let n0 = norm(W, 0);
    let n2 = norm(W, -1);
    let nall = norm(W);
    """
    session = noma.Session()
    assert session.execute(src).ok
    g = session.globals()
    s = np.array([0.5, -1, 3, 0.5, 2, -7])
    W = np.arange(1, 13, dtype=float).reshape(3, 2, 2)
    assert list(g["a"]) == list(np.argsort(s, kind="stable"))
    assert list(g["t"]) == [2, 4, 0, 3]
    np.testing.assert_allclose(g["n0"], np.sqrt((W ** 2).sum(axis=(1, 2))), rtol=1e-15)
    np.testing.assert_allclose(g["n2"], np.sqrt((W ** 2).sum(axis=(0, 1))), rtol=1e-15)
    np.testing.assert_allclose(g["nall"], np.linalg.norm(W), rtol=1e-15)


# ----------------------------------------------------------------------------- against PyTorch

TORCH_CASE = """
seed(3);
let X = rand_normal_tensor(0, 1, 2, 3, 6, 5);
learn W = normal([4, 3, 3, 2], 0, 1);
learn Z = normal([2, 3, 6, 5], 0, 1);
let G = rand_normal_tensor(0, 1, 2, 4, 3, 3);
let H = rand_normal_tensor(0, 1, 2, 3, 2, 2);
optimize(W, Z) with sgd(lr = 0) max 1 {
    let y = conv2d(X + Z, W, 2, 1);
    let loss = sum(y * G) + sum(max_pool2d(Z, 3, 2) * H) + sum(avg_pool2d(Z * X, 2, 3) * H);
    minimize loss;
}
"""


def test_values_and_gradients_match_pytorch() -> None:
    torch = pytest.importorskip("torch")
    session = noma.Session()
    module, cell, _, _ = session.compile(Source("<test>", TORCH_CASE))
    state = InterpState()
    Interpreter(module, state).call(cell)
    result = session.execute(TORCH_CASE)
    assert result.ok, [d.render() for d in result.diagnostics]
    g = session.globals()
    X, G, H = (torch.tensor(np.asarray(g[n]), dtype=torch.float64) for n in ("X", "G", "H"))
    # the parameters before the (lr = 0) step: the same values after it
    W = torch.tensor(session.params["W"], dtype=torch.float64, requires_grad=True)
    Z = torch.tensor(session.params["Z"], dtype=torch.float64, requires_grad=True)
    F = torch.nn.functional
    loss = ((F.conv2d(X + Z, W, stride=2, padding=1) * G).sum() + (F.max_pool2d(Z, 3, 2) * H).sum()
            + (F.avg_pool2d(Z * X, 2, 3) * H).sum())
    loss.backward()
    assert abs(session.history.losses[-1] - loss.item()) <= 1e-12 * max(1.0, abs(loss.item()))
    assert abs(state.loss_log[-1] - loss.item()) <= 1e-12 * max(1.0, abs(loss.item()))
    # gradients: a learning-rate-1 SGD step from the same start gives p - grad
    step = TORCH_CASE.replace("sgd(lr = 0)", "sgd(lr = 1)")
    s2 = noma.Session()
    assert s2.execute(step).ok
    for name, t in (("W", W), ("Z", Z)):
        got = session.params[name] - s2.params[name]
        np.testing.assert_allclose(got, t.grad.numpy(), rtol=1e-10, atol=1e-12)
