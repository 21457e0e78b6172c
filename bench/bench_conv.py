"""NOMA benchmark: training step time of a digits-sized CNN against PyTorch eager, in the same run.

Run: `OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python bench/bench_conv.py [--steps N]` (the last
line is the result line for bench/RESULTS.md).

Network (both sides, f64, one thread): x [batch 100, 1, 8, 8] -> conv 3x3 (16 filters, padding 1)
-> relu -> max pool 2 -> conv 3x3 16 -> 16 (padding 1) -> relu -> max pool 2 -> [100, 64] -> dense
64 -> 10 -> cross-entropy; Adam (lr 0.001); random data of the digits' sizes (the numbers do not
depend on it). NOMA: one `optimize` loop of N steps minus one of 10 steps (the same cell text but
the count, so compilation cancels out), divided by N - 10. PyTorch: eager steps (zero_grad,
forward, backward, Adam step), median of 5 runs of N steps after a warm-up; also in f32.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import noma  # noqa: E402

SETUP = """
seed(0);
let X = rand_normal_tensor(0, 1, 100, 1, 8, 8);
let Y = floor(rand_tensor(100) * 10);
learn K1 = normal([16, 1, 3, 3], 0, 0.3);
learn c1 = zeros([16]);
learn K2 = normal([16, 16, 3, 3], 0, 0.1);
learn c2 = zeros([16]);
learn V = xavier([64, 10]);
learn d = zeros([10]);
"""
TRAIN = """
optimize(K1, c1, K2, c2, V, d) with adam(lr = 0.001) max STEPS {
    let h1 = max_pool2d(relu(conv2d(X, K1, 1, 1) + reshape(c1, [1, 16, 1, 1])), 2, 2);
    let h2 = max_pool2d(relu(conv2d(h1, K2, 1, 1) + reshape(c2, [1, 16, 1, 1])), 2, 2);
    let loss = cross_entropy(matmul(reshape(h2, [100, 64]), V) + d, Y);
    minimize loss;
}
"""


def noma_step_ms(steps: int) -> float:
    session = noma.Session()
    assert session.execute(SETUP).ok

    def run(n: int) -> float:
        t0 = time.perf_counter()
        result = session.execute(TRAIN.replace("STEPS", str(n)))
        elapsed = time.perf_counter() - t0
        assert result.errors == [], [d.render() for d in result.errors]
        return elapsed

    run(10)  # compile once (the runtime and the first loop)
    short = min(run(10) for _ in range(3))
    long = min(run(steps) for _ in range(3))
    return 1000 * (long - short) / (steps - 10)


def torch_step_ms(steps: int, dtype: str) -> float:
    import torch

    torch.set_num_threads(1)
    F = torch.nn.functional
    dt = getattr(torch, dtype)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100, 1, 8, 8, generator=g, dtype=dt)
    y = torch.randint(0, 10, (100,), generator=g)
    params = [torch.randn(16, 1, 3, 3, generator=g, dtype=dt) * 0.3, torch.zeros(16, dtype=dt),
              torch.randn(16, 16, 3, 3, generator=g, dtype=dt) * 0.1, torch.zeros(16, dtype=dt),
              torch.randn(64, 10, generator=g, dtype=dt) * 0.3, torch.zeros(10, dtype=dt)]
    for p in params:
        p.requires_grad_()
    k1, c1, k2, c2, v, d = params
    opt = torch.optim.Adam(params, lr=0.001)

    def step() -> None:
        opt.zero_grad()
        h1 = F.max_pool2d(F.relu(F.conv2d(x, k1, padding=1) + c1.view(1, -1, 1, 1)), 2, 2)
        h2 = F.max_pool2d(F.relu(F.conv2d(h1, k2, padding=1) + c2.view(1, -1, 1, 1)), 2, 2)
        F.cross_entropy(h2.reshape(100, 64) @ v + d, y).backward()
        opt.step()

    for _ in range(20):
        step()
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        times.append((time.perf_counter() - t0) / steps)
    return 1000 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=210)
    args = ap.parse_args()
    nm = noma_step_ms(args.steps)
    print(f"NOMA (native loop, f64): {nm:.3f} ms/step")
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: no comparison")
        return
    t64 = torch_step_ms(args.steps, "float64")
    t32 = torch_step_ms(args.steps, "float32")
    print(f"PyTorch {torch.__version__} eager f64: {t64:.3f} ms/step, f32: {t32:.3f} ms/step")
    print(f"| digits CNN (batch 100, 1-16-16 conv 3x3, Adam) step | NOMA {nm:.2f} ms | PyTorch eager f64 "
          f"{t64:.2f} ms ({t64 / nm:.2f}x NOMA) | f32 {t32:.2f} ms |")


if __name__ == "__main__":
    main()
