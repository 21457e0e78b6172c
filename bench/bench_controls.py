"""NOMA benchmark: from a click on grow in the `:controls` panel to the resize in the running loop.

Run: `python bench/bench_controls.py [--trials 20]` (prints one table; `--quick`: 3 trials).

Measured, on a training loop of the XOR-sized net (a few hundred thousand steps/s) and a
64-256-10 MLP on a batch of 256 (a few thousand steps/s), each a loop that runs until stopped:
- session: in one process, a thread calls `Session.controls.grow(...)` while the loop runs and
  polls `controls.applied` (the runtime's count of applied requests): the time until the running
  loop has resized at its next step boundary;
- kernel: a real kernel (jupyter_client) shows `:controls`; while a training cell runs, the
  client sends the comm message JupyterLab sends for a click on the grow button and waits for
  the panel's status update naming the applied grow (an IOPub comm_msg). This includes the
  kernel serving the comm message during the cell, the step boundary, and the panel's refresh,
  which runs on the kernel's progress tick (every 0.1 s): the latency the user sees.
Median, p90 and max over the trials (the target is 200 ms).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path
from queue import Empty

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

NETS = {
    "xor 2-h-1, batch 4": ("""
seed(1);
let X = tensor [[0, 0], [0, 1], [1, 0], [1, 1]];
let Y = tensor [[0], [1], [1], [0]];
dim hidden = 2;
learn W1 = normal([2, hidden], 0, 1);
learn W2 = normal([hidden, 1], 0, 1);
""", "sigmoid(matmul(sigmoid(matmul(X, W1)), W2))"),
    "mlp 64-h-10, batch 256": ("""
seed(2);
let X = rand_normal_tensor(0, 1, 256, 64);
let Y = rand_normal_tensor(0, 1, 256, 10);
dim hidden = 256;
learn W1 = normal([64, hidden], 0, 0.1);
learn W2 = normal([hidden, 10], 0, 0.1);
""", "matmul(tanh(matmul(X, W1)), W2)"),
}
LOOP = """optimize(W1, W2) with adam(lr = 0.001) until loss < 0 max 2000000000 {{
    let loss = mean(({out} - Y) ^ 2);
    minimize loss;
}}
"""


def summary(ms: list[float]) -> str:
    ms = sorted(ms)
    p90 = ms[min(len(ms) - 1, int(round(0.9 * (len(ms) - 1))))]
    return f"{statistics.median(ms):8.2f} {p90:8.2f} {ms[-1]:8.2f}"


def session_trials(setup: str, out: str, trials: int) -> list[float]:
    """Click-to-resize inside one process (Session.controls from a thread)."""
    import noma

    s = noma.Session()
    assert s.execute(setup).ok
    times: list[float] = []

    def clicker() -> None:
        while s.rt.global_step() < 50:
            time.sleep(0.001)
        for _ in range(trials):
            time.sleep(0.05)
            applied = s.controls.applied
            start = time.perf_counter()
            s.controls.grow("hidden", 1)
            while s.controls.applied == applied:
                time.sleep(0.0002)
            times.append((time.perf_counter() - start) * 1000)
        s.controls.stop()

    thread = threading.Thread(target=clicker)
    thread.start()
    result = s.execute(LOOP.format(out=out))
    thread.join()
    assert result.ok, result.diagnostics
    return times


def kernel_trials(setup: str, out: str, trials: int) -> list[float]:
    """Click-to-visible-status through a real kernel (the comm message JupyterLab sends)."""
    from jupyter_client import KernelManager
    from run_notebooks import kernel_environment

    kernel_environment()
    km = KernelManager(kernel_name="noma")
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    try:
        msg_id = kc.execute(setup + ":controls")
        states: dict[str, dict] = {}
        while True:
            msg = kc.get_iopub_msg(timeout=60)
            content = msg["content"]
            if msg["msg_type"] == "comm_open":
                states[content["comm_id"]] = dict(content["data"].get("state", {}))
            elif msg["msg_type"] == "comm_msg" and content["comm_id"] in states:
                states[content["comm_id"]].update(content["data"].get("state", {}))
            if (msg["msg_type"] == "status" and msg["parent_header"].get("msg_id") == msg_id
                    and content["execution_state"] == "idle"):
                break
        grow = next(c for c, st in states.items() if "noma-grow-hidden" in st.get("_dom_classes", []))
        stop = next(c for c, st in states.items() if "noma-stop" in st.get("_dom_classes", []))
        kc.execute(LOOP.format(out=out))
        time.sleep(1.0)  # compiled and training
        times = []
        for _ in range(trials):
            while True:  # drain
                try:
                    kc.get_iopub_msg(timeout=0.05)
                except Empty:
                    break
            start = time.perf_counter()
            kc.shell_channel.send(kc.session.msg("comm_msg", {"comm_id": grow, "data": {
                "method": "custom", "content": {"event": "click"}}}))
            while True:
                msg = kc.get_iopub_msg(timeout=30)
                value = str(msg["content"].get("data", {}).get("state", {}).get("value", ""))
                if msg["msg_type"] == "comm_msg" and "from the controls" in value:
                    break
            times.append((time.perf_counter() - start) * 1000)
        kc.shell_channel.send(kc.session.msg("comm_msg", {"comm_id": stop, "data": {
            "method": "custom", "content": {"event": "click"}}}))
        return times
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    trials = 3 if args.quick else args.trials
    print(f"click on grow -> resize in the running loop, ms ({trials} trials; target 200 ms)")
    print(f"{'net':<26} {'path':<36} {'median':>8} {'p90':>8} {'max':>8}")
    for name, (setup, out) in NETS.items():
        print(f"{name:<26} {'session (runtime applies it)':<36} {summary(session_trials(setup, out, trials))}")
        print(f"{name:<26} {'kernel (click to status shown)':<36} {summary(kernel_trials(setup, out, trials))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
