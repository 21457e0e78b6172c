"""NOMA benchmark: µs per training step of NOMA and its peers, measured side by side in one run.

Run: `python bench/bench.py` (about 10 minutes on 2 cores; `--quick` for a short smoke run,
`--only W3,extras` to run some parts). Prints the tables and writes them to bench/RESULTS.md.

Every implementation of a workload gets the same data, the same initial weights (drawn by NOMA's
seeded generator and read back from a session) and performs the same updates (NOMA's Adam, see
bench/wl.py); the final losses are compared (relative difference <= 1e-9 in f64, <= 1e-3 in f32,
where libraries use different single-precision tanh/exp approximations) so the comparison is honest.
Peers: NumPy (hand-written gradients), PyTorch eager (autograd + torch.optim.Adam) and
torch.compile (one compiled functional step), JAX (`jax.jit` of the step; the whole loop in one
jitted `lax.scan`), plain C with hand-written gradients (gcc -O3 -march=native, and with
-ffast-math). Peers that are not installed are skipped with a note. The main tables run single-
threaded (OpenBLAS, OMP, MKL, XLA, torch: 1 thread; process pinned to one CPU) in this one process
(C through ctypes); the two-threaded table comes from a child process started with `--threads 2`
(thread pools set to 2, NOMA's OpenBLAS gemm included through NOMA_THREADS; not pinned to one CPU).

Timing: each implementation runs once untimed (warm-up: JIT/XLA/inductor compilation, caches),
then R rounds interleave all implementations; the table shows medians over the rounds of the
training loop's wall time divided by its steps (compile time is not in it: NOMA's setup cell and
compilation are outside `ExecResult.run_seconds`). Ratio = NOMA time / peer time (< 1: NOMA is
faster).
"""

from __future__ import annotations

import os
import sys


def _threads_arg() -> int:
    for i, a in enumerate(sys.argv):
        if a == "--threads" and i + 1 < len(sys.argv):
            return max(1, int(sys.argv[i + 1]))
        if a.startswith("--threads="):
            return max(1, int(a.split("=", 1)[1]))
    return 1


# Thread pools are sized before NumPy, torch, JAX or NOMA are imported (NOMA sets OpenBLAS, which
# it shares with NumPy, to $NOMA_THREADS threads when it loads).
THREADS = _threads_arg()
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NOMA_THREADS",
             "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = str(THREADS)
os.environ["XLA_FLAGS"] = ("--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" if THREADS == 1
                           else f"--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={THREADS}")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Single-threaded: pin the whole process tree to one CPU, so libraries that start thread pools
# regardless of the settings above (XLA's while-loop runtime does) still compute on one core.
# N threads: restricted to N CPUs only when more are available (so not pinned on a 2-core machine).
PINNED: list[int] | None = None
CPUS = os.cpu_count() or 1
if hasattr(os, "sched_setaffinity"):
    try:
        # a child started by a pinned run (`--threads 2`) gets the CPUs its parent started with
        _env = os.environ.get("NOMA_BENCH_CPUS", "")
        _cpus = sorted(int(c) for c in _env.split(",")) if _env else sorted(os.sched_getaffinity(0))
        os.environ["NOMA_BENCH_CPUS"] = ",".join(map(str, _cpus))
        os.sched_setaffinity(0, set(_cpus))
        CPUS = len(_cpus)
        if THREADS < len(_cpus):
            PINNED = _cpus[-THREADS:]
            os.sched_setaffinity(0, set(PINNED))
    except OSError:
        PINNED = None

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

import bench_extras  # noqa: E402
import bench_report  # noqa: E402
import peer_c  # noqa: E402
import peer_noma  # noqa: E402
import peer_numpy  # noqa: E402
import wl  # noqa: E402

NOTES: list[str] = []

try:
    import peer_torch  # noqa: E402
    import torch  # noqa: E402
except Exception as exc:  # noqa: BLE001
    peer_torch = None
    NOTES.append(f"PyTorch skipped: not importable ({type(exc).__name__}: {exc}). "
                 "Install the CPU build: `pip install torch==2.13.0`.")
try:
    import peer_jax  # noqa: E402
    import jax  # noqa: E402
except Exception as exc:  # noqa: BLE001
    peer_jax = None
    NOTES.append(f"JAX skipped: not importable ({type(exc).__name__}: {exc}). Install: `pip install jax jaxlib`.")
if peer_c.compiler() is None:
    NOTES.append("plain C skipped: no C compiler (gcc) found.")

NOMA = bench_report.NOMA


def peers_for(w) -> dict:
    """name -> callable(steps) -> (seconds, loss, steps) for workload w."""
    out: dict = {}
    if isinstance(w, wl.GrowMlp):
        out[NOMA] = lambda n: peer_noma.grow_mlp(w)
        out["NumPy"] = lambda n: peer_numpy.grow_mlp(w)
        if peer_torch:
            out["PyTorch eager"] = lambda n: peer_torch.grow_mlp_eager(w)
            out["torch.compile"] = lambda n: peer_torch.grow_mlp_compiled(w)
        if peer_jax:
            out["JAX jit"] = lambda n: peer_jax.grow_mlp_jit(w)
            out["JAX lax.scan"] = lambda n: peer_jax.grow_mlp_scan(w)
        if peer_c.compiler():
            out["C -O3"] = lambda n: peer_c.grow_mlp(w, "O3")
            out["C -O3 -ffast-math"] = lambda n: peer_c.grow_mlp(w, "fastmath")
        return out
    if isinstance(w, wl.XorGrow):
        out[NOMA] = lambda n: peer_noma.xor_grow(w)
        out["NumPy"] = lambda n: peer_numpy.xor_grow(w)
        if peer_torch:
            out["PyTorch eager"] = lambda n: peer_torch.xor_grow_eager(w)
            out["torch.compile"] = lambda n: peer_torch.xor_grow_compiled(w)
        if peer_jax:
            out["JAX jit"] = lambda n: peer_jax.xor_grow_jit(w)
            out["JAX lax.scan"] = lambda n: peer_jax.xor_grow_scan(w)
        if peer_c.compiler():
            out["C -O3"] = lambda n: peer_c.xor_grow(w, "O3")
            out["C -O3 -ffast-math"] = lambda n: peer_c.xor_grow(w, "fastmath")
        return out
    out[NOMA] = lambda n: peer_noma.mlp(w, n)
    out["NumPy"] = lambda n: peer_numpy.mlp(w, n)
    if peer_torch:
        out["PyTorch eager"] = lambda n: peer_torch.mlp_eager(w, n)
        out["torch.compile"] = lambda n: peer_torch.mlp_compiled(w, n)
    if peer_jax:
        out["JAX jit"] = lambda n: peer_jax.mlp_jit(w, n)
        out["JAX lax.scan"] = lambda n: peer_jax.mlp_scan(w, n)
    if peer_c.compiler():
        if w.key == "W4":
            from noma.rt import native_lib

            blas = native_lib.blas_info()
            if blas:
                fn = blas["sgemm"] if w.dtype == "f32" else blas["dgemm"]
                out["C -O3 + OpenBLAS"] = lambda n: peer_c.mlp(w, n, "O3", gemm=fn)
            else:
                NOTES.append("W4: C + OpenBLAS skipped (NumPy's OpenBLAS not found).")
        else:
            out["C -O3"] = lambda n: peer_c.mlp(w, n, "O3")
            out["C -O3 -ffast-math"] = lambda n: peer_c.mlp(w, n, "fastmath")
    return out


def measure(w, steps: int, rounds: int, log) -> dict:
    """Per implementation: median µs/step, all samples, loss, steps, warm-up seconds."""
    impls = peers_for(w)
    res: dict = {}
    for name, fn in impls.items():
        t0 = time.perf_counter()
        try:
            _, loss, n = fn(steps)
        except Exception as exc:  # noqa: BLE001
            NOTES.append(f"{w.key} {w.dtype}: {name} failed: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        res[name] = {"loss": loss, "steps": n, "samples": [], "warmup_s": time.perf_counter() - t0}
    for _ in range(rounds):
        for name in list(res):
            if THREADS > 1:
                # let the previous implementation's idle thread pools stop spinning (OpenBLAS workers
                # busy-wait about 0.1 s after their last call, OpenMP and Eigen workers a while too)
                time.sleep(0.2)
            c0, w0 = time.process_time(), time.perf_counter()
            sec, loss, n = impls[name](steps)
            res[name].setdefault("cpu", []).append((time.process_time() - c0) / (time.perf_counter() - w0))
            res[name]["samples"].append(sec / n * 1e6)
            res[name]["loss"], res[name]["steps"] = loss, n
    for name, r in res.items():
        r["us"] = statistics.median(r["samples"])
        r["cpu_ratio"] = statistics.median(r["cpu"])
    log(f"  {w.key} {getattr(w, 'dtype', 'f64')}: " + ", ".join(f"{k} {v['us']:.2f}" for k, v in res.items()))
    return res


def check_losses(w, res: dict) -> tuple[float, bool]:
    ref = res[NOMA]["loss"]
    tol = 1e-9 if w.dtype == "f64" else 1e-3
    worst = 0.0
    for name, r in res.items():
        rel = abs(r["loss"] - ref) / max(abs(ref), 1e-300)
        r["rel"] = rel
        worst = max(worst, rel)
        if r["steps"] != res[NOMA]["steps"]:
            NOTES.append(f"{w.key} {w.dtype}: {name} ran {r['steps']} steps, NOMA {res[NOMA]['steps']}")
            r["rel"] = float("inf")
            worst = float("inf")
    return worst, worst <= tol


# ----------------------------------------------------------------------------- two threads


def _loadavg() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "n/a"


TWO_THREAD_KEYS = "W2m-f64,W2f-f64,W4"


def two_threaded(args, log) -> dict:
    """Runs `bench.py --threads 2` on the two-thread workloads in a child process (thread pools are
    fixed when the libraries load); its results as written to --json."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "two.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--threads", "2", "--only", TWO_THREAD_KEYS,
               "--no-write", "--json", str(out)] + (["--quick"] if args.quick else [])
        log("two-threaded: " + " ".join(cmd[1:]))
        env = dict(os.environ)
        r = subprocess.run(cmd, env=env)
        if r.returncode != 0 or not out.exists():
            return {"error": f"child exited with {r.returncode}"}
        return json.loads(out.read_text())


# ----------------------------------------------------------------------------- main



KEEP_MARK = "<!-- kept by bench.py -->"


def kept_sections(path: Path) -> str:
    """The sections of RESULTS.md that other scripts wrote (a `## ` section holding KEEP_MARK,
    e.g. bench_session_memory.py's), kept when this script rewrites the file."""
    if not path.exists():
        return ""
    sections, current = [], []
    for line in path.read_text().splitlines(keepends=True):
        if line.startswith("## ") and current:
            sections.append("".join(current))
            current = []
        current.append(line)
    sections.append("".join(current))
    kept = [sec for sec in sections if sec.startswith("## ") and KEEP_MARK in sec]
    return "".join("\n" + sec.rstrip("\n") + "\n" for sec in kept)

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short run (fewer steps and rounds)")
    ap.add_argument("--only", default="", help="comma-separated parts: W0,W1,W2m,W2f,W3,W4,extras,2t; "
                    "a key with a precision (W2m-f64, W3-f32) runs that precision only")
    ap.add_argument("--threads", type=int, default=1, help="thread pool size (1: the main tables; "
                    "2 is run by the main run in a child process)")
    ap.add_argument("--json", default="", help="also write the raw results to this file")
    ap.add_argument("--no-write", action="store_true", help="do not write bench/RESULTS.md")
    args = ap.parse_args()
    quick = args.quick
    only = set(filter(None, args.only.split(",")))
    started = time.perf_counter()
    load_before = _loadavg()

    def log(msg: str) -> None:
        tag = f" {THREADS}T" if THREADS > 1 else ""
        print(f"[{time.perf_counter() - started:6.1f}s{tag}] {msg}", flush=True)

    def want(key: str, dt: str | None = None) -> bool:
        return not only or key in only or (dt is not None and f"{key}-{dt}" in only)

    tmp = tempfile.mkdtemp(prefix="noma-bench-")
    X, Y = wl.load_digits()
    wl.write_csv_data(X, Y, tmp)
    res: dict = {}
    titles: list[tuple] = []

    def run(key, w, steps, rounds, title):
        log(f"{title} ({steps} steps, {rounds} rounds)")
        r = measure(w, steps, rounds, log)
        if NOMA not in r:
            NOTES.append(f"{title}: NOMA failed, workload not reported")
            return
        worst, ok = check_losses(w, r)
        if not ok:
            NOTES.append(f"{title}: losses differ (worst relative difference {worst:.1e})")
        res[key] = r
        titles.append((key, title))

    if want("W0"):
        n = 400 if quick else 2000
        w = wl.make_w0(n)
        run("W0", w, n, 3 if quick else 15, f"W0 XOR 2-16-1 (static), batch 4, f64, {n} steps")
    if want("W1"):
        w = wl.make_w1()
        run("W1", w, 0, 5 if quick else 41, "W1 growing XOR 2-2-1 → 2-16-1, f64")
    for dt in ("f64", "f32"):
        if want("W2m", dt):
            n = 200 if quick else 2000
            w = wl.make_mlp("W2m", "digits", (64, 128, 10), 64, 1792, n, dt, X, Y, tmp)
            run(f"W2m-{dt}", w, n, 3 if quick else 9, f"W2 digits 64-128-10, minibatch 64, {dt}")
        if want("W2f", dt):
            n = 10 if quick else 60
            w = wl.make_mlp("W2f", "digits", (64, 128, 10), 1797, 1797, n, dt, X, Y, tmp)
            run(f"W2f-{dt}", w, n, 3 if quick else 5, f"W2 digits 64-128-10, full batch 1797, {dt}")
    for dt in ("f64", "f32"):
        if want("W3", dt):
            w = wl.make_w3(dt, X, Y, tmp, epochs=2 if quick else 20)
            title = (f"W3 digits 64-H-10, H 16 → 128 (+16 every {w.epochs} epochs), minibatch 64, {dt}; "
                     f"{len(w.sizes) * w.epochs} epochs = {w.steps} steps")
            run(f"W3-{dt}", w, w.steps, 3 if quick else 5, title)
            note = bench_report.compile_counted_note(f"W3-{dt}", f"W3 {dt}", res.get(f"W3-{dt}"))
            if note:
                NOTES.append(note)
    if want("W4", "f32"):
        n = 2 if quick else 12
        w = wl.make_w4(n, tmp, rows=512 if quick else 1024, width=512 if quick else 1024)
        run("W4", w, n, 2 if quick else 5, f"W4 {w.sizes[0]}-{w.sizes[1]}-{w.sizes[2]}-10, batch 256, f32")

    if args.json:
        Path(args.json).write_text(json.dumps({"res": res, "titles": titles, "notes": NOTES, "threads": THREADS,
                                               "pinned": PINNED, "cpus": CPUS,
                                               "load": [load_before, _loadavg()]}))
    two: dict = {}
    if THREADS == 1 and want("2t"):
        two = two_threaded(args, log)

    extras: dict = {}
    if want("extras"):
        log("compile latency over the notebooks' cells")
        extras["compile"] = bench_extras.compile_latency(log)
        log("cold start")
        extras["cold"] = bench_extras.cold_start(log)
        log("Jupyter kernel cold start")
        extras["kernel"] = bench_extras.kernel_cold_start(log)
        log("realloc (bench/bench_realloc.py)")
        extras["realloc"] = bench_extras.realloc_result(log)

    # ------------------------------------------------------------------ targets
    T = bench_report.Targets(res)
    T.add("Part A: W0 XOR 2-16-1 ≥ 50× faster than NumPy", "W0", "NumPy", None, 50)
    T.add("Part A: W2 64-128-10 f64 minibatch ≥ 2.5× faster than NumPy", "W2m-f64", "NumPy", None, 2.5)
    T.add("W1 ≤ 1.1× C -O3", "W1", "C -O3", 1.1, why_key="W1-C")
    T.add("W1 ≥ 100× faster than PyTorch eager", "W1", "PyTorch eager", None, 100)
    for dt in ("f64", "f32"):
        T.mlp_targets(f"W2 minibatch {dt}", f"W2m-{dt}")
    for dt in ("f64", "f32"):
        T.mlp_targets(f"W3 growing 16 → 128 {dt}", f"W3-{dt}")
    T.add("W4 ≤ 1.1× C + OpenBLAS", "W4", "C -O3 + OpenBLAS", 1.1)
    res2 = two.get("res", {})
    T2 = bench_report.Targets(res2, T.lines)
    if two and "error" not in two:
        T2.mlp_targets("two-threaded: W2 minibatch f64", "W2m-f64")
        T2.add("two-threaded: W4 ≤ 1.1× C + OpenBLAS", "W4", "C -O3 + OpenBLAS", 1.1)
    elif two:
        T.lines.append(f"- two-threaded runs: failed ({two['error']})")
    else:
        T.lines.append("- two-threaded runs: not run (`--only` without `2t`)")
    targets = T.lines + bench_report.extras_targets(extras)
    if want("extras") and "kernel" in extras and "error" not in extras["kernel"]:
        k = extras["kernel"]
        targets.append(f"- kernel cold start (start to first execute_reply of a trivial cell): "
                       f"{k['first_reply_ms']:.0f} ms (no target set; reported)")

    # ------------------------------------------------------------------ output
    try:
        cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "")
    except OSError:
        cpu = platform.processor()
    versions = [f"Python {platform.python_version()}", f"NumPy {np.__version__}"]
    if peer_torch:
        versions.append(f"PyTorch {torch.__version__}")
    if peer_jax:
        versions.append(f"JAX {jax.__version__}")
    cc = peer_c.compiler()
    if cc:
        ver = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout.splitlines()
        versions.append(ver[0] if ver else cc)
    cmd = "python bench/bench.py" + (" --quick" if quick else "") + (f" --only {args.only}" if only else "")
    lines = [
        "# Benchmark results",
        "",
        f"Command: `{cmd}` ({time.perf_counter() - started:.0f} s). Machine: {cpu}, {os.cpu_count()} cores, "
        f"{platform.system()} {platform.machine()}; {', '.join(versions)}. Single-threaded "
        f"(thread pools set to 1{f'; process pinned to CPU {PINNED[0]}' if PINNED else ''}) except "
        f"the two-threaded table. Load average (1 min) before / after the run: {load_before} / {_loadavg()} "
        "(the machine is shared).",
        "",
        "µs per training step, median of interleaved rounds (after one warm-up run each); "
        "NOMA/peer < 1 means NOMA is faster. Same data, initial weights and updates everywhere; "
        "`rel. diff` is the final loss's relative difference to NOMA's; `cpu/wall` is the process CPU "
        "time over wall time of a run (1.00: one busy thread); `warm-up s` is the first, untimed run "
        "(compilation included).",
        "",
        *bench_report.table(titles, res),
    ]
    if res2:
        pin = two.get("pinned")
        lines += [
            "",
            "## Two-threaded",
            "",
            f"Same workloads in a child process (`python bench/bench.py --threads 2 --only {TWO_THREAD_KEYS}`): "
            "OMP/OpenBLAS/MKL threads 2, NOMA_THREADS=2 (NOMA's gemm goes through the same OpenBLAS), "
            "torch.set_num_threads(2), XLA with multi-threaded Eigen and 2 intra-op threads; "
            + (f"process restricted to CPUs {pin}." if pin else f"process not pinned (all {two.get('cpus')} CPUs).")
            + f" Load average (1 min) before / after: {' / '.join(map(str, two.get('load', [])))}."
            + " Only the matrix products use the second thread in NOMA and NumPy (their elementwise "
            "work is single-threaded), the plain C loops are single-threaded by construction (no "
            "OpenMP; `C -O3 + OpenBLAS` uses 2 threads in its gemm), so `cpu/wall` shows how much "
            "each implementation actually ran in parallel. The machine's 2 cores are shared, so these "
            "figures are noisier than the single-threaded ones.",
            "",
            *bench_report.table([tuple(t) for t in two.get("titles", [])], res2),
        ]
    lines += ["", "## Targets (issue 7)", "", *targets]
    if extras:
        lines += bench_report.extras_section(extras)
    notes = NOTES + [f"two-threaded: {n}" for n in two.get("notes", []) if not n.startswith(("PyTorch skipped",
                                                                                             "JAX skipped"))]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    text = "\n".join(lines) + "\n" + kept_sections(HERE / "RESULTS.md")
    if THREADS == 1:
        print()
        print(text)
    if not args.no_write:
        (HERE / "RESULTS.md").write_text(text)
        log("wrote bench/RESULTS.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
