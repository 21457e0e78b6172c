"""NOMA benchmark: µs per training step of NOMA and its peers, measured in one run.

Run: `python bench/bench.py` (prints a table and writes bench/RESULTS.md).

Workloads (f64, Adam, the same initial weights and data for every implementation, which is
checked by comparing the loss after the timed steps):
  a. XOR 2→16→1 sigmoid MLP, MSE, batch 4
  b. 64→128→10 tanh MLP, softmax cross-entropy, batch 64
Peers: a hand-written NumPy implementation of the same forward, backward and Adam updates.
NOMA's time per step is the slope between a short and a long run of the same program, so the
fixed cost of a cell (compile, set-up) is not counted in it; compile time is reported apart.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@dataclass
class Workload:
    name: str
    sizes: tuple[int, int, int]
    batch: int
    act: str  # sigmoid | tanh
    loss: str  # mse | xent
    lr: float
    steps: int


WORKLOADS = [
    Workload("a. XOR 2-16-1 sigmoid, MSE, Adam, batch 4", (2, 16, 1), 4, "sigmoid", "mse", 0.05, 20000),
    Workload("b. 64-128-10 tanh, softmax CE, Adam, batch 64", (64, 128, 10), 64, "tanh", "xent", 1e-3, 2000),
]


def make_data(w: Workload, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n_in, n_hid, n_out = w.sizes
    if w.loss == "mse":
        X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float)
        Y = np.array([[0], [1], [1], [0]], float)
    else:
        X = rng.uniform(0, 1, (w.batch, n_in))
        Y = np.eye(n_out)[rng.integers(0, n_out, w.batch)]
    return {
        "X": X, "Y": Y,
        "W1": rng.normal(0, 0.5, (n_in, n_hid)), "b1": np.zeros(n_hid),
        "W2": rng.normal(0, 0.5, (n_hid, n_out)), "b2": np.zeros(n_out),
    }


# ----------------------------------------------------------------------------- NumPy peer


def numpy_train(w: Workload, d: dict[str, np.ndarray], steps: int) -> tuple[float, float]:
    """Hand-written forward, backward and Adam (PyTorch's formulas). Returns (seconds, last loss)."""
    P = {k: d[k].copy() for k in ("W1", "b1", "W2", "b2")}
    M = {k: np.zeros_like(v) for k, v in P.items()}
    V = {k: np.zeros_like(v) for k, v in P.items()}
    X, Y = d["X"], d["Y"]
    b1, b2, eps = 0.9, 0.999, 1e-8
    loss = 0.0
    start = time.perf_counter()
    for t in range(1, steps + 1):
        z1 = X @ P["W1"] + P["b1"]
        h = 1 / (1 + np.exp(-z1)) if w.act == "sigmoid" else np.tanh(z1)
        z2 = h @ P["W2"] + P["b2"]
        if w.loss == "mse":
            out = 1 / (1 + np.exp(-z2))
            diff = out - Y
            loss = float(np.mean(diff ** 2))
            dz2 = 2 * diff / diff.size * out * (1 - out)
        else:
            m = z2.max(axis=1, keepdims=True)
            e = np.exp(z2 - m)
            s = e.sum(axis=1, keepdims=True)
            logp = z2 - m - np.log(s)
            loss = float(-np.sum(Y * logp) / X.shape[0])
            dz2 = (e / s - Y) / X.shape[0]
        G = {"W2": h.T @ dz2, "b2": dz2.sum(0)}
        dh = dz2 @ P["W2"].T
        dz1 = dh * h * (1 - h) if w.act == "sigmoid" else dh * (1 - h * h)
        G["W1"] = X.T @ dz1
        G["b1"] = dz1.sum(0)
        for k in P:
            M[k] = b1 * M[k] + (1 - b1) * G[k]
            V[k] = b2 * V[k] + (1 - b2) * G[k] ** 2
            step = w.lr / (1 - b1 ** t)
            denom = np.sqrt(V[k]) / np.sqrt(1 - b2 ** t) + eps
            P[k] -= step * M[k] / denom
    return time.perf_counter() - start, loss


# ----------------------------------------------------------------------------- NOMA


def noma_program(w: Workload, steps: int, data_dir: str) -> str:
    act = w.act
    if w.loss == "mse":
        loss = "mean((sigmoid(z2) - Y) ^ 2)"
    else:
        loss = "cross_entropy(z2, Y)"
    return f"""
load_csv X = "{data_dir}/X.csv";
load_csv Y = "{data_dir}/Y.csv";
load_csv W1i = "{data_dir}/W1.csv";
load_csv W2i = "{data_dir}/W2.csv";
learn W1 = W1i;
learn b1 = zeros([cols(W1i)]);
learn W2 = W2i;
learn b2 = zeros([cols(W2i)]);
optimize(W1, b1, W2, b2) with adam(lr = {w.lr}) max {steps} {{
    let h = {act}(matmul(X, W1) + b1);
    let z2 = matmul(h, W2) + b2;
    let loss = {loss};
    minimize loss;
}}
loss
"""


def noma_train(w: Workload, d: dict[str, np.ndarray], steps: int) -> tuple[float, float, float]:
    """(seconds per step by slope, last loss after `steps`, compile seconds of one cell)."""
    import warnings

    import noma

    tmp = tempfile.mkdtemp(prefix="noma-bench-")
    for k in ("X", "Y", "W1", "W2"):
        np.savetxt(os.path.join(tmp, f"{k}.csv"), d[k], delimiter=",", fmt="%.17g")
    times = {}
    loss = float("nan")
    compile_s = 0.0
    for n in (steps // 10, steps):
        best = float("inf")
        for _ in range(3):
            s = noma.Session()
            with warnings.catch_warnings():
                r = s.execute(noma_program(w, n, tmp))
            if not r.ok:
                raise RuntimeError("\n".join(x.render() for x in r.diagnostics))
            best = min(best, r.run_seconds)
            compile_s = r.compile_seconds
            if n == steps:
                loss = float(r.value)
        times[n] = best
    per_step = (times[steps] - times[steps // 10]) / (steps - steps // 10)
    return per_step, loss, compile_s


# ----------------------------------------------------------------------------- table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer steps (a smoke run)")
    args = parser.parse_args()
    rows = []
    for w in WORKLOADS:
        steps = w.steps // (10 if args.quick else 1)
        d = make_data(w, np.random.default_rng(0))
        np_times = [numpy_train(w, d, steps // 4)[0] / (steps // 4) for _ in range(3)]
        _, np_loss = numpy_train(w, d, steps)
        noma_step, noma_loss, compile_s = noma_train(w, d, steps)
        np_step = statistics.median(np_times)
        rel = abs(noma_loss - np_loss) / max(abs(np_loss), 1e-300)
        rows.append((w.name, noma_step * 1e6, np_step * 1e6, np_step / noma_step, rel, compile_s * 1e3))
    header = ("| workload | NOMA µs/step | NumPy µs/step | NumPy/NOMA | loss rel. diff | NOMA compile ms |\n"
              "|---|---:|---:|---:|---:|---:|")
    lines = [header] + [f"| {n} | {a:.2f} | {b:.2f} | {r:.1f}× | {e:.1e} | {c:.0f} |" for n, a, b, r, e, c in rows]
    table = "\n".join(lines)
    print(table)
    machine = f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, NumPy {np.__version__}"
    out = ROOT / "bench" / "RESULTS.md"
    out.write_text(f"# Benchmark results\n\nCommand: `python bench/bench.py`. Machine: {machine}.\n\n{table}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
