"""NOMA benchmark: the cost of `realloc hidden` (16 <-> 1024) on a 3-layer MLP with Adam state.

Run: `python bench/bench_realloc.py [--reps N]` (prints a few lines, the last one the result line).

Network: W1 [64, hidden], b1 [hidden], W2 [hidden, hidden], b2 [hidden], W3 [hidden, 10], b3 [10],
trained a few Adam steps first so every parameter carries moments and per-entry step counts (a
resize remaps values, m, v, step counts and both bias-correction powers: 6 buffers per parameter).

Timed natively: one cell runs `for i in 0..N { realloc hidden = 1024; realloc hidden = 16; }`;
the time per resize is the cell's run time (no compile time in it) divided by 2N. Grow and shrink
separately: the runtime's `noma_dim_resize` called through ctypes (what a compiled `realloc`
calls), and one cell holding only the resize, minus an empty cell's run time (best of several).
These figures are the bare resize: the session's output-change measurement is switched off for
them (`Session.measure_output_change = False`); with it on (the default), a resizing cell also
runs the last training step's forward pass before and after, reported on a line of its own.
Also checked: a resize recompiles nothing. The training function compiled before the resize is
still the one that runs afterwards (same JIT symbol), and a cell holding only a realloc compiles
just its own tiny entry function.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import noma  # noqa: E402

SETUP = """
seed(0);
dim hidden = 16;
let X = rand_tensor(64, 64);
let Y = rand_tensor(64, 10);
learn W1 = normal([64, hidden], 0, 0.1);
learn b1 = zeros([hidden]);
learn W2 = normal([hidden, hidden], 0, 0.1);
learn b2 = zeros([hidden]);
learn W3 = normal([hidden, 10], 0, 0.1);
learn b3 = zeros([10]);
fn train(n) {
    optimize(W1, b1, W2, b2, W3, b3) with adam(lr = 0.001) max n {
        let h1 = tanh(matmul(X, W1) + b1);
        let h2 = tanh(matmul(h1, W2) + b2);
        let loss = mean((matmul(h2, W3) + b3 - Y) ^ 2);
        minimize loss;
    }
    return loss;
}
"""


def run(s: noma.Session, src: str):
    r = s.execute(src)
    if not r.ok and r.status != "ok":
        raise SystemExit(f"cell failed: {src!r}: {[d.message for d in r.diagnostics]}")
    return r


def best_run_seconds(s: noma.Session, src: str, reps: int) -> float:
    return min(run(s, src).run_seconds for _ in range(reps))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=20, help="grow/shrink pairs in the native loop")
    args = ap.parse_args(argv)

    s = noma.Session()
    run(s, SETUP)
    run(s, "train(3);")
    s.measure_output_change = False  # the bare resize (see the module docstring)
    assert s.optimizer_state("W2")["step"].min() == 3
    train_symbol = s.compiled["train.s"].symbol

    # the loop cell runs once untimed (warm: allocator, page faults), then timed
    loop = f"for i in 0..{args.reps} {{ realloc hidden = 1024; realloc hidden = 16; }}"
    run(s, loop)
    r = run(s, loop)
    per_resize = r.run_seconds / (2 * args.reps)
    assert s.dims["hidden"] == 16 and s.params["W2"].shape == (16, 16)

    # one resize per cell: grow and shrink apart (minus an empty cell's run time)
    empty = best_run_seconds(s, "let nothing = 0;", 5)
    grow, shrink, compile_s = [], [], []
    for _ in range(5):
        rg = run(s, "realloc hidden = 1024;")
        grow.append(rg.run_seconds - empty)
        compile_s.append(rg.compile_seconds)
        shrink.append(run(s, "realloc hidden = 16;").run_seconds - empty)

    # the runtime call alone (no cell around it)
    lib, dim_id = s.rt.lib, s.symbols.dims["hidden"]
    s.rt.activate()
    call_grow, call_shrink = [], []
    for _ in range(7):
        t0 = time.perf_counter()
        lib.noma_dim_resize(dim_id, 1024, 0, 0.0, 0.0, -1)
        t1 = time.perf_counter()
        lib.noma_dim_resize(dim_id, 16, 0, 0.0, 0.0, -1)
        call_grow.append(t1 - t0)
        call_shrink.append(time.perf_counter() - t1)
    assert s.dims["hidden"] == 16

    # with the output change measured: the cell also runs train's step forward at 16 and 1024
    s.measure_output_change = True
    measured = [run(s, "realloc hidden = 1024;").run_seconds - empty
                for _ in range(3) if run(s, "realloc hidden = 16;")]
    change = s.history.events[-4].output_change  # the last grow's dim event (3 params follow)
    s.measure_output_change = False
    run(s, "realloc hidden = 16;")

    # no recompilation: grow, then train: the training code compiled at hidden = 16 runs at 1024
    modules_before = len(s.jit._modules)
    run(s, "realloc hidden = 1024;")
    modules_realloc = len(s.jit._modules) - modules_before
    t0 = time.perf_counter()
    rt = run(s, "train(2);")
    train_wall = time.perf_counter() - t0
    assert s.compiled["train.s"].symbol == train_symbol, "the training function was recompiled"
    assert s.params["W2"].shape == (1024, 1024)
    st = s.optimizer_state("W2")["step"]
    assert st[:16, :16].min() == 3 + 2 and st[16:, :].max() == 2  # state followed the resizes
    # a realloc-only cell adds one module (its own entry function) and nothing else
    assert modules_realloc <= 1, modules_realloc

    ms = 1e3
    n_grown = 64 * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 10
    print(f"3-layer MLP 64-H-H-10, Adam state; H 16 <-> 1024 ({n_grown:,} parameters at 1024)")
    print(f"native loop, {2 * args.reps} resizes: {per_resize * ms:.3f} ms per resize (grow+shrink average)")
    print(f"one resize per cell: grow 16->1024 {np.median(grow) * ms:.3f} ms, "
          f"shrink 1024->16 {np.median(shrink) * ms:.3f} ms (run time minus an empty cell's)")
    print(f"runtime call noma_dim_resize (ctypes): grow {np.median(call_grow) * ms:.3f} ms, "
          f"shrink {np.median(call_shrink) * ms:.3f} ms (median of {len(call_grow)})")
    print(f"with the output change measured (the session's default): grow cell {np.median(measured) * ms:.3f} ms "
          f"(the forward pass of train's step at H=16 and at H=1024 included); output change {change:.3g}")
    print(f"compile time of a realloc-only cell (its own entry function only): {np.median(compile_s) * ms:.1f} ms; "
          f"JIT modules added: {modules_realloc}")
    print(f"train(2) after the resize reused the code compiled at H=16 ({train_symbol}); "
          f"compile {rt.compile_seconds * ms:.1f} ms (entry cell only), wall {train_wall * ms:.1f} ms")
    print(f"RESULT realloc hidden 16<->1024, 3-layer MLP with Adam state: {per_resize * ms:.3f} ms per resize "
          f"(grow {np.median(call_grow) * ms:.3f} ms and shrink {np.median(call_shrink) * ms:.3f} ms as runtime calls; "
          f"{np.median(grow) * ms:.3f} / {np.median(shrink) * ms:.3f} ms as one cell each), no recompilation")
    small = one_hidden_layer(args.reps)
    print(f"RESULT realloc hidden 16<->1024, MLP 64-H-10 (one hidden layer) with Adam state: {small * ms:.3f} ms "
          "per resize (grow+shrink average), no recompilation")
    return 0


SMALL = """
seed(0); dim hidden = 16; let X = rand_tensor(64, 64); let Y = rand_tensor(64, 10);
learn W1 = normal([64, hidden], 0, 0.1); learn b1 = zeros([hidden]);
learn W2 = normal([hidden, 10], 0, 0.1); learn b2 = zeros([10]);
optimize(W1, b1, W2, b2) with adam(lr = 0.01) max 5 {
    let loss = mean((matmul(tanh(matmul(X, W1) + b1), W2) + b2 - Y) ^ 2);
    minimize loss;
}
"""


def one_hidden_layer(reps: int) -> float:
    """Seconds per resize of a 64-H-10 network (W1 [64, H], b1, W2 [H, 10], b2), in a native loop."""
    s = noma.Session()
    run(s, SMALL)
    s.measure_output_change = False
    loop = f"for i in 0..{reps} {{ realloc hidden = 1024; realloc hidden = 16; }}"
    run(s, loop)
    return min(run(s, loop).run_seconds for _ in range(5)) / (2 * reps)


if __name__ == "__main__":
    raise SystemExit(main())
