"""Extras of the NOMA benchmark (bench/bench.py): compile latency over the notebooks' cells, cold
starts (`noma run`, a `noma build` executable, the Jupyter kernel) and the realloc cost
(bench/bench_realloc.py, run as a subprocess). Each function takes a `log(str)` callable."""

from __future__ import annotations

import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def compile_latency(log) -> dict:
    """Compile latency over the notebooks' cells (see measure_compile_latency), measured in a
    fresh child process, not pinned to the benchmark's CPU: a kernel process holds NOMA, not the
    peers' libraries and thread pools that the benchmark process has loaded by then (in-process,
    or pinned beside them, the median read 10-25% higher)."""
    r = subprocess.run([sys.executable, str(Path(__file__).resolve()), "compile-latency"],
                       capture_output=True, text=True, timeout=600)
    lines = [ln[len("RESULT "):] for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    if r.returncode != 0 or not lines:
        raise RuntimeError(f"compile latency child failed (exit {r.returncode}): {(r.stderr or r.stdout)[-300:]}")
    out = json.loads(lines[-1])
    log(f"  compile latency: {out}")
    return out


def measure_compile_latency() -> dict:
    """Compile time per notebook cell (meta-command lines starting with ':' skipped), executed
    in order in one session per notebook (run from notebooks/, as Jupyter does); then every cell
    of the first notebook re-run unchanged."""
    import nbformat

    import noma

    times, rerun, errors = [], [], 0
    phases: dict[str, float] = {}  # summed over the cells (ms)
    per_cell: list[tuple[float, str]] = []  # (ms, "notebook cell k")
    cwd = os.getcwd()
    try:
        os.chdir(ROOT / "notebooks")
        for nb in sorted(glob.glob("*.ipynb")):
            s = noma.Session()
            cells = []  # (number among the notebook's code cells, source without meta-commands)
            code = [c for c in nbformat.read(nb, as_version=4).cells if c.cell_type == "code"]
            for k, c in enumerate(code, 1):
                src = "\n".join(ln for ln in c.source.splitlines() if not ln.lstrip().startswith(":"))
                if src.strip():
                    cells.append((k, src))
            for k, src in cells:
                r = s.execute(src)
                times.append(r.compile_seconds * 1e3)
                per_cell.append((r.compile_seconds * 1e3, f"{nb} code cell {k}"))
                for phase, secs in r.compile_phases.items():
                    phases[phase] = phases.get(phase, 0.0) + secs * 1e3
                errors += r.status == "error"
            if nb.startswith("01"):
                for _, src in cells:
                    rerun.append(s.execute(src).compile_seconds * 1e3)
    finally:
        os.chdir(cwd)
    times.sort()
    out = {"cells": len(times), "median_ms": statistics.median(times),
           "p90_ms": times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))],
           "max_ms": times[-1], "errors": errors,
           "rerun_median_ms": statistics.median(rerun) if rerun else float("nan"),
           "total_ms": sum(times), "phases_ms": phases,
           "slowest": [f"{name} ({ms:.0f} ms)" for ms, name in sorted(per_cell, reverse=True)[:3]]}
    return out


def cold_start(log, reps: int = 5) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        prog = Path(tmp) / "hello.noma"
        prog.write_text('print("hello");\n')
        cmd = [sys.executable, "-m", "noma", "run", str(prog)]
        subprocess.run(cmd, capture_output=True, check=True)  # warm the runtime build cache
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            subprocess.run(cmd, capture_output=True, check=True)
            ts.append((time.perf_counter() - t0) * 1e3)
        base = []
        for _ in range(reps):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], capture_output=True, check=True)
            base.append((time.perf_counter() - t0) * 1e3)
        exe = Path(tmp) / "hello"
        size = None
        r = subprocess.run([sys.executable, "-m", "noma", "build", str(prog), "-o", str(exe)],
                           capture_output=True, text=True)
        if r.returncode == 0 and exe.exists():
            size = exe.stat().st_size
            t0 = time.perf_counter()
            subprocess.run([str(exe)], capture_output=True, check=True)
            exe_ms = (time.perf_counter() - t0) * 1e3
        else:
            exe_ms = None
    out = {"noma_run_ms": statistics.median(ts), "python_ms": statistics.median(base),
           "exe_bytes": size, "exe_run_ms": exe_ms}
    log(f"  cold start: {out}")
    return out


def realloc_result(log) -> list[str]:
    script = HERE / "bench_realloc.py"
    if not script.exists():
        return ["bench/bench_realloc.py not present: realloc cost not measured"]
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    lines = [ln[len("RESULT "):] for ln in r.stdout.splitlines() if ln.startswith("RESULT")]
    if r.returncode != 0 or not lines:
        return [f"bench_realloc.py failed (exit {r.returncode}): {(r.stderr or r.stdout)[-300:]}"]
    log("  realloc: " + " | ".join(lines))
    return lines


def kernel_cold_start(log, reps: int = 5, timeout: float = 120) -> dict:
    """Wall time from starting a NOMA Jupyter kernel (jupyter_client KernelManager, kernelspec
    "noma" installed for this checkout as tools/run_notebooks.py does for the tests) to the first
    completed execute_reply of a trivial cell; also to kernel_info (ready). One unmeasured start
    first (warm file caches); then the median of `reps` starts."""
    try:
        from jupyter_client import KernelManager
    except ImportError as exc:
        return {"error": f"jupyter_client not importable ({exc})"}
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from run_notebooks import kernel_environment
    finally:
        sys.path.remove(str(ROOT / "tools"))
    kernel_environment()

    def one() -> tuple[float, float]:
        t0 = time.perf_counter()
        km = KernelManager(kernel_name="noma")
        km.start_kernel()
        kc = km.client()
        try:
            kc.start_channels()
            kc.wait_for_ready(timeout=timeout)
            ready = time.perf_counter() - t0
            msg_id = kc.execute("1 + 1")
            while True:
                reply = kc.get_shell_msg(timeout=timeout)
                if reply["parent_header"].get("msg_id") == msg_id:
                    break
            done = time.perf_counter() - t0
            if reply["content"].get("status") != "ok":
                raise RuntimeError(f"trivial cell failed: {reply['content']}")
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
        return ready * 1e3, done * 1e3

    try:
        one()
        runs = [one() for _ in range(reps)]
    except Exception as exc:  # noqa: BLE001
        return {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    out = {"ready_ms": statistics.median(r[0] for r in runs),
           "first_reply_ms": statistics.median(r[1] for r in runs),
           "all_ms": [round(r[1]) for r in runs], "reps": reps}
    log(f"  kernel cold start: {out}")
    return out


if __name__ == "__main__":  # the child process of compile_latency
    if sys.argv[1:] != ["compile-latency"]:
        sys.exit("usage: bench_extras.py compile-latency")
    sys.path.insert(0, str(ROOT))
    if hasattr(os, "sched_setaffinity"):  # not pinned to the benchmark's CPU: a kernel process is not
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    print("RESULT " + json.dumps(measure_compile_latency()), flush=True)
