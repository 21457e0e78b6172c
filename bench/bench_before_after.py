"""NOMA's step times at two versions of the code, side by side in one run: did a change (a refactor
of the lowering, say) leave the generated code as fast as before?

Run: `python bench/bench_before_after.py --before REV [--after DIR] [--rounds 7] [--write]`.
REV is a git revision (checked out into a temporary worktree) or a directory holding another
checkout; `--after` defaults to this checkout. Every round runs each workload once per version,
alternating which goes first, each in a fresh process (`PYTHONPATH` = that version, single-threaded,
pinned to one CPU), so both versions see the same machine state; the table shows medians of the
training loop's µs per step (compilation excluded, as in bench.py) and the after/before ratio.
The workloads are bench.py's NOMA ones (wl.py), built by this checkout's bench code for both
versions; the final losses must agree exactly (the same program compiled by both versions).
`--write` replaces this script's section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SECTION = "## Step times before and after a change (bench_before_after.py)"
KEEP_MARK = "<!-- kept by bench.py -->"

#: key -> (title, python expression building the workload from wl, X, Y, tmp, and its step count)
WORKLOADS = {
    "W0": ("W0 XOR 2-16-1 (static), batch 4, f64, 100000 steps", "wl.make_w0(100000)", 100000),
    "W1": ("W1 growing XOR 2-2-1 → 2-16-1, f64", "wl.make_w1()", 0),
    "W2m": ("W2 digits 64-128-10, minibatch 64, f64, 2000 steps",
            "wl.make_mlp('W2m', 'digits', (64, 128, 10), 64, 1792, 2000, 'f64', X, Y, tmp)", 2000),
    "W2f": ("W2 digits 64-128-10, full batch 1797, f64, 40 steps",
            "wl.make_mlp('W2f', 'digits', (64, 128, 10), 1797, 1797, 40, 'f64', X, Y, tmp)", 40),
    "W3": ("W3 digits 64-H-10 growing 16 → 128, minibatch 64, f64, 8 epochs",
           "wl.make_w3('f64', X, Y, tmp, epochs=1)", -1),
}

_CHILD = r"""
import json, os, sys, tempfile
sys.path.insert(0, {bench!r})
import wl, peer_noma
X, Y = wl.load_digits()
tmp = tempfile.mkdtemp(prefix="noma-ba-")
wl.write_csv_data(X, Y, tmp)
w = {expr}
steps = {steps}
if steps < 0:
    steps = w.steps
if isinstance(w, wl.GrowMlp):
    sec, loss, n = peer_noma.grow_mlp(w)
elif isinstance(w, wl.XorGrow):
    sec, loss, n = peer_noma.xor_grow(w)
else:
    sec, loss, n = peer_noma.mlp(w, steps)
import noma
print(json.dumps({{"us": sec / n * 1e6, "loss": loss, "steps": n, "noma": noma.__file__}}))
"""


def _checkout(rev: str, keep: list[str]) -> Path:
    """A directory holding version `rev`: itself when it is a directory, else a temporary worktree."""
    if Path(rev).is_dir():
        return Path(rev).resolve()
    where = Path(tempfile.mkdtemp(prefix="noma-before-")) / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(where), rev], check=True)
    keep.append(str(where))
    return where


def _run(tree: Path, key: str) -> dict:
    title, expr, steps = WORKLOADS[key]
    env = dict(os.environ, PYTHONPATH=str(tree))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NOMA_THREADS"):
        env[var] = "1"
    cmd = [sys.executable, "-c", _CHILD.format(bench=str(BENCH), expr=expr, steps=steps)]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "1" if (os.cpu_count() or 1) > 1 else "0", *cmd]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200, cwd=str(tree))
    if out.returncode != 0:
        raise RuntimeError(f"{key} at {tree}: {out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if not result["noma"].startswith(str(tree)):
        raise RuntimeError(f"{key}: imported NOMA from {result['noma']}, not from {tree}")
    return result


def _loadavg() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="git revision or directory of the earlier version")
    ap.add_argument("--after", default=str(ROOT), help="directory of the later version (default: this checkout)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--only", default="", help="comma-separated workload keys (W0,W1,W2m,W2f,W3)")
    ap.add_argument("--write", action="store_true", help="replace this script's section of bench/RESULTS.md")
    args = ap.parse_args()
    worktrees: list[str] = []
    try:
        trees = {"before": _checkout(args.before, worktrees), "after": Path(args.after).resolve()}
        keys = [k for k in WORKLOADS if not args.only or k in args.only.split(",")]
        load_before, started = _loadavg(), time.perf_counter()
        samples: dict = {k: {"before": [], "after": []} for k in keys}
        losses: dict = {k: {} for k in keys}
        for which in ("before", "after"):  # warm-up: the runtime library's build, caches
            _run(trees[which], keys[0])
        for r in range(args.rounds):
            for key in keys:
                order = ("before", "after") if r % 2 == 0 else ("after", "before")
                for which in order:
                    res = _run(trees[which], key)
                    samples[key][which].append(res["us"])
                    losses[key][which] = res["loss"]
            print(f"round {r + 1}/{args.rounds} done ({time.perf_counter() - started:.0f} s)", flush=True)
        rows = []
        for key in keys:
            b, a = statistics.median(samples[key]["before"]), statistics.median(samples[key]["after"])
            spread = max(_spread(samples[key]["before"]), _spread(samples[key]["after"]))
            same = losses[key]["before"] == losses[key]["after"]
            rows.append(f"| {WORKLOADS[key][0]} | {b:,.2f} | {a:,.2f} | {a / b:.3f} | ±{spread:.1%} | "
                        f"{'identical' if same else 'DIFFERENT'} |")
        text = (f"{SECTION}\n{KEEP_MARK}\n\n`python bench/bench_before_after.py --before {args.before} "
                f"--rounds {args.rounds}`: before = `{args.before}`, after = this checkout; µs per training step, "
                f"median of {args.rounds} interleaved rounds, each run a fresh single-threaded process pinned to one "
                f"CPU. Load average before / after: {load_before} / {_loadavg()} (shared 2-core machine). "
                "`noise` is the larger half-range of the middle 50% of either version's samples, relative to "
                "its median; `loss` compares the final losses.\n\n"
                "| workload | before µs/step | after µs/step | after/before | noise | loss |\n"
                "|---|---:|---:|---:|---:|---|\n" + "\n".join(rows) + "\n")
        print(text)
        if args.write:
            _write(text)
        return 0
    finally:
        for w in worktrees:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", w], check=False)


def _spread(values: list[float]) -> float:
    """Half the interquartile range relative to the median."""
    if len(values) < 4:
        return (max(values) - min(values)) / 2 / statistics.median(values)
    q = statistics.quantiles(values, n=4)
    return (q[2] - q[0]) / 2 / statistics.median(values)


def _write(text: str) -> None:
    path = BENCH / "RESULTS.md"
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    sections, current = [], []
    for line in old.splitlines(keepends=True):
        if line.startswith("## ") and current:
            sections.append("".join(current))
            current = []
        current.append(line)
    sections.append("".join(current))
    kept = [s for s in sections if not s.startswith(SECTION)]
    path.write_text("".join(kept).rstrip("\n") + "\n\n" + text)


if __name__ == "__main__":
    sys.exit(main())
