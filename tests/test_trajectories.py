"""Training trajectories against an independent NumPy re-implementation of PyTorch's update rules.

Each test trains a small model through the Python API for a fixed number of steps (`max N`, no
`until`) and compares the loss at every global step (`Session.history.losses`) and the final
parameters (`Session.params`) with the NumPy reference, to 1e-10 relative.

Reference formulas (PyTorch, see docs/LANGUAGE.md):
- SGD: g += wd*p; with momentum: buf = g at the first step, else buf = mu*buf + (1-dampening)*g;
  g = g + mu*buf (nesterov) or buf; p -= lr*g.
- Adam: g += wd*p; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2; step = lr/(1-b1^t);
  denom = sqrt(v)/sqrt(1-b2^t) + eps; p -= step*m/denom.
- AdamW: p *= 1 - lr*wd, then Adam without the L2 term.
- RMSprop: g += wd*p; v = alpha*v + (1-alpha)*g^2; avg = sqrt(v) + eps;
  with momentum: buf = mu*buf + g/avg; p -= lr*buf; else p -= lr*g/avg.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import pytest

import noma  # noqa: E402  (the package under test; Session is its Python API)

RTOL = 1e-10
STEPS = 500

# ----------------------------------------------------------------------------- fixed data

X = np.array([[0.5, 1.0], [1.0, -0.5], [1.5, 2.0], [2.0, 0.5],
              [-1.0, 1.5], [0.0, -1.0], [2.5, 1.0], [-0.5, -1.5]])
# about 1.5*x1 - 2*x2 + 0.7 plus fixed noise (so the loss never reaches 0)
Y = np.array([-0.45, 3.15, -0.85, 2.6, -3.75, 2.85, 2.25, 3.05]).reshape(8, 1)
# about 0.8*x1 + 1.2*x2 - 0.4 plus fixed noise
Z = np.array([1.3, -0.4, 3.35, 1.85, 0.5, -1.4, 2.75, -2.5])

W0 = np.array([[0.5], [-0.5]])
B0 = np.array([0.1])
V0 = np.array([0.3, -0.2])
C0 = 0.25


def _lit(a: np.ndarray) -> str:
    """A NOMA tensor literal holding exactly these doubles."""
    a = np.asarray(a, dtype=float)
    if a.ndim == 0:
        return repr(float(a))
    return "[" + ", ".join(_lit(x) for x in a) + "]"


def _data_source() -> str:
    return (
        f"let X = tensor {_lit(X)};\n"
        f"let Y = tensor {_lit(Y)};\n"
        f"let Z = tensor {_lit(Z)};\n"
    )


# Model A: a [2,1] weight matrix and a [1] bias broadcast over [8,1].
MODEL_A_BODY = """
    let pred = matmul(X, w) + b;
    let loss = mean((pred - Y) ^ 2);
    minimize loss;
"""


def model_a(params: dict[str, np.ndarray]) -> tuple[float, dict[str, np.ndarray]]:
    w, b = params["w"], params["b"]
    e = X @ w + b - Y
    n = e.size
    return float(np.mean(e * e)), {"w": 2.0 * X.T @ e / n, "b": np.array([2.0 * e.sum() / n])}


def model_a_setup() -> str:
    return _data_source() + f"learn w = tensor {_lit(W0)};\nlearn b = tensor {_lit(B0)};\n"


# Model B: a [2] vector broadcast over the rows of X, a row sum, and a scalar parameter.
MODEL_B_BODY = """
    let pred = sum(X * v, 1) + c;
    let loss = mean((pred - Z) ^ 2);
    minimize loss;
"""


def model_b(params: dict[str, np.ndarray]) -> tuple[float, dict[str, np.ndarray]]:
    v, c = params["v"], params["c"]
    e = (X * v).sum(axis=1) + c - Z
    n = e.size
    return float(np.mean(e * e)), {"v": 2.0 * (X * e[:, None]).sum(axis=0) / n,
                                   "c": np.asarray(2.0 * e.sum() / n)}


def model_b_setup() -> str:
    return _data_source() + f"learn v = tensor {_lit(V0)};\nlearn c = {C0!r};\n"


# ----------------------------------------------------------------------------- reference optimizers


class RefOptimizer:
    """PyTorch's update rules with its defaults; state per parameter name."""

    DEFAULT_LR = {"sgd": 0.01, "adam": 0.001, "adamw": 0.001, "rmsprop": 0.01}

    def __init__(self, kind: str, lr: Optional[float] = None, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: Optional[float] = None, momentum: float = 0.0,
                 dampening: float = 0.0, nesterov: bool = False, alpha: float = 0.99):
        self.kind = kind
        self.lr = self.DEFAULT_LR[kind] if lr is None else lr
        self.b1, self.b2, self.eps = beta1, beta2, eps
        self.wd = (0.01 if kind == "adamw" else 0.0) if weight_decay is None else weight_decay
        self.mu, self.damp, self.nesterov, self.alpha = momentum, dampening, nesterov, alpha
        self.state: dict[str, dict] = {}

    def reset(self) -> None:
        self.state.clear()

    def step(self, name: str, p: np.ndarray, g: np.ndarray) -> np.ndarray:
        p = np.array(p, dtype=float)
        g = np.array(g, dtype=float)
        st = self.state.setdefault(name, {})
        lr = self.lr
        if self.kind == "sgd":
            if self.wd:
                g = g + self.wd * p
            if self.mu:
                if "buf" not in st:
                    st["buf"] = g.copy()
                else:
                    st["buf"] = self.mu * st["buf"] + (1 - self.damp) * g
                g = g + self.mu * st["buf"] if self.nesterov else st["buf"]
            return p - lr * g
        if self.kind in ("adam", "adamw"):
            if self.kind == "adamw":
                p = p * (1 - lr * self.wd)
            elif self.wd:
                g = g + self.wd * p
            if "m" not in st:
                st.update(m=np.zeros_like(p), v=np.zeros_like(p), t=0)
            st["t"] += 1
            t = st["t"]
            st["m"] = self.b1 * st["m"] + (1 - self.b1) * g
            st["v"] = self.b2 * st["v"] + (1 - self.b2) * g * g
            step = lr / (1 - self.b1 ** t)
            denom = np.sqrt(st["v"]) / np.sqrt(1 - self.b2 ** t) + self.eps
            return p - step * st["m"] / denom
        if self.kind == "rmsprop":
            if self.wd:
                g = g + self.wd * p
            if "v" not in st:
                st["v"] = np.zeros_like(p)
            st["v"] = self.alpha * st["v"] + (1 - self.alpha) * g * g
            avg = np.sqrt(st["v"]) + self.eps
            if self.mu:
                if "buf" not in st:
                    st["buf"] = np.zeros_like(p)
                st["buf"] = self.mu * st["buf"] + g / avg
                return p - lr * st["buf"]
            return p - lr * g / avg
        raise ValueError(self.kind)


def reference_train(model: Callable, params: dict[str, np.ndarray], opt: RefOptimizer, steps: int,
                    listed: Optional[list[str]] = None) -> tuple[dict[str, np.ndarray], list[float]]:
    """`steps` iterations: loss at the current parameters, then one update of the listed ones."""
    params = {k: np.array(v, dtype=float) for k, v in params.items()}
    listed = list(params) if listed is None else listed
    losses = []
    for _ in range(steps):
        loss, grads = model(params)
        losses.append(loss)
        for name in listed:
            params[name] = opt.step(name, params[name], grads[name])
    return params, losses


# ----------------------------------------------------------------------------- helpers


def _execute(session, source: str):
    r = session.execute(source)
    assert r.ok, f"execution failed:\n{source}\noutput:\n{r.output}\ndiagnostics:\n{r.diagnostics}"
    return r


def _param(session, name: str) -> np.ndarray:
    return np.asarray(session.params[name], dtype=float)


def _losses(session) -> np.ndarray:
    return np.asarray(session.history.losses, dtype=float).ravel()


def _assert_close(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    actual = np.asarray(actual, dtype=float)
    expected = np.asarray(expected, dtype=float)
    assert actual.size == expected.size, f"{what}: {actual.size} values, expected {expected.size}"
    actual = actual.reshape(expected.shape)
    assert np.all(np.isfinite(actual)), f"{what}: non-finite values {actual}"
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=0, err_msg=what)


def _check(session, ref_params: dict[str, np.ndarray], ref_losses: list[float]) -> None:
    _assert_close(_losses(session), np.array(ref_losses), "loss trajectory")
    for name, value in ref_params.items():
        _assert_close(_param(session, name), value, f"parameter {name}")


# ----------------------------------------------------------------------------- explicit optimizers

OPTIMIZERS = [
    ("sgd(lr = 0.05)", RefOptimizer("sgd", lr=0.05)),
    ("sgd(lr = 0.05, momentum = 0.9)", RefOptimizer("sgd", lr=0.05, momentum=0.9)),
    ("sgd(lr = 0.05, momentum = 0.9, nesterov = 1)", RefOptimizer("sgd", lr=0.05, momentum=0.9, nesterov=True)),
    ("sgd(lr = 0.05, momentum = 0.5, dampening = 0.3, weight_decay = 0.01)",
     RefOptimizer("sgd", lr=0.05, momentum=0.5, dampening=0.3, weight_decay=0.01)),
    ("adam(lr = 0.05)", RefOptimizer("adam", lr=0.05)),
    ("adam(lr = 0.02, beta1 = 0.8, beta2 = 0.99, eps = 1e-6, weight_decay = 0.01)",
     RefOptimizer("adam", lr=0.02, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.01)),
    ("adamw(lr = 0.05)", RefOptimizer("adamw", lr=0.05)),
    ("adamw(lr = 0.05, weight_decay = 0.1)", RefOptimizer("adamw", lr=0.05, weight_decay=0.1)),
    ("rmsprop(lr = 0.01)", RefOptimizer("rmsprop", lr=0.01)),
    ("rmsprop(lr = 0.01, alpha = 0.9, momentum = 0.9)", RefOptimizer("rmsprop", lr=0.01, alpha=0.9, momentum=0.9)),
    ("rmsprop(lr = 0.005, eps = 1e-6, weight_decay = 0.01)",
     RefOptimizer("rmsprop", lr=0.005, eps=1e-6, weight_decay=0.01)),
]


@pytest.mark.parametrize("spec,ref", OPTIMIZERS, ids=[s for s, _ in OPTIMIZERS])
def test_model_a_trajectory(spec: str, ref: RefOptimizer) -> None:
    s = noma.Session()
    src = model_a_setup() + f"optimize(w, b) with {spec} max {STEPS} {{{MODEL_A_BODY}}}\n"
    _execute(s, src)
    ref.reset()
    params, losses = reference_train(model_a, {"w": W0, "b": B0}, ref, STEPS)
    _check(s, params, losses)


MODEL_B_OPTIMIZERS = [OPTIMIZERS[1], OPTIMIZERS[4], OPTIMIZERS[6], OPTIMIZERS[9]]


@pytest.mark.parametrize("spec,ref", MODEL_B_OPTIMIZERS, ids=[s for s, _ in MODEL_B_OPTIMIZERS])
def test_model_b_trajectory(spec: str, ref: RefOptimizer) -> None:
    """Broadcast of a [2] parameter over rows, an axis sum and a scalar parameter."""
    s = noma.Session()
    src = model_b_setup() + f"optimize(v, c) with {spec} max {STEPS} {{{MODEL_B_BODY}}}\n"
    _execute(s, src)
    ref.reset()
    params, losses = reference_train(model_b, {"v": V0, "c": np.asarray(C0)}, ref, STEPS)
    _check(s, params, losses)


# ----------------------------------------------------------------------------- compatible form


COMPAT = [
    ("let learning_rate = 0.05;", RefOptimizer("sgd", lr=0.05)),
    ("let optimizer = 1; let lr = 0.03;", RefOptimizer("sgd", lr=0.03)),
    ("let optimizer = 2; let learning_rate = 0.05; let beta1 = 0.9; let beta2 = 0.999; let epsilon = 1e-8;",
     RefOptimizer("adam", lr=0.05)),
    ("let use_adam = 1; let learning_rate = 0.02; let beta1 = 0.8; let beta2 = 0.99;",
     RefOptimizer("adam", lr=0.02, beta1=0.8, beta2=0.99)),
    ("let optimizer = 3; let learning_rate = 0.005; let beta2 = 0.98; let epsilon = 1e-8;",
     RefOptimizer("rmsprop", lr=0.005, alpha=0.98)),
    ("let use_rmsprop = 1; let learning_rate = 0.01; let beta2 = 0.99;",
     RefOptimizer("rmsprop", lr=0.01, alpha=0.99)),
]


@pytest.mark.parametrize("hyper,ref", COMPAT, ids=[h for h, _ in COMPAT])
def test_compatible_form_trajectory(hyper: str, ref: RefOptimizer) -> None:
    """The original's form: hyperparameters from specially named variables; until never holds."""
    s = noma.Session()
    src = (model_a_setup() + hyper + f"\nlet max_iterations = {STEPS};\n"
           + f"optimize(w, b) until loss < 0 {{{MODEL_A_BODY}}}\n")
    _execute(s, src)
    ref.reset()
    params, losses = reference_train(model_a, {"w": W0, "b": B0}, ref, STEPS)
    _check(s, params, losses)


# ----------------------------------------------------------------------------- state and listing


def test_state_persists_across_cells() -> None:
    """Two cells of 250 Adam steps equal one run of 500: moments and step counts persist."""
    s = noma.Session()
    _execute(s, model_a_setup())
    for _ in range(2):
        _execute(s, f"optimize(w, b) with adam(lr = 0.05) max {STEPS // 2} {{{MODEL_A_BODY}}}\n")
    params, losses = reference_train(model_a, {"w": W0, "b": B0}, RefOptimizer("adam", lr=0.05), STEPS)
    _check(s, params, losses)


def test_reset_optimizer_between_cells() -> None:
    """reset_optimizer() clears moments and step counts: the second half starts Adam afresh."""
    s = noma.Session()
    _execute(s, model_a_setup())
    _execute(s, f"optimize(w, b) with adam(lr = 0.05) max {STEPS // 2} {{{MODEL_A_BODY}}}\n")
    _execute(s, "reset_optimizer();\n"
                f"optimize(w, b) with adam(lr = 0.05) max {STEPS // 2} {{{MODEL_A_BODY}}}\n")
    opt = RefOptimizer("adam", lr=0.05)
    mid, first = reference_train(model_a, {"w": W0, "b": B0}, opt, STEPS // 2)
    opt.reset()
    end, second = reference_train(model_a, mid, opt, STEPS // 2)
    _check(s, end, first + second)


def test_switching_optimizer_starts_fresh_state() -> None:
    """SGD with momentum for 200 steps, then Adam for 300: Adam's state starts at zero."""
    s = noma.Session()
    _execute(s, model_a_setup()
             + f"optimize(w, b) with sgd(lr = 0.05, momentum = 0.9) max 200 {{{MODEL_A_BODY}}}\n"
             + f"optimize(w, b) with adam(lr = 0.02) max 300 {{{MODEL_A_BODY}}}\n")
    mid, first = reference_train(model_a, {"w": W0, "b": B0}, RefOptimizer("sgd", lr=0.05, momentum=0.9), 200)
    end, second = reference_train(model_a, mid, RefOptimizer("adam", lr=0.02), 300)
    _check(s, end, first + second)


def test_only_listed_parameters_change() -> None:
    """optimize(w) leaves the learnable b exactly as it was."""
    s = noma.Session()
    _execute(s, model_a_setup() + f"optimize(w) with sgd(lr = 0.05, momentum = 0.9) max {STEPS} {{{MODEL_A_BODY}}}\n")
    params, losses = reference_train(model_a, {"w": W0, "b": B0}, RefOptimizer("sgd", lr=0.05, momentum=0.9),
                                     STEPS, listed=["w"])
    _check(s, params, losses)
    assert np.array_equal(_param(s, "b").reshape(B0.shape), B0)


def test_default_sgd_learning_rate() -> None:
    """sgd() uses lr = 0.01."""
    s = noma.Session()
    _execute(s, model_a_setup() + f"optimize(w, b) with sgd() max {STEPS} {{{MODEL_A_BODY}}}\n")
    params, losses = reference_train(model_a, {"w": W0, "b": B0}, RefOptimizer("sgd"), STEPS)
    _check(s, params, losses)


def test_reference_is_well_conditioned() -> None:
    """Self-check of this file: tiny gradient perturbations move the reference far less than RTOL
    (no configuration above is chaotic, e.g. RMSprop bouncing around the minimum), so the
    comparisons tolerate a different but correct order of floating-point operations."""
    rng = np.random.default_rng(0)

    def noisy(model):
        def f(params):
            loss, grads = model(params)
            return loss, {k: g * (1 + 1e-15 * rng.standard_normal(np.shape(g))) for k, g in grads.items()}
        return f

    cases = [(model_a, {"w": W0, "b": B0}, ref) for _, ref in OPTIMIZERS + COMPAT]
    cases += [(model_b, {"v": V0, "c": np.asarray(C0)}, ref) for _, ref in MODEL_B_OPTIMIZERS]
    for model, start, ref in cases:
        ref.reset()
        p1, l1 = reference_train(model, start, ref, STEPS)
        ref.reset()
        p2, l2 = reference_train(noisy(model), start, ref, STEPS)
        ref.reset()
        np.testing.assert_allclose(l2, l1, rtol=RTOL / 100)
        for k in p1:
            np.testing.assert_allclose(p2[k], p1[k], rtol=RTOL / 100)
        assert min(l1) > 1e-3  # the loss never approaches 0, so relative comparison is meaningful
