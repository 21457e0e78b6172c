"""Only regular files are read and written: a named pipe (FIFO) without a writer or reader, a
directory or a device at a program's path is a located io error saying what it is, at once.

Opening a FIFO blocks until its other end opens, so `load_csv` of one hung forever. These cases
need a real FIFO (os.mkfifo), which a corpus program cannot create; the directory and device
cases are corpus programs (tests/programs/254-258). Every run is a child process with a timeout:
a hang fails the test instead of stalling pytest. Covered: `noma run` (the JIT and the runtime's
readers and writers), executables (`noma build`), the interpreter (the oracle's own file code), a Session's cells (the
compile-time safetensors header reader included), its `:save` / `:load` checkpoints, and the
plots `:plot FILE` and `noma run --plot FILE` write.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 120

#: (statements after `learn w = tensor [1, 2];`, column of the error in that line, read or write)
CASES: list[tuple[str, int, str]] = [
    ('load_csv x = "fifo";', 14, "read"),
    ('load_safetensors m = "fifo";', 22, "read"),
    ('load_checkpoint("fifo");', 1, "read"),
    ('save_csv w, "fifo";', 13, "write"),
    ('save_safetensors { w: w }, "fifo";', 28, "write"),
    ('save_checkpoint("fifo");', 1, "write"),
]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1")


@pytest.fixture
def fifo_dir(tmp_path: Path) -> Path:
    os.mkfifo(tmp_path / "fifo")
    return tmp_path


def _names_the_fifo(text: str, verb: str) -> bool:
    """Whether a message names the path, the operation and what the path is."""
    return ("fifo" in text and f"cannot {verb}" in text
            and "it is a named pipe (FIFO), not a regular file" in text)


@pytest.mark.parametrize("stmt,col,verb", CASES, ids=[c[0].split()[0].rstrip("(") for c in CASES])
def test_noma_run_of_a_fifo_is_a_located_io_error(fifo_dir: Path, stmt: str, col: int, verb: str) -> None:
    (fifo_dir / "p.noma").write_text(f"learn w = tensor [1, 2];\n{stmt}\nprint(\"not reached\");\n")
    proc = subprocess.run([sys.executable, "-m", "noma", "run", "p.noma"], cwd=fifo_dir, env=_env(),
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 1, proc.stderr
    assert "not reached" not in proc.stdout
    assert "error[io]" in proc.stderr and _names_the_fifo(proc.stderr, verb), proc.stderr
    assert re.search(rf"--> p\.noma:2:{col}\s*$", proc.stderr, re.MULTILINE), proc.stderr
    assert "^" in proc.stderr and "Traceback" not in proc.stderr


def test_executables_reject_a_fifo(fifo_dir: Path) -> None:
    """`noma build` executables read and write through the same runtime code (noma_rt_io.c)."""
    for stmt, col, verb in (CASES[0], CASES[5]):
        (fifo_dir / "p.noma").write_text(f"learn w = tensor [1, 2];\n{stmt}\nprint(\"not reached\");\n")
        build = subprocess.run([sys.executable, "-m", "noma", "build", "p.noma", "-o", "p"], cwd=fifo_dir,
                               env=_env(), capture_output=True, text=True, timeout=300)
        assert build.returncode == 0, build.stderr
        proc = subprocess.run([str(fifo_dir / "p")], cwd=fifo_dir, capture_output=True, text=True,
                              timeout=TIMEOUT_S)
        assert proc.returncode == 1 and proc.stdout == "", proc
        assert "error[io]" in proc.stderr and _names_the_fifo(proc.stderr, verb), proc.stderr
        assert re.search(rf"--> p\.noma:2:{col}\s*$", proc.stderr, re.MULTILINE), proc.stderr


_INTERP_CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from three_ways import run_interp
out = run_interp(sys.stdin.read(), "p.noma")
print(json.dumps([out.error, out.output]))
"""


@pytest.mark.parametrize("stmt,col,verb", CASES, ids=[c[0].split()[0].rstrip("(") for c in CASES])
def test_the_interpreter_agrees(fifo_dir: Path, stmt: str, col: int, verb: str) -> None:
    """The interpreter (the corpus's oracle) reads and writes through its own Python code."""
    text = f"learn w = tensor [1, 2];\n{stmt}\nprint(\"not reached\");\n"
    proc = subprocess.run([sys.executable, "-c", _INTERP_CHILD, str(ROOT / "tests")], input=text,
                          cwd=fifo_dir, env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr
    error, output = json.loads(proc.stdout.strip().splitlines()[-1])
    assert error == ["io", 2, col] and output == [], (error, output)


_SESSION_CHILD = r"""
import json
import noma
from noma.diagnostics import NomaError
s = noma.Session()
out = []
for cell in json.loads(input()):
    r = s.execute(cell)
    out.append({"status": r.status, "texts": [d.render() for d in r.diagnostics],
                "after": s.execute("print(40 + 2);").output})
for what in ("save_checkpoint", "load_checkpoint"):
    try:
        getattr(s, what)("fifo")
        out.append({"status": "ok", "texts": [], "after": ""})
    except NomaError as e:
        out.append({"status": "error", "texts": [d.render() for d in e.diagnostics], "after": ""})
print(json.dumps(out))
"""


def test_session_cells_on_a_fifo_are_located_io_errors(fifo_dir: Path) -> None:
    cells = ["learn w = tensor [1, 2];"] + [stmt for stmt, _, _ in CASES]
    proc = subprocess.run([sys.executable, "-c", _SESSION_CHILD], input=json.dumps(cells), cwd=fifo_dir,
                          env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr
    first, *results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert first["status"] == "ok", first
    for (stmt, col, verb), r in zip(CASES, results):
        assert r["status"] == "error" and r["after"] == "42\n", (stmt, r)
        (text,) = r["texts"]
        assert text.startswith("error[io]") and _names_the_fifo(text, verb), (stmt, text)
        assert re.search(rf"--> <cell \d+>:1:{col}\s*$", text, re.MULTILINE), (stmt, text)
    save, load = results[len(CASES):]
    assert save["status"] == "error" and _names_the_fifo(save["texts"][0], "write"), save
    assert load["status"] == "error" and _names_the_fifo(load["texts"][0], "read"), load
    assert "Traceback" not in proc.stderr


_PLOT_CHILD = r"""
import noma
from noma.meta import run_meta
s = noma.Session()
r = run_meta(s, ":plot fifo.png")
print(r.ok, r.text)
"""


def test_plot_to_a_fifo_is_an_error_not_a_hang(tmp_path: Path) -> None:
    """`:plot FILE` (REPL, kernel) and `noma run --plot FILE` write only regular files."""
    os.mkfifo(tmp_path / "fifo.png")
    proc = subprocess.run([sys.executable, "-c", _PLOT_CHILD], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("False cannot write fifo.png: it is a named pipe (FIFO)"), proc.stdout
    (tmp_path / "p.noma").write_text("print(1);\n")
    proc = subprocess.run([sys.executable, "-m", "noma", "run", "--plot", "fifo.png", "p.noma"], cwd=tmp_path,
                          env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 1 and proc.stdout == "1\n", proc
    assert "error[io]: cannot write the plot fifo.png: it is a named pipe (FIFO)" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


_CACHE_CHILD = r"""
import os
import noma
s = noma.Session()
assert s.execute('learn w = tensor [1, 2]; save_safetensors { w: w }, "st";').ok
cell = 'load_safetensors m = "st"; print(m);'
first = s.execute(cell)
os.remove("st")
os.mkfifo("st")
again = s.execute(cell)  # the cell cache checks the header again before replaying
print(first.output.strip())
print(again.status, again.cache_hit, again.errors[0].render() if again.errors else "")
"""


def test_a_cached_cell_whose_file_became_a_fifo(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", _CACHE_CHILD], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr
    first, again = proc.stdout.split("\n", 1)
    assert first == "[1, 2]"
    assert again.startswith("error False error[io]: cannot read `st`: it is a named pipe (FIFO)"), again
    assert re.search(r"--> <cell 3>:1:22\s*$", again, re.MULTILINE), again
