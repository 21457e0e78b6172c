"""Progress of a running cell, read cheaply while its native code runs: the front ends' status text.

Owns: reading the runtime's counters without copying the loss history (global step, the last logged
loss, the event count), the steps-per-second estimate, and the one status text both front ends
show (`step 120,000  loss 0.0123  410,000 steps/s  hidden=16`): the REPL on its status line, the
kernel in a display it updates in place.
Imports: noma.display. Safe to call from the thread that waits for native code.
"""

from __future__ import annotations

import time
from typing import Any, Optional

from noma.display import format_scalar


def last_loss(session: Any) -> Optional[float]:
    """The last logged loss, read in place (no copy of the history); None when nothing logged."""
    return session.rt.last_loss()


def event_count(session: Any) -> int:
    rt = session.rt
    return int(rt.lib.noma_event_count(rt.ctx))


def global_step(session: Any) -> int:
    rt = session.rt
    return int(rt.lib.noma_global_step())


class Rate:
    """Steps per second of the running cell: a smoothed estimate between successive readings."""

    def __init__(self, step: int):
        self.started = self.last_time = time.perf_counter()
        self.start_step = self.last_step = step
        self.value = 0.0

    def update(self, step: int) -> float:
        now = time.perf_counter()
        span = now - self.last_time
        if span > 0 and step != self.last_step:
            current = (step - self.last_step) / span
            self.value = current if self.value == 0 else 0.6 * current + 0.4 * self.value
        elif span > 0.5:
            self.value = (step - self.last_step) / span  # stalled: say so
        if step != self.last_step or span > 0.5:
            self.last_step, self.last_time = step, now
        return self.value

    def overall(self, step: int) -> float:
        span = time.perf_counter() - self.started
        return (step - self.start_step) / span if span > 0 else 0.0


def status_text(session: Any, step: int, rate: float, dims: bool = True) -> str:
    """`step 1,200  loss 0.25  400,000 steps/s  hidden=8`."""
    parts = [f"step {step:,}"]
    loss = last_loss(session)
    if loss is not None:
        parts.append(f"loss {format_scalar(loss)}")
    parts.append(f"{rate:,.0f} steps/s")
    if dims:
        sizes = session.dims
        if sizes:
            parts.append(" ".join(f"{n}={v}" for n, v in sizes.items()))
    return "  ".join(parts)
