"""The output change of a resize inside a training loop (issue #3, SPEC §4).

A resize queued by a training step is applied at the step's end; the loop then measures how much
the resize changes the step's outputs -- its loss and the values computed from the parameters that
meet the data, such as the prediction in `pred - Y` -- and stores the largest absolute change in the
resize events. `preserve` and `copy` keep the function: 0. The measurement must leave training exactly as
it would be without it: no second print, no extra random draws, no stores.
"""

from __future__ import annotations

import numpy as np

import noma
from noma.meta import event_text
from conftest import lit, run

MLP = """
seed(21);
dim hidden = 4;
let X = {X};
let Y = {Y};
learn W1 = normal([3, hidden], 0, 0.8);
learn b1 = normal([hidden], 0, 0.3);
learn W2 = normal([hidden, 2], 0, 0.8);
learn b2 = zeros([2]);
let k = 0;
"""

GROW_AT = """
optimize(W1, b1, W2, b2) with adam(lr = 0.01) max {n} {{
    let h = tanh(matmul(X, W1) + b1);
    let pred = matmul(h, W2) + b2;
    let loss = mean((pred - Y) ^ 2);
    k = k + 1;
    if k == {at} {{ realloc hidden = 8{policy}; }}
    minimize loss;
}}
"""


def session() -> tuple[noma.Session, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    X, Y = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    s = noma.Session()
    run(s, MLP.format(X=lit(X), Y=lit(Y)))
    return s, X, Y


def dim_events(s: noma.Session) -> list:
    return [e for e in s.history.events if e.kind == "dim_resize"]


def test_preserve_and_copy_growth_in_a_loop_record_zero_change():
    for policy in ("", " init preserve", " init copy"):
        s, _, _ = session()
        run(s, GROW_AT.format(n=20, at=10, policy=policy))
        (ev,) = dim_events(s)
        assert ev.step == 10 and ev.new_shape == (8,)
        assert ev.output_change is not None and ev.output_change <= 1e-12, (policy, ev)
        # the per-parameter events of the same resize carry the same measurement
        assert all(e.output_change == ev.output_change for e in s.history.events if e.kind == "resize")
        assert event_text(ev).endswith(f"output change {ev.output_change:.3g}")


def test_output_change_is_the_largest_change_of_the_step_outputs():
    s, X, Y = session()
    # the resize runs at the end of the last step, so the parameters after the loop are the
    # resized ones and the parameters the step left are their old slices (normal keeps them)
    run(s, GROW_AT.format(n=10, at=10, policy=" init normal(0, 0.5)"))
    p = s.params
    old = {"W1": p["W1"][:, :4], "b1": p["b1"][:4], "W2": p["W2"][:4], "b2": p["b2"]}

    def outputs(q):  # the step's outputs: the prediction (what meets the data Y) and the loss
        pred = np.tanh(X @ q["W1"] + q["b1"]) @ q["W2"] + q["b2"]
        return [pred, np.mean((pred - Y) ** 2)]

    expected = max(np.max(np.abs(a - b)) for a, b in zip(outputs(old), outputs(p)))
    (ev,) = dim_events(s)
    assert ev.policy == "normal"
    assert expected > 0.1
    assert abs(ev.output_change - expected) <= 1e-12 * max(1.0, expected)


def test_the_measurement_leaves_training_unchanged():
    """With a zeros growth the network keeps its function and the new units never move, so a
    run that grows must print, draw and train exactly like one that does not."""
    body = """
    optimize(W1, b1, W2, b2) with adam(lr = 0.01) max 12 {{
        let noise = rand() * 0.001;
        let h = tanh(matmul(X, W1) + b1);
        let loss = mean((matmul(h, W2) + b2 - Y) ^ 2) + noise;
        k = k + 1;
        print("step", k, noise);
        {grow}
        minimize loss;
    }}
    print("after", rand());
    """
    runs = []
    for grow in ("if k == 5 { realloc hidden = 8 init zeros; }", ""):
        s, _, _ = session()
        r = run(s, body.format(grow=grow))
        runs.append((r.output, s.history.losses, s))
    (out_grow, loss_grow, s_grow), (out_plain, loss_plain, _) = runs
    assert out_grow == out_plain  # one print per step, the same random draws, the same after
    assert out_grow.count("step") == 12
    np.testing.assert_allclose(loss_grow, loss_plain, rtol=1e-12, atol=0)
    (ev,) = dim_events(s_grow)
    assert ev.output_change == 0.0


TRAIN = """
optimize(W1, b1, W2, b2) with adam(lr = 0.01) max 5 {
    let h = tanh(matmul(X, W1) + b1);
    let pred = matmul(h, W2) + b2;
    let loss = mean((pred - Y) ^ 2);
    minimize loss;
}
"""


def forward_change(X, Y, old: dict, new: dict) -> float:
    """The largest change of the training step's outputs (prediction and loss) from old to new
    parameters, in NumPy. Both are given at the new shapes (the old network padded as the
    resize keeps it) or as the old network's own parameters."""
    def outputs(q):
        pred = np.tanh(X @ q["W1"] + q["b1"]) @ q["W2"] + q["b2"]
        return [pred, np.mean((pred - Y) ** 2)]
    return max(float(np.max(np.abs(a - b))) for a, b in zip(outputs(old), outputs(new)))


def test_resize_between_cells_is_measured_against_the_last_training_loop():
    s, X, Y = session()
    run(s, TRAIN)
    run(s, "realloc hidden = 8;")
    run(s, "realloc hidden = 12 init normal(0, 0.5);")
    before = {k: v.copy() for k, v in s.params.items()}
    run(s, "realloc hidden = 16 init uniform(-1, 1);")
    grow_0, grow_1, grow_2 = dim_events(s)
    assert grow_0.output_change == 0.0 and "output change 0" in event_text(grow_0)  # preserve
    after = s.params
    expected = forward_change(X, Y, before, after)
    assert expected > 0.1
    assert abs(grow_2.output_change - expected) <= 1e-12 * max(1.0, expected)
    assert grow_1.output_change > 0.1
    # the per-parameter events of a dim resize carry its measurement
    assert all(e.output_change is not None for e in s.history.events if e.kind == "resize")


def test_resizes_of_one_cell_are_measured_together():
    """Resizing connected layers one at a time passes through shapes the forward pass cannot run
    with; the change is measured from before the cell's first resize to after its last."""
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    s = noma.Session()
    run(s, f"""
    seed(4);
    let X = {lit(X)};
    let Y = {lit(Y)};
    learn W1 = normal([3, 4], 0, 0.8);
    learn b1 = zeros([4]);
    learn W2 = normal([4, 2], 0, 0.8);
    learn b2 = zeros([2]);
    """ + TRAIN)
    before = {k: v.copy() for k, v in s.params.items()}
    run(s, "realloc W1 = [3, 6] init normal(0, 1); realloc b1 = [6]; realloc W2 = [6, 2] init normal(0, 1);")
    events = [e for e in s.history.events if e.kind == "resize"]
    assert len(events) == 3
    expected = forward_change(X, Y, before, s.params)
    assert expected > 0.1
    for e in events:
        assert abs(e.output_change - expected) <= 1e-12 * max(1.0, expected)
    # the same resizes over two cells: the forward pass cannot run after the first cell nor
    # before the second, so neither is measured (and both cells succeed)
    run(s, "realloc W1 = [3, 7];")
    run(s, "realloc b1 = [7]; realloc W2 = [7, 2];")
    assert [e.output_change for e in s.history.events if e.kind == "resize"][3:] == [None] * 3
    # once the network fits again, resizes are measured again
    run(s, "realloc W2 = [7, 3] init normal(0, 1); realloc W2 = [7, 2];")
    assert [e.output_change for e in s.history.events if e.kind == "resize"][6:] == [0.0, 0.0]


def test_between_cell_measurement_uses_the_cell_inputs_and_leaves_no_trace():
    """Pass 1 runs on the globals pass 0 saw (the cell may change the data after resizing); the
    random generator, the globals and the printed output are as if nothing was measured."""
    cell = "realloc hidden = 9 init normal(0, 0.5); X = X * 0 + 2; print(rand(), normal([3], 0, 1));"
    runs = []
    for measure in (True, False):
        s, X, Y = session()
        s.measure_output_change = measure
        run(s, TRAIN)
        before = {k: v.copy() for k, v in s.params.items()}
        r = run(s, cell)
        runs.append((r.output, s.globals()["X"], s.params, dim_events(s)[0]))
    (out_on, x_on, p_on, ev_on), (out_off, x_off, p_off, ev_off) = runs
    assert out_on == out_off
    np.testing.assert_array_equal(x_on, np.full_like(X, 2.0))
    np.testing.assert_array_equal(x_on, x_off)
    for k in p_on:
        np.testing.assert_array_equal(p_on[k], p_off[k])
    assert ev_off.output_change is None
    expected = forward_change(X, Y, before, p_on)  # on the data before the cell changed it
    assert abs(ev_on.output_change - expected) <= 1e-12 * max(1.0, expected)


def test_a_loop_whose_body_reads_function_locals_is_not_replayed():
    s, _, _ = session()
    run(s, """
    fn train(xs, n) {
        optimize(W1, b1, W2, b2) with adam(lr = 0.01) max n {
            let loss = mean((matmul(tanh(matmul(xs, W1) + b1), W2) + b2 - Y) ^ 2);
            minimize loss;
        }
        return loss;
    }
    train(X, 3);
    """)
    run(s, "realloc hidden = 8;")
    (ev,) = dim_events(s)
    assert ev.output_change is None
    assert "output change" not in event_text(ev)


def test_no_training_loop_yet_means_not_measured():
    s, _, _ = session()
    run(s, "realloc hidden = 8;")
    (ev,) = dim_events(s)
    assert ev.output_change is None


def test_undo_and_failed_cells_keep_the_measurement_consistent():
    s, X, Y = session()
    run(s, TRAIN)
    run(s, """
    fn train(xs) {
        optimize(W1, b1, W2, b2) with adam(lr = 0.01) max 2 {
            let loss = mean((matmul(tanh(matmul(xs, W1) + b1), W2) + b2 - Y) ^ 2);
            minimize loss;
        }
        return loss;
    }
    train(X);
    """)
    assert s.undo()  # back to the replayable loop of the first cell
    # a cell failing at run time keeps what it completed (the resize), but its measurement,
    # due when the cell ends, is dropped
    bad = s.execute("realloc hidden = 8 init normal(0, 0.5); let z = slice(X, 0, 100);")
    assert bad.status == "error" and "out of range" in bad.errors[0].message
    (ev_bad,) = dim_events(s)
    assert ev_bad.new_shape == (8,) and ev_bad.output_change is None
    before = {k: v.copy() for k, v in s.params.items()}
    run(s, "realloc hidden = 10 init normal(0, 0.5);")
    ev = dim_events(s)[1]
    expected = forward_change(X, Y, before, s.params)
    assert abs(ev.output_change - expected) <= 1e-12 * max(1.0, expected)


def test_minibatch_body_with_global_stores():
    """Stores to globals run in the probe (a batch index that wraps around) and are put back:
    the probe compares on the batch the globals select, and the program's own run is untouched."""
    s, _, _ = session()
    r = run(s, """
    let start = 0;
    optimize(W1, b1, W2, b2) with adam(lr = 0.01) max 8 {
        if start >= 6 { start = 0; }
        let xb = slice(X, start, start + 3);
        let yb = slice(Y, start, start + 3);
        start = start + 3;
        k = k + 1;
        print(k, start);
        if k == 4 { realloc hidden = 8; }
        let loss = mean((matmul(tanh(matmul(xb, W1) + b1), W2) + b2 - yb) ^ 2);
        minimize loss;
    }
    """)
    assert r.output.split() == "1 3 2 6 3 3 4 6 5 3 6 6 7 3 8 6".split()
    assert s.globals()["start"] == 6 and s.globals()["k"] == 8
    (ev,) = dim_events(s)
    assert ev.step == 4 and ev.output_change is not None and ev.output_change <= 1e-12
