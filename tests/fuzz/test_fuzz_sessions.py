"""The live front ends under fuzzed input: the real Jupyter kernel (through jupyter_client) and
the real REPL (under pexpect in a pseudo-terminal) each take the issue-14 repros and a seeded
sample of the fuzz programs (fuzz_inputs.session_inputs) as cells. After every one the session
must still be alive, must have shown no traceback, internal error or unlocated diagnostic, and
its next cell must work (`let fuzz_check_K = 6 * 7; print(fuzz_check_K);` prints 42).

Environment: NOMA_FUZZ_SEED (default 14), NOMA_FUZZ_SESSION_INPUTS (inputs per front end,
default 24).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from pathlib import Path
from queue import Empty

import pytest

from fuzz_inputs import session_inputs
from fuzz_outcome import unlocated

ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = ROOT / "tests" / "programs" / "data"
SEED = int(os.environ.get("NOMA_FUZZ_SEED", "14"))
COUNT = int(os.environ.get("NOMA_FUZZ_SESSION_INPUTS", "24"))
TIMEOUT = 60
MEMORY_LIMIT = str(256 << 20)
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]")


def problems(text: str) -> list[str]:
    """What a session's answer to one input must not contain."""
    text = ANSI.sub("", text).replace("\r", "")
    found = []
    if "Traceback" in text:
        found.append("a Python traceback")
    if "internal error" in text.lower() or "internal compiler error" in text.lower():
        found.append("an internal error")
    missing = unlocated(text)
    if missing is not None:
        found.append(f"a diagnostic without a location: {missing}")
    return found


def check_cell(k: int) -> str:
    return f"let fuzz_check_{k} = 6 * 7; print(fuzz_check_{k});"


# ---------------------------------------------------------------------------------- kernel


def _kernel_run(kc, code: str) -> tuple[dict, str]:
    """Execute one cell; (the reply's content, everything it showed as text)."""
    msg_id = kc.execute(code)
    deadline = time.monotonic() + TIMEOUT
    reply = None
    while reply is None:
        msg = kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") == msg_id:
            reply = msg["content"]
    shown = []
    while True:
        msg = kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "status" and content["execution_state"] == "idle":
            break
        if kind == "stream":
            shown.append(content["text"])
        elif kind in ("execute_result", "display_data"):
            shown.append(content["data"].get("text/plain", ""))
        elif kind == "error":
            shown.append("\n".join(content["traceback"]))
    return reply, "\n".join(shown)


def test_kernel_survives_fuzzed_cells(tmp_path: Path) -> None:
    pytest.importorskip("jupyter_client")
    pytest.importorskip("ipykernel")
    sys.path.insert(0, str(ROOT / "tools"))
    from run_notebooks import kernel_environment
    from jupyter_client import KernelManager

    kernel_environment()
    shutil.copytree(DATA_DIR, tmp_path / "data")
    km = KernelManager(kernel_name="noma")
    env = dict(os.environ, NOMA_MEMORY_LIMIT=MEMORY_LIMIT)
    env.pop("NOMA_DEBUG", None)
    km.start_kernel(cwd=str(tmp_path), env=env)
    kc = km.client()
    kc.start_channels()
    failures = []
    try:
        kc.wait_for_ready(timeout=TIMEOUT)
        for k, code in enumerate(session_inputs(SEED, COUNT)):
            try:
                _, shown = _kernel_run(kc, code)
            except Empty:
                failures.append(f"no answer within {TIMEOUT} s to:\n{code}")
                break
            if not km.is_alive():
                failures.append(f"the kernel died on:\n{code}")
                break
            failures += [f"{p}, for:\n{code}\n{shown[-800:]}" for p in problems(shown)]
            reply, shown = _kernel_run(kc, check_cell(k))
            if reply["status"] != "ok" or shown.strip() != "42":
                failures.append(f"the next cell failed ({reply['status']}: {shown[-500:]!r}) after:\n{code}")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert not failures, f"seed {SEED}:\n" + "\n\n".join(failures)


# ---------------------------------------------------------------------------------- REPL

PASTE_OFF, PASTE_ON = "\x1b[?2004l", "\x1b[?2004h"


def test_repl_survives_fuzzed_inputs(tmp_path: Path) -> None:
    pexpect = pytest.importorskip("pexpect")
    shutil.copytree(DATA_DIR, tmp_path / "data")
    env = dict(os.environ, TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1", PYTHONUNBUFFERED="1",
               NOMA_HISTORY_FILE=str(tmp_path / "history"), NOMA_MEMORY_LIMIT=MEMORY_LIMIT)
    env.pop("NOMA_DEBUG", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    child = pexpect.spawn(sys.executable, ["-m", "noma", "repl"], env=env, cwd=str(tmp_path),
                          encoding="utf-8", timeout=TIMEOUT, dimensions=(50, 200))

    def prompt() -> str:
        child.expect_exact(PASTE_ON)
        before = child.before
        child.expect_exact("noma> ")
        return before

    def submit(text: str) -> str:
        """Paste `text` (bracketed paste: newlines do not submit) and press Enter; its output."""
        child.send("\x1b[200~" + text + "\x1b[201~\r")
        child.expect_exact(PASTE_OFF)
        return ANSI.sub("", prompt()).replace("\r", "")

    failures = []
    try:
        prompt()
        for k, code in enumerate(session_inputs(SEED, COUNT)):
            try:
                shown = submit(code)
            except (pexpect.TIMEOUT, pexpect.EOF) as exc:
                failures.append(f"{type(exc).__name__} (the REPL {'died' if not child.isalive() else 'hung'}) "
                                f"on:\n{code}\n{ANSI.sub('', str(child.before))[-800:]}")
                break
            failures += [f"{p}, for:\n{code}\n{shown[-800:]}" for p in problems(shown)]
            shown = submit(check_cell(k))
            if shown.strip().splitlines()[-1:] != ["42"]:
                failures.append(f"the next input failed ({shown[-500:]!r}) after:\n{code}")
    finally:
        if child.isalive():
            child.terminate(force=True)
    assert not failures, f"seed {SEED}:\n" + "\n\n".join(failures)
