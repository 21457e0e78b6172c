"""Running the interpreter where deep NOMA recursion fits: a thread with a large stack and a raised
Python recursion limit (the main thread has neither).

Owns: run_deep. Used by interp.py (Interpreter.call) only.
Imports: the standard library.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Callable

#: Python frames (and stack) a NOMA call may need: calls run on a thread with a large stack.
STACK_BYTES = 1 << 30


def run_deep(fn: Callable[[], Any], recursion_limit: int) -> Any:
    """fn() on its own thread with a STACK_BYTES stack and at least `recursion_limit` frames; its
    result, or its exception re-raised on the caller's thread."""
    outcome: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            outcome.append((True, fn()))
        except BaseException as exc:  # re-raised on the caller's thread
            outcome.append((False, exc))

    limit, old_stack = sys.getrecursionlimit(), threading.stack_size()
    sys.setrecursionlimit(max(limit, recursion_limit))
    threading.stack_size(STACK_BYTES)
    try:
        worker = threading.Thread(target=run, name="noma-interp")
        worker.start()
        worker.join()
    finally:
        threading.stack_size(old_stack)
        sys.setrecursionlimit(limit)
    ok, value = outcome[0]
    if not ok:
        raise value
    return value
