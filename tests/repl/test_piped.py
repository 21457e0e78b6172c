"""`noma repl` with piped stdin (no prompt_toolkit), and the input splitting it uses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from noma.display import format_value
from noma.repl.core import ReplCore, run_piped, split_inputs

ROOT = Path(__file__).resolve().parents[2]  # the checkout: `noma` is importable from here


def run_repl(text: str, tmp_path) -> subprocess.CompletedProcess:
    env = dict(os.environ, NOMA_HISTORY_FILE=str(tmp_path / "history"))
    env.pop("NOMA_DEBUG", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "noma", "repl"], input=text, capture_output=True,
                          text=True, env=env, cwd=str(tmp_path), timeout=120)


def test_echo_print(tmp_path):
    done = run_repl("print(1);\n", tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "1\n"
    assert done.stderr == ""
    assert not (tmp_path / "history").exists()  # piped input is not recorded


def test_multiline_inputs_values_meta_and_errors(tmp_path):
    text = "\n".join([
        "fn sq(x) {",
        "  x * x",
        "}",
        "",
        "print(sq(",
        "  4));",
        "let v = tensor [1, 2,",
        "   3];",
        "v * 2;",
        "let bad = nosuch;",
        ":who",
        ":nosuch",
        'print("after", sq(3));',
        "sq(1.5)",  # no semicolon at the very end: run anyway
    ]) + "\n"
    done = run_repl(text, tmp_path)
    assert done.returncode == 1  # some input failed; the REPL kept going
    out = done.stdout.splitlines()
    assert out[0] == "16"
    shown = format_value(np.array([2.0, 4.0, 6.0])).splitlines()  # values as noma.display shows them
    assert out[1:3] == shown and shown[0] == "tensor[3] f64"
    assert any(line.startswith("v ") and "[3]" in line for line in out)
    assert "after 9" in out
    assert out[-1] == "2.25"
    assert "error[name]" in done.stderr and "nosuch" in done.stderr
    assert "unknown command `:nosuch`" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "\x1b[" not in done.stdout + done.stderr  # no colour when not a terminal


def test_quit_command_stops_reading(tmp_path):
    done = run_repl("print(1);\n:quit\nprint(2);\n", tmp_path)
    assert done.stdout == "1\n" and done.returncode == 0


def test_split_inputs():
    lines = ["", ":params", "fn f(x) {", "x", "}", "  ", "1 +", "2;", "let s = \"a", "b\";", "3"]
    assert list(split_inputs(lines)) == [":params", "fn f(x) {\nx\n}", "1 +\n2;", 'let s = "a\nb";', "3"]


def test_core_without_a_terminal(tmp_path):
    import io

    out, err = io.StringIO(), io.StringIO()
    core = ReplCore(out=out, err=err)
    assert run_piped(core, io.StringIO("let a = 2;\nprint(a * 21);\nlet b = ;\n")) == 1
    assert out.getvalue() == "42\n"
    assert "error[syntax]" in err.getvalue()
    assert core.handle(":quit") is False


def test_undo_names_the_cell_and_shows_no_internal_events(tmp_path):
    done = run_repl("dim h = 2;\nlearn W = zeros([2, h]);\nrealloc h = 4;\n:undo\n:undo\n", tmp_path)
    lines = done.stdout.splitlines()
    assert lines == ["  step       0  dim h 2 -> 4 (preserve)",
                     "  step       0  resize W [2, 2] -> [2, 4] (preserve)",
                     "undone <cell 3> `realloc h = 4;`: the session is as before it",
                     "undone <cell 2> `learn W = zeros([2, h]);`: the session is as before it"], done.stdout


def test_last_statement_without_semicolon_and_invalid_input_at_once(tmp_path):
    done = run_repl("let a = 2\nprint(a * 1000000)\nlet y = (1.0 + ;\nprint(a)\n", tmp_path)
    assert done.stdout.splitlines()[:1] == ["2000000"], done.stdout
    assert done.stdout.splitlines()[-1] == "2", done.stdout  # the invalid line did not swallow the next
    assert "error[syntax]" in done.stderr and "1:16" in done.stderr, done.stderr


def test_run_and_time_print_the_cell_output_once(tmp_path):
    """`:run FILE` and `:time CODE` show what the cell printed once (it streams as it runs; the
    command's text repeated it), then the value, errors and the timing line."""
    (tmp_path / "p.noma").write_text("print(7);\n")
    done = run_repl(":run p.noma\n:time print(6);\n:time 1 + 2;\n:time print(zeros([2]) + zeros([3]));\n", tmp_path)
    lines = done.stdout.splitlines()
    assert [line.split(" ")[0] for line in lines] == ["7", "6", "compile", "3", "compile"], done.stdout
    assert lines[2].startswith("compile ") and lines[4].startswith("compile ")
    assert done.stderr.count("error[shape]") == 1 and done.stderr.count("compile ") == 1, done.stderr


def test_events_of_freed_parameters_name_them(tmp_path):
    """A `free` event names the parameter (it showed `#0`: the tables no longer hold a freed name)."""
    done = run_repl("learn b = zeros([3]);\nfree b;\n:history\n", tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("free b [3]") == 2 and "#0" not in done.stdout, done.stdout
