"""The standard library's functions (noma/std/*.noma) compute what NumPy re-implementations (and,
where PyTorch is installed, torch.nn.functional) compute, to 1e-12 relative, on random inputs that
include large magnitudes (where naive formulas overflow or lose all digits). The corpus programs
220_std_nn_values and 221_std_data check printed values through the JIT, the interpreter and
executables; this checks full precision in a session."""
from __future__ import annotations

from typing import Callable

import numpy as np
import pytest

from noma.session.core import Session

RNG = np.random.default_rng(19)
X = np.concatenate([RNG.normal(0, 3, (3, 4)), np.array([[-700.0, -35.0, 35.0, 700.0]])])
T = RNG.normal(0, 3, (4, 4))
Y01 = (RNG.uniform(size=(4, 4)) > 0.5).astype(float)


def _lit(a: np.ndarray) -> str:
    return "tensor " + str(a.tolist())  # Python's repr of each float: exact


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))


def _huber(d: np.ndarray, delta: float) -> float:
    a = np.abs(d)
    return float(np.mean(np.where(a <= delta, 0.5 * a * a, delta * (a - 0.5 * delta))))


def _layer_norm(x: np.ndarray, eps: float) -> np.ndarray:
    m = x.mean(-1, keepdims=True)
    return (x - m) / np.sqrt(((x - m) ** 2).mean(-1, keepdims=True) + eps)


#: NOMA expression (x, t, y bound in the session) -> NumPy value
CASES: dict[str, tuple[str, Callable[[], np.ndarray | float]]] = {
    "softplus": ("nn.softplus(x)", lambda: _softplus(X)),
    "gelu": ("nn.gelu(x)", lambda: 0.5 * X * (1 + np.tanh(np.sqrt(2 / np.pi) * (X + 0.044715 * X ** 3)))),
    "leaky_relu": ("nn.leaky_relu(x, 0.01)", lambda: np.where(X > 0, X, 0.01 * X)),
    "elu": ("nn.elu(x, 1)", lambda: np.where(X > 0, X, np.expm1(np.minimum(X, 0)))),
    "silu": ("nn.silu(x)", lambda: X * _sigmoid(X)),
    "stable_sigmoid": ("nn.stable_sigmoid(x)", lambda: _sigmoid(X)),
    "log1p": ("nn.log1p(abs(x) * 1e-12)", lambda: np.log1p(np.abs(X) * 1e-12)),
    "expm1": ("nn.expm1(x * 1e-12)", lambda: np.expm1(X * 1e-12)),
    "expm1_large": ("nn.expm1(x)", lambda: np.expm1(X)),
    "elu_tiny": ("nn.elu(x * 1e-13, 1)", lambda: np.where(X > 0, X * 1e-13, np.expm1(np.minimum(X * 1e-13, 0)))),
    "logsumexp": ("nn.logsumexp(x)", lambda: np.logaddexp.reduce(X, axis=-1)),
    "mse": ("nn.mse(x, t)", lambda: np.mean((X - T) ** 2)),
    "mae": ("nn.mae(x, t)", lambda: np.mean(np.abs(X - T))),
    "rmse": ("nn.rmse(x, t)", lambda: np.sqrt(np.mean((X - T) ** 2))),
    "bce_with_logits": ("nn.bce_with_logits(x, y)", lambda: np.mean(_softplus(X) - X * Y01)),
    "huber": ("nn.huber(x, t, 1.5)", lambda: _huber(X - T, 1.5)),
    "layer_norm": ("nn.layer_norm(x, 1, 0, 1e-5)", lambda: _layer_norm(X, 1e-5)),
    "binary_accuracy": ("nn.binary_accuracy(x, y)", lambda: np.mean((X > 0) == Y01)),
    "standardize": ("data.standardize(t)", lambda: (T - T.mean(0)) / T.std(0)),
    "one_hot": ("data.one_hot(tensor [3, 0, 2], 4)", lambda: np.eye(4)[[3, 0, 2]]),
}


@pytest.fixture(scope="module")
def session() -> Session:
    s = Session()
    cell = (f"import std.nn as nn;\nimport std.data as data;\nlet x = {_lit(X)};\nlet t = {_lit(T)};\n"
            f"let y = {_lit(Y01)};")
    result = s.execute(cell)
    assert result.ok, [d.render() for d in result.diagnostics]
    return s


@pytest.mark.parametrize("name", sorted(CASES))
def test_std_value_matches_numpy(session: Session, name: str) -> None:
    expr, reference = CASES[name]
    result = session.execute(f"let out = {expr};")
    assert result.ok, [d.render() for d in result.diagnostics]
    got = np.asarray(session.globals()["out"], dtype=np.float64)
    want = np.asarray(reference(), dtype=np.float64)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-300, err_msg=name)


def test_std_matches_torch_where_installed(session: Session) -> None:
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, t, y = (torch.tensor(a, dtype=torch.float64) for a in (X, T, Y01))
    cases = {
        "nn.softplus(x)": F.softplus(x, threshold=1e9),
        "nn.gelu(x)": F.gelu(x, approximate="tanh"),
        "nn.elu(x, 1.5)": F.elu(x, 1.5),
        "nn.silu(x)": F.silu(x),
        "nn.bce_with_logits(x, y)": F.binary_cross_entropy_with_logits(x, y),
        "nn.huber(x, t, 1.5)": F.huber_loss(x, t, delta=1.5),
        "nn.layer_norm(x, 1, 0, 1e-5)": F.layer_norm(x, (4,), eps=1e-5),
        "nn.logsumexp(x)": torch.logsumexp(x, -1),
    }
    for expr, want in cases.items():
        assert session.execute(f"let out = {expr};").ok
        got = np.asarray(session.globals()["out"], dtype=np.float64)
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-10, atol=1e-300, err_msg=expr)
