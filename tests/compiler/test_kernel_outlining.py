"""Outlined loop kernels (noma.compiler.llvm.kernels.Kernels.outline): compiled once per session, same results as
the inline loops."""

from __future__ import annotations

import re

import numpy as np
import pytest

import noma
from noma.compiler.middle import ir
from noma.compiler.llvm import jit
from noma.compiler.llvm.lower_llvm import lower_module
from conftest import lit


@pytest.fixture
def texts(monkeypatch):
    """The LLVM text of every module a JIT compiles."""
    seen: list[str] = []
    original = jit.JIT.add_ir

    def add_ir(self, text, name):
        seen.append(text)
        return original(self, text, name)

    monkeypatch.setattr(jit.JIT, "add_ir", add_ir)
    return seen


def kernels(text: str, how: str) -> set[str]:
    return set(re.findall(rf'^{how} [^@]*@"(noma\.k\.[0-9a-f]+)"', text, re.M))


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


@pytest.mark.parametrize("dtype", ["f64", "f32"])
def test_a_later_cell_calls_the_kernels_an_earlier_cell_compiled(texts, dtype):
    rng = np.random.default_rng(3)
    X, W, b = rng.normal(size=(5, 3)), rng.normal(size=(3, 4)), rng.normal(size=4)
    s = noma.Session(dtype=dtype)
    assert s.execute(f"let X = {lit(X)}; let W = {lit(W)}; let b = {lit(b)};").ok
    first = s.execute("sigmoid(matmul(X, W) + b);")
    defined = kernels(texts[-1], "define")
    assert defined  # the bias add fused with sigmoid is an outlined kernel
    second = s.execute("let h = sigmoid(matmul(X, W) + b); print(sum(h)); h;")
    assert not kernels(texts[-1], "define") and defined <= kernels(texts[-1], "declare")
    tol = 1e-12 if dtype == "f64" else 1e-5
    np.testing.assert_allclose(first.value, sigmoid(X @ W + b), rtol=tol, atol=tol)
    np.testing.assert_allclose(second.value, sigmoid(X @ W + b), rtol=tol, atol=tol)


def test_two_modules_defining_one_kernel_in_one_jit(texts):
    """A caller that does not say which kernels exist gets a private copy, not an error."""
    s = noma.Session()
    assert s.execute("let a = tensor [[1.0, 2.0], [3.0, 4.0]]; let c = tensor [0.5, -1.0];").ok
    module, cell, _, _ = s.compile(noma.diagnostics.Source("x", "exp(a + c) * 2;"))
    ir.verify(module)
    for n in range(2):
        text = lower_module(module, symbols={cell: f"t{n}"}, own_pointers=set(), name=f"t{n}")
        assert kernels(text, "define")
        s.jit.add_ir(text, f"t{n}")
        assert s.rt.invoke(s.jit.function_address(f"t{n}")) == 0


@pytest.mark.parametrize("a_shape, b_shape", [
    ((4, 5), (5,)),          # row broadcast: unit inner stride
    ((4, 5), (4, 1)),        # column broadcast: the general strided loop
    ((2, 3, 4), (3, 1)),
    ((4, 5), (4, 5)),        # same dims: flat loop
])
def test_outlined_elementwise_matches_numpy(a_shape, b_shape):
    rng = np.random.default_rng(1)
    A, B = rng.normal(size=a_shape), rng.normal(size=b_shape)
    s = noma.Session()
    r = s.execute(f"let A = {lit(A)}; let B = {lit(B)};\ntanh(A * B + exp(B)) - A / (1 + B * B);")
    assert r.ok, [d.message for d in r.diagnostics]
    np.testing.assert_allclose(r.value, np.tanh(A * B + np.exp(B)) - A / (1 + B * B), rtol=1e-12, atol=1e-12)


def test_outlined_sum_to_and_broadcast_to_general_loops_match_numpy():
    """Gradients through a column broadcast (sum_to [3,4] -> [3,1]) and through a row reduction
    (broadcast_to [3,1] -> [3,4]) run the outlined general loops."""
    rng = np.random.default_rng(2)
    A, C = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    s = noma.Session()
    src = f"""let A = {lit(A)}; let C = {lit(C)};
learn p = zeros([3, 1]);
learn q = zeros([3, 4]);
optimize(p, q) with sgd(lr = 1) max 1 {{
    let l = sum((p + A) * C) + sum(sum(q, 1) * sum(C, 1));
    minimize l;
}}
"""
    assert s.execute(src).ok
    np.testing.assert_allclose(s.params["p"], -C.sum(axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(s.params["q"], -np.broadcast_to(C.sum(axis=1, keepdims=True), (3, 4)), rtol=1e-12)


@pytest.mark.parametrize("dtype", ["f64", "f32"])
def test_mixed_rank_operands_the_vector_loop_cannot_read_are_expanded_first(texts, dtype):
    """A bias of 10 (not a power of two below the lane count nor a multiple of it) and an operand
    broadcast along an inner axis: copied to the result's shape by the runtime (noma_expand), then
    the one vector loop runs; no second (strided) copy of the math is compiled."""
    rng = np.random.default_rng(5)
    X, b10, C = rng.normal(size=(6, 10)), rng.normal(size=10), rng.normal(size=(3, 1))
    Z = rng.normal(size=(2, 3, 4))
    s = noma.Session(dtype=dtype)
    assert s.execute(f"let X = {lit(X)}; let b = {lit(b10)}; let C = {lit(C)}; let Z = {lit(Z)};").ok
    r = s.execute("let p = tanh(X + b) * 2; let q = exp(Z - C); print(sum(p)); q;")
    assert r.ok, r.diagnostics
    assert "noma_expand" in texts[-1]
    tol = 1e-12 if dtype == "f64" else 1e-5
    np.testing.assert_allclose(r.value, np.exp(Z - C), rtol=tol, atol=tol)
    # print shows 6 significant digits
    np.testing.assert_allclose(float(r.output.split()[0]), np.sum(np.tanh(X + b10) * 2), rtol=1e-5)

