"""End-to-end tests: run every tests/programs/*.noma with `python -m noma run FILE`.

Each program states its expectations in comments (see tests/programs/README.md):

    // expect: TEXT          one expected stdout line, in order
    // error[KIND] LINE:COL  the run must fail (exit 1) with that diagnostic kind and location
    // error[KIND] FILE:LINE:COL  ... located in FILE (a module the program imports, e.g.
                             modules/bad.noma: helper modules live in tests/programs/modules/)
    // warning: TEXT         stderr must contain TEXT
    // stderr: TEXT          stderr must contain TEXT
    // called from: [FILE:]LINE:COL   the error's `note: called from here` notes, in order (innermost
                             first), located there (FILE: a module; else the program itself);
    // called from: ... N more calls  the note that stands for the calls between them

A program with no `// error[...]` line must exit 0. Programs run in a fresh temporary directory
(file I/O is relative to it) holding a copy of tests/programs/data/ as data/.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS_DIR = Path(__file__).resolve().parent / "programs"
DATA_DIR = PROGRAMS_DIR / "data"
PROGRAMS = sorted(PROGRAMS_DIR.glob("*.noma"))
TIMEOUT_S = 60
KINDS = ("syntax", "name", "type", "shape", "runtime", "io")

_EXPECT = re.compile(r"^\s*//\s*expect:(.*)$")
_ERROR = re.compile(r"^\s*//\s*error\[(\w+)\]\s+(?:([\w./-]+\.noma):)?(\d+):(\d+)\s*$")
_WARNING = re.compile(r"^\s*//\s*warning:\s*(.*?)\s*$")
_STDERR = re.compile(r"^\s*//\s*stderr:\s*(.*?)\s*$")
_DEFINE = re.compile(r"^\s*//\s*define:\s*(\S+)\s*$")
_LOCATION = re.compile(r"-->\s*(.*):(\d+):(\d+)\s*$", re.MULTILINE)
_CALLED = re.compile(r"^\s*//\s*called from:\s*(?:(\.\.\. \d+ more calls?)|(?:([\w./-]+\.noma):)?(\d+):(\d+))\s*$")
_NOTE = re.compile(r"^note: (.*)$", re.MULTILINE)


@dataclass
class Expectation:
    stdout: list[str] = field(default_factory=list)
    error: Optional[tuple[str, int, int]] = None
    error_file: Optional[str] = None  # the error is located in this imported file (relative to the program's)
    stderr_contains: list[str] = field(default_factory=list)
    defines: list[str] = field(default_factory=list)  # `// define: NAME=VALUE`: run with -D NAME=VALUE
    #: `// called from:` lines: the error's call notes, innermost first, as call_notes() reads them
    calls: list[str] = field(default_factory=list)


def parse_expectations(text: str) -> Expectation:
    exp = Expectation()
    for line in text.splitlines():
        m = _EXPECT.match(line)
        if m:
            value = m.group(1)
            if value.startswith(" "):
                value = value[1:]
            exp.stdout.append(value.rstrip())
            continue
        m = _ERROR.match(line)
        if m:
            assert exp.error is None, "a program may expect only one error"
            exp.error = (m.group(1), int(m.group(3)), int(m.group(4)))
            exp.error_file = m.group(2)
            continue
        m = _CALLED.match(line)
        if m:
            exp.calls.append(m.group(1) or f"{m.group(2) or ''}:{m.group(3)}:{m.group(4)}")
            continue
        m = _DEFINE.match(line)
        if m:
            exp.defines.append(m.group(1))
            continue
        m = _WARNING.match(line) or _STDERR.match(line)
        if m:
            exp.stderr_contains.append(m.group(1))
    return exp


def _stdout_lines(out: str) -> list[str]:
    lines = [line.rstrip() for line in out.splitlines()]
    while lines and lines[-1] == "":
        lines.pop()
    return lines


def _report(path: Path, exp: Expectation, proc: subprocess.CompletedProcess, problem: str,
            label: str = "") -> str:
    numbered = "\n".join(f"{i + 1:4d} | {line}" for i, line in enumerate(path.read_text().splitlines()))
    expected = "\n".join(exp.stdout) if exp.stdout else "(nothing)"
    return (
        f"{path.name}{label}: {problem}\n"
        f"---- program ----\n{numbered}\n"
        f"---- expected stdout ----\n{expected}\n"
        f"---- expected exit ----\n"
        f"{'1 with error[%s] at %d:%d' % exp.error if exp.error else '0'}\n"
        f"---- actual stdout ----\n{proc.stdout}\n"
        f"---- actual stderr ----\n{proc.stderr}\n"
        f"---- actual exit code: {proc.returncode} ----"
    )


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["NO_COLOR"] = "1"
    return env


def run_program(path: Path, workdir: Path) -> subprocess.CompletedProcess:
    if DATA_DIR.is_dir():
        shutil.copytree(DATA_DIR, workdir / "data")
    defines = [arg for d in parse_expectations(path.read_text()).defines for arg in ("-D", d)]
    return subprocess.run(
        [sys.executable, "-m", "noma", "run", str(path), *defines],
        cwd=workdir,
        env=_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def _has_location(stderr: str, line: int, col: int, file: Optional[str] = None) -> bool:
    """Whether stderr locates a diagnostic at line:col (in a file whose path ends with `file`)."""
    for m in _LOCATION.finditer(stderr):
        if int(m.group(2)) == line and int(m.group(3)) == col and (
                file is None or m.group(1).replace(os.sep, "/").endswith(file)):
            return True
    return file is None and re.search(rf"(?<![\d]):{line}:{col}(?!\d)", stderr) is not None


def call_notes(stderr: str) -> list[tuple[str, str]]:
    """The notes of the error on stderr (after its `error[` line), in order: ("PATH:LINE:COL",
    "") for `note: called from here` and its location, ("", MESSAGE) for any other note."""
    start = stderr.find("error[")
    text = stderr[start:] if start >= 0 else ""
    out: list[tuple[str, str]] = []
    for m in _NOTE.finditer(text):
        if m.group(1) != "called from here":
            out.append(("", m.group(1)))
            continue
        loc = _LOCATION.search(text, m.end())
        out.append((f"{loc.group(1)}:{loc.group(2)}:{loc.group(3)}" if loc else "?", ""))
    return out


def _calls_match(path: Path, expected: list[str], notes: list[tuple[str, str]]) -> bool:
    """Whether the notes are the expected `// called from:` entries: `... N more calls` as that
    note's message; `[FILE]:LINE:COL` a call note located there, in the module file its path ends
    with or (no FILE) in the program itself."""
    if len(expected) != len(notes):
        return False
    for want, (where, message) in zip(expected, notes):
        if want.startswith("..."):
            if message != want:
                return False
            continue
        want_file, want_line, want_col = want.rsplit(":", 2)
        got = where.replace(os.sep, "/").rsplit(":", 2)
        if len(got) != 3 or got[1:] != [want_line, want_col] or not got[0].endswith(want_file or path.name):
            return False
    return True


def _unlocated_warnings(stderr: str) -> list[str]:
    """The warnings on stderr not followed by their location (every diagnostic points at its
    statement: a warning line is followed by ` --> FILE:LINE:COL`)."""
    lines = stderr.splitlines()
    return [line for i, line in enumerate(lines) if line.startswith("warning:")
            and not (i + 1 < len(lines) and lines[i + 1].lstrip().startswith("-->"))]


def check_run(path: Path, exp: Expectation, proc: subprocess.CompletedProcess, label: str = "") -> None:
    """Fail the test unless a run (of `noma run` or a built executable) meets the expectations."""

    def check(cond: bool, problem: str) -> None:
        if not cond:
            pytest.fail(_report(path, exp, proc, problem, label), pytrace=False)

    check("Traceback" not in proc.stderr and "Traceback" not in proc.stdout,
          "a Python traceback reached the user")
    check(_stdout_lines(proc.stdout) == exp.stdout, "stdout differs")
    if exp.error is None:
        check(proc.returncode == 0, f"expected exit code 0, got {proc.returncode}")
        check("error[" not in proc.stderr, "unexpected diagnostic on stderr")
    else:
        kind, line, col = exp.error
        check(proc.returncode == 1, f"expected exit code 1 (a diagnostic), got {proc.returncode}")
        check(f"error[{kind}]" in proc.stderr, f"stderr lacks error[{kind}]")
        where = f"{exp.error_file}:" if exp.error_file else ":"
        primary = proc.stderr.split("\nnote: ")[0]  # not a location of the error's call notes
        check(_has_location(primary, line, col, exp.error_file), f"stderr lacks the location {where}{line}:{col}")
    for text in exp.stderr_contains:
        check(text in proc.stderr, f"stderr lacks {text!r}")
    if exp.calls:
        check(_calls_match(path, exp.calls, call_notes(proc.stderr)),
              f"the error's notes are not the `// called from:` lines {exp.calls}")
    unlocated = _unlocated_warnings(proc.stderr)
    check(not unlocated, f"a warning without its location: {unlocated[:1]}")


@pytest.mark.parametrize("path", PROGRAMS, ids=[p.stem for p in PROGRAMS])
def test_program(path: Path, tmp_path: Path) -> None:
    exp = parse_expectations(path.read_text())
    try:
        proc = run_program(path, tmp_path)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{path.name}: timed out after {TIMEOUT_S} s\nstdout:\n{e.stdout}\nstderr:\n{e.stderr}")

    check_run(path, exp, proc)


def test_corpus_is_well_formed() -> None:
    """Every program names its topic, states expectations, and the corpus covers enough ground."""
    assert len(PROGRAMS) >= 70
    errors = 0
    for path in PROGRAMS:
        assert re.match(r"^\d+_[a-z0-9_]+\.noma$", path.name), path.name
        text = path.read_text()
        assert text.startswith("//"), f"{path.name}: the first line must be a comment saying what it checks"
        exp = parse_expectations(text)
        assert exp.stdout or exp.error, f"{path.name}: no expectations"
        if exp.error:
            errors += 1
            assert exp.error[0] in KINDS, f"{path.name}: unknown kind {exp.error[0]}"
            where = path.parent / exp.error_file if exp.error_file else path
            if exp.error_file and exp.error_file.startswith("std/"):  # inside the standard library
                where = ROOT / "noma" / exp.error_file
            lines = where.read_text().splitlines()
            assert 1 <= exp.error[1] <= len(lines), f"{path.name}: error line out of range"
            assert 1 <= exp.error[2] <= len(lines[exp.error[1] - 1]), f"{path.name}: error column out of range"
        for line in text.splitlines():
            stripped = line.strip()
            if stripped.startswith("// error") and not _ERROR.match(line):
                pytest.fail(f"{path.name}: malformed error expectation {line!r}")
            if stripped.startswith("// called from") and not _CALLED.match(line):
                pytest.fail(f"{path.name}: malformed call-note expectation {line!r}")
        assert not exp.calls or exp.error, f"{path.name}: `// called from:` without an `// error[...]` line"
    assert errors >= 25
    assert len(PROGRAMS) - errors >= 45
