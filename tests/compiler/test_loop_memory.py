"""Loops outside training steps release the arena every iteration: long loops run in bounded memory,
and a loop's tensor results stay valid when the same loop runs again."""

from __future__ import annotations

import numpy as np

import noma

LOOPS = """
fn grow(x, n) { let i = 0; while i < n { x = tanh(x * 1.0001 + 0.001); i = i + 1; } return x; }
let a = grow(ones([1000]), 20000);
let b = grow(zeros([1000]), 3);
let t = ones([2000]);
for k in 0..20000 { t = t * 0.5 + 0.5; }
"""


def test_long_loops_use_bounded_arena_memory() -> None:
    s = noma.Session()
    r = s.execute(LOOPS)
    assert r.ok, [d.render() for d in r.diagnostics]
    reserved = s.rt.lib.noma_arena_reserved(s.rt.ctx)
    # without per-iteration release: 20000 iterations x 8 kB x several temporaries, over 400 MB
    assert reserved < 64 * 1024 * 1024, reserved


def test_loop_results_survive_the_loop_running_again() -> None:
    s = noma.Session()
    r = s.execute(LOOPS)
    assert r.ok
    g = s.globals()
    expect_b = np.zeros(1000)
    for _ in range(3):
        expect_b = np.tanh(expect_b * 1.0001 + 0.001)
    np.testing.assert_allclose(g["b"], expect_b, rtol=1e-12)
    expect_a = np.ones(1000)
    for _ in range(20000):
        expect_a = np.tanh(expect_a * 1.0001 + 0.001)
    np.testing.assert_allclose(g["a"], expect_a, rtol=1e-9)
    np.testing.assert_allclose(g["t"], np.ones(2000))
