"""The live controls (noma.session.controls): requests from another thread, applied by the
running native training loop at a step boundary through the deferred-resize path.

Requests queued while no loop runs wait for the next loop's first boundary (before its step 0),
which makes the learning-rate, stop and pause checks deterministic; the grow check clicks from a
thread once the loop has trained a few hundred steps.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import noma
from noma.diagnostics import NomaError

SETUP = """
seed(1);
let X = rand_normal_tensor(0, 1, 32, 2);
let Y = rand_normal_tensor(0, 1, 32, 1);
dim hidden = 2;
learn W1 = normal([2, hidden], 0, 0.5);
learn b1 = zeros([hidden]);
learn W2 = normal([hidden, 1], 0, 0.5);
"""
LOOP = """
optimize(W1, b1, W2) with adam(lr = 0.01) until loss < 0 max {steps} {{
    let loss = mean((matmul(tanh(matmul(X, W1) + b1), W2) - Y) ^ 2);
    minimize loss;
}}
print("rows", rows(W2));
"""


@pytest.fixture
def session():
    s = noma.Session()
    assert s.execute(SETUP).ok
    yield s
    s.controls.clear()


def _wait(condition, seconds: float = 60.0) -> None:
    """Poll until condition() holds (a bound against hangs, not a timing assertion)."""
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "condition never held"
        time.sleep(0.001)


def test_grow_during_a_running_loop(session):
    s = session
    clicked = {}

    def click():
        _wait(lambda: s.rt.global_step() >= 300)
        clicked["step"] = s.rt.global_step()
        applied = s.controls.applied
        s.controls.grow("hidden", 2)
        _wait(lambda: s.controls.applied > applied)
        grown_at = s.rt.global_step()
        _wait(lambda: s.rt.global_step() >= grown_at + 300)
        s.controls.stop()  # the loop would run for 10^9 steps

    thread = threading.Thread(target=click)
    thread.start()
    result = s.execute(LOOP.format(steps=1_000_000_000))
    thread.join()
    assert result.ok, result.diagnostics
    assert "rows 4" in result.output  # the cell went on with the grown network
    (event,) = [e for e in s.history.events if e.kind == "dim_resize"]
    assert event.origin == "controls" and event.old_shape == (2,) and event.new_shape == (4,)
    assert clicked["step"] <= event.step < result.steps  # inside this loop, and training went on
    assert s.dims == {"hidden": 4} and s.params["W1"].shape == (2, 4)
    assert s.optimizer_state("W1")["m"].shape == (2, 4)
    from noma.meta import event_text

    assert "dim hidden 2 -> 4 (preserve) from the controls" in event_text(event)


def test_stop_ends_the_loop_and_the_cell_goes_on(session):
    s = session
    s.controls.stop()  # queued while idle: the next loop stops at its first stop test
    result = s.execute(LOOP.format(steps=1_000_000))
    assert result.ok and "rows 2" in result.output
    assert result.steps == 1  # the body ran once (its loss is logged), no update, no more steps
    (event,) = [e for e in s.history.events if e.kind == "control"]
    assert (event.name, event.origin, event.step) == ("stop", "controls", 1)  # after the one step
    from noma.meta import event_text

    assert "stopped from the controls" in event_text(event)


def test_learning_rate_replaces_the_loops_own(session):
    s = session
    before = s.params["W1"].copy()
    s.controls.set_lr(1e-300)  # applied at the loop's first boundary: the updates vanish
    result = s.execute(LOOP.format(steps=50))
    assert result.ok and result.steps == 50
    np.testing.assert_allclose(s.params["W1"], before, rtol=0, atol=1e-250)
    (event,) = [e for e in s.history.events if e.kind == "control"]
    assert (event.name, event.value, event.step) == ("lr", 1e-300, 0)  # in the history, at its step
    from noma.meta import event_text
    from noma.plots import resize_groups

    assert "learning rate 1e-300 from the controls" in event_text(event)
    assert [label for _, label, _ in resize_groups(s.history, (0, 50))] == ["lr 1e-300 (controls)"]
    result = s.execute(LOOP.format(steps=50))  # the next loop has its own learning rate again
    assert np.abs(s.params["W1"] - before).max() > 1e-4


def test_pause_holds_the_loop_until_resumed(session):
    s = session
    s.controls.pause(True)
    seen = {}

    def observe():
        _wait(lambda: s.controls.in_loop)  # the loop reached its first boundary (compiled, running)
        time.sleep(0.05)
        seen["paused_at"] = s.rt.global_step()  # still 0: held at the first boundary
        s.controls.pause(False)

    thread = threading.Thread(target=observe)
    thread.start()
    result = s.execute(LOOP.format(steps=20))
    thread.join()
    assert seen["paused_at"] == 0 and result.ok and result.steps == 20
    assert [(e.name, e.step) for e in s.history.events if e.kind == "control"] == [("pause", 0), ("resume", 0)]


def test_idle_grow_applies_at_once_and_bad_requests_are_diagnostics(session):
    s = session
    s.controls.grow("hidden", 3, policy="zeros")
    s.controls.apply_pending()
    assert s.dims == {"hidden": 5}
    s.controls.shrink("hidden", 10)  # one unit stays
    s.controls.apply_pending()
    assert s.dims == {"hidden": 1}
    with pytest.raises(NomaError, match="no dim named `width`"):
        s.controls.grow("width", 1)
    with pytest.raises(NomaError, match="unknown init policy"):
        s.controls.grow("hidden", 1, policy="magic")
    with pytest.raises(NomaError, match="must be positive"):
        s.controls.set_lr(-1.0)
