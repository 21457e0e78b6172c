"""Training-plot frames rendered in a process of their own, so drawing never holds the kernel's GIL.

Owns: the painter process (multiprocessing, spawn; niced so training gets the CPU first) that
turns history snapshots into PNG bytes with noma.plot_frames.FrameCache (noma.plots' figure,
drawn with matplotlib Agg only when it would look different from the last frame: only that
process touches figures), and the kernel-side Painter: one request at a time, the newest
snapshot wins, results picked up without blocking. A thread in the kernel (the pump) only
moves bytes through the pipe (blocking reads release the GIL), so the kernel's main thread, the
thread running native code and ipykernel's threads never wait for a drawing: in a thread, the
C++ of Agg and PNG encoding held the GIL for tens of milliseconds at a time, and a cell's
interrupt reply waited for it.
If the process cannot start or dies, the painter reports itself broken and frames are skipped
(training and output are unaffected).
Imports: multiprocessing, threading; noma.plot_frames in the painter process only.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator, Optional


def _serve(conn: Any) -> None:
    """The painter process: (steps, history, dims) in, (steps, PNG bytes or None) out."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        os.nice(10)
    except OSError:
        pass
    from noma.plot_frames import FrameCache

    frames = FrameCache()  # a frame that would look as the last one is not drawn again
    try:  # import the drawing stack now, not at the first frame
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.figure  # noqa: F401
    except Exception:
        pass
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        steps, history, dims = request
        try:
            png: Optional[bytes] = frames.png_of(history, dims)
        except Exception:
            png = None
        try:
            conn.send((steps, png))
        except (BrokenPipeError, OSError):
            return


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: the child keeps Python's default
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class Painter:
    """The kernel's side of the painter process."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._request: Optional[tuple[int, int, Any, dict]] = None  # (generation, steps, history, dims)
        self._ready: Optional[tuple[int, bytes]] = None
        self._busy = False
        self._generation = 0
        self.broken = False
        #: seconds the last frame took, request to result (LiveDisplay spaces frames by it)
        self.last_seconds = 0.0
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child,), name="noma-painter", daemon=True)
        with _sigint_ignored():  # inherited through exec: a kernel interrupt (sent to the process
            self._process.start()  # group) must not stop the painter, even while it starts
        child.close()
        self._pump_thread = threading.Thread(target=self._pump, name="noma-painter-pump", daemon=True)
        self._pump_thread.start()

    @property
    def idle(self) -> bool:
        with self._cond:
            return not self._busy and self._request is None

    def submit(self, steps: int, history: Any, dims: dict) -> None:
        """Draw this snapshot next (replacing a request not yet sent)."""
        with self._cond:
            if self.broken:
                return
            self._request = (self._generation, steps, history, dims)
            self._cond.notify_all()

    def take(self) -> Optional[tuple[int, bytes]]:
        """The newest finished frame of the current generation (steps, PNG), once."""
        with self._cond:
            ready, self._ready = self._ready, None
            return ready

    def wait(self, timeout: Optional[float]) -> bool:
        """Wait until nothing is requested or being drawn; False when the timeout ran out first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while (self._busy or self._request is not None) and not self.broken:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def discard(self) -> None:
        """Forget requests and frames so far (a new cell): a frame being drawn is dropped."""
        with self._cond:
            self._generation += 1
            self._request = None
            self._ready = None
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.broken = True
            self._cond.notify_all()
        try:
            self._conn.send(None)
        except Exception:
            pass

    def _pump(self) -> None:
        while True:
            with self._cond:
                while self._request is None and not self.broken:
                    self._cond.wait()
                if self.broken:
                    return
                generation, steps, history, dims = self._request  # type: ignore[misc]
                self._request = None
                self._busy = True
            started = time.monotonic()
            try:
                self._conn.send((steps, history, dims))
                done_steps, png = self._conn.recv()
            except Exception:  # the process died or cannot take the request
                with self._cond:
                    self.broken = True
                    self._busy = False
                    self._cond.notify_all()
                return
            with self._cond:
                self._busy = False
                self.last_seconds = time.monotonic() - started
                if png is not None and generation == self._generation:
                    self._ready = (done_steps, png)
                self._cond.notify_all()


_shared: Optional[Painter] = None
_starts = 0
_shared_lock = threading.Lock()
MAX_STARTS = 3  # a painter that keeps dying is not restarted for ever


def shared_painter() -> Optional[Painter]:
    """The process's painter (started on first use, restarted if it died; None when it cannot run)."""
    global _shared, _starts
    with _shared_lock:
        if (_shared is None or _shared.broken) and _starts < MAX_STARTS:
            _starts += 1
            try:
                _shared = Painter()
            except Exception:
                _shared = None
        return _shared if _shared is not None and not _shared.broken else None
