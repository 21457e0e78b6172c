"""`:controls` through a real kernel process: the panel is a widget, and a click on grow sent
while a training cell runs (a comm message, as JupyterLab sends it) is served during the cell,
applied by the running loop at a step boundary, recorded with its step, and training goes on in
the same cell. (tests/browser clicks the real button in JupyterLab.)
"""

from __future__ import annotations

import time
from queue import Empty

import pytest

pytest.importorskip("jupyter_client")
pytest.importorskip("ipywidgets")

TIMEOUT = 60
SETUP = """
seed(2);
let X = rand_normal_tensor(0, 1, 64, 2);
let Y = rand_normal_tensor(0, 1, 64, 1);
dim hidden = 2;
learn W1 = normal([2, hidden], 0, 0.5);
learn W2 = normal([hidden, 1], 0, 0.5);
"""
LONG = """
optimize(W1, W2) with adam(lr = 0.01) until loss < 0 max 400000000 {
    let loss = mean((matmul(tanh(matmul(X, W1)), W2) - Y) ^ 2);
    minimize loss;
}
print("hidden is now", rows(W2));
"""


def iopub_until(kc, done, timeout: float = TIMEOUT) -> list[dict]:
    """IOPub messages until done(msg) holds for one of them."""
    out = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            msg = kc.get_iopub_msg(timeout=0.5)
        except Empty:
            continue
        out.append(msg)
        if done(msg):
            return out
    raise AssertionError("no such message: " + repr([m["msg_type"] for m in out][-20:]))


def idle_for(msg_id: str):
    return lambda m: (m["msg_type"] == "status" and m["parent_header"].get("msg_id") == msg_id
                      and m["content"]["execution_state"] == "idle")


def widget_states(msgs: list[dict]) -> dict[str, dict]:
    """The state of each widget model the kernel opened, with the updates it sent since."""
    states: dict[str, dict] = {}
    for m in msgs:
        content = m["content"]
        if m["msg_type"] == "comm_open":
            states[content["comm_id"]] = dict(content["data"].get("state", {}))
        elif m["msg_type"] == "comm_msg" and content["comm_id"] in states:
            states[content["comm_id"]].update(content["data"].get("state", {}))
    return states


def click(kc, comm_id: str) -> None:
    """What a widget front end sends when a Button is clicked."""
    msg = kc.session.msg("comm_msg", {"comm_id": comm_id, "data": {"method": "custom",
                                                                   "content": {"event": "click"}}})
    kc.shell_channel.send(msg)


def test_grow_clicked_while_a_cell_trains(kernel):
    _, kc = kernel
    msg_id = kc.execute(SETUP + ":controls")
    msgs = iopub_until(kc, idle_for(msg_id))
    assert not [m for m in msgs if m["msg_type"] == "error"]
    views = [m for m in msgs if m["msg_type"] == "display_data"
             and "application/vnd.jupyter.widget-view+json" in m["content"]["data"]]
    assert len(views) == 1
    states = widget_states(msgs)
    grow = [c for c, state in states.items() if "noma-grow-hidden" in state.get("_dom_classes", [])]
    stop = [c for c, state in states.items() if "noma-stop" in state.get("_dom_classes", [])]
    assert len(grow) == 1 and len(stop) == 1

    msg_id = kc.execute(LONG)
    progress = iopub_until(kc, lambda m: m["msg_type"] in ("display_data", "update_display_data")
                           and "step" in m["content"]["data"].get("text/plain", ""))
    assert progress  # the loop runs: its progress text is shown
    click(kc, grow[0])
    # the status line reports the applied grow, while the cell still runs
    status = iopub_until(kc, lambda m: m["msg_type"] == "comm_msg"
                         and "from the controls" in str(m["content"]["data"].get("state", {}).get("value", "")))
    assert not [m for m in status if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
                and m["parent_header"].get("msg_id") == msg_id]
    kc.execute(":history", silent=False)  # queued behind the training cell; it must not run yet
    time.sleep(0.3)
    # stop from the panel's stop button: the cell goes on and prints the grown size
    click(kc, stop[0])
    msgs = iopub_until(kc, idle_for(msg_id))
    text = "".join(m["content"].get("text", "") for m in msgs if m["msg_type"] == "stream")
    assert "hidden is now 4" in text
    assert not [m for m in msgs if m["msg_type"] == "error"]
    history = iopub_until(kc, lambda m: m["msg_type"] == "stream" and "from the controls" in m["content"]["text"])
    line = [x for x in history[-1]["content"]["text"].splitlines() if "from the controls" in x][0]
    assert "dim hidden 2 -> 4" in line
    step = int(line.split()[1].replace(",", ""))
    assert step > 0  # inside the loop (it had trained when the click came), not before it
