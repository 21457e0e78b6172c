"""The live training display of the REPL: a progress line and growth events as they happen.

Owns: Progress, installed as `Session.progress` (called from the main thread every
progress_interval seconds while native code runs in a worker thread). It reads the runtime's
counters cheaply (global step, the last logged loss, the event count, the named dims) without
copying the loss log, redraws one status line on a terminal (`\\r` + erase), and prints each new
resize / free event on its own line. It also forwards a pending Ctrl-C to the session (see
noma.repl.core), so an interrupt that arrived just before the native loop started still stops it.
Imports: noma.meta (event text). No prompt_toolkit.
"""

from __future__ import annotations

import time
from typing import Any, Optional, TextIO

from noma.display import format_scalar

#: Event kinds shown live (optimizer changes and resets are listed by `:history` only).
SHOWN_EVENTS = ("resize", "param_resize", "dim_resize", "free", "param_free")
CLEAR_LINE = "\r\x1b[2K"


def last_loss(session: Any) -> Optional[float]:
    """The last logged loss, read in place (no copy of the history); None when nothing logged."""
    return session.rt.last_loss()


def event_count(session: Any) -> int:
    rt = session.rt
    return int(rt.lib.noma_event_count(rt.ctx))


def events_since(session: Any, seen: int) -> list[Any]:
    """Events recorded after the first `seen` ones (as noma.session.Event)."""
    if event_count(session) <= seen:
        return []
    names = {var.slot: n for n, var in session.symbols.params.items()}
    dims = {d: n for n, d in session.symbols.dims.items()}
    return session.rt.events(names, dims)[seen:]


class Progress:
    """Session.progress hook: live status line plus growth events, for one REPL."""

    def __init__(self, out: TextIO, live: bool):
        self.out = out
        self.live = live  # draw the status line (a terminal)
        self.events_seen = 0
        self.started = 0.0
        self.start_step = 0
        self.last_step = 0
        self.last_time = 0.0
        self.rate = 0.0
        self.drawn = False

    # ------------------------------------------------------------------ around a cell

    def begin(self, session: Any) -> None:
        """Call before executing an input."""
        self.started = self.last_time = time.perf_counter()
        try:
            self.start_step = self.last_step = int(session.rt.global_step())
            self.events_seen = event_count(session)
        except Exception:
            self.start_step = self.last_step = 0
        self.rate = 0.0
        self.drawn = False

    def end(self, session: Any) -> None:
        """Call after an input finished: clear the status line, print events not shown yet."""
        self.clear()
        self.flush_events(session)

    # ------------------------------------------------------------------ the hook

    def __call__(self, session: Any) -> None:
        try:
            self.flush_events(session)
            if self.live:
                self.draw(session)
        except Exception:
            pass  # the display must never disturb training

    def flush_events(self, session: Any) -> None:
        from noma.meta import event_text

        try:
            new = events_since(session, self.events_seen)
        except Exception:
            return
        shown = [e for e in new if e.kind in SHOWN_EVENTS]
        self.events_seen += len(new)
        if not shown:
            return
        self.clear()
        for event in shown:
            self.out.write(f"  {event_text(event)}\n")
        self.out.flush()

    def status_text(self, session: Any) -> Optional[str]:
        now = time.perf_counter()
        step = int(session.rt.global_step())
        if step == self.start_step or now - self.started < 0.3:
            return None
        span = now - self.last_time
        if span > 0:
            current = (step - self.last_step) / span
            self.rate = current if self.rate == 0 else 0.6 * current + 0.4 * self.rate
        self.last_step, self.last_time = step, now
        parts = [f"step {step:,}"]
        loss = last_loss(session)
        if loss is not None:
            parts.append(f"loss {format_scalar(loss)}")
        parts.append(f"{self.rate:,.0f} steps/s")
        dims = session.dims
        if dims:
            parts.append(" ".join(f"{n}={v}" for n, v in dims.items()))
        parts.append("(Ctrl-C stops)")
        return "  " + "  ".join(parts)

    def draw(self, session: Any) -> None:
        text = self.status_text(session)
        if text is None:
            return
        self.out.write(CLEAR_LINE + text)
        self.out.flush()
        self.drawn = True

    def clear(self) -> None:
        if self.drawn:
            self.out.write(CLEAR_LINE)
            self.out.flush()
            self.drawn = False
