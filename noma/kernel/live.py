"""Live feedback while a cell runs: printed text as it appears, and an in-place training plot.

Owns: the per-cell state of the session's progress hook. The session calls `tick(session)` from
the kernel's main thread every `progress_interval` seconds while native code runs in a worker
thread; each tick forwards a pending SIGINT to the runtime, streams complete lines printed so
far, and - once the cell has logged training steps and ticked `quiet_ticks` times - publishes
one display_data (image/png of noma.plots.history_png, drawn from the history's bounded summary
so a frame costs the same however long the session trained, with a display_id), then
update_display_data at most `max_rate` times per second. `finish()` draws the final state (so
every cell that trained shows its plot, however short it ran).
Imports: noma.plots (lazily); publishing goes through callables the kernel passes in.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable, Optional

Publish = Callable[[str, dict], None]


class LiveDisplay:
    """Progress-hook state for one code segment of a cell."""

    def __init__(self, session: Any, publish: Publish, stream: Callable[[str, str], None],
                 enabled: bool = True, stream_output: bool = True, max_rate: float = 4.0,
                 quiet_ticks: int = 2):
        self.session = session
        self.publish = publish
        self.stream = stream
        self.enabled = enabled
        self.stream_output = stream_output and enabled
        self.min_gap = 1.0 / max_rate
        self.display_id: Optional[str] = None
        self.updates = 0
        self.sent_chars = 0  # characters of this segment's printed output already streamed
        self.last_draw = 0.0
        self.ticks = 0
        self.quiet_ticks = quiet_ticks  # no live frame before this many ticks (short cells: one at the end)
        self.drawn_steps = -1  # history length shown by the last frame
        self.start_steps = self._steps()

    # ------------------------------------------------------------------ hook

    def tick(self, session: Any) -> None:
        """The session's progress hook; never raises (an exception would abort the cell)."""
        try:
            self._tick(session)
        except Exception:
            pass

    def _tick(self, session: Any) -> None:
        if not self.enabled:
            return
        if self.stream_output:
            self._stream_printed(session)
        self.ticks += 1
        now = time.monotonic()
        if self.ticks <= self.quiet_ticks or now - self.last_draw < self.min_gap:
            return
        if self._steps() > self.start_steps:
            self._draw()
            self.last_draw = time.monotonic()

    def _stream_printed(self, session: Any) -> None:
        peek = getattr(getattr(session, "rt", None), "peek_output", None)
        if peek is None:
            return
        try:
            text = peek()
        except Exception:
            return
        # only whole lines: a partial UTF-8 sequence at the end would decode differently later
        end = text.rfind("\n") + 1
        if end > self.sent_chars:
            self.stream("stdout", text[self.sent_chars:end])
            self.sent_chars = end

    def _steps(self) -> int:
        try:
            return int(self.session.rt.global_step())
        except Exception:
            return 0

    def _draw(self) -> None:
        from noma.plots import MAX_POINTS, history_png

        try:
            # the bounded summary (plus the exact losses when they are few): a frame's cost does
            # not depend on how many steps the session trained
            history = self.session.read_history(recent=self._steps() <= MAX_POINTS)
            png = history_png(history, self.session.dims)
        except Exception:
            return
        self.drawn_steps = int(history.total_steps)
        data = {"image/png": png, "text/plain": f"<training plot: {self.drawn_steps} steps>"}
        if self.display_id is None:
            self.display_id = uuid.uuid4().hex
            self.publish("display_data", {"data": data, "metadata": {},
                                          "transient": {"display_id": self.display_id}})
        else:
            self.updates += 1
            self.publish("update_display_data", {"data": data, "metadata": {},
                                                 "transient": {"display_id": self.display_id}})

    # ------------------------------------------------------------------ end of the segment

    def remaining_output(self, output: str) -> str:
        """The part of the segment's final printed output not streamed yet (streamed text is a prefix)."""
        return output[self.sent_chars:]

    def finish(self) -> None:
        """Draw the final state once more: a plot for every cell that trained (also one too short
        for a live tick), or an update of the live plot when steps ran since its last frame."""
        if not self.enabled:
            return
        steps = self._steps()
        if steps > self.start_steps and steps != self.drawn_steps:
            self._draw()
