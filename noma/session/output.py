"""What running a cell gives back: ExecResult, and the live stream of what a running cell prints.

Owns: `ExecResult` (printed text, value, diagnostics, status, timings of one cell), `LiveOutput`
(the runtime's live buffer taken while native code runs and handed to a front end's sink in whole
lines, warnings in program order), the label of a cell in undo messages and the result of a cell an
interrupt cancelled before it ran.
Imports: noma.diagnostics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from noma.diagnostics import Diagnostic, Kind, Source


@dataclass
class ExecResult:
    """What running one cell produced."""

    output: str = ""
    value: Any = None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    status: str = "ok"  # ok | error | interrupted
    steps: int = 0  # training steps this cell ran
    compile_seconds: float = 0.0
    run_seconds: float = 0.0
    #: the cell's compiled code was reused (same text, same symbol-table context): nothing compiled
    cache_hit: bool = False
    #: where compile_seconds went (seconds): front_end (parse, IR, autodiff, IR passes),
    #: lowering (NOMA IR to LLVM IR text), llvm_parse, llvm_optimise, llvm_codegen
    compile_phases: dict[str, float] = field(default_factory=dict)
    #: `output` and the warnings were already delivered, as they were printed, to the session's
    #: output_sink (front ends then show only the value and the errors)
    streamed: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.kind is Kind.WARNING]

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.kind is not Kind.WARNING]


def cell_label(source: Source) -> str:
    """`<cell 3> `realloc h = 4;`` (the first line of its code, shortened)."""
    lines = [line.strip() for line in source.text.splitlines() if line.strip()]
    first = lines[0] if lines else ""
    if len(first) > 50 or len(lines) > 1:
        first = first[:47].rstrip() + " …"
    return f"{source.name} `{first}`"


def cancelled(compile_seconds: float) -> ExecResult:
    """The result of a cell an interrupt cancelled before it ran (nothing changed)."""
    return ExecResult(status="interrupted", compile_seconds=compile_seconds, diagnostics=[Diagnostic(
        Kind.RUNTIME, "interrupted before the cell ran; nothing changed")])


class LiveOutput:
    """What a running cell printed, taken from the runtime (noma_live_take) and handed to a sink:
    whole lines of text and each warning, in program order; the text and warnings are kept for
    the ExecResult. `warning` turns a runtime warning record (its frame's text) into its located
    Diagnostic."""

    def __init__(self, sink: Callable[[str, Any], None],
                 warning: Optional[Callable[[str], Diagnostic]] = None):
        self.sink = sink
        self.warning = warning or (lambda record: Diagnostic(Kind.WARNING, record))
        self.pending = b""  # an unfinished line
        self.parts: list[str] = []
        self.warnings: list[Diagnostic] = []

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def drain(self, rt: Any, final: bool) -> None:
        data = self.pending + rt.take_live()
        self.pending = b""
        pieces = data.split(b"\0")
        self._text(pieces[0], final or len(pieces) > 1)
        for piece in pieces[1:]:
            message, _, rest = piece.partition(b"\n")
            self._emit("warning", message.decode("utf-8", "replace"))
            self._text(rest, final or piece is not pieces[-1])

    def _text(self, data: bytes, whole: bool) -> None:
        end = len(data) if whole else data.rfind(b"\n") + 1
        if end:
            self._emit("stdout", data[:end].decode("utf-8", "replace"))
        self.pending += data[end:]

    def emit_warning(self, diag: Diagnostic) -> None:
        """A warning of the compiler's, before the code runs (kept in the result by the caller)."""
        self._send("warning", diag)

    def _emit(self, kind: str, text: str) -> None:
        if kind == "warning":
            diag = self.warning(text)
            self.warnings.append(diag)
            self._send(kind, diag)
        else:
            self.parts.append(text)
            self._send(kind, text)

    def _send(self, kind: str, payload: Any) -> None:
        try:
            self.sink(kind, payload)
        except Exception:
            pass  # a front end's display must never disturb the cell
