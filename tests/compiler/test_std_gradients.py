"""The standard library's functions (noma/std/*.noma, imported as NOMA source) differentiate like
builtins: the gradient the compiler derives for each one, run by the interpreter, equals central
finite differences of the interpreter's forward pass (as tests/compiler/test_globals_gradients.py
checks gradients through globals); also for inputs so large that a naive formula overflows.
Their values are checked against NumPy by the corpus (tests/programs/220_std_nn_values.noma,
221_std_data.noma).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_globals_gradients import compiled_gradients, finite_differences

X = "tensor [[-1.3, -0.4, 0.7], [0.2, 1.9, -2.6]]"
T = "tensor [[0.5, -1.0, 2.9], [0.1, 0.3, -0.4]]"
Y01 = "tensor [[0, 1, 1], [1, 0, 0]]"
BIG = "tensor [[-800, -40, 35], [700, -0.5, 0.25]]"
R = "tensor [[0.3, -1.2, 0.8], [1.1, 0.4, -0.7]]"  # fixed weights: loss = sum(f(P) * R)

#: name -> (expression of P and the module's functions, value of P[, weights R instead of the default])
CASES = {
    "gelu": ("nn.gelu(P)", X),
    "softplus": ("nn.softplus(P)", X),
    "softplus_large": ("nn.softplus(P)", BIG),
    "leaky_relu": ("nn.leaky_relu(P, 0.05)", X),
    "elu": ("nn.elu(P, 1.5)", X),
    "silu": ("nn.silu(P)", X),
    "stable_sigmoid": ("nn.stable_sigmoid(P)", X),
    "stable_sigmoid_large": ("nn.stable_sigmoid(P)", BIG),
    "log1p": ("nn.log1p(P * P)", X),
    "expm1": ("nn.expm1(P)", X),
    "expm1_large": ("nn.expm1(P)", "tensor [[-800, -40, 12], [5, -0.5, 0.25]]"),  # e^700 would swamp the sum
    "logsumexp": ("nn.logsumexp(P) * tensor [1.5, -0.5]", X, "1"),
    "logsumexp_large": ("nn.logsumexp(P) * tensor [1.5, -0.5]", BIG, "1"),
    "mse": (f"nn.mse(P, {T})", X),
    "mae": (f"nn.mae(P, {T})", X),
    "rmse": (f"nn.rmse(P, {T})", X),
    "bce_with_logits": (f"nn.bce_with_logits(P, {Y01})", X),
    "bce_with_logits_large": (f"nn.bce_with_logits(P, {Y01})", BIG),
    "huber": (f"nn.huber(P, {T}, 1)", X),
    "layer_norm": ("nn.layer_norm(P, tensor [1, 2, 0.5], tensor [0, 1, -1], 1e-5)", X),
    "dense": ("nn.dense(P, tensor [[1, -1], [0.5, 2], [-1, 0.3]], tensor [0.1, -0.2])", X,
              "tensor [[0.3, -1.2], [1.1, 0.4]]"),
    "mlp2": ("nn.mlp2(P, tensor [[1, -1], [0.5, 2], [-1, 0.3]], tensor [0.1, -0.2], "
             "tensor [[1], [-2]], tensor [0.3])", X, "tensor [[0.3], [-1.2]]"),
    "dropout_eval": ("nn.dropout(P, 0.5, 0)", X),
    "standardize": ("data.standardize(P)", X),
    "min_max_scale": ("data.min_max_scale(P, tensor [-2, -1, -3], tensor [1, 2, 1])", X),
}


def _program(expr: str, value: str, weights: str = R) -> str:
    return f"""
import std.nn as nn;
import std.data as data;
seed(3);
learn P = {value};
let R = {weights};
optimize(P) with sgd(lr = 1) max 1 {{
    let loss = sum(({expr}) * R);
    minimize loss;
}}
"""


@pytest.mark.parametrize("name", sorted(CASES))
def test_std_gradient_matches_finite_differences(name: str) -> None:
    source = _program(*CASES[name])
    grads = compiled_gradients(source)["P"]
    assert np.all(np.isfinite(grads)), grads
    fd = finite_differences(source, ["P"])["P"]
    if "large" not in name and name != "dropout_eval":
        assert np.any(fd != 0)
    np.testing.assert_allclose(grads, fd, rtol=1e-5, atol=1e-6, err_msg=name)


def test_dropout_in_training_zeroes_and_rescales() -> None:
    """Each entry is dropped or scaled by 1 / (1 - p); the gradient follows the same mask."""
    source = _program("nn.dropout(P, 0.25, 1)", "tensor [[1, 2, 3, 4, 5, 6, 7, 8]]", "1")
    grads = compiled_gradients(source)["P"]
    assert set(np.round(grads.ravel(), 12)) <= {0.0, round(1 / 0.75, 12)}


def test_shuffled_rows_pass_each_row_its_own_gradient() -> None:
    """shuffle_rows draws a permutation (finite differences would draw a new one per pass): the
    gradient of sum(shuffle_rows(P) * R) holds R's rows, permuted."""
    source = _program("data.shuffle_rows(P)", "tensor [[1, 2, 3], [4, 5, 6], [7, 8, 9], [1, 0, 1]]",
                      "tensor [[1, 0, 0], [0, 2, 0], [0, 0, 3], [4, 4, 4]]")
    grads = compiled_gradients(source)["P"]
    rows = sorted(map(tuple, grads.tolist()))
    assert rows == sorted([(1, 0, 0), (0, 2, 0), (0, 0, 3), (4, 4, 4)])


ZERO = "tensor [[0, 0, 0], [0, 0, 0]]"


@pytest.mark.parametrize("expr, derivative", [
    ("nn.softplus(P)", 0.5), ("nn.stable_sigmoid(P)", 0.25), ("nn.elu(P, 1)", 1.0),
    ("nn.elu(P, 1.5)", 1.5), ("nn.leaky_relu(P, 0.05)", 0.05), (f"nn.bce_with_logits(P, {Y01}) * 6", None),
])
def test_std_gradient_at_zero(expr: str, derivative: float | None) -> None:
    """At exactly 0 (zero-initialised logits) the gradient is the true derivative where the
    function is smooth there (softplus, stable_sigmoid, elu with alpha 1, bce_with_logits), and
    PyTorch's at a kink (elu: alpha; leaky_relu: slope), not what a tie of `max` or `abs` in the
    formula would pass."""
    source = _program(expr, ZERO, "1")
    grads = compiled_gradients(source)["P"]
    if derivative is None:  # d/dz of sum over 6 entries of (softplus(z) - z y) = sigmoid(0) - y
        expected = 0.5 - np.array([[0, 1, 1], [1, 0, 0]], dtype=float)
    else:
        expected = np.full((2, 3), derivative)
    np.testing.assert_allclose(grads, expected, rtol=1e-12, atol=1e-15)
