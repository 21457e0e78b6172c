"""The optimizer state follows every element through growth and shrinking (SPEC §4).

A 2-layer MLP trains for 1000 steps with SGD+momentum, Adam, AdamW and RMSprop while its hidden
layer grows and shrinks (4 -> 8 at step 200, -> 3 at step 500, -> 6 at step 800). A NumPy
re-implementation of the same forward/backward, the same index-preserving remapping of values and
moment buffers (old entries keep their index, new ones start at 0) and per-entry step counts (new
entries start at step 0, so Adam's bias correction is per entry) must match it step for step:
losses, final parameters and optimizer state within 1e-10.

Two ways of running it:
- cells: train; resize (default `preserve` policy, random new incoming weights read back from the
  session); train; ... with optimizer_state() checked against the reference after every resize;
- one native loop: the resizes happen inside the optimize body (deterministic init policies so
  the reference can reproduce the new values).
"""

from __future__ import annotations

import numpy as np
import pytest

import noma
from conftest import lit, run

TOL = 1e-10
NAMES = ("W1", "b1", "W2", "b2")
BOUND_AXIS = {"W1": 1, "b1": 0, "W2": 0}  # axis sized by `hidden`
SCHEDULE = [(200, 8), (300, 3), (300, 6), (200, None)]  # (steps, then resize hidden to)


def data():
    rng = np.random.default_rng(42)
    X = rng.normal(size=(16, 3))
    Y = np.stack([np.sin(X[:, 0]) + 0.5 * X[:, 1] * X[:, 2], np.cos(X[:, 1] - X[:, 2])], axis=1)
    return X, Y


# ----------------------------------------------------------------------------- NumPy reference


OPTIMIZERS = {
    "sgd_momentum": ("sgd(lr = 0.05, momentum = 0.9)", dict(kind="sgd", lr=0.05, momentum=0.9)),
    "sgd_nesterov_wd": ("sgd(lr = 0.05, momentum = 0.8, dampening = 0, nesterov = 1, weight_decay = 0.01)",
                        dict(kind="sgd", lr=0.05, momentum=0.8, nesterov=True, wd=0.01)),
    "adam": ("adam(lr = 0.01)", dict(kind="adam", lr=0.01)),
    "adamw": ("adamw(lr = 0.005, weight_decay = 0.1)", dict(kind="adamw", lr=0.005, wd=0.1)),
    "rmsprop": ("rmsprop(lr = 0.001)", dict(kind="rmsprop", lr=0.001)),
    "rmsprop_momentum": ("rmsprop(lr = 0.0002, momentum = 0.5, alpha = 0.98)",
                         dict(kind="rmsprop", lr=0.0002, momentum=0.5, alpha=0.98)),
}
# Learning rates are chosen so that the runs stay numerically well conditioned: adaptive methods
# close to a minimum (gradients ~ 0, g / sqrt(v) ill-conditioned) amplify 1e-16 differences in
# summation order exponentially, which would make a 1e-10 comparison test chaos, not the runtime.


class Reference:
    """Forward/backward of the MLP and PyTorch-formula optimizers with per-entry state."""

    def __init__(self, params: dict[str, np.ndarray], X, Y, kind, lr, momentum=0.0, nesterov=False, wd=None,
                 dampening=0.0, alpha=0.99, beta1=0.9, beta2=0.999, eps=1e-8):
        self.p = {k: v.copy() for k, v in params.items()}
        self.X, self.Y = X, Y
        self.kind, self.lr, self.mu, self.nesterov, self.damp = kind, lr, momentum, nesterov, dampening
        self.wd = (0.01 if kind == "adamw" else 0.0) if wd is None else wd
        self.alpha, self.b1, self.b2, self.eps = alpha, beta1, beta2, eps
        self.state = {k: self._fresh(v.shape) for k, v in self.p.items()}
        self.losses: list[float] = []

    @staticmethod
    def _fresh(shape):
        return {"m": np.zeros(shape), "v": np.zeros(shape), "step": np.zeros(shape, np.int64),
                "pow1": np.ones(shape), "pow2": np.ones(shape)}

    def grads(self):
        p, X, Y = self.p, self.X, self.Y
        h = np.tanh(X @ p["W1"] + p["b1"])
        pred = h @ p["W2"] + p["b2"]
        diff = pred - Y
        loss = np.mean(diff ** 2)
        d = 2.0 * diff / diff.size
        dz = (d @ p["W2"].T) * (1 - h * h)
        return loss, {"W1": X.T @ dz, "b1": dz.sum(0), "W2": h.T @ d, "b2": d.sum(0)}

    def step(self):
        loss, g = self.grads()
        self.losses.append(loss)
        for name in NAMES:
            self._update(self.p[name], g[name], self.state[name])

    def _update(self, p, g, st):
        lr, wd = self.lr, self.wd
        t = st["step"]
        if self.kind == "sgd":
            g = g + wd * p
            if self.mu != 0:
                buf = np.where(t == 0, g, self.mu * st["m"] + (1 - self.damp) * g)
                st["m"][...] = buf
                g = g + self.mu * buf if self.nesterov else buf
            p -= lr * g
        elif self.kind in ("adam", "adamw"):
            b1, b2 = self.b1, self.b2
            if self.kind == "adamw":
                p *= 1 - lr * wd
                gi = g
            else:
                gi = g + wd * p
            st["m"][...] = b1 * st["m"] + (1 - b1) * gi
            st["v"][...] = b2 * st["v"] + (1 - b2) * gi * gi
            st["pow1"] *= b1
            st["pow2"] *= b2
            denom = np.sqrt(st["v"]) / np.sqrt(1 - st["pow2"]) + self.eps
            p -= (lr / (1 - st["pow1"])) * (st["m"] / denom)
        elif self.kind == "rmsprop":
            gi = g + wd * p
            st["v"][...] = self.alpha * st["v"] + (1 - self.alpha) * gi * gi
            avg = np.sqrt(st["v"]) + self.eps
            if self.mu != 0:
                st["m"][...] = self.mu * st["m"] + gi / avg
                p -= lr * st["m"]
            else:
                p -= lr * (gi / avg)
        st["step"] += 1

    def resize_hidden(self, size: int, new_values=None, fill: dict | None = None):
        """Index-preserving remap of values and state; new values from `new_values` (read back
        from the session) or a constant `fill` per parameter."""
        for name, axis in BOUND_AXIS.items():
            old = self.p[name]
            shape = list(old.shape)
            shape[axis] = size
            shape = tuple(shape)
            common = tuple(slice(0, min(a, b)) for a, b in zip(old.shape, shape))
            new = np.full(shape, (fill or {}).get(name, 0.0))
            if new_values is not None:
                new[...] = new_values[name]
            new[common] = old[common]
            self.p[name] = new
            st = self.state[name]
            fresh = self._fresh(shape)
            for key in fresh:
                fresh[key][common] = st[key][common]
            self.state[name] = fresh


def remapped_ok(before: np.ndarray, after: np.ndarray) -> None:
    """Old entries keep their index after a resize."""
    common = tuple(slice(0, min(a, b)) for a, b in zip(before.shape, after.shape))
    np.testing.assert_array_equal(after[common], before[common])


def check_state(s: noma.Session, ref: Reference, where: str) -> None:
    for name in NAMES:
        got = s.optimizer_state(name)
        want = ref.state[name]
        for key in ("m", "v", "step", "pow1", "pow2"):
            assert got[key].shape == want[key].shape, (where, name, key)
            err = np.max(np.abs(got[key] - want[key]), initial=0.0)
            assert err <= TOL, f"{where}: optimizer state {name}.{key} differs by {err:.3g}"


def check_params(s: noma.Session, ref: Reference, where: str) -> None:
    got = s.params
    for name in NAMES:
        assert got[name].shape == ref.p[name].shape, (where, name)
        err = np.max(np.abs(got[name] - ref.p[name]))
        assert err <= TOL, f"{where}: {name} differs by {err:.3g}"


def check_losses(s: noma.Session, ref: Reference) -> None:
    got = s.history.losses
    assert len(got) == len(ref.losses) == 1000
    err = np.abs(got - np.array(ref.losses))
    assert err.max() <= TOL, f"loss differs by {err.max():.3g} first at step {int(np.argmax(err > TOL)) + 1}"


SETUP = """
seed(5);
dim hidden = 4;
let X = {X};
let Y = {Y};
learn W1 = normal([3, hidden], 0, 0.7);
learn b1 = normal([hidden], 0, 0.1);
learn W2 = normal([hidden, 2], 0, 0.7);
learn b2 = zeros([2]);
"""

BODY = """
    let h = tanh(matmul(X, W1) + b1);
    let pred = matmul(h, W2) + b2;
    let loss = mean((pred - Y) ^ 2);
"""


def session_with_data():
    X, Y = data()
    s = noma.Session()
    run(s, SETUP.format(X=lit(X), Y=lit(Y)))
    return s, X, Y


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("opt", list(OPTIMIZERS))
def test_continuity_across_cells(opt):
    spec, hyper = OPTIMIZERS[opt]
    s, X, Y = session_with_data()
    ref = Reference(s.params, X, Y, **hyper)
    train = f"optimize(W1, b1, W2, b2) with {spec} max {{n}} {{{{{BODY}    minimize loss;\n}}}}"
    for i, (n, size) in enumerate(SCHEDULE):
        r = run(s, train.format(n=n))
        assert r.steps == n
        for _ in range(n):
            ref.step()
        check_params(s, ref, f"after segment {i}")
        check_state(s, ref, f"after segment {i}")
        if size is None:
            continue
        before = s.params
        r = run(s, f"realloc hidden = {size};")  # preserve: random new incoming weights
        after = s.params
        assert s.dims["hidden"] == size
        for name in NAMES:
            remapped_ok(before[name], after[name])
        ref.resize_hidden(size, new_values=after)
        check_params(s, ref, f"after resize to {size}")
        check_state(s, ref, f"after resize to {size}")
    check_losses(s, ref)
    # per-entry step counts after 4 -> 8 -> 3 -> 6: units 0..2 all 1000 steps, units 3..5 only
    # the 200 since the last growth (unit 3 was dropped at 500, so it starts again at 0)
    steps = s.optimizer_state("W1")["step"]
    np.testing.assert_array_equal(steps[:, :3], 1000)
    np.testing.assert_array_equal(steps[:, 3:], 200)
    np.testing.assert_array_equal(s.optimizer_state("b2")["step"], 1000)


LOOP = """
let step = 0;
optimize(W1, b1, W2, b2) with {spec} max 1000 {{
    step = step + 1;
{body}
    if step == 200 {{ realloc hidden = 8 init normal(0.25, 0); }}
    if step == 500 {{ realloc hidden = 3 init zeros; }}
    if step == 800 {{ realloc hidden = 6 init uniform(-0.3, -0.3); }}
    minimize loss;
}}
"""


@pytest.mark.parametrize("opt", list(OPTIMIZERS))
def test_continuity_in_one_native_loop(opt):
    spec, hyper = OPTIMIZERS[opt]
    s, X, Y = session_with_data()
    ref = Reference(s.params, X, Y, **hyper)
    r = run(s, LOOP.format(spec=spec, body=BODY))
    assert r.steps == 1000
    fills = {200: (8, 0.25), 500: (3, 0.0), 800: (6, -0.3)}
    for k in range(1, 1001):
        ref.step()
        if k in fills:  # a resize in the body takes effect at the end of its step
            size, value = fills[k]
            ref.resize_hidden(size, fill={n: value for n in BOUND_AXIS})
    check_losses(s, ref)
    check_params(s, ref, "end")
    check_state(s, ref, "end")
    events = [(e.step, e.new_shape) for e in s.history.events if e.kind == "dim_resize"]
    assert events == [(200, (8,)), (500, (3,)), (800, (6,))]


def test_state_remap_by_hand_adam():
    """A tiny hand-checked case: Adam state of a vector grown and shrunk between cells."""
    s = noma.Session()
    run(s, "learn w = tensor [1, 2, 3];")
    opt = "optimize(w) with adam(lr = 0.1) max {n} {{ let loss = sum(w * w); minimize loss; }}"
    run(s, opt.format(n=2))
    st0 = s.optimizer_state("w")
    np.testing.assert_array_equal(st0["step"], [2, 2, 2])
    run(s, "realloc w = [5] init zeros;")
    st = s.optimizer_state("w")
    np.testing.assert_array_equal(st["step"], [2, 2, 2, 0, 0])
    np.testing.assert_array_equal(st["m"], np.r_[st0["m"], 0, 0])
    np.testing.assert_array_equal(st["v"], np.r_[st0["v"], 0, 0])
    np.testing.assert_array_equal(st["pow1"], np.r_[st0["pow1"], 1, 1])
    np.testing.assert_array_equal(st["pow2"], np.r_[st0["pow2"], 1, 1])
    run(s, "realloc w = [2];")
    st = s.optimizer_state("w")
    np.testing.assert_array_equal(st["m"], st0["m"][:2])
    np.testing.assert_array_equal(st["step"], [2, 2])
    run(s, "realloc w = [3] init normal(1, 0);")
    run(s, opt.format(n=1))
    st = s.optimizer_state("w")
    np.testing.assert_array_equal(st["step"], [3, 3, 1])
    # the re-added entry had a fresh first Adam step: m_hat = g, v_hat = g^2, so it moved by
    # lr * g / (|g| + eps) (an over-stepped entry with t = 3 would have moved much less)
    g = 2.0
    assert abs(s.params["w"][2] - (1 - 0.1 * g / (abs(g) + 1e-8))) < 1e-15
