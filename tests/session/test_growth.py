"""Growth and shrinking seen from NOMA programs and the Session API (SPEC §4).

(a) `realloc` semantics: values keep their (i, j, ...) index along every axis of 1-D, 2-D and 3-D
    parameters, shrinking drops trailing slices, every init policy fills new entries as documented,
    and `realloc DIM` resizes every parameter declared with the dim along the right axis.
(b) `preserve` / `copy` growth of a 2-layer MLP keeps the function (≤ 1e-12) and training goes on:
    gradients reach the new units at once.
(c) growth inside a native training loop takes effect at the end of its step; the loop goes on.

The C-level resize tests (RNG streams, Net2Net divisors, deferred queue) live in
tests/rt/test_native_runtime.py; these go through the compiler, the JIT and the Session.
"""

from __future__ import annotations


import numpy as np
import pytest

import noma
from conftest import lit, run


# ----------------------------------------------------------------------------- helpers


def expected_resize(old: np.ndarray, new_shape: tuple[int, ...], fill: float = 0.0) -> np.ndarray:
    """Index-preserving resize: common entries keep their index, new ones are `fill`."""
    out = np.full(new_shape, fill)
    common = tuple(slice(0, min(a, b)) for a, b in zip(old.shape, new_shape))
    out[common] = old[common]
    return out


def old_mask(old_shape: tuple[int, ...], new_shape: tuple[int, ...]) -> np.ndarray:
    """True where an entry of the new shape existed in the old one."""
    mask = np.zeros(new_shape, bool)
    mask[tuple(slice(0, min(a, b)) for a, b in zip(old_shape, new_shape))] = True
    return mask


def shape_lit(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


# ----------------------------------------------------------------------------- (a) resize semantics


def test_resize_hand_computed_1d_2d():
    s = noma.Session()
    run(s, "learn v = tensor [1, 2, 3];")
    run(s, "realloc v = [5] init zeros;")
    np.testing.assert_array_equal(s.params["v"], [1, 2, 3, 0, 0])
    run(s, "realloc v = [2] init zeros;")
    np.testing.assert_array_equal(s.params["v"], [1, 2])
    run(s, "realloc v = [4] init zeros;")  # the dropped 3 does not come back
    np.testing.assert_array_equal(s.params["v"], [1, 2, 0, 0])

    run(s, "learn W = tensor [[1, 2], [3, 4]];")
    run(s, "realloc W = [2, 3] init zeros;")  # gains a column: rows are NOT scrambled
    np.testing.assert_array_equal(s.params["W"], [[1, 2, 0], [3, 4, 0]])
    run(s, "realloc W = [3, 3] init zeros;")  # gains a row
    np.testing.assert_array_equal(s.params["W"], [[1, 2, 0], [3, 4, 0], [0, 0, 0]])
    run(s, "realloc W = [3, 1] init zeros;")  # loses trailing columns
    np.testing.assert_array_equal(s.params["W"], [[1], [3], [0]])
    run(s, "realloc W = [1, 1] init zeros;")  # loses trailing rows
    np.testing.assert_array_equal(s.params["W"], [[1]])


def test_resize_hand_computed_3d():
    s = noma.Session()
    run(s, "learn T = tensor [[[1, 2], [3, 4]], [[5, 6], [7, 8]]];")
    run(s, "realloc T = [2, 2, 3] init zeros;")
    np.testing.assert_array_equal(s.params["T"], [[[1, 2, 0], [3, 4, 0]], [[5, 6, 0], [7, 8, 0]]])
    run(s, "realloc T = [2, 3, 3] init zeros;")
    np.testing.assert_array_equal(s.params["T"], [[[1, 2, 0], [3, 4, 0], [0, 0, 0]],
                                                  [[5, 6, 0], [7, 8, 0], [0, 0, 0]]])
    run(s, "realloc T = [1, 3, 1] init zeros;")
    np.testing.assert_array_equal(s.params["T"], [[[1], [3], [0]]])


SHAPES = {
    1: [(7,), (3,), (12,)],
    2: [(3, 4), (5, 4), (3, 6), (2, 4), (3, 2), (6, 7), (1, 1), (2, 9)],
    3: [(2, 3, 4), (4, 3, 4), (2, 5, 4), (2, 3, 6), (1, 3, 4), (2, 1, 4), (2, 3, 2), (3, 1, 5), (1, 1, 1)],
}


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_resize_every_axis_keeps_indices(rank):
    """Grow and shrink along each axis (and several at once); the NumPy model is slicing."""
    rng = np.random.default_rng(rank)
    start = SHAPES[rank][0]
    value = rng.normal(size=start)
    s = noma.Session()
    run(s, f"learn P = {lit(value)};")
    np.testing.assert_array_equal(s.params["P"], value)
    for shape in SHAPES[rank][1:] + [start]:
        run(s, f"realloc P = {shape_lit(shape)} init zeros;")
        value = expected_resize(value, shape)
        got = s.params["P"]
        assert got.shape == shape
        np.testing.assert_array_equal(got, value)


def test_resize_in_native_loop_and_dynamic_sizes():
    """The new shape may be computed at run time; a `for` loop resizes natively."""
    s = noma.Session()
    run(s, "learn W = tensor [[1, 2, 3], [4, 5, 6]];")
    run(s, "let n = 2; for i in 0..3 { n = n + 1; realloc W = [n, 3 + i] init zeros; }")
    expected = expected_resize(np.array([[1.0, 2, 3], [4, 5, 6]]), (5, 5))
    np.testing.assert_array_equal(s.params["W"], expected)


def test_policy_zeros_uniform_and_normal_constant():
    s = noma.Session()
    run(s, "learn v = tensor [1, 2, 3];")
    run(s, "realloc v = [5] init normal(10, 0);")
    np.testing.assert_array_equal(s.params["v"], [1, 2, 3, 10, 10])
    run(s, "realloc v = [6] init uniform(7, 7);")
    np.testing.assert_array_equal(s.params["v"], [1, 2, 3, 10, 10, 7])


def _grow_big(policy: str, seed: int = 5, old: str = "tensor [[1, 2], [3, 4]]", new=(300, 200)):
    s = noma.Session()
    run(s, f"seed({seed}); learn W = {old};")
    before = s.params["W"]
    run(s, f"realloc W = {shape_lit(new)} {policy};")
    after = s.params["W"]
    assert after.shape == new
    mask = old_mask(before.shape, new)
    np.testing.assert_array_equal(after[mask], before.reshape(-1))
    return after[~mask], s


def test_policy_normal_statistics_and_seed():
    fresh, _ = _grow_big("init normal(2, 0.5)")
    n = fresh.size
    assert abs(fresh.mean() - 2.0) < 5 * 0.5 / np.sqrt(n)
    assert abs(fresh.std() - 0.5) < 0.01
    # roughly normal: about 68.3% within one std
    assert abs(np.mean(np.abs(fresh - 2.0) < 0.5) - 0.6827) < 0.01
    same, _ = _grow_big("init normal(2, 0.5)")
    np.testing.assert_array_equal(fresh, same)  # same seed, same draws
    other, _ = _grow_big("init normal(2, 0.5)", seed=6)
    assert not np.array_equal(fresh, other)


def test_policy_uniform_bounds():
    fresh, _ = _grow_big("init uniform(-3, 5)")
    assert fresh.min() >= -3 and fresh.max() < 5
    assert abs(fresh.mean() - 1.0) < 0.05
    assert abs(fresh.std() - 8 / np.sqrt(12)) < 0.02
    assert fresh.min() < -2.9 and fresh.max() > 4.9


def test_policy_xavier():
    fresh, _ = _grow_big("init xavier", new=(300, 100))
    lim = np.sqrt(6.0 / (300 + 100))  # fans of the NEW shape
    assert fresh.min() >= -lim and fresh.max() <= lim
    assert fresh.min() < -0.98 * lim and fresh.max() > 0.98 * lim
    assert abs(fresh.std() - lim / np.sqrt(3)) < 0.01 * lim


def test_policy_he():
    fresh, _ = _grow_big("init he", new=(200, 300))
    std = np.sqrt(2.0 / 200)
    assert abs(fresh.mean()) < 5 * std / np.sqrt(fresh.size)
    assert abs(fresh.std() - std) < 0.01 * std


def test_policy_default_uses_std_of_existing():
    old = np.array([[1.0, 2.0], [3.0, 4.0]])
    fresh, _ = _grow_big("", old=lit(old))
    std = old.std()  # population std of the existing entries: 1.118...
    assert abs(fresh.mean()) < 5 * std / np.sqrt(fresh.size)
    assert abs(fresh.std() - std) < 0.01 * std
    # fewer than 2 entries: std 0.1
    fresh, _ = _grow_big("", old="tensor [[5]]", new=(200, 200))
    assert abs(fresh.std() - 0.1) < 0.002
    # all entries equal (std 0): 0.1 as well
    fresh, _ = _grow_big("", old="tensor [[5, 5], [5, 5]]", new=(200, 200))
    assert abs(fresh.std() - 0.1) < 0.002


def test_single_tensor_rejects_layer_policies_and_rank_change():
    s = noma.Session()
    run(s, "learn W = tensor [[1, 2], [3, 4]];")
    for src, kind in [("realloc W = [3, 3] init preserve;", "type"), ("realloc W = [3, 3] init copy;", "type"),
                      ("realloc W = [3] init zeros;", "shape"), ("realloc W = [3, 3] init bogus;", "name")]:
        r = s.execute(src)
        assert r.status == "error" and r.errors[0].kind.value == kind, (src, r.diagnostics)
    np.testing.assert_array_equal(s.params["W"], [[1, 2], [3, 4]])


def test_dim_resize_resizes_every_bound_param_along_its_axis():
    s = noma.Session()
    run(s, """
        seed(11);
        dim hidden = 3;
        dim k = 2;
        learn W1 = normal([4, hidden], 0, 1);
        learn b1 = normal([hidden], 0, 1);
        learn W2 = normal([hidden, 5], 0, 1);
        learn R = normal([hidden, hidden], 0, 1);
        learn T = normal([k, hidden, 2], 0, 1);
        learn K = normal([k, 6], 0, 1);
        learn U = normal([3], 0, 1);
    """)
    before = s.params
    run(s, "realloc hidden = 7 init zeros;")
    after = s.params
    assert s.dims == {"hidden": 7, "k": 2}
    new_shapes = {"W1": (4, 7), "b1": (7,), "W2": (7, 5), "R": (7, 7), "T": (2, 7, 2), "K": (2, 6), "U": (3,)}
    for name, shape in new_shapes.items():
        assert after[name].shape == shape, name
        np.testing.assert_array_equal(after[name], expected_resize(before[name], shape), err_msg=name)
    # U has the same size as hidden had, but it is not declared with the dim: untouched
    np.testing.assert_array_equal(after["U"], before["U"])

    events = [e for e in s.history.events]
    assert [(e.kind, e.name) for e in events] == [
        ("dim_resize", "hidden"), ("resize", "W1"), ("resize", "b1"), ("resize", "W2"), ("resize", "R"),
        ("resize", "T")]
    assert events[0].old_shape == (3,) and events[0].new_shape == (7,) and events[0].policy == "zeros"
    assert events[5].old_shape == (2, 3, 2) and events[5].new_shape == (2, 7, 2)

    # shrink the other dim: only its axis
    run(s, "realloc k = 1;")
    assert s.params["T"].shape == (1, 7, 2) and s.params["K"].shape == (1, 6)
    np.testing.assert_array_equal(s.params["K"], before["K"][:1])
    np.testing.assert_array_equal(s.params["W1"], after["W1"])
    # shrink hidden below its original size: trailing slices dropped along every bound axis
    run(s, "realloc hidden = 2;")
    np.testing.assert_array_equal(s.params["R"], before["R"][:2, :2])
    np.testing.assert_array_equal(s.params["W2"], before["W2"][:2])
    np.testing.assert_array_equal(s.params["b1"], before["b1"][:2])
    # resizing an axis bound to a dim alone is an error that changes nothing
    r = s.execute("realloc W1 = [4, 9];")
    assert r.status == "error" and r.errors[0].kind.value == "shape"
    assert "dim" in r.errors[0].message
    assert s.params["W1"].shape == (4, 2)
    # but its free axis may change alone
    run(s, "realloc W1 = [6, 2] init zeros;")
    np.testing.assert_array_equal(s.params["W1"], expected_resize(before["W1"][:, :2], (6, 2)))


def test_dim_resize_preserve_fill_pattern():
    s = noma.Session()
    run(s, """
        seed(3);
        dim hidden = 2;
        learn W1 = normal([3, hidden], 0, 1);
        learn b1 = normal([hidden], 0, 1);
        learn W2 = normal([hidden, 4], 0, 1);
    """)
    before = s.params
    run(s, "realloc hidden = 400;")  # default policy for a dim: preserve
    after = s.params
    assert s.history.events[0].policy == "preserve"
    np.testing.assert_array_equal(after["W1"][:, :2], before["W1"])
    np.testing.assert_array_equal(after["W2"][:2], before["W2"])
    np.testing.assert_array_equal(after["b1"][:2], before["b1"])
    assert np.all(after["b1"][2:] == 0)  # new biases 0
    assert np.all(after["W2"][2:] == 0)  # new outgoing weights 0
    incoming = after["W1"][:, 2:]  # new incoming weights: normal(0, std of W1's old entries)
    assert np.all(incoming != 0)
    assert abs(incoming.std() - before["W1"].std()) < 0.06 * before["W1"].std()


# ----------------------------------------------------------------------------- (b) preserve / copy


MLP = """
seed(21);
dim hidden = 4;
let X = {X};
let Y = {Y};
learn W1 = normal([3, hidden], 0, 0.8);
learn b1 = normal([hidden], 0, 0.3);
learn W2 = normal([hidden, 2], 0, 0.8);
learn b2 = zeros([2]);
"""

TRAIN = """
optimize(W1, b1, W2, b2) with sgd(lr = {lr}) max {n} {{
    let h = tanh(matmul(X, W1) + b1);
    let pred = matmul(h, W2) + b2;
    let loss = mean((pred - Y) ^ 2);
    minimize loss;
}}
"""


def _data(seed=0, n=10):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)), rng.normal(size=(n, 2))


def forward(p, X):
    h = np.tanh(X @ p["W1"] + p["b1"])
    return h, h @ p["W2"] + p["b2"]


def grads(p, X, Y):
    h, pred = forward(p, X)
    d = 2.0 * (pred - Y) / pred.size
    dz = (d @ p["W2"].T) * (1 - h * h)
    return {"W1": X.T @ dz, "b1": dz.sum(0), "W2": h.T @ d, "b2": d.sum(0)}


def _mlp_session(X, Y):
    s = noma.Session()
    run(s, MLP.format(X=lit(X), Y=lit(Y)))
    run(s, TRAIN.format(lr=0.1, n=50))  # trained a little: nothing is symmetric any more
    return s


@pytest.mark.parametrize("policy", ["", " init preserve", " init copy"])
def test_layer_growth_keeps_the_function(policy):
    X, Y = _data()
    s = _mlp_session(X, Y)
    p0 = s.params
    _, out0 = forward(p0, X)
    r = run(s, f"realloc hidden = 16{policy};")
    assert r.steps == 0
    p1 = s.params
    assert s.dims["hidden"] == 16
    assert p1["W1"].shape == (3, 16) and p1["b1"].shape == (16,) and p1["W2"].shape == (16, 2)
    np.testing.assert_array_equal(p1["b2"], p0["b2"])
    _, out1 = forward(p1, X)
    change = np.max(np.abs(out1 - out0))
    print(f"max output change after `realloc hidden = 16{policy}`: {change:.3g}")
    assert change <= 1e-12
    # the loss the next training step logs is the loss before the growth
    loss0 = np.mean((out0 - Y) ** 2)
    run(s, TRAIN.format(lr=0.1, n=1))
    assert abs(s.history.losses[-1] - loss0) <= 1e-12
    ev = [e for e in s.history.events if e.kind == "dim_resize"][-1]
    assert ev.name == "hidden" and ev.old_shape == (4,) and ev.new_shape == (16,) and ev.step == 50
    assert ev.policy == ("copy" if "copy" in policy else "preserve")


def test_copy_growth_duplicates_units():
    X, Y = _data(1)
    s = _mlp_session(X, Y)
    p0 = s.params
    run(s, "realloc hidden = 10 init copy;")
    p1 = s.params
    # every new unit is a copy of an old one: same incoming weights and bias
    for u in range(4, 10):
        matches = [j for j in range(4) if np.array_equal(p1["W1"][:, u], p0["W1"][:, j])
                   and p1["b1"][u] == p0["b1"][j]]
        assert matches, u
    # outgoing weights of each old unit j are split among j and its copies
    for j in range(4):
        copies = [u for u in range(10) if np.array_equal(p1["W1"][:, u], p0["W1"][:, j])]
        np.testing.assert_allclose(sum(p1["W2"][u] for u in copies), p0["W2"][j], rtol=0, atol=1e-15)


def test_preserve_growth_training_continues_and_gradients_reach_new_units():
    X, Y = _data(2)
    s = _mlp_session(X, Y)
    lr = 0.1
    run(s, "realloc hidden = 16;")
    p1 = s.params
    g1 = grads(p1, X, Y)
    # the new units are live: their activations are non-zero, so their outgoing weights get a
    # non-zero gradient at once (their incoming weights get theirs one step later, once the
    # outgoing weights are no longer zero)
    assert np.all(np.abs(g1["W2"][4:]) > 1e-6)
    assert np.all(g1["W1"][:, 4:] == 0) and np.all(g1["b1"][4:] == 0)

    run(s, TRAIN.format(lr=lr, n=1))
    p2 = s.params
    for name in p1:
        np.testing.assert_allclose(p2[name], p1[name] - lr * g1[name], rtol=0, atol=1e-13, err_msg=name)
    assert np.all(p2["W2"][4:] != 0)  # the new outgoing weights moved
    np.testing.assert_array_equal(p2["W1"][:, 4:], p1["W1"][:, 4:])

    g2 = grads(p2, X, Y)
    assert np.all(np.abs(g2["W1"][:, 4:]) > 0) and np.all(np.abs(g2["b1"][4:]) > 0)
    run(s, TRAIN.format(lr=lr, n=1))
    p3 = s.params
    assert np.all(p3["W1"][:, 4:] != p2["W1"][:, 4:])  # now the incoming weights move too
    for name in p2:
        np.testing.assert_allclose(p3[name], p2[name] - lr * g2[name], rtol=0, atol=1e-13, err_msg=name)

    # and training goes on improving the grown network
    losses_before = s.history.losses.copy()
    run(s, TRAIN.format(lr=lr, n=200))
    assert s.history.losses[-1] < losses_before[-1]


# ----------------------------------------------------------------------------- (c) growth in the loop


LOOP = """
let step = 0;
optimize(W1, b1, W2, b2) with adam(lr = 0.01) max {n} {{
    step = step + 1;
    let h = tanh(matmul(X, W1) + b1);
    let pred = matmul(h, W2) + b2;
    let loss = mean((pred - Y) ^ 2);
    if step == 49 || step == 50 || step == 51 {{ print(step, cols(W1), rows(b1)); }}
    if step == 50 {{ realloc hidden = 8; }}
    if step == 120 {{ realloc hidden = 3 init zeros; }}
    minimize loss;
}}
"""


def test_growth_inside_a_training_loop():
    X, Y = _data(3)
    s = noma.Session()
    run(s, MLP.format(X=lit(X), Y=lit(Y)))
    run(s, TRAIN.format(lr=0.05, n=30))  # an earlier cell: global steps 1..30
    r = run(s, LOOP.format(n=200))
    # one cell, one native loop: every step ran
    assert r.steps == 200
    assert len(s.history.losses) == 230
    assert s.globals()["step"] == 200
    # the resize takes effect at the end of the step in which it runs
    assert r.output.splitlines() == ["49 4 4", "50 4 4", "51 8 8"]
    events = s.history.events
    dim_events = [e for e in events if e.kind == "dim_resize"]
    assert [(e.step, e.old_shape, e.new_shape, e.policy) for e in dim_events] == [
        (30 + 50, (4,), (8,), "preserve"), (30 + 120, (8,), (3,), "zeros")]
    per_param = [(e.name, e.step, e.old_shape, e.new_shape) for e in events if e.kind == "resize"]
    assert per_param == [("W1", 80, (3, 4), (3, 8)), ("b1", 80, (4,), (8,)), ("W2", 80, (4, 2), (8, 2)),
                         ("W1", 150, (3, 8), (3, 3)), ("b1", 150, (8,), (3,)), ("W2", 150, (8, 2), (3, 2))]
    assert s.dims["hidden"] == 3
    p = s.params
    assert p["W1"].shape == (3, 3) and p["b1"].shape == (3,) and p["W2"].shape == (3, 2)
    # the Adam state followed the resizes: units 0..2 existed from the start, so their entries
    # have all 200 Adam steps (the 30 SGD steps do not count: switching optimizer starts fresh)
    st = s.optimizer_state("W1")
    assert st["step"].shape == (3, 3)
    np.testing.assert_array_equal(st["step"], np.full((3, 3), 200.0))
    assert [e.kind for e in events].count("optimizer") == 4  # SGD -> Adam for each parameter


def test_growth_inside_loop_new_entries_step_counts():
    X, Y = _data(4)
    s = noma.Session()
    run(s, MLP.format(X=lit(X), Y=lit(Y)))
    run(s, LOOP.format(n=100))  # grows 4 -> 8 at the end of step 50
    st = s.optimizer_state("W1")
    np.testing.assert_array_equal(st["step"][:, :4], 100)
    np.testing.assert_array_equal(st["step"][:, 4:], 50)
    b2 = s.optimizer_state("b2")  # not bound to the dim: every step
    np.testing.assert_array_equal(b2["step"], 100)
    np.testing.assert_allclose(st["pow1"][:, 4:], 0.9 ** 50, rtol=1e-12)
    np.testing.assert_allclose(st["pow1"][:, :4], 0.9 ** 100, rtol=1e-12)
