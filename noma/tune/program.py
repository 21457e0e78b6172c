"""A NOMA program cut for noma.tune: the setup, the training loop, and what follows it.

`split_program` parses a program and cuts its text at its last top-level `optimize` statement:
setup (everything before it: data, dims, parameters, `let`s), the training cell (the `optimize`
statement itself, which a trial runs again and again, each time until its next step boundary
target, from the session's cell cache: no recompilation) and the rest (run once when the loop
finishes by its own `until`). Also: which top-level names a trial configuration may set (the
program's top-level `let`s with a number literal value and its `dim`s). Imports the parser only.
"""
from __future__ import annotations

from dataclasses import dataclass

from noma.compiler.front import ast
from noma.diagnostics import Diagnostic, Kind, NomaError, Source, Span


@dataclass(frozen=True)
class TunedProgram:
    """A program's three parts (texts padded with blank lines, so line numbers stay the file's)."""

    source: Source
    setup: str
    train: str
    after: str
    dims: frozenset[str]   # top-level `dim` names
    lets: frozenset[str]   # top-level `let` names (values a configuration may set when literal)


def _pad(text: str, start: int, end: int) -> str:
    """text[start:end] preceded by the newlines before `start` (diagnostics keep their lines)."""
    return "\n" * text.count("\n", 0, start) + text[start:end]


def split_program(source: Source) -> TunedProgram:
    """Cut `source` at its last top-level optimize statement (NomaError, located, when none)."""
    from noma.compiler.front.parse import parse

    program = parse(source)
    loops = [s for s in program.items if isinstance(s, ast.Optimize)]
    if not loops:
        span = Span(source, 0, min(len(source.text), 1))
        raise NomaError(Diagnostic(Kind.SYNTAX, "noma tune trains a program's last top-level `optimize` "
                                   "loop, and this program has none", span))
    loop = loops[-1]
    text = source.text
    dims = frozenset(s.name for s in program.items if isinstance(s, ast.DimDecl))
    lets = frozenset(s.name for s in program.items if isinstance(s, ast.Let))
    return TunedProgram(source, text[:loop.span.start], _pad(text, loop.span.start, loop.span.end),
                        _pad(text, loop.span.end, len(text)), dims, lets)
