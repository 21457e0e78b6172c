"""NOMA benchmark: how responsive the live front ends are while they train (issue 15).

Run: `python bench/bench_interrupt.py [--trials 50] [--repl-trials 20] [--history 10000000]`
(prints one table; `--quick` runs a few trials of each, to check the script).

Measured (every figure from a real kernel through jupyter_client or a real REPL in a pty):
- kernel interrupt latency: `trials` times, a training cell that would run for ever is sent, the
  kernel is interrupted at a random moment 0.05-2 s after the request (so some land during
  compilation, some before the loop, most in it), and the time from `interrupt_kernel()` to the
  execute_reply is taken (median, p90, max; replies k/trials within 30 s; the interrupts that
  cancelled the cell while it compiled, listed apart: they wait for LLVM). On a tiny net (the
  XOR net 2-2-1, batch 4: ~1 M steps/s) and a 64-128-10 MLP (batch 64), in a fresh kernel and
  after a `history`-step history (trained first by the tiny net in the same kernel);
- REPL Ctrl-C: `repl-trials` times, Ctrl-C after Enter on a training input, a quarter of them
  within 10 ms of the prompt letting go of the input, the rest at a random moment 0.05-2 s;
  honoured = the REPL reports an interrupt (or a cancelled input) and prompts again;
- kernel training throughput against an in-process `noma.Session` on the same program (the
  tiny net, 3 M steps, best of 3, the two measured in turns): the kernel's figure is its `:time`
  (steps over the cell's native run time, with the kernel's progress text and live plot
  running), the Session's the same ExecResult figures without any hook;
- a 10-step training cell in the kernel (request to reply, median of 7 runs of the same cached
  cell; it includes drawing the cell's plot) after the `history`-step history against the same
  cell in a fresh kernel, the two kernels taking turns.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from queue import Empty

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

TINY = """
seed(1);
let X = tensor [[0, 0], [0, 1], [1, 0], [1, 1]];
let Y = tensor [[0], [1], [1], [0]];
learn W1 = normal([2, 2], 0, 1);
learn b1 = zeros([2]);
learn W2 = normal([2, 1], 0, 1);
"""
TINY_TRAIN = """optimize(W1, b1, W2) with adam(lr = 0.001) until loss < 0 max {steps} {{
    let h = sigmoid(matmul(X, W1) + b1);
    let loss = mean((sigmoid(matmul(h, W2)) - Y) ^ 2);
    minimize loss;
}}
"""
MID = """
seed(2);
let Xm = rand_normal_tensor(0, 1, 64, 64);
let Ym = rand_normal_tensor(0, 1, 64, 10);
learn M1 = normal([64, 128], 0, 0.1);
learn c1 = zeros([128]);
learn M2 = normal([128, 10], 0, 0.1);
learn c2 = zeros([10]);
"""
MID_TRAIN = """optimize(M1, c1, M2, c2) with adam(lr = 0.0001) until loss < 0 max {steps} {{
    let h = tanh(matmul(Xm, M1) + c1);
    let loss = mean((matmul(h, M2) + c2 - Ym) ^ 2);
    minimize loss;
}}
"""
FOREVER = 1_000_000_000


class Kernel:
    """A NOMA kernel process and a client."""

    def __init__(self) -> None:
        from jupyter_client import KernelManager
        from run_notebooks import kernel_environment

        kernel_environment()
        self.km = KernelManager(kernel_name="noma")
        self.km.start_kernel()
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=120)

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)

    def drain(self) -> None:
        for channel in (self.kc.iopub_channel, self.kc.shell_channel):
            while True:
                try:
                    channel.get_msg(timeout=0.05)
                except Empty:
                    break

    def reply(self, msg_id: str, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self.kc.get_shell_msg(timeout=max(0.01, deadline - time.monotonic()))
            except Empty:
                return None
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg["content"]
        return None

    def run(self, code: str, timeout: float = 3600) -> dict:
        self.drain()
        content = self.reply(self.kc.execute(code), timeout)
        if content is None or content["status"] != "ok":
            raise SystemExit(f"kernel cell failed: {content}")
        return content

    def text_of(self, code: str) -> str:
        self.drain()
        msg_id = self.kc.execute(code)
        self.reply(msg_id, 600)
        out = []
        while True:
            try:
                msg = self.kc.get_iopub_msg(timeout=0.5)
            except Empty:
                return "".join(out)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            content = msg["content"]
            out.append(content.get("text", "") or content.get("data", {}).get("text/plain", ""))
            if msg["msg_type"] == "status" and content.get("execution_state") == "idle":
                return "".join(out)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def interrupt_trials(k: Kernel, train: str, trials: int, rng: random.Random) -> tuple[list[float], int, list[float]]:
    """Latencies (s) of the interrupts that got a reply, how many got one, and the latencies of
    those that cancelled the cell before it ran (they waited for the compilation to end)."""
    latencies = []
    cancelled = []
    replies = 0
    for _ in range(trials):
        k.drain()
        msg_id = k.kc.execute(train)
        time.sleep(rng.uniform(0.05, 2.0))
        sent = time.monotonic()
        k.km.interrupt_kernel()
        content = k.reply(msg_id, 30)
        if content is not None:
            replies += 1
            latencies.append(time.monotonic() - sent)
            if "before the cell ran" in content.get("evalue", ""):
                cancelled.append(latencies[-1])
            if content["status"] == "ok":  # finished before the interrupt (cannot happen: FOREVER)
                print("  (a cell finished before its interrupt)", file=sys.stderr)
        else:
            print("  no reply within 30 s", file=sys.stderr)
            k.km.interrupt_kernel()
            k.reply(msg_id, 60)
    return latencies, replies, cancelled


def row(name: str, latencies: list[float], replies: int, trials: int, cancelled: list[float]) -> str:
    if not latencies:
        return f"| {name} | - | - | - | 0/{trials} | - |"
    ms = [x * 1e3 for x in latencies]
    during = ", ".join(f"{x * 1e3:.0f}" for x in cancelled) or "-"
    return (f"| {name} | {statistics.median(ms):.0f} ms | {percentile(ms, 0.9):.0f} ms | {max(ms):.0f} ms | "
            f"{replies}/{trials} | {len(cancelled)}: {during} |")


def ten_step_cells(kernels: list[Kernel], runs: int = 7) -> list[float]:
    """Median request-to-reply time of a cached 10-step training cell in each kernel, the kernels
    taking turns (so a change of the machine's load hits them alike)."""
    cell = TINY_TRAIN.format(steps=10)
    for k in kernels:
        k.run(cell)  # compile once: the timed runs are cached re-runs
    times: list[list[float]] = [[] for _ in kernels]
    for _ in range(runs):
        for k, out in zip(kernels, times):
            k.drain()
            started = time.monotonic()
            k.reply(k.kc.execute(cell), 600)
            out.append(time.monotonic() - started)
    return [statistics.median(t) for t in times]


def kernel_rate(k: Kernel, steps: int) -> float:
    text = k.text_of(":time " + TINY_TRAIN.format(steps=steps).replace("\n", " "))
    match = re.search(r"([\d,]+) steps/s", text)
    if not match:
        raise SystemExit(f"no rate in {text!r}")
    return float(match.group(1).replace(",", ""))


def rates(k: Kernel, steps: int, rounds: int = 3) -> tuple[float, float]:
    """Best training rate of the kernel (`:time`) and of an in-process Session on the same
    program, measured in turns."""
    import noma

    s = noma.Session()
    s.execute(TINY)
    cell = TINY_TRAIN.format(steps=steps).replace("\n", " ")
    s.execute(cell)  # compile (and warm up)
    kernel_rate(k, steps)
    best_kernel = best_session = 0.0
    for _ in range(rounds):
        best_kernel = max(best_kernel, kernel_rate(k, steps))
        r = s.execute(cell)
        best_session = max(best_session, r.steps / r.run_seconds)
    return best_kernel, best_session


def repl_trials(trials: int, rng: random.Random) -> int:
    import pexpect

    env = dict(os.environ, TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1", PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    with tempfile.TemporaryDirectory() as tmp:
        env["NOMA_HISTORY_FILE"] = str(Path(tmp) / "history")
        child = pexpect.spawn(sys.executable, ["-m", "noma", "repl"], env=env, cwd=tmp, encoding="utf-8",
                              timeout=60, dimensions=(50, 160))
        child.expect_exact("noma> ")
        for line in TINY.strip().splitlines():  # each input's end: paste mode off, then on at the next prompt
            child.send(line + "\r")  # (a bare "noma> " can be a redraw of the prompt being typed at)
            child.expect_exact("\x1b[?2004l")
            child.expect_exact("\x1b[?2004h")
            child.expect_exact("noma> ")
        honoured = 0
        missed: list[float] = []
        for i, pause in enumerate(repl_offsets(trials, rng)):
            text = TINY_TRAIN.format(steps=FOREVER).replace("0.001", f"0.00{i % 9 + 1}").replace("\n", " ")
            child.send(text + "\r")
            child.expect_exact("\x1b[?2004l")  # the input was submitted
            time.sleep(pause)
            child.sendintr()
            try:
                child.expect(r"interrupted (at step|before the cell ran)", timeout=30)
                child.expect_exact("\x1b[?2004h", timeout=30)
                child.expect_exact("noma> ", timeout=30)
                honoured += 1
            except pexpect.TIMEOUT:
                missed.append(pause)
                print(f"  missed: {child.before[-400:]!r}", file=sys.stderr)
                child.sendintr()
                child.expect_exact("noma> ", timeout=600)
        child.sendeof()
        child.close()
    if missed:
        print("  REPL Ctrl-C not honoured at (s after Enter): " + ", ".join(f"{x:.3f}" for x in missed),
              file=sys.stderr)
    return honoured


def repl_offsets(trials: int, rng: random.Random) -> list[float]:
    """When each REPL Ctrl-C comes (s after the prompt let go of the input): a quarter of them
    within 10 ms (0, 1, 3, 10 ms, ...: prompt_toolkit still tearing down, the cell not started),
    the rest at random moments 0.05-2 s (compiling, before the loop, in it)."""
    tiny = [(0.0, 0.001, 0.003, 0.01)[i % 4] for i in range(trials // 4)]
    return tiny + [rng.uniform(0.05, 2.0) for _ in range(trials - len(tiny))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--repl-trials", type=int, default=20)
    ap.add_argument("--history", type=int, default=10_000_000)
    ap.add_argument("--quick", action="store_true", help="3 trials each, a 10^5-step history")
    ap.add_argument("--repl-only", action="store_true", help="only the REPL Ctrl-C trials")
    ap.add_argument("--seed", type=int, default=15, help="of the random moments")
    args = ap.parse_args()
    if args.quick:
        args.trials, args.repl_trials, args.history = 3, 3, 100_000
    rng = random.Random(args.seed)
    if args.repl_only:
        print(f"| REPL Ctrl-C after Enter, honoured | {repl_trials(args.repl_trials, rng)}/{args.repl_trials} | all |")
        return
    lines = ["| kernel interrupt (random moment 0.05-2 s after the request) | median | p90 | max | replies "
             "| cancelled while compiling: n, their ms |",
             "|---|---|---|---|---|---|"]
    fresh, aged = Kernel(), Kernel()
    try:
        for k in (fresh, aged):
            k.run(TINY)
            k.run(MID)
        aged.run(TINY_TRAIN.format(steps=args.history))
        fresh_cell, aged_cell = ten_step_cells([fresh, aged])
        rate, in_process = rates(aged, 3_000_000)
        for name, k, train in (("tiny 2-2-1, fresh", fresh, TINY_TRAIN), ("64-128-10, fresh", fresh, MID_TRAIN),
                               (f"tiny 2-2-1, after {args.history:,} steps", aged, TINY_TRAIN),
                               (f"64-128-10, after {args.history:,} steps", aged, MID_TRAIN)):
            lat, replies, cancelled = interrupt_trials(k, train.format(steps=FOREVER), args.trials, rng)
            lines.append(row(name, lat, replies, args.trials, cancelled))
            print(lines[-1], flush=True)
    finally:
        fresh.close()
        aged.close()
    honoured = repl_trials(args.repl_trials, rng)
    lines += ["", "| measure | value | target |", "|---|---|---|",
              f"| REPL Ctrl-C after Enter (a quarter within 10 ms, the rest 0.05-2 s), honoured | "
              f"{honoured}/{args.repl_trials} | all |",
              f"| kernel training throughput (tiny net, `:time`, after the history; best of 3) | "
              f"{rate / 1e6:.2f} M steps/s | |",
              f"| in-process Session, same program (best of 3, in turns with the kernel) | "
              f"{in_process / 1e6:.2f} M steps/s | |",
              f"| kernel / Session | {rate / in_process:.2f} | >= 0.90 |",
              f"| 10-step cell, request to reply: fresh kernel | {fresh_cell * 1e3:.0f} ms | |",
              f"| 10-step cell after {args.history:,} steps | {aged_cell * 1e3:.0f} ms | |",
              f"| ratio | {aged_cell / fresh_cell:.2f} | <= 1.2 |"]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
