"""Live feedback while a cell runs: progress text and an in-place training plot, drawn off the main thread.

Owns: the per-cell state of the session's progress hook and the thread that draws plot frames.
The session calls `tick(session)` from the kernel's main thread every `progress_interval` seconds
while native code runs in a worker thread (printed text reaches the notebook through the
session's output sink, not through here). Each tick only reads counters and publishes what is
ready, so the main thread never waits for a drawing:
- progress text (`step 12,000  loss 0.031  450,000 steps/s`) as a display_data with its own
  display_id, updated in place (update_display_data) at most `text_rate` times per second;
- plot frames: once the cell has trained for `first_frame_after` seconds, the tick hands a
  snapshot of the history to the painter (its bounded summary, plus the exact losses while there
  are few: a frame costs the same however long the session trained; noma.kernel.painter: a process
  of its own renders it with noma.plot_frames.FrameCache), and a later tick publishes the finished PNG
  (display_data with a display_id, then update_display_data), at most `max_rate` frames per second
  and spaced by four times the last frame's drawing time (drawing takes at most a quarter of a core).
`finish(interrupted)` publishes the final state: the progress text, and a final frame for every
cell that trained (a short cell gets only this one); after an interrupt it draws nothing more, so
the reply is not held up by a drawing (a finished frame is shown, else the last live one stays).
Imports: noma.session.progress, noma.kernel.painter; publishing goes through callables the kernel passes in.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable, Optional

from noma.kernel.painter import Painter, shared_painter
from noma.session.progress import Rate, global_step, status_text

Publish = Callable[[str, dict], None]


class LiveDisplay:
    """Progress-hook state for one code segment of a cell."""

    def __init__(self, session: Any, publish: Publish, enabled: bool = True, max_rate: float = 4.0,
                 text_rate: float = 5.0, first_frame_after: float = 0.25):
        self.session = session
        self.publish = publish
        self.enabled = enabled
        self.min_gap = 1.0 / max_rate
        self.text_gap = 1.0 / text_rate
        self.first_frame_after = first_frame_after
        self.display_id: Optional[str] = None
        self.text_id: Optional[str] = None
        self.updates = 0
        self.run_started: Optional[float] = None  # when native code started (estimated at the first tick)
        self.last_frame = 0.0  # when the last frame was requested
        self.last_text = 0.0
        self.drawn_steps = -1  # steps of the newest frame requested
        self.shown_steps = -1  # steps of the newest frame published
        self.start_steps = self._steps()
        self.rate = Rate(self.start_steps)
        self.painter: Optional[Painter] = None

    # ------------------------------------------------------------------ hook

    def tick(self, session: Any) -> None:
        """The session's progress hook; never raises (an exception would abort the cell)."""
        try:
            self._tick()
        except Exception:
            pass

    def _tick(self) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.run_started is None:
            self.run_started = now - self.session.progress_interval  # ticks start once native code runs
            self.rate.started = time.perf_counter() - self.session.progress_interval  # not the compile time
        self._publish_frame()
        steps = self._steps()
        self.rate.update(steps)
        if steps == self.start_steps or not getattr(self.session, "running", True):
            return  # nothing trained yet, or the code has finished: finish() shows the final state
        if now - self.last_text >= self.text_gap:
            self._show_text(steps, self.rate.value)
            self.last_text = now
        if now - self.run_started >= self.first_frame_after and now - self.last_frame >= self.min_gap:
            painter = self._painter()
            # drawing takes at most a quarter of the time (of one core): frames follow each
            # other no sooner than 4 drawing times apart
            if painter is not None and painter.idle and now - self.last_frame >= 4 * painter.last_seconds:
                self._request_frame(steps)
                self.last_frame = now

    def _steps(self) -> int:
        try:
            return global_step(self.session)
        except Exception:
            return 0

    def _painter(self) -> Optional[Painter]:
        if self.painter is None:
            self.painter = shared_painter()
            if self.painter is not None:
                self.painter.discard()  # nothing of an earlier cell
        return self.painter

    def _request_frame(self, steps: int) -> None:
        from noma.plots import MAX_POINTS

        painter = self._painter()
        if painter is None:
            return
        # a snapshot, taken here (the painter never reads the session), of bounded size
        history = self.session.read_history(recent=steps <= MAX_POINTS)
        painter.submit(steps, history, dict(self.session.dims))
        self.drawn_steps = steps

    def _publish_frame(self) -> None:
        ready = None if self.painter is None else self.painter.take()
        if ready is None:
            return
        steps, png = ready
        self.shown_steps = steps
        data = {"image/png": png, "text/plain": f"<training plot: {steps} steps>"}
        if self.display_id is None:
            self.display_id = uuid.uuid4().hex
            self.publish("display_data", {"data": data, "metadata": {},
                                          "transient": {"display_id": self.display_id}})
        else:
            self.updates += 1
            self.publish("update_display_data", {"data": data, "metadata": {},
                                                 "transient": {"display_id": self.display_id}})

    def _show_text(self, steps: int, rate: float) -> None:
        data = {"text/plain": status_text(self.session, steps, rate)}
        if self.text_id is None:
            self.text_id = uuid.uuid4().hex
            self.publish("display_data", {"data": data, "metadata": {}, "transient": {"display_id": self.text_id}})
        else:
            self.publish("update_display_data", {"data": data, "metadata": {},
                                                 "transient": {"display_id": self.text_id}})

    # ------------------------------------------------------------------ end of the segment

    def finish(self, interrupted: bool = False) -> None:
        """The final state: the progress text (when it was shown) with the cell's overall rate, and
        a plot for every cell that trained (also one too short for a live frame), or an update of
        the live plot when steps ran since its last frame. After an interrupt (also one arriving
        while the final frame is drawn) the reply does not wait for a drawing: a frame already
        finished is shown, the last live frame stays."""
        if not self.enabled:
            self._close()
            return
        try:
            steps = self._steps()
            if self.text_id is not None:
                self._show_text(steps, self.rate.overall(steps))
            painter = self._painter() if steps > self.start_steps and not interrupted else self.painter
            if painter is not None and steps > self.start_steps and steps != self.drawn_steps:
                if not interrupted and self._wait(painter):  # an older frame first
                    self._publish_frame()
                    self._request_frame(steps)
            if self.painter is not None:
                if not interrupted:
                    self._wait(self.painter)
                self._publish_frame()
        finally:
            self._close()

    def _wait(self, painter: Painter) -> bool:
        """Wait for the painter, unless an interrupt arrives meanwhile. False when it gave up."""
        while not painter.wait(0.02):
            if self._interrupt_pending():
                return False
        return True

    def _interrupt_pending(self) -> bool:
        try:
            return bool(self.session.rt.interrupt_pending())
        except Exception:
            return False

    def _close(self) -> None:
        if self.painter is not None:
            self.painter.discard()  # a frame still being drawn belongs to no cell now
