"""The REPL's engine, independent of the terminal library: one input in, text out.

Owns: ReplCore (the live Session, running code or a meta-command, printing output, values and
diagnostics, Ctrl-C during execution → a step-boundary interrupt that keeps the state, and the
one-line "internal error" for anything unexpected: never a traceback, never an exit on error),
and run_piped(): the plain loop used when stdin is not a terminal (`echo 'print(1);' | noma repl`)
that accumulates lines until noma.compiler.front.parse.is_complete says a statement is finished.
Imports: noma.session, noma.meta, noma.display, noma.repl.progress. No prompt_toolkit.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any, Callable, Iterable, Iterator, Optional, TextIO

from noma.display import format_value
from noma.meta import is_meta, render_result, run_meta
from noma.repl.progress import Progress

QUIT_COMMANDS = (":quit", ":exit", ":q")


class ReplCore:
    """A Session plus the rules for showing what each input did."""

    def __init__(self, dtype: str = "f64", out: Optional[TextIO] = None, err: Optional[TextIO] = None,
                 session: Any = None):
        self.out = out or sys.stdout
        self.err = err or self.out
        self.color = _isatty(self.out) and not os.environ.get("NO_COLOR")
        self.failures = 0
        self.progress = Progress(self.out, live=self.color, color=self.color)
        if session is None:
            from noma.session.core import Session

            session = Session(dtype=dtype)
        self.session = session
        self._attach(session)

    def _attach(self, session: Any) -> None:
        """Live display of a session's cells: status line every 0.1 s, printed output as it comes."""
        session.progress = self.progress
        session.progress_interval = 0.1
        session.output_sink = self.progress.output
        session.clear_interrupt_on_execute = False  # handle() does, before its SIGINT handler

    # ------------------------------------------------------------------ one input

    def handle(self, text: str, interrupted: Optional[Callable[[], bool]] = None) -> bool:
        """Run one complete input (code or `:command`). False when the user asked to quit.
        `interrupted` says whether a Ctrl-C for this input came before its handler is installed
        here (the prompt's SIGINT recorder): then the input is cancelled as if it came after."""
        stripped = text.strip()
        if not stripped:
            return True
        if stripped in QUIT_COMMANDS:
            return False
        # a Ctrl-C from here on stops (or cancels) this input: the flag is cleared before the
        # handler that sets it is installed, not when the session starts executing
        self.session.rt.clear_interrupt()
        with self.session.sigint_stops_training():
            if interrupted is not None and interrupted():  # one that came earlier is not lost
                self.session.interrupt()
            try:
                self.progress.begin(self.session)
                if is_meta(stripped):
                    ok = self._meta(stripped)
                else:
                    ok = self._code(text)
            except BrokenPipeError:
                raise  # the reader of our output went away: nothing left to show
            except KeyboardInterrupt:
                self.progress.clear()
                self._write(self.err, "interrupted\n")
                ok = False
            except Exception as exc:  # a NOMA bug, not the user's: one line, keep going
                self.progress.clear()
                self._write(self.err, f"internal error ({type(exc).__name__}: {exc}); the session continues\n")
                if os.environ.get("NOMA_DEBUG"):
                    traceback.print_exc()
                ok = False
            finally:
                try:
                    self.progress.end(self.session)
                except Exception:
                    pass
        if not ok:
            self.failures += 1
        return True

    def _code(self, text: str) -> bool:
        result = self.session.execute(text)
        self.progress.end(self.session)
        self._show(result)
        return result.status == "ok"

    def _show(self, result: Any) -> None:
        """A cell's output (unless streamed as it came), value and diagnostics."""
        if result.streamed:  # printed text and warnings were shown as they came
            if result.output and not result.output.endswith("\n"):
                self._write(self.out, "\n")
        elif result.output:
            self._write(self.out, result.output if result.output.endswith("\n") else result.output + "\n")
        if result.value is not None and result.status == "ok":
            self._write(self.out, format_value(result.value) + "\n")
        for diag in result.diagnostics:
            if result.streamed and diag.kind.value == "warning":
                continue
            stream = self.out if diag.kind.value == "warning" else self.err
            self._write(stream, diag.render(color=self.color) + "\n")

    def _meta(self, line: str) -> bool:
        result = run_meta(self.session, line, color=self.color)
        if result.session is not None:
            self.session = result.session
            self._attach(self.session)
        if line.split()[0] in (":undo", ":load", ":reset"):  # restoring state records runtime
            self.progress.begin(self.session)  # events of its own: not the user's resizes
        self.progress.end(self.session)
        text, cell = result.text, result.result
        if cell is not None and cell.streamed:  # `:run`, `:time`: the cell printed as it ran
            rendered = render_result(cell, self.color)
            if text.startswith(rendered):
                self._show(cell)
                text = text[len(rendered):].lstrip("\n")
        if text:
            self._write(self.out if result.ok else self.err, text.rstrip("\n") + "\n")
        return result.ok

    def _write(self, stream: TextIO, text: str) -> None:
        if stream is not self.out:
            self.out.flush()
        stream.write(text)
        stream.flush()

    # ------------------------------------------------------------------ Ctrl-C

    def cancelled(self) -> None:
        """Report an input that Ctrl-C cancelled before it ran (nothing changed)."""
        from noma.diagnostics import Diagnostic, Kind

        self.failures += 1
        self.progress.clear()
        diag = Diagnostic(Kind.RUNTIME, "interrupted before the cell ran; nothing changed")
        self._write(self.err, diag.render(color=self.color) + "\n")

    # ------------------------------------------------------------------ front-end helpers

    def banner(self) -> str:
        from noma import __version__

        dtype = getattr(self.session, "dtype", "f64")
        return (f"NOMA {__version__} ({dtype}) — type NOMA statements; :help for commands, "
                "Ctrl-D to exit")


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def split_inputs(lines: Iterable[str]) -> Iterator[str]:
    """Group lines into inputs: a `:command` line alone, code until is_complete (blank lines skipped
    between inputs). Whatever is left at the end is yielded too (it may be a syntax error)."""
    from noma.compiler.front.parse import is_complete

    buffer = ""
    for line in lines:
        line = line.rstrip("\r\n")
        if not buffer:
            if not line.strip():
                continue
            if is_meta(line):
                yield line
                continue
        buffer = f"{buffer}\n{line}" if buffer else line
        if is_complete(buffer):
            yield buffer
            buffer = ""
    if buffer.strip():
        yield buffer


def run_piped(core: ReplCore, stream: TextIO) -> int:
    """Run inputs read from a non-terminal stdin; 0 when every input succeeded, else 1."""
    try:
        for text in split_inputs(stream):
            if not core.handle(text):
                break
        core.out.flush()
    except BrokenPipeError:  # `noma repl < f | head`: stop quietly
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 1
    return 0 if core.failures == 0 else 1
