"""NomaKernel: the Jupyter kernel for NOMA, one live Session per kernel process.

Owns: the Jupyter messaging side of a session - executing cells (printed text as stdout
streams, live training plots, a network diagram after a resize, the last value as an
execute_result, NOMA diagnostics as error messages with a caret traceback), meta-commands
(`:params`, `:history`, ... via noma.meta), interrupts (SIGINT stops the native training loop at
a step boundary; the state is kept), completion, inspection, is_complete and history.
Input: Jupyter messages (through ipykernel). Output: replies and IOPub messages.
Imports: ipykernel (only under noma.kernel), noma.session.core, noma.meta, noma.display,
noma.kernel.{introspect, live, painter, diagram}, noma.compiler.front.parse (completeness).
"""

from __future__ import annotations

import asyncio
import contextvars
import fnmatch
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional

from ipykernel.kernelbase import Kernel

import noma
from noma.kernel import introspect
from noma.kernel.live import LiveDisplay
from noma.kernel.painter import shared_painter

#: Diagnostic kind → the `ename` of Jupyter error messages.
ENAMES = {"syntax": "NomaSyntaxError", "name": "NomaNameError", "type": "NomaTypeError",
          "shape": "NomaShapeError", "runtime": "NomaRuntimeError", "io": "NomaIOError"}
_RED, _RESET = "\x1b[31m", "\x1b[0m"


def split_cell(code: str) -> list[tuple[str, str]]:
    """The cell as ("code", text) and ("meta", line) segments, in order.

    Code segments keep their line numbers (they are padded with the newlines before them), so
    diagnostics point at the line of the cell."""
    segments: list[tuple[str, str]] = []
    pending: list[str] = []
    first = 0
    lines = code.split("\n")
    for index, line in enumerate(lines + [":"]):  # a sentinel flushes the last code block
        if line.lstrip().startswith(":"):
            text = "\n".join(pending)
            if text.strip():
                segments.append(("code", "\n" * first + text))
            pending = []
            first = index + 1
            if index < len(lines):
                segments.append(("meta", line.strip()))
        else:
            pending.append(line)
    return segments


class NomaKernel(Kernel):
    """A Jupyter kernel running NOMA cells in one live noma.Session."""

    implementation = "noma"
    implementation_version = noma.__version__
    language = "noma"
    language_version = noma.__version__
    language_info = {
        "name": "noma",
        "version": noma.__version__,
        "mimetype": "text/x-noma",
        "file_extension": ".noma",
        "pygments_lexer": "noma",
        "codemirror_mode": "noma",
    }
    banner = (f"NOMA {noma.__version__}: a small language for training neural networks, compiled "
              "natively through LLVM, with growable parameters. Type :help for meta-commands.")
    help_links: list = []

    #: Seconds between progress-hook calls while native code runs (progress text ≤ 5 updates and
    #: live plots ≤ 4 frames per second, drawn in a thread of their own).
    progress_interval = 0.1

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._noma: Any = None
        self._records: list[tuple[int, str, str]] = []  # (execution count, input, output text)
        self._silent = False
        self._shown: list[str] = []  # text/plain shown by the current cell (for history output)
        self._dispatched = 0.0  # when the shell request being handled arrived
        self._last_sigint = -1.0  # when the last SIGINT arrived
        self._sigint_on_loop = False  # SIGINT is handled by the event loop (_sigint_wakes_the_loop)
        #: cells run on this one thread, so the kernel's event loop serves widget messages (the
        #: `:controls` panel) while a cell trains; True while one runs (read on the loop's thread)
        self._cell_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="noma-cell")
        self.busy = False
        self.controls: Any = None  # the `:controls` panel (noma.kernel.controls), once shown
        signal.signal(signal.SIGINT, self._on_sigint)
        self._serve_comms()
        shared_painter()  # the plot process starts (and imports matplotlib) while the kernel is idle

    def _serve_comms(self) -> None:
        """Comms (what ipywidgets talk through) with ipykernel's comm manager. ipykernel (>= 7.4)
        dispatches comm messages while a request is being handled, as long as the event loop
        runs: do_execute awaits the cell's thread (_in_cell_thread)."""
        import comm
        from ipykernel.comm import CommManager
        from ipykernel.comm.comm import BaseComm

        manager = CommManager(kernel=self)
        self.comm_manager = manager
        comm.get_comm_manager = lambda: manager
        comm.create_comm = lambda *args, **kwargs: BaseComm(*args, **kwargs)
        for msg_type in ("comm_open", "comm_msg", "comm_close"):
            self.shell_handlers[msg_type] = getattr(manager, msg_type)

    # ------------------------------------------------------------------ session and output

    @property
    def noma(self) -> Any:
        """The live NOMA session (created on first use; `self.session` is Jupyter's)."""
        if self._noma is None:
            from noma.session.core import Session

            self._noma = Session()
            self._noma.clear_interrupt_on_execute = False  # pre_handler_hook does (see there)
            if self._last_sigint >= self._dispatched:  # interrupted while the session started
                self._noma.interrupt()
        return self._noma

    def _publish(self, msg_type: str, content: dict) -> None:
        self.send_response(self.iopub_socket, msg_type, content)

    def _stream(self, name: str, text: str) -> None:
        if text:
            self._publish("stream", {"name": name, "text": text})

    # ------------------------------------------------------------------ execute

    async def do_execute(self, code: str, silent: bool, store_history: bool = True,
                         user_expressions: Optional[dict] = None, allow_stdin: bool = False, *,
                         cell_meta: Any = None, cell_id: Any = None) -> dict:
        count = self.execution_count
        self._silent = silent
        self._shown = []
        reply: dict = {"status": "ok", "execution_count": count, "payload": [], "user_expressions": {}}
        segments = split_cell(code)
        for index, (kind, text) in enumerate(segments):
            last = index == len(segments) - 1
            run = self._run_meta if kind == "meta" else self._run_code
            try:
                failure = await self._in_cell_thread(run, text, last, count)
            except KeyboardInterrupt:  # (SIGINT is a stop request here: never expected) still a reply
                self.log.exception("KeyboardInterrupt in a NOMA cell")
                failure = _interrupted("interrupted")
            except Exception as exc:  # e.g. the session cannot start: reply, never leave the client waiting
                self.log.exception("NOMA cell failed")
                failure = _failure("NomaInternalError", f"{type(exc).__name__}: {exc}")
            if failure is not None:
                reply = {"status": "error", "execution_count": count, **failure}
                if not silent:
                    self._publish("error", failure)
                break
        if reply["status"] == "ok" and user_expressions:
            reply["user_expressions"] = self._user_expressions(user_expressions)
        if store_history and not silent:
            self._records.append((count, code, "\n".join(self._shown)))
        return reply

    async def _in_cell_thread(self, run: Callable[..., Optional[dict]], *args: Any) -> Optional[dict]:
        """Run a segment on the cell thread (with this request's context: its parent header)
        while the event loop goes on serving comm messages; the live controls see `busy`."""
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        self.busy = True
        try:
            return await loop.run_in_executor(self._cell_thread, context.run, run, *args)
        finally:
            self.busy = False
            if self._noma is not None:
                failure = self._noma.controls.settle()  # a grow asked for as the loop ended
                if failure:
                    self.log.warning("live controls: %s", failure)
            if self.controls is not None:
                self.controls.refresh()

    # ------------------------------------------------------------------ interrupts

    async def dispatch_shell(self, *args: Any, **kwargs: Any) -> None:
        self._dispatched = time.monotonic()  # an interrupt from now on belongs to this request
        self._sigint_wakes_the_loop()
        await super().dispatch_shell(*args, **kwargs)

    def _sigint_wakes_the_loop(self) -> None:
        """SIGINT is handled by the event loop (asyncio's add_signal_handler: a wakeup fd), once.

        Python runs a signal handler on the main thread only, when that thread next runs
        bytecode. While a cell runs on the cell thread the main thread sleeps in the event loop's
        poll; Linux may deliver the signal to another thread (the cell's, compiling), and then
        nothing woke the main thread: the interrupt waited for the next message (a lost
        interrupt, about 1 in 30 during compilation). The wakeup fd wakes the loop from any
        thread."""
        if self._sigint_on_loop or threading.current_thread() is not threading.main_thread():
            return  # (a subshell's request runs on a thread of its own: the main one installs it)
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self._on_sigint, signal.SIGINT, None)
        self._sigint_on_loop = True

    def pre_handler_hook(self) -> None:
        """SIGINT (a Jupyter interrupt) asks the session to stop instead of raising
        KeyboardInterrupt (ipykernel's default during a request) or being ignored (between
        requests): it cancels a segment still compiling or about to run, and stops a training
        loop at its next step boundary (the runtime's own handler takes over while native code
        runs). A request that came before this message was received (an interrupt of an idle
        kernel) is dropped; one that came since (the request's busy status was visible) is kept.
        The handler stays the event loop's (_sigint_wakes_the_loop)."""
        if self._noma is not None and self._last_sigint < self._dispatched:
            self._noma.rt.clear_interrupt()

    def post_handler_hook(self) -> None:
        """SIGINT stays a stop request between requests too (see pre_handler_hook)."""

    def _on_sigint(self, signum: int, frame: Any) -> None:
        self._last_sigint = time.monotonic()
        if self._noma is not None:
            self._noma.interrupt()

    def _watch(self, stream_output: bool) -> LiveDisplay:
        """Progress text and plots from the session's hook; printed text (code segments) and
        warnings streamed as the cell prints them."""
        live = LiveDisplay(self.noma, self._publish, enabled=not self._silent)
        self.noma.progress = lambda session: self._tick(live, session)
        self.noma.progress_interval = self.progress_interval
        self.noma.output_sink = self._print_live if stream_output and not self._silent else None
        return live

    def _tick(self, live: LiveDisplay, session: Any) -> None:
        """The progress hook: the live display, then the `:controls` panel (sizes, status)."""
        live.tick(session)
        if self.controls is not None:
            self.controls.refresh()

    def _print_live(self, kind: str, payload: Any) -> None:
        if kind == "warning":
            self._stream("stderr", payload.render(color=True) + "\n")
        else:
            self._stream("stdout", payload)

    def _event_count(self) -> int:
        try:
            return len(self.noma.events())  # not .history: that also copies the loss history
        except Exception:
            return 0

    def _run_code(self, text: str, last: bool, count: int) -> Optional[dict]:
        """Run one code segment; publish its output; an error message's content on failure."""
        session = self.noma
        events_before = self._event_count()
        live = self._watch(stream_output=True)
        try:
            result = session.execute(text, name=f"In[{count}]")
        except Exception as exc:  # a compiler or runtime bug: say so, keep the kernel alive
            live.finish(interrupted=True)
            return _failure("NomaInternalError", f"internal compiler error ({type(exc).__name__}: {exc}); "
                            "please report this cell")
        finally:
            session.progress = None
            session.output_sink = None
        if not self._silent:
            if not result.streamed:
                self._stream("stdout", result.output)
                for warning in result.warnings:
                    self._stream("stderr", warning.render(color=True) + "\n")
            live.finish(interrupted=result.status == "interrupted")
            self._show_diagram(events_before)
        else:
            live.finish(interrupted=True)
        if result.status == "interrupted":
            message = result.diagnostics[-1].message if result.diagnostics else "interrupted"
            return _interrupted(message)
        if result.status != "ok":
            return _error_content(result.errors or result.diagnostics)
        if last and result.value is not None and not self._silent:
            self._execute_result(result.value, count)
        return None

    def _execute_result(self, value: Any, count: int) -> None:
        from noma.display import format_value

        import numpy as np

        data = {"text/plain": format_value(value)}
        if np.ndim(value) > 0:
            data["text/html"] = introspect.tensor_html(value, getattr(self.noma, "dtype", "f64"))
        self._shown.append(data["text/plain"])
        self._publish("execute_result", {"execution_count": count, "data": data, "metadata": {}})

    def _show_diagram(self, events_before: int) -> None:
        """After a cell that resized parameters: the network with added/removed units."""
        try:
            events = self.noma.events()[events_before:]
            from noma.kernel.diagram import diagram_for

            png = diagram_for(self.noma, events)
        except Exception as exc:
            self.log.warning("network diagram failed: %s", exc)
            return
        if png is not None:
            self._publish("display_data", {"data": {"image/png": png, "text/plain": "<network diagram>"},
                                           "metadata": {}})

    def _show_controls(self) -> Optional[dict]:
        """`:controls`: the live-controls panel (noma.kernel.controls), one per kernel, shown again."""
        try:
            from noma.kernel.controls import ControlPanel

            if self.controls is None:
                self.controls = ControlPanel(lambda: self.noma, lambda: self.busy)
            self.controls.refresh()
        except ImportError as exc:
            return _failure("NomaMetaError", f":controls needs ipywidgets ({exc}); pip install ipywidgets")
        if not self._silent:
            self._publish("display_data", {"data": self.controls.mimebundle(), "metadata": {}})
        return None

    def _run_meta(self, line: str, last: bool, count: int) -> Optional[dict]:
        """Run a `:command` line through noma.meta (`:controls` here: it needs the kernel)."""
        from noma.meta import run_meta

        if line.split()[0] == ":controls":
            return self._show_controls()

        events_before = self._event_count()
        live = self._watch(stream_output=False)  # :time and :run print through their text
        try:
            result = run_meta(self.noma, line)
        except Exception as exc:  # run_meta reports user mistakes itself: this is a bug
            return _failure("NomaInternalError", f"internal error in {line.split()[0]} ({type(exc).__name__}: {exc})")
        finally:
            if self._noma is not None:
                self._noma.progress = None
        if result.session is not None:  # `:reset` made a new session
            self._noma = result.session
            self._noma.clear_interrupt_on_execute = False
            self._noma.progress = None
        live.finish()
        if not result.ok:
            return _failure("NomaMetaError", result.text.splitlines()[0] if result.text else line,
                            result.text.splitlines())
        if self._silent:
            return None
        if line.split()[0] not in (":undo", ":load", ":reset"):  # their runtime events are not resizes
            self._show_diagram(events_before)  # of the user's (`:run FILE` may resize)
        self._shown.append(result.text)
        if result.png is not None:
            self._publish("display_data", {"data": {"image/png": result.png, "text/plain": result.text},
                                           "metadata": {}})
        elif result.html is not None:
            data = {"text/plain": result.text, "text/html": result.html}
            if last:
                self._publish("execute_result", {"execution_count": count, "data": data, "metadata": {}})
            else:
                self._publish("display_data", {"data": data, "metadata": {}})
        elif result.text:
            self._stream("stdout", result.text + "\n")
        return None

    def _user_expressions(self, expressions: dict) -> dict:
        from noma.display import format_value

        out = {}
        for key, expr in expressions.items():
            text = expr.rstrip()
            result = self.noma.execute(text if text.endswith(";") else text + ";", name=key)
            if result.ok:
                out[key] = {"status": "ok", "data": {"text/plain": format_value(result.value)}, "metadata": {}}
            else:
                out[key] = {"status": "error", **_error_content(result.errors or result.diagnostics)}
        return out

    # ------------------------------------------------------------------ introspection

    async def do_complete(self, code: str, cursor_pos: int) -> dict:
        from noma.meta import meta_names

        cursor_pos = len(code) if cursor_pos is None else cursor_pos
        return introspect.complete(self._session_or_none(), code, cursor_pos, meta_names())

    async def do_inspect(self, code: str, cursor_pos: int, detail_level: int = 0, omit_sections: Any = ()) -> dict:
        cursor_pos = len(code) if cursor_pos is None else cursor_pos
        return introspect.inspect(self._session_or_none(), code, cursor_pos)

    def _session_or_none(self) -> Any:
        """The session for introspection; None when it cannot be created (builtins still complete)."""
        try:
            return self.noma
        except Exception as exc:
            self.log.warning("no NOMA session: %s", exc)
            return None

    async def do_is_complete(self, code: str) -> dict:
        from noma.compiler.front.parse import completeness

        text = "\n".join(line for line in code.split("\n") if not line.lstrip().startswith(":"))
        status = completeness(text) if text.strip() else "complete"
        if status != "incomplete":  # "invalid": no further line can complete it
            return {"status": status}
        depth = max(0, text.count("{") - text.count("}"))
        return {"status": "incomplete", "indent": "    " * depth}

    async def do_history(self, hist_access_type: str, output: bool, raw: bool, session: Any = None,
                         start: Any = None, stop: Any = None, n: Any = None, pattern: Any = None,
                         unique: bool = False) -> dict:
        records = list(self._records)
        if hist_access_type == "range":
            lo = start or 0
            records = [r for r in records if r[0] >= lo and (stop is None or r[0] < stop)]
        elif hist_access_type == "search":
            records = [r for r in records if fnmatch.fnmatchcase(r[1], pattern or "*")]
            if unique:
                latest: dict[str, tuple[int, str, str]] = {}
                for r in records:
                    latest.pop(r[1], None)
                    latest[r[1]] = r
                records = list(latest.values())
            if n:
                records = records[-n:]
        elif hist_access_type == "tail":
            records = records[-n:] if n else records
        history = [(0, c, (code, out) if output else code) for c, code, out in records]
        return {"status": "ok", "history": history}

    # ------------------------------------------------------------------ lifecycle

    async def do_shutdown(self, restart: bool) -> dict:
        self._noma = None  # a restart starts a new process; drop the session either way
        return {"status": "ok", "restart": restart}


def _failure(ename: str, evalue: str, traceback: Optional[list[str]] = None) -> dict:
    return {"ename": ename, "evalue": evalue, "traceback": traceback or [f"{_RED}{ename}{_RESET}: {evalue}"]}


def _interrupted(message: str) -> dict:
    return _failure("KeyboardInterrupt", message,
                    [f"{_RED}KeyboardInterrupt{_RESET}: {message}",
                     "(the session keeps its state: parameters, optimizer state and history)"])


def _error_content(diagnostics: list[Any]) -> dict:
    """`ename` / `evalue` / `traceback` of NOMA diagnostics (source line and caret included)."""
    if not diagnostics:
        return _failure("NomaError", "error")
    first = diagnostics[0]
    kind = getattr(first.kind, "value", str(first.kind))
    traceback: list[str] = []
    for diag in diagnostics:
        traceback.extend(diag.render(color=True).splitlines())
    return _failure(ENAMES.get(kind, "NomaError"), first.message, traceback)
