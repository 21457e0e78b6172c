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
from session_checks import lit, run

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


def test_resize_between_cells_is_not_measured():
    s, _, _ = session()
    run(s, GROW_AT.format(n=5, at=100, policy=""))
    run(s, "realloc hidden = 8;")
    (ev,) = dim_events(s)
    assert ev.output_change is None
    assert "output change" not in event_text(ev)


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
