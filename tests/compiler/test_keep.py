"""`realloc DIM keep idx;` and `realloc W keep idx axis A;` against a NumPy re-implementation of a
whole run (Adam with PyTorch's formulas and per-entry step counts, a grow inside a training step,
keeps inside and outside training): values, optimizer state (moments, steps) and losses; the keep
events with the indices kept; channels grown with `preserve` record an output change of 0.
"""

from __future__ import annotations

import numpy as np

import noma

DECL = """
seed(2);
dim hidden = 3;
let X = tensor [[0.5, -1], [1, 0.25], [-0.5, 0.75], [1.5, 1]];
let Y = tensor [[1], [0], [0.5], [-0.5]];
learn W1 = normal([2, hidden], 0, 1);
learn b1 = normal([hidden], 0, 0.1);
learn W2 = normal([hidden, 1], 0, 1);
learn V = normal([2, 4], 0, 1);
"""
TRAIN = """
let step = 0;
optimize(W1, b1, W2, V) with adam(lr = 0.05) max 12 {
    let h = tanh(matmul(X, W1) + b1);
    let loss = mean((matmul(h, W2) - Y) ^ 2) + 0.01 * sum(V * V);
    if step == 3 { realloc hidden = 5 init uniform(0.2, 0.2); }
    if step == 7 { realloc hidden keep tensor [4, 0, 2]; realloc V keep tensor [3, 1] axis 1; }
    step = step + 1;
    minimize loss;
}
realloc hidden keep topk(norm(W1, 1), 2);
optimize(W1, b1, W2, V) with adam(lr = 0.05) max 4 {
    let h = tanh(matmul(X, W1) + b1);
    let loss = mean((matmul(h, W2) - Y) ^ 2) + 0.01 * sum(V * V);
    minimize loss;
}
"""
NAMES = ("W1", "b1", "W2", "V")
UNIT_AXES = {"W1": 1, "b1": 0, "W2": 0}  # the axis `hidden` sizes


class Adam:
    """PyTorch's Adam with per-entry step counts (new entries start at step 0)."""

    def __init__(self, p: np.ndarray):
        self.m, self.v = np.zeros_like(p), np.zeros_like(p)
        self.step = np.zeros(p.shape, np.int64)

    def update(self, p: np.ndarray, g: np.ndarray, lr: float = 0.05) -> np.ndarray:
        b1, b2, eps = 0.9, 0.999, 1e-8
        self.m = b1 * self.m + (1 - b1) * g
        self.v = b2 * self.v + (1 - b2) * g * g
        self.step = self.step + 1
        denom = np.sqrt(self.v) / np.sqrt(1 - b2 ** self.step) + eps
        return p - (lr / (1 - b1 ** self.step)) * (self.m / denom)

    def take(self, idx: list[int], axis: int) -> None:
        self.m, self.v, self.step = (np.take(a, idx, axis=axis) for a in (self.m, self.v, self.step))

    def grow(self, extra: int, axis: int) -> None:
        def pad(a: np.ndarray) -> np.ndarray:
            widths = [(0, 0)] * a.ndim
            widths[axis] = (0, extra)
            return np.pad(a, widths)
        self.m, self.v, self.step = pad(self.m), pad(self.v), pad(self.step)


def _loss_and_grads(p: dict[str, np.ndarray], X: np.ndarray, Y: np.ndarray) -> tuple[float, dict]:
    h = np.tanh(X @ p["W1"] + p["b1"])
    pred = h @ p["W2"]
    loss = float(np.mean((pred - Y) ** 2) + 0.01 * np.sum(p["V"] ** 2))
    dpred = 2 * (pred - Y) / Y.size
    dz = (dpred @ p["W2"].T) * (1 - h * h)
    return loss, {"W1": X.T @ dz, "b1": dz.sum(axis=0), "W2": h.T @ dpred, "V": 0.02 * p["V"]}


def _keep_hidden(p: dict, opt: dict, idx: list[int]) -> None:
    for name, axis in UNIT_AXES.items():
        p[name] = np.take(p[name], idx, axis=axis)
        opt[name].take(idx, axis)


def _reference(p: dict[str, np.ndarray], X: np.ndarray, Y: np.ndarray) -> tuple[dict, dict, list[float]]:
    opt = {n: Adam(p[n]) for n in NAMES}
    losses = []
    for step in range(16):
        loss, g = _loss_and_grads(p, X, Y)
        losses.append(loss)
        for n in NAMES:
            p[n] = opt[n].update(p[n], g[n])
        if step == 3:  # grown after that step's update: new entries 0.2, fresh state
            for name, axis in UNIT_AXES.items():
                widths = [(0, 0)] * p[name].ndim
                widths[axis] = (0, 2)
                p[name] = np.pad(p[name], widths, constant_values=0.2)
                opt[name].grow(2, axis)
        if step == 7:
            _keep_hidden(p, opt, [4, 0, 2])
            p["V"] = np.take(p["V"], [3, 1], axis=1)
            opt["V"].take([3, 1], 1)
        if step == 11:  # between the loops: the 2 units of W1 with the largest column norms
            norms = np.sqrt((p["W1"] ** 2).sum(axis=0))
            _keep_hidden(p, opt, sorted(range(len(norms)), key=lambda i: (-norms[i], i))[:2])
    return p, opt, losses


def test_keep_matches_a_numpy_reimplementation() -> None:
    session = noma.Session()
    assert session.execute(DECL).ok
    start = {n: np.array(session.params[n], dtype=np.float64) for n in NAMES}
    g = session.globals()
    result = session.execute(TRAIN)
    assert result.ok, [d.render() for d in result.diagnostics]
    ref, opt, losses = _reference(start, np.asarray(g["X"]), np.asarray(g["Y"]))
    np.testing.assert_allclose(session.history.losses, losses, rtol=1e-10)
    for n in NAMES:
        np.testing.assert_allclose(session.params[n], ref[n], rtol=1e-10, atol=1e-13, err_msg=n)
        st = session.optimizer_state(n)
        np.testing.assert_allclose(st["m"], opt[n].m, rtol=1e-10, atol=1e-14, err_msg=n)
        np.testing.assert_allclose(st["v"], opt[n].v, rtol=1e-10, atol=1e-16, err_msg=n)
        assert np.array_equal(np.asarray(st["step"]), opt[n].step), n
    keeps = [(e.kind, e.name, e.kept) for e in session.history.events if e.policy == "keep"]
    assert ("dim_resize", "hidden", (4, 0, 2)) in keeps
    assert ("resize", "V", (3, 1)) in keeps
    assert ("resize", "W2", (4, 0, 2)) in keeps
    assert sum(1 for k in keeps if k[0] == "dim_resize") == 2


def test_keep_errors_are_located() -> None:
    session = noma.Session()
    assert session.execute(DECL).ok
    for stmt, message in (("realloc hidden keep tensor [0, 3];", "index 3 (entry 1) is not a unit of hidden"),
                          ("realloc hidden keep tensor [1, 1];", "index 1 (entry 1) is kept twice in hidden"),
                          ("realloc V keep tensor [0.5] axis 1;", "index 0.5 (entry 0) is not a unit of V"),
                          ("realloc W1 keep tensor [0] axis 1;", "sized by a dim")):
        result = session.execute(stmt)
        assert not result.ok
        d = result.errors[0]
        assert message in d.message and d.span is not None and d.span.start == 0, (stmt, d.render())
    assert session.params["W1"].shape == (2, 3)  # nothing changed


CHANNELS = """
seed(4);
dim channels = 2;
let X = rand_normal_tensor(0, 1, 3, 1, 5, 5);
let Y = rand_normal_tensor(0, 1, 3, 2);
learn W1 = normal([channels, 1, 3, 3], 0, 0.5);
learn W2 = normal([2, channels, 5, 5], 0, 0.5);
let step = 0;
optimize(W1, W2) with adam(lr = 0.01) max 6 {
    let out = reshape(conv2d(relu(conv2d(X, W1, 1, 1)), W2, 1, 0), [3, 2]);
    let loss = mean((out - Y) ^ 2);
    if step == 2 { realloc channels = 5 init preserve; }
    step = step + 1;
    minimize loss;
}
"""


def test_growing_channels_with_preserve_records_no_output_change() -> None:
    session = noma.Session()
    result = session.execute(CHANNELS)
    assert result.ok, [d.render() for d in result.diagnostics]
    grows = [e for e in session.history.events if e.kind == "dim_resize"]
    assert len(grows) == 1 and grows[0].new_shape == (5,) and grows[0].output_change == 0.0
    assert np.all(np.abs(session.params["W1"][2:]).sum(axis=(1, 2, 3)) > 0)  # new filters drawn
