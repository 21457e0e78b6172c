"""Source text, spans and diagnostics, rendered with the source line and a caret.

Owns: Source, Span, Diagnostic (with its Notes), NomaError, the call notes of run-time errors
(call_sites, call_notes: one rule for the session and the interpreter; noma_rt.c mirrors it for
executables) and the one place diagnostics become text.
Imports: nothing of NOMA's (the bottom of the layering).
"""

from __future__ import annotations

import dataclasses
import re
from bisect import bisect_right
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import Any, Optional, Sequence


class Kind(str, Enum):
    """What sort of mistake a diagnostic reports."""

    SYNTAX = "syntax"
    NAME = "name"
    TYPE = "type"
    SHAPE = "shape"
    RUNTIME = "runtime"
    IO = "io"
    WARNING = "warning"


#: Order used by the native runtime's int32 error kinds.
RUNTIME_KIND_ORDER = (Kind.SYNTAX, Kind.NAME, Kind.TYPE, Kind.SHAPE, Kind.RUNTIME, Kind.IO)


@dataclass(frozen=True)
class Source:
    """A named piece of NOMA text (a file or a cell)."""

    name: str
    text: str

    @cached_property
    def _line_starts(self) -> list[int]:
        """Offsets where lines start (computed once: a program has a span per operation)."""
        return [0] + [m.end() for m in re.finditer("\n", self.text)]

    def line_text(self, line: int) -> str:
        starts = self._line_starts
        if not 0 < line <= len(starts):
            return ""
        end = starts[line] - 1 if line < len(starts) else len(self.text)
        return self.text[starts[line - 1]:end].rstrip("\r")

    def position(self, offset: int) -> tuple[int, int]:
        """1-based (line, column) of a character offset."""
        offset = max(0, min(offset, len(self.text)))
        line = bisect_right(self._line_starts, offset)
        return line, offset - self._line_starts[line - 1] + 1


@dataclass(frozen=True)
class Span:
    """A range of characters [start, end) in one Source."""

    source: Source = field(compare=False, repr=False, hash=False)
    start: int
    end: int
    #: code inlined into a caller (a call inside a training step): the call it was inlined at,
    #: itself a Span that may have been inlined (innermost call first). Not part of equality.
    inlined_at: Optional["Span"] = field(default=None, compare=False, repr=False, hash=False)

    @property
    def line(self) -> int:
        return self.source.position(self.start)[0]

    @property
    def column(self) -> int:
        return self.source.position(self.start)[1]

    def to(self, other: "Span") -> "Span":
        """The span covering self through other."""
        return Span(self.source, min(self.start, other.start), max(self.end, other.end))

    def text(self) -> str:
        return self.source.text[self.start:self.end]


@dataclass(frozen=True)
class Note:
    """A remark attached to a diagnostic, `note: MESSAGE`, with its own located line when it has
    a span (the calls that led to a run-time error: `note: called from here`)."""

    message: str
    span: Optional[Span] = None


@dataclass(frozen=True)
class Diagnostic:
    """One user-facing problem: kind, plain message, where; `notes` are located remarks (the
    call sites of a run-time error, innermost first), `note` a closing remark in words."""

    kind: Kind
    message: str
    span: Optional[Span] = None
    note: Optional[str] = None
    notes: tuple[Note, ...] = ()

    def render(self, color: bool = False) -> str:
        return render(self, color=color)


class NomaError(Exception):
    """Raised by compiler stages and the session for user mistakes; carries diagnostics."""

    def __init__(self, diagnostics: "list[Diagnostic] | Diagnostic"):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(d.render() for d in self.diagnostics))


def located_warnings(spans: Sequence[Any], warnings: Sequence[tuple[int, str, Optional[str]]],
                     rebind: Optional[tuple[Source, Source]] = None) -> list[Diagnostic]:
    """Compile-time warnings (span id, message, note) as diagnostics located by `spans`;
    `rebind` (cached source, this run's source) names a re-run cell as this run does."""
    out = []
    for span_id, message, note in warnings:
        span = spans[span_id] if 0 <= span_id < len(spans) else None
        if span is not None and rebind is not None and span.source is rebind[0]:
            span = Span(rebind[1], span.start, span.end)
        out.append(Diagnostic(Kind.WARNING, message, span, note))
    return out


#: call notes of a run-time error: the innermost CALL_NOTES_INNER are shown, then the outermost
#: (the call in the user's cell or file); the calls between them are counted in one note
CALL_NOTES_INNER = 8
CALL_HERE = "called from here"


def rebind(span: Optional[Span], old: Source, new: Source) -> Optional[Span]:
    """span (and the calls it was inlined at) with the Source `old` replaced by `new`: a cell re-run
    from the cell cache is named as this run names it."""
    if span is None:
        return None
    at = rebind(span.inlined_at, old, new)
    if span.source is not old and at is span.inlined_at:
        return span
    return Span(new if span.source is old else span.source, span.start, span.end, at)


def call_sites(primary: Optional[Span], frames: Sequence[Optional[Span]]) -> list[Span]:
    """The call sites that led to a failure at `primary`, innermost first: the calls its code was
    inlined at (Span.inlined_at), then each active call (`frames`, innermost first; None, a call
    with no location such as the implicit call of `main`, is left out) followed by the calls its
    own code was inlined at. The runtime's executables list them by the same rule (noma_rt.c)."""
    out: list[Span] = []

    def chain(span: Optional[Span]) -> None:
        while span is not None and span.inlined_at is not None:
            span = span.inlined_at
            out.append(span)

    chain(primary)
    for frame in frames:
        if frame is not None:
            out.append(frame)
            chain(frame)
    return out


def call_notes(sites: Sequence[Span]) -> tuple[Note, ...]:
    """`note: called from here` for each call site (innermost first), bounded: the innermost
    CALL_NOTES_INNER and the outermost, with `... N more calls` for those between."""
    if len(sites) <= CALL_NOTES_INNER + 1:
        return tuple(Note(CALL_HERE, s) for s in sites)
    hidden = len(sites) - CALL_NOTES_INNER - 1
    return (*(Note(CALL_HERE, s) for s in sites[:CALL_NOTES_INNER]),
            Note(f"... {hidden} more call{'s' if hidden != 1 else ''}"), Note(CALL_HERE, sites[-1]))


def with_call_notes(diag: Diagnostic, frames: Sequence[Optional[Span]]) -> Diagnostic:
    """diag with the notes of the calls that led to it (call_sites; none: diag itself)."""
    sites = call_sites(diag.span, frames)
    return dataclasses.replace(diag, notes=diag.notes + call_notes(sites)) if sites else diag


def error(kind: Kind, message: str, span: Optional[Span] = None, note: Optional[str] = None) -> NomaError:
    """Shorthand: a NomaError holding one diagnostic."""
    return NomaError(Diagnostic(kind, message, span, note))


_RED, _BLUE, _BOLD, _RESET, _YELLOW = "\x1b[31m", "\x1b[34m", "\x1b[1m", "\x1b[0m", "\x1b[33m"


#: characters of a source line shown around the caret (longer lines are cut, marked with …)
_SHOWN = 160


def location_text(span: Span, color: bool = False) -> str:
    """The ` --> name:L:C` line, the source line and the caret underline."""
    line, col = span.source.position(span.start)
    text = span.source.line_text(line)
    end_line, end_col = span.source.position(max(span.start, span.end - 1))
    width = max(1, (end_col - col + 1) if end_line == line else len(text) - col + 1)
    shown_col = col
    if len(text) > _SHOWN:  # a very long line: the part around the caret (the column stays true)
        first = max(0, min(col - 1 - _SHOWN // 2, len(text) - _SHOWN))
        text = ("…" if first else "") + text[first:first + _SHOWN] + ("…" if first + _SHOWN < len(text) else "")
        shown_col = col - first + (1 if first else 0)
        width = min(width, len(text) - shown_col + 1)
    col_for_caret = shown_col
    gutter = " " * len(str(line))
    blue = _BLUE if color else ""
    red = _RED if color else ""
    reset = _RESET if color else ""
    caret = " " * (col_for_caret - 1) + "^" + "~" * (width - 1)
    return (
        f"{gutter}{blue}-->{reset} {span.source.name}:{line}:{col}\n"
        f"{gutter} {blue}|{reset}\n"
        f"{blue}{line} |{reset} {text}\n"
        f"{gutter} {blue}|{reset} {red}{caret}{reset}"
    )


def render(diag: Diagnostic, color: bool = False) -> str:
    """`error[shape]: message` followed by the located source line with a caret."""
    head_color = (_YELLOW if diag.kind is Kind.WARNING else _RED) if color else ""
    bold, reset = (_BOLD, _RESET) if color else ("", "")
    label = "warning" if diag.kind is Kind.WARNING else f"error[{diag.kind.value}]"
    out = f"{head_color}{bold}{label}{reset}{bold}: {diag.message}{reset}"
    if diag.span is not None:
        out += "\n" + location_text(diag.span, color=color)
    for note in diag.notes:
        out += f"\n{bold}note{reset}: {note.message}"
        if note.span is not None:
            out += "\n" + location_text(note.span, color=color)
    if diag.note:
        out += f"\n  = note: {diag.note}"
    return out
