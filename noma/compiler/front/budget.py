"""How the compiler runs on large and deeply nested input.

Owns: `compiling()`, the context every compilation (parse, irgen, autodiff, passes, lowering)
runs in: Python's cyclic garbage collector paused (a stage builds hundreds of thousands of objects
that all stay alive; its full collections would walk them again and again, so a 1 MB source
took seconds more) and Python's recursion limit raised to what the deepest program the parser
accepts needs (parse.MAX_NESTING levels; each level costs the recursive stages about a dozen
frames); and `too_deep()`, the last-resort diagnostic when a stage still runs out of recursion.
Imports: noma.diagnostics only.
"""

from __future__ import annotations

import gc
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional, TypeVar

from noma.diagnostics import Kind, NomaError, Source, Span, error

T = TypeVar("T")

#: Python frames the compiler may use; enough for parse.MAX_NESTING levels of any construct
RECURSION_LIMIT = 30000


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic GC off for the duration (reference counting still frees everything). What was
    built meanwhile (the AST, the IR: alive, and numerous) then joins the old generation at once:
    left in the young one, the first allocation after the pause had the collector walk all of it
    (~1 s for a 1 MB source), and walk it again as it was promoted."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            to_old_generation()
            gc.enable()


def to_old_generation() -> None:
    """Every object the collector tracks moves to the oldest generation, without a collection:
    to the permanent generation and from there to the oldest one. Not done while something else
    keeps objects frozen (an embedding application): unfreezing would thaw those too."""
    if gc.get_freeze_count() == 0:
        gc.freeze()
        gc.unfreeze()


@contextmanager
def compiling() -> Iterator[None]:
    """GC paused and room for deep recursion while compiling (restored afterwards)."""
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, RECURSION_LIMIT))
    try:
        with gc_paused():
            yield
    finally:
        sys.setrecursionlimit(previous)


def too_deep(span: Optional[Span]) -> NomaError:
    """A located syntax error for code that nests too deeply to compile (the parser's limit
    catches nesting in the source; this covers what stages build from it, e.g. long runs of
    statements after a `return` inside a function, each nesting the rest)."""
    return error(Kind.SYNTAX, "this code nests too deeply to compile", span,
                 "split it into functions or smaller blocks")


def run_stage(source: Source, stage: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """stage(*args, **kwargs) inside compiling(); a RecursionError that escapes it (the last
    resort: parse.MAX_NESTING and irgen's own location catch what the source can cause) becomes
    too_deep() at the source's first line."""
    with compiling():
        try:
            return stage(*args, **kwargs)
        except RecursionError:
            pass
    raise too_deep(Span(source, 0, len(source.text.split("\n", 1)[0])))
