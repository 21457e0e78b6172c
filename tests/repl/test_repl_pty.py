"""The real `noma repl` driven through a pseudo-terminal, typing as a person would.

Each test spawns `python -m noma repl` under pexpect with TERM=xterm (prompt_toolkit's full
front end) and a history file in tmp_path. Inputs are typed with `\\r` for Enter. A finished
prompt turns bracketed paste off (ESC[?2004l) and the next prompt turns it on (ESC[?2004h):
what lies between is the output of the input just submitted.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import pytest

pexpect = pytest.importorskip("pexpect")

ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]")
PASTE_OFF, PASTE_ON = "\x1b[?2004l", "\x1b[?2004h"
ROOT = Path(__file__).resolve().parents[2]  # the checkout: `noma` is importable from here

NET = [
    "seed(7);",
    "dim hidden = 2;",
    "let X = tensor [[0, 0], [0, 1], [1, 0], [1, 1]];",
    "let Y = tensor [[0], [1], [1], [0]];",
    "learn W1 = normal([2, hidden], 0, 1);",
    "learn b1 = zeros([hidden]);",
    "learn W2 = normal([hidden, 1], 0, 1);",
]


#: Steps that take well over a second (the progress line appears after 0.3 s).
TRAIN_LONG = 2_000_000


def train(max_steps: int) -> list[str]:
    """A training loop typed over several lines (each Enter before the last continues it)."""
    return [
        f"optimize(W1, b1, W2) with adam(lr = 0.01) until loss < 0 max {max_steps} {{",
        "let h = sigmoid(matmul(X, W1) + b1);",
        "let loss = mean((sigmoid(matmul(h, W2)) - Y) ^ 2);",
        "minimize loss;",
        "}",
    ]


def on_screen(text: str) -> str:
    """A regex for text as the terminal shows it: prompt_toolkit may redraw only the part that
    changed, with escape codes between the characters (`weights_al` ... `pha`)."""
    gap = "(?:" + ANSI.pattern + ")*"
    return gap.join(re.escape(ch) for ch in text)


def clean(text: str) -> str:
    return ANSI.sub("", text).replace("\r", "")


class Repl:
    """One REPL process under a pseudo-terminal."""

    def __init__(self, tmp_path: Path, history: Path | None = None, timeout: int = 90):
        env = dict(os.environ)
        env.update(TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1", PYTHONUNBUFFERED="1",
                   NOMA_HISTORY_FILE=str(history or tmp_path / "history"))
        env.pop("NOMA_DEBUG", None)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        self.child = pexpect.spawn(sys.executable, ["-m", "noma", "repl"], env=env, cwd=str(tmp_path),
                                   encoding="utf-8", timeout=timeout, dimensions=(50, 160))
        self.transcript: list[str] = []
        self.wait_prompt()

    def wait_prompt(self) -> str:
        """Wait for a fresh `noma> ` prompt; return (cleaned) what was printed before it."""
        self.child.expect_exact(PASTE_ON)
        before = self.child.before
        self.child.expect_exact("noma> ")
        self.transcript.append(before)
        return clean(before)

    def type_lines(self, lines: list[str], continuation: bool = True) -> None:
        """Type lines, pressing Enter after each; the continuation prompt must follow all but the last."""
        for i, line in enumerate(lines):
            self.child.send(line + "\r")
            if continuation and i < len(lines) - 1:
                self.child.expect_exact("  ... ")

    def submit(self, *lines: str, continuation: bool = True) -> str:
        """Type an input and return its output (cleaned of escape codes)."""
        self.type_lines(list(lines), continuation)
        self.child.expect_exact(PASTE_OFF)
        return self.wait_prompt()

    def quit(self) -> int:
        self.child.send("\x04")
        self.child.expect(pexpect.EOF)
        self.child.close()
        return self.child.exitstatus

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)


@pytest.fixture
def repl(tmp_path):
    r = Repl(tmp_path)
    yield r
    r.close()


def setup_net(repl: Repl) -> None:
    for line in NET:
        out = repl.submit(line)
        assert "error" not in out, out


def test_multiline_function_definition(repl):
    out = repl.submit("fn cube(x) {", "let y = x * x;", "y * x", "}")
    assert out.strip() == ""
    assert repl.submit("print(cube(3));").strip() == "27"
    # a trailing operator and an open string continue the input too (strings cannot span lines)
    assert repl.submit("print(1 +", "2);").strip() == "3"
    assert "error[syntax]" in repl.submit('print("a', 'b");')
    assert repl.submit("cube(2);").strip() == "8"


def test_training_progress_realloc_and_params(repl):
    setup_net(repl)
    out = repl.submit(*train(1500))
    assert "warning" in out  # reached max: the bound's warning is shown, and nothing else fails
    assert "error" not in out
    params = repl.submit(":params")
    assert re.search(r"W1\s+\[2, 2\]\s+f64\s+4\s+adam\s+step 1500", params), params
    out = repl.submit("realloc hidden = 8;")
    assert "hidden 2 -> 8" in out, out
    out = repl.submit(*train(TRAIN_LONG))  # long enough for the live progress line
    assert "steps/s" in out and "hidden=8" in out, out
    assert "error" not in out
    params = repl.submit(":params")
    assert re.search(r"W1\s+\[2, 8\]\s+f64\s+16\s+adam", params), params
    assert re.search(r"b1\s+\[8\]", params) and re.search(r"W2\s+\[8, 1\]", params), params
    assert "hidden  8" in repl.submit(":dims")


def test_error_then_working_input(repl):
    out = repl.submit("let a = nosuch + 1;")
    assert "error[name]" in out and "nosuch" in out
    assert "Traceback" not in out
    out = repl.submit("let = 3;")
    assert "error[syntax]" in out
    assert repl.submit("print(5 * 5);").strip() == "25"
    out = repl.submit("let m = tensor [1, 2] + tensor [1, 2, 3];")
    assert "error[shape]" in out and "Traceback" not in out
    assert repl.submit(":nosuchcommand").startswith("unknown command")
    assert repl.submit("print(6 * 7);").strip() == "42"


def test_ctrl_c_stops_training_and_keeps_state(repl):
    setup_net(repl)
    repl.type_lines(train(10_000_000))
    repl.child.expect_exact(PASTE_OFF)
    repl.child.expect("steps/s", timeout=60)  # the live progress line
    repl.child.sendintr()
    out = repl.wait_prompt()
    match = re.search(r"interrupted at step (\d+)", out)
    assert match, out
    step = int(match.group(1))
    assert 0 < step < 10_000_000
    history = repl.submit(":history")
    assert history.startswith(f"{step} training steps"), history
    params = repl.submit(":params")
    assert re.search(rf"W1\s+\[2, 2\]\s+f64\s+4\s+adam\s+step {step}\b", params), params
    assert repl.submit("print(rows(X));").strip() == "4"
    out = repl.submit(*train(10))  # training continues from the kept state
    assert "error" not in out
    assert repl.submit(":history").startswith(f"{step + 10} training steps")


def test_tab_completion(repl):
    repl.submit("learn weights_alpha = zeros([3, 4]);")
    repl.submit("learn weights_beta = ones([2]);")
    repl.child.send("print(weights_al\t")
    repl.child.expect(on_screen("weights_alpha"))
    out = repl.submit(");")
    assert "[[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]" in out
    repl.child.send("weights_\t")  # two candidates: a menu with shapes in the meta column
    repl.child.expect_exact("[3, 4] f64")
    repl.child.sendintr()  # Ctrl-C at the prompt clears the line
    repl.wait_prompt()
    repl.child.send("print(matm\t")
    repl.child.expect(on_screen("matmul"))
    assert repl.submit("(tensor [1, 2], tensor [3, 4]));").strip() == "11"
    repl.child.send(":pa\t")
    repl.child.expect(on_screen(":params"))
    assert "weights_alpha" in repl.submit("")


def test_history_across_processes(tmp_path):
    history = tmp_path / "hist"
    first = Repl(tmp_path, history)
    try:
        assert first.submit("print(4242 + 1);").strip() == "4243"
        assert first.submit("print(1 + 1);").strip() == "2"
        assert first.quit() == 0
    finally:
        first.close()
    assert "print(4242 + 1);" in history.read_text()
    second = Repl(tmp_path, history)
    try:
        second.child.send("\x1b[A")  # up arrow: the last line of the first process
        second.child.expect_exact("1")
        assert second.submit("").strip() == "2"
        second.child.send("\x12" + "4242")  # Ctrl-R search
        second.child.expect_exact("4242")
        second.child.send("\r")  # accept the match into the line
        assert second.submit("").strip() == "4243"
        assert second.quit() == 0
    finally:
        second.close()


def test_plot_writes_png(repl, tmp_path):
    setup_net(repl)
    repl.submit(*train(50))
    repl.submit("realloc hidden = 3;")
    repl.submit(*train(50))
    out = repl.submit(":plot curve.png")
    assert "plot written to" in out and "curve.png" in out
    assert (tmp_path / "curve.png").read_bytes().startswith(b"\x89PNG")


def test_ctrl_c_at_prompt_and_ctrl_d_exit(repl):
    repl.child.send("let half")
    repl.child.expect_exact("half")
    repl.child.sendintr()
    repl.wait_prompt()
    assert repl.submit("print(8);").strip() == "8"
    assert repl.quit() == 0


def interrupted_consistently(repl: Repl, out: str, before: int) -> int:
    """The output of an interrupted input names the steps the session has (or changed nothing)."""
    history = repl.submit(":history")
    steps = int(history.split(" training steps")[0].split()[-1]) if "training steps" in history else 0
    match = re.search(r"interrupted at step (\d+)", out)
    if match:
        assert int(match.group(1)) == steps >= before, (out, history)
    else:
        assert "interrupted before the cell ran" in out, out
        assert steps == before, (out, history)
    return steps


def test_ctrl_c_during_compilation_first_step_and_mid_loop(repl):
    """Every Ctrl-C after Enter is honoured: the input is cancelled (nothing changed) or its
    training stops, and the session's state agrees with what was reported. Also one pressed
    the moment the prompt lets go of the input (raw mode ending, prompt_toolkit tearing down its
    event loop: such a SIGINT was lost, or dropped the input silently), on new and cached text."""
    setup_net(repl)
    steps = 0
    for tag, pause in enumerate((0.05, 0.0, 0.001, 0.003, 0.0, 0.001, 0.003)):  # while compiling,
        lines = train(1_000_000_000)  # before the loop or at its first step
        lines[0] = lines[0].replace("lr = 0.01", f"lr = 0.0{tag % 4 + 2}")  # new text, then cached
        repl.type_lines(lines)
        repl.child.expect_exact(PASTE_OFF)
        time.sleep(pause)
        repl.child.sendintr()
        steps = interrupted_consistently(repl, repl.wait_prompt(), steps)
    repl.type_lines(train(1_000_000_001))  # mid-loop: once the progress line shows
    repl.child.expect_exact(PASTE_OFF)
    repl.child.expect("steps/s", timeout=60)
    repl.child.sendintr()
    steps = interrupted_consistently(repl, repl.wait_prompt(), steps)
    assert steps > 0
    out = repl.submit(*train(10))  # the session goes on
    assert "error" not in out
    assert repl.submit(":history").startswith(f"{steps + 10} training steps")


def test_print_in_a_training_loop_shows_while_it_runs(repl):
    setup_net(repl)
    repl.submit("let k = 0;")
    lines = train(1_000_000_000)
    lines.insert(1, 'k = k + 1; if k % 1000 == 0 { print("at", k); }')
    repl.type_lines(lines)
    repl.child.expect_exact(PASTE_OFF)
    repl.child.expect_exact("at 2000", timeout=60)  # the loop (10^9 steps) still runs
    repl.child.sendintr()
    out = repl.wait_prompt()
    assert "interrupted at step" in out


def test_the_session_survives_every_bad_input_of_issue_14(repl, tmp_path):
    sys.path.insert(0, str(ROOT / "tests"))
    from hostile_inputs import NEXT_CELL, cells

    for text, expected in cells(tmp_path):
        out = repl.submit(text)
        assert expected in out, (text[:80], out[-2000:])
        assert "Traceback" not in out and "internal" not in out, out[-2000:]
    cell, expected = NEXT_CELL
    assert repl.submit(cell).strip() == expected
    assert repl.quit() == 0
