"""NOMA benchmark: the cost of user-function calls that stay calls in native code (each one is
bracketed by noma_enter / noma_leave, which also keep its span for the `called from` notes).

Run: `PYTHONPATH=TREE python bench/bench_calls.py [--repeat 3]` for each source tree to compare
(e.g. /work/main and a branch). Two cells: a training loop whose step calls a recursive function
20 deep (forward and reverse: 40 calls per step, 200000 steps) and a top-level `for` loop of 30
million calls of a small function. Each cell runs once to compile, then again from the cell cache
(no compilation); the process time of that second run is printed, per repeat.
"""

from __future__ import annotations

import argparse
import time

import noma

PROGRAMS = {
    "train_recursive": """fn pw(x, n) { if n <= 0 { return 1; } return x * pw(x, n - 1); }
learn w = 0.5;
optimize(w) with sgd(lr = 0.001) max 200000 {
    let loss = (pw(w, 20) - 0.1) ^ 2;
    minimize loss;
}""",
    "loop_calls": """fn sq(x) { x * x }
let s = 0;
for i in 0..30000000 { s = s + sq(i * 0.000001); }
s;""",
}


def run_seconds(text: str) -> float:
    """Process time of the cell's native run, replayed from the cell cache."""
    s = noma.Session()
    first = s.execute(text)
    assert first.status == "ok", [d.render() for d in first.diagnostics]
    started = time.process_time()
    again = s.execute(text)
    elapsed = time.process_time() - started
    assert again.cache_hit and again.status == "ok"
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"tree: {noma.__file__.rsplit('/noma/', 1)[0]}")
    for name, text in PROGRAMS.items():
        times = [run_seconds(text) for _ in range(args.repeat)]
        print(f"{name}: " + " ".join(f"{t:.3f}" for t in times) + " s (process time of the native run)")


if __name__ == "__main__":
    main()
