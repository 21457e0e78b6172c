"""Helpers shared by the tests (pytest puts tests/ on sys.path, so `from conftest import lit, run`).

Owns: lit (a NOMA tensor literal holding exactly an array's values) and run (execute a cell in a
session and require it to succeed).
"""

from __future__ import annotations

from typing import Any

import numpy as np

import noma


def lit(arr: Any) -> str:
    """A NOMA tensor literal holding exactly the values of arr (repr round-trips doubles)."""

    def rec(a: np.ndarray) -> str:
        return repr(float(a)) if a.ndim == 0 else "[" + ", ".join(rec(x) for x in a) + "]"

    return "tensor " + rec(np.asarray(arr, np.float64))


def run(s: noma.Session, src: str) -> Any:
    """s.execute(src), asserting the cell ran without error (the diagnostics are the message)."""
    r = s.execute(src)
    assert r.status == "ok", (src, [d.message for d in r.diagnostics])
    return r
