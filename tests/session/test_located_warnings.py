"""Runtime warnings point at their statement, like every diagnostic: "optimize reached its
iteration bound" at the `optimize` statement, "mean of an empty tensor" at the `mean` call.

The runtime records each warning with its span (noma_warn in noma_rt.c); the session locates it
in the cell's source, also for warnings streamed live to an output sink (the REPL, the kernel and
`noma run` render those) and for a cell replayed from the cell cache (named as the new cell);
executables print the pre-rendered location after the warning, as they do for errors. The corpus
checks that every warning on stderr is located (tests/test_programs.py); this checks where.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import noma
from noma.diagnostics import Diagnostic

ROOT = Path(__file__).resolve().parents[2]
CELL = """learn w = 5;
optimize(w) with sgd(lr = 0.1) until w < -100 max 3 {
    minimize w * w;
}
print(mean(zeros([0])));
"""
BOUND = "optimize reached its iteration bound before `w < -100` held"
EMPTY = "mean of an empty tensor: the result is nan"


def _where(d: Diagnostic) -> tuple[str, int, int]:
    assert d.span is not None, f"{d.message!r} has no location"
    line, col = d.span.source.position(d.span.start)
    return d.span.source.name, line, col


def test_session_warnings_are_located() -> None:
    s = noma.Session()
    r = s.execute(CELL)
    assert r.ok and [d.message for d in r.warnings] == [BOUND, EMPTY]
    assert [_where(d) for d in r.warnings] == [("<cell 1>", 2, 1), ("<cell 1>", 5, 7)]
    assert "--> <cell 1>:2:1" in r.warnings[0].render()
    again = s.execute(CELL)  # a cache hit: the same code, located in the new cell
    assert again.cache_hit and [_where(d) for d in again.warnings] == [("<cell 2>", 2, 1)]


def test_live_warnings_are_located() -> None:
    s = noma.Session()
    seen: list[Any] = []
    s.output_sink = lambda kind, payload: seen.append((kind, payload))
    r = s.execute(CELL)
    live = [p for kind, p in seen if kind == "warning"]
    assert [d.message for d in live] == [BOUND, EMPTY]
    assert [_where(d) for d in live] == [("<cell 1>", 2, 1), ("<cell 1>", 5, 7)]
    assert r.streamed and [_where(d) for d in r.warnings] == [_where(d) for d in live]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1")


def test_noma_run_and_executables_locate_warnings(tmp_path: Path) -> None:
    (tmp_path / "w.noma").write_text(CELL)
    run = subprocess.run([sys.executable, "-m", "noma", "run", "w.noma"], cwd=tmp_path, env=_env(),
                         capture_output=True, text=True, timeout=120)
    build = subprocess.run([sys.executable, "-m", "noma", "build", "w.noma", "-o", "w"], cwd=tmp_path,
                           env=_env(), capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    exe = subprocess.run([str(tmp_path / "w")], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    for proc in (run, exe):
        assert proc.returncode == 0 and proc.stdout == "nan\n", proc
        assert f"warning: {BOUND}\n --> w.noma:2:1\n" in proc.stderr, proc.stderr
        assert f"warning: {EMPTY}\n --> w.noma:5:7\n" in proc.stderr, proc.stderr
