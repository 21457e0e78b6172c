"""How a fuzzed run ended, in classes: ok, diagnostic, long-running, or a failure.

Owns: classify (exit status, stderr, timeout, phase -> Outcome) and the rule for what is a
failure: a Python traceback, an internal error, a signal, a hang, a diagnostic without a
location (every `error[...]` header line must be followed by its ` --> FILE:LINE:COL` line), an
exit status other than 0 and 1, exit 1 without a diagnostic, or an error diagnostic with exit 0.

A run that is still going at the time bound is a hang (a failure) when it was compiling, or when
the program cannot legitimately run long: it has no loop (`while`, `for`, `optimize`), no
function (recursion) and no number of 1000 or more (a huge shape or iteration count). Otherwise
it is "long-running": a program that may well be correct and slow (`while 1 { }`), counted and
reported but not a failure.
Imports: nothing of NOMA's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

OK, DIAGNOSTIC, LONG = "ok", "diagnostic", "long-running"
PASSING = (OK, DIAGNOSTIC, LONG)

_ERROR_HEAD = re.compile(r"^error(\[\w+\])?:")
_LOCATION = re.compile(r"^\s*--> .+:\d+:\d+\s*$")
_LOOPY = re.compile(rb"\b(while|for|optimize|fn)\b")
_NUMBER = re.compile(rb"\b[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


@dataclass(frozen=True)
class Outcome:
    cls: str  # ok | diagnostic | long-running | a failure class
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.cls not in PASSING


def huge_numbers(program: bytes) -> bool:
    """Whether the program holds a number of a million or more (a huge shape, count or value)."""
    for m in _NUMBER.finditer(program):
        try:
            if float(m.group()) >= 1e6:
                return True
        except ValueError:
            return True
    return False


def may_run_long(program: bytes) -> bool:
    """Whether a correct program could still be running at the time bound (see module doc)."""
    if _LOOPY.search(program):
        return True
    for m in _NUMBER.finditer(program):
        try:
            if float(m.group()) >= 1000:
                return True
        except ValueError:
            return True
    return False


def unlocated(stderr: str) -> Optional[str]:
    """The first `error...:` line that has no location line after it, if any."""
    lines = stderr.splitlines()
    for i, line in enumerate(lines):
        if _ERROR_HEAD.match(line) and not (i + 1 < len(lines) and _LOCATION.match(lines[i + 1])):
            return line
    return None


def classify(returncode: Optional[int], stderr: str, program: bytes, timed_out: bool = False,
             phase: str = "unknown") -> Outcome:
    """The class of one run: `returncode` None with timed_out for a run stopped at its bound,
    a negative code for a signal (subprocess convention)."""
    if timed_out:
        if phase != "compile" and may_run_long(program):
            return Outcome(LONG, f"still running in phase {phase}")
        return Outcome("hang", f"no answer within the time bound (phase {phase})")
    assert returncode is not None
    if returncode < 0:
        return Outcome("signal", f"killed by signal {-returncode}")
    if "Traceback (most recent call last)" in stderr:
        return Outcome("traceback", _first(stderr, "Traceback"))
    lowered = stderr.lower()
    if "internal error" in lowered or "internal compiler error" in lowered:
        return Outcome("internal-error", _first(stderr, "internal"))
    missing = unlocated(stderr)
    if missing is not None:
        return Outcome("unlocated-diagnostic", missing)
    has_error = any(_ERROR_HEAD.match(line) for line in stderr.splitlines())
    if returncode == 0:
        return Outcome(OK) if not has_error else Outcome("error-with-exit-0", _first(stderr, "error"))
    if returncode == 1:
        return Outcome(DIAGNOSTIC, _first(stderr, "error")) if has_error else \
            Outcome("exit-1-without-diagnostic", stderr[-300:])
    return Outcome(f"exit-{returncode}", stderr[-300:])


def _first(text: str, needle: str) -> str:
    for line in text.splitlines():
        if needle.lower() in line.lower():
            return line.strip()[:300]
    return text[:300]
