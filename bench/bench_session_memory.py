"""NOMA benchmark: memory of a long training run in each front end (issue 15).

Run: `nice python bench/bench_session_memory.py [--steps 100000000] [--chunk 1000000]`
(prints one table row per front end; the last line says whether every front end met the target).

For `noma run`, the REPL (piped stdin), the kernel (a real kernel through jupyter_client) and a
`noma build` executable, on a tiny net (2-2-1, tanh, batch 4, SGD): the resident set size (RSS)
after 10^4 training steps and after `--steps` steps in the same process, and their difference
(target: at most 64 MB each).
- REPL and kernel: one cell of 10^4 steps, then cells of `--chunk` steps (the same text, so the
  cell cache replays it; each cell still takes an undo snapshot) until `--steps`; RSS is read from
  /proc/PID/status (VmRSS) after a cell's output arrived, with the process idle; the kernel's
  figure is the kernel process plus its children (the painter process that draws the frames).
- `noma run` and the executable: one program that trains 10^4 steps, prints a marker (RSS read
  then, while it goes on training), trains the rest and exits; "after" is the process's peak RSS
  (VmHWM, polled until it exits), an upper bound of its RSS at the end.
Before issue 15 the loss log grew by 8 bytes per step in a doubling buffer (~30 B/step, 610 MB
after 3·10^7 steps in `noma run`), and each REPL/kernel cell's undo snapshot copied it whole.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from queue import Empty, Queue

ROOT = Path(__file__).resolve().parent.parent
TARGET_MB = 64.0
FIRST = 10_000

DECLS = """seed(1);
let X = tensor [[0, 0], [0, 1], [1, 0], [1, 1]];
let Y = tensor [[0], [1], [1], [0]];
learn W1 = normal([2, 2], 0, 1);
learn b1 = zeros([2]);
learn W2 = normal([2, 1], 0, 1);
"""


def train(steps: int) -> str:
    """One training loop of `steps` steps (the loss never reaches 0: `until` never stops it)."""
    return (f"optimize(W1, b1, W2) with sgd(lr = 0.01) until loss < 0 max {steps} {{\n"
            "    let loss = mean((matmul(tanh(matmul(X, W1) + b1), W2) - Y) ^ 2) + 0.001;\n"
            "    minimize loss;\n}\n")


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), e.get("PYTHONPATH")]))
    e.setdefault("NOMA_HISTORY_FILE", os.devnull)
    return e


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no {key} for {pid}")


def tree_rss_mb(pid: int) -> float:
    """VmRSS of a process plus its descendants (the kernel's painter process draws its frames)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            total += rss_mb(p)
        except (OSError, RuntimeError):
            continue
        todo.extend(children.get(p, []))
    return total


class Lines:
    """A process's stdout lines, read by a thread, waited for by content."""

    def __init__(self, stream):
        self.queue: Queue = Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            self.queue.put(line)
        self.queue.put(None)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.queue.get(timeout=max(0.1, deadline - time.monotonic()))
            except Empty:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no {text!r} within {timeout} s") from None
                continue
            if line is None:
                raise RuntimeError(f"the process ended before {text!r}")
            if text in line:
                return


def one_process(argv: list[str], timeout: float) -> tuple[float, float]:
    """(RSS at the marker after FIRST steps, peak RSS) of a program that prints MARK1 then trains on.
    The peak is VmHWM polled until the process ends (ru_maxrss would count the forked parent's
    pages from before exec)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env())
    lines = Lines(proc.stdout)
    peak = [0.0]

    def poll() -> None:
        while proc.poll() is None:
            try:
                peak[0] = max(peak[0], rss_mb(proc.pid, "VmHWM"))
            except (OSError, RuntimeError, ValueError):
                return
            time.sleep(0.05)

    lines.wait_for("MARK1", timeout)
    early = rss_mb(proc.pid)
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    lines.wait_for("MARK2", timeout)
    try:
        peak[0] = max(peak[0], rss_mb(proc.pid, "VmHWM"))
    except (OSError, RuntimeError, ValueError):
        pass  # already gone: the poller's last reading stands
    if proc.wait(timeout=60) != 0:
        raise RuntimeError(f"{argv[0]} exited with {proc.returncode}")
    poller.join()
    return early, peak[0]


def program(total: int) -> str:
    return DECLS + train(FIRST) + 'print("MARK1");\n' + train(total - FIRST) + 'print("MARK2");\n'


def bench_run(total: int, work: Path) -> tuple[float, float]:
    src = work / "long.noma"
    src.write_text(program(total))
    return one_process([sys.executable, "-m", "noma", "run", str(src)], timeout=3600)


def bench_exe(total: int, work: Path) -> tuple[float, float]:
    src = work / "long_exe.noma"
    src.write_text(program(total))
    exe = work / "long_exe"
    subprocess.run([sys.executable, "-m", "noma", "build", str(src), "-o", str(exe)], check=True, env=env(),
                   capture_output=True)
    return one_process([str(exe)], timeout=3600)


def cells(total: int, chunk: int) -> list[int]:
    """Steps of each cell after the first FIRST: chunks up to `total`."""
    out, done = [], FIRST
    while done < total:
        n = min(chunk, total - done)
        out.append(n)
        done += n
    return out


def bench_repl(total: int, chunk: int) -> tuple[float, float]:
    proc = subprocess.Popen([sys.executable, "-u", "-m", "noma", "repl"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env())
    lines = Lines(proc.stdout)

    def cell(text: str, mark: str) -> None:
        proc.stdin.write(text + f'print("{mark}");\n')
        proc.stdin.flush()
        lines.wait_for(mark, 3600)

    cell(DECLS + train(FIRST), "MARK1")
    early = rss_mb(proc.pid)
    for i, n in enumerate(cells(total, chunk)):
        cell(train(n), f"CELL{i}")
    late = rss_mb(proc.pid)
    proc.stdin.close()
    proc.wait(timeout=60)
    return early, late


def bench_kernel(total: int, chunk: int) -> tuple[float, float]:
    sys.path.insert(0, str(ROOT / "tools"))
    from jupyter_client import KernelManager
    from run_notebooks import kernel_environment

    kernel_environment()
    km = KernelManager(kernel_name="noma")
    km.start_kernel(env=env())
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        pid = km.provisioner.process.pid

        def cell(text: str) -> None:
            reply = kc.execute_interactive(text, timeout=3600, output_hook=lambda msg: None)
            if reply["content"]["status"] != "ok":
                raise RuntimeError(f"kernel cell failed: {reply['content']}")

        cell(DECLS + train(FIRST))
        time.sleep(0.5)  # the painter finishes its last frame
        early = tree_rss_mb(pid)
        for n in cells(total, chunk):
            cell(train(n))
        time.sleep(0.5)
        late = tree_rss_mb(pid)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return early, late


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000_000)
    parser.add_argument("--chunk", type=int, default=1_000_000, help="steps per REPL/kernel cell")
    parser.add_argument("--only", nargs="*", default=["run", "repl", "kernel", "exe"])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in args.only:
            started = time.perf_counter()
            if name == "run":
                early, late = bench_run(args.steps, work)
            elif name == "exe":
                early, late = bench_exe(args.steps, work)
            elif name == "repl":
                early, late = bench_repl(args.steps, args.chunk)
            else:
                early, late = bench_kernel(args.steps, args.chunk)
            seconds = time.perf_counter() - started
            rows.append((name, early, late, late - early, seconds))
            print(f"{name:7s} RSS after {FIRST:,} steps {early:8.1f} MB, after {args.steps:,} steps "
                  f"{late:8.1f} MB, growth {late - early:6.1f} MB  ({seconds:.0f} s, "
                  f"{args.steps / seconds / 1e6:.2f} M steps/s overall)", flush=True)
    ok = all(growth <= TARGET_MB for _, _, _, growth, _ in rows)
    print(f"target growth <= {TARGET_MB:.0f} MB: {'met' if ok else 'NOT met'} by every front end" if ok
          else f"target growth <= {TARGET_MB:.0f} MB: NOT met by "
               + ", ".join(r[0] for r in rows if r[3] > TARGET_MB))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
