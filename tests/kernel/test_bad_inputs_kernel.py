"""Issue 14's runtime repros in a real NOMA kernel (through jupyter_client): every cell gets an
error reply with a located diagnostic (or runs), and the kernel survives each one and runs the
next cell. The cells are those of tests/session/test_bad_runtime_inputs.py."""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path
from queue import Empty

import pytest

pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
from kernel_process import running_kernel  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "bad_runtime_inputs", REPO / "tests" / "session" / "test_bad_runtime_inputs.py")
assert _spec and _spec.loader
_cells = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_cells)
CELLS = _cells.CELLS
TIMEOUT = 120


@pytest.fixture(scope="module")
def kc():
    with running_kernel(env={**os.environ, "NOMA_MEMORY_LIMIT": "1G"}, timeout=TIMEOUT) as (_, client):
        yield client


def execute(kc, code: str) -> tuple[dict, str]:
    """(execute_reply content, the text of its stream output)."""
    msg_id = kc.execute(code)
    deadline = time.monotonic() + TIMEOUT
    while True:
        reply = kc.get_shell_msg(timeout=TIMEOUT)
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    text = []
    while time.monotonic() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=1)
        except Empty:
            break
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            text.append(msg["content"]["text"])
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    return reply["content"], "".join(text)


def test_kernel_survives_every_bad_runtime_input(kc) -> None:
    for cell, kind, needle in CELLS:
        reply, out = execute(kc, cell)
        if kind is None:
            assert reply["status"] == "ok" and needle in out, (cell, reply, out)
        else:
            assert reply["status"] == "error", (cell, reply)
            shown = "\n".join(reply["traceback"])
            assert f"error[{kind}]" in shown and needle in shown and "-->" in shown, (cell, shown)
        after, out = execute(kc, "print(40 + 2);")
        assert after["status"] == "ok" and out == "42\n", (cell, after, out)
