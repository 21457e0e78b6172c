"""Helpers shared by the tests (pytest puts tests/ on sys.path, so `from conftest import lit, run`).

Owns: lit (a NOMA tensor literal holding exactly an array's values), run (execute a cell in a
session and require it to succeed) and the `kernel` fixture (one real NOMA kernel process per test
module, driven by jupyter_client; see tests/kernel/kernel_process.py).

There is one conftest.py for the whole suite: a second one in a subfolder would be imported under
the same module name `conftest` and shadow these helpers for `from conftest import ...`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

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


@pytest.fixture(scope="module")
def kernel() -> Iterator[tuple]:
    """One NOMA kernel (manager, client) per test module."""
    pytest.importorskip("jupyter_client")
    sys.path.insert(0, str(Path(__file__).resolve().parent / "kernel"))
    from kernel_process import running_kernel

    with running_kernel() as pair:
        yield pair
