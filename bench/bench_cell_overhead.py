"""NOMA benchmark: what a short training cell costs in the kernel after a long history (issue 15).

Run: `python bench/bench_cell_overhead.py [--history 10000000] [--runs 9]` (about 1 minute; the
history's training takes ~10 s per 10^7 steps).

Two real kernels (jupyter_client): one fresh, one that first trained `history` steps of the tiny
XOR net; then the same cached 10-step training cell in each, the two kernels taking turns (so a
change of the machine's load hits them alike). Per kernel, medians over `runs`:
- request → execute_reply, and request → the `idle` status (the cell's last output published:
  what a notebook waits for before the next cell);
- whether the cell's final plot frame arrived before `idle` (it must: a frame after it belongs to
  no cell), and its size.
The ratio after-history / fresh of both times is the issue's "≤ 1.2×" target. After a long
history the cell's final frame would look as the last one (ten steps of 10^7 move nothing by a
visible amount), so the painter reuses it (noma.plot_frames); a fresh session's ten steps change
its plot, which is drawn. So the table also gives, in-process, what drawing each final frame
costs when it is drawn (noma.plots.history_png, CPU time, median of `runs`): the residue that
depends on what the plot shows (a loss over 11 decades: more tick labels, a min-max band).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from queue import Empty

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_interrupt import TINY, TINY_TRAIN, Kernel  # noqa: E402


def timed_cell(k: Kernel, code: str) -> tuple[float, float, int]:
    """(seconds to the reply, seconds to idle, plot frames published for the cell)."""
    k.drain()
    started = time.monotonic()
    msg_id = k.kc.execute(code)
    content = k.reply(msg_id, 600)
    replied = time.monotonic() - started
    if content is None or content["status"] != "ok":
        raise SystemExit(f"cell failed: {content}")
    frames = 0
    while True:
        try:
            msg = k.kc.get_iopub_msg(timeout=60)
        except Empty:
            raise SystemExit("no idle status within 60 s")
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if "image/png" in msg["content"].get("data", {}):
            frames += 1
        if msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle":
            return replied, time.monotonic() - started, frames


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--history", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=9)
    args = ap.parse_args()
    cell = TINY_TRAIN.format(steps=10)
    fresh, aged = Kernel(), Kernel()
    try:
        for k in (fresh, aged):
            k.run(TINY)
        aged.run(TINY_TRAIN.format(steps=args.history))
        for k in (fresh, aged):
            k.run(cell)  # compile once: the timed runs are cached re-runs
        results: list[list[tuple[float, float, int]]] = [[], []]
        for _ in range(args.runs):
            for k, out in zip((fresh, aged), results):
                out.append(timed_cell(k, cell))
    finally:
        fresh.close()
        aged.close()
    med = [(statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs),
            min(r[2] for r in rs)) for rs in results]
    print("| 10-step training cell (median of %d, kernels in turns) | request → reply | request → idle "
          "| plot frames before idle (fewest) |" % args.runs)
    print("|---|---|---|---|")
    for name, (reply, idle, frames) in zip(("fresh kernel", f"after {args.history:,} steps"), med):
        print(f"| {name} | {reply * 1e3:.0f} ms | {idle * 1e3:.0f} ms | {frames} |")
    print(f"| ratio | {med[1][0] / med[0][0]:.2f} | {med[1][1] / med[0][1]:.2f} | (target ≤ 1.2) |")
    fresh_ms, aged_ms = draw_times(args.history, args.runs)
    print(f"\nDrawing the final frame when it is drawn (in-process CPU time, median of {args.runs}): "
          f"fresh {fresh_ms:.0f} ms, after {args.history:,} steps {aged_ms:.0f} ms "
          f"(ratio {aged_ms / fresh_ms:.2f}).")


def draw_times(history: int, runs: int) -> tuple[float, float]:
    """CPU ms of history_png for the 10-step cell's final frame: fresh and after `history` steps."""
    import noma
    from noma.plots import MAX_POINTS, history_png

    snapshots = []
    for before in (10, history):
        s = noma.Session()
        s.execute(TINY)
        s.execute(TINY_TRAIN.format(steps=before))
        s.execute(TINY_TRAIN.format(steps=10))
        snapshots.append(s.read_history(recent=before + 10 <= MAX_POINTS))
    times: list[list[float]] = [[], []]
    for h in snapshots:
        history_png(h, {})
    for _ in range(runs):
        for h, out in zip(snapshots, times):
            started = time.process_time()
            history_png(h, {})
            out.append((time.process_time() - started) * 1e3)
    return statistics.median(times[0]), statistics.median(times[1])


if __name__ == "__main__":
    main()
