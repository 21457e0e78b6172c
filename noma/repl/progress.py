"""The live training display of the REPL: a progress line, printed output and growth events as they happen.

Owns: Progress, installed as `Session.progress` (called from the main thread every
progress_interval seconds while native code runs in a worker thread) and as `Session.output_sink`
(what the cell prints, every 50 ms). It reads the runtime's counters cheaply (noma.session.progress),
redraws one status line on a terminal (`\\r` + erase) from the first 0.1 s of a loop, writes
printed lines and warnings above it, and prints each new resize / free event on its own line.
Imports: noma.session.progress, noma.meta (event text). No prompt_toolkit.
"""

from __future__ import annotations

import time
from typing import Any, Optional, TextIO

from noma.session.progress import Rate, event_count, global_step, status_text

#: Event kinds shown live (optimizer changes and resets are listed by `:history` only).
SHOWN_EVENTS = ("resize", "param_resize", "dim_resize", "free", "param_free")
CLEAR_LINE = "\r\x1b[2K"
#: no status line before a cell has run this long (a quick cell shows none)
STATUS_AFTER = 0.1


def events_since(session: Any, seen: int) -> list[Any]:
    """Events recorded after the first `seen` ones (as noma.session.core.Event)."""
    if event_count(session) <= seen:
        return []
    names = {var.slot: n for n, var in session.symbols.params.items()}
    dims = {d: n for n, d in session.symbols.dims.items()}
    return session.rt.events(names, dims)[seen:]


class Progress:
    """Session.progress hook and output sink: live status line, printed output, growth events."""

    def __init__(self, out: TextIO, live: bool, color: bool = False):
        self.out = out
        self.color = color
        self.live = live  # draw the status line (a terminal)
        self.events_seen = 0
        self.started = 0.0
        self.start_step = 0
        self.rate = Rate(0)
        self.drawn = False

    # ------------------------------------------------------------------ around a cell

    def begin(self, session: Any) -> None:
        """Call before executing an input."""
        self.started = time.perf_counter()
        try:
            self.start_step = global_step(session)
            self.events_seen = event_count(session)
        except Exception:
            self.start_step = 0
        self.rate = Rate(self.start_step)
        self.drawn = False

    def end(self, session: Any) -> None:
        """Call after an input finished: clear the status line, print events not shown yet."""
        self.clear()
        self.flush_events(session)

    # ------------------------------------------------------------------ the hook and the sink

    def __call__(self, session: Any) -> None:
        try:
            self.flush_events(session)
            if self.live:
                self.draw(session)
        except Exception:
            pass  # the display must never disturb training

    def output(self, kind: str, payload: Any) -> None:
        """Session.output_sink: printed text and warnings (Diagnostic), above the status line."""
        self.clear()
        # warnings go where the REPL shows them after a cell: its output
        text = payload.render(color=self.color) + "\n" if kind == "warning" else payload
        self.out.write(text)
        self.out.flush()

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
        step = global_step(session)
        rate = self.rate.update(step)
        if step == self.start_step or time.perf_counter() - self.started < STATUS_AFTER:
            return None
        return "  " + status_text(session, step, rate) + "  (Ctrl-C stops)"

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
