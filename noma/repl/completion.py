"""Tab completion for the REPL: keywords, builtins, meta-commands and the session's live names.

Owns: NomaCompleter (a prompt_toolkit Completer) and `candidates()`, the plain list of
(word, meta text) pairs it draws from, so tests can check it without a terminal. Parameters show
their shape and dtype in the menu's meta column (`[2, 8] f64`), globals their shape, dims their
size, functions their parameters. After `:run`/`:load`/`:save`/`:plot` it completes file names;
after `:ir`/`:grad`/`:llvm` function names and `cell`.
Imports: prompt_toolkit, noma.lexer (word lists), noma.meta.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable

import numpy as np
from prompt_toolkit.completion import CompleteEvent, Completer, Completion, PathCompleter
from prompt_toolkit.document import Document

from noma.lexer import BUILTINS, CAST_TYPES, KEYWORDS, OPTIMIZERS
from noma.meta import COMMANDS, meta_names

_WORD = re.compile(r"[A-Za-z_][\w.]*$")  # `nn.gel` completes names under a module alias
_FILE_COMMANDS = (":run", ":load", ":save", ":plot", ":r")
_FUNCTION_COMMANDS = (":ir", ":grad", ":llvm")


def _shape(value: Any) -> str:
    if value is None:
        return "undefined"
    if isinstance(value, float):
        return "scalar"
    return "[" + ", ".join(str(d) for d in np.shape(value)) + "]"


def live_names(session: Any) -> list[tuple[str, str]]:
    """(name, meta) for the session's parameters, dims, globals and functions."""
    out: list[tuple[str, str]] = []
    dtype = getattr(session, "dtype", "f64")
    try:
        for name, value in session.params.items():
            out.append((name, f"{_shape(value)} {dtype} param"))
        for name, size in session.dims.items():
            out.append((name, f"dim = {size}"))
        for name, value in session.globals().items():
            if value is not None:
                out.append((name, f"{_shape(value)} {dtype}"))
        for name, fn in session.symbols.functions.items():
            out.append((name, f"fn({', '.join(fn.params)})"))
    except Exception:
        pass  # completion must never fail
    return out


def candidates(session: Any) -> list[tuple[str, str]]:
    """Every completable word with its meta text; live names first (they win over duplicates)."""
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    words = live_names(session) + [(w, "builtin") for w in BUILTINS] + [(w, "keyword") for w in KEYWORDS]
    words += [(w, "optimizer") for w in OPTIMIZERS] + [(w, "cast") for w in CAST_TYPES]
    for word, meta in words:
        if word not in seen:
            seen.add(word)
            out.append((word, meta))
    return out


class NomaCompleter(Completer):
    """Completes from `candidates(session_getter())`; the getter follows `:reset`."""

    def __init__(self, session_getter: Callable[[], Any]):
        self.session_getter = session_getter
        self.paths = PathCompleter(expanduser=True)

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterable[Completion]:
        line = document.current_line_before_cursor
        stripped = line.lstrip()
        if stripped.startswith(":") and document.cursor_position_row == 0:
            yield from self._meta(stripped, document, complete_event)
            return
        match = _WORD.search(line)
        if match is None:
            return
        prefix = match.group(0)
        for word, meta in candidates(self.session_getter()):
            if word.startswith(prefix):
                yield Completion(word, start_position=-len(prefix), display_meta=meta)

    def _meta(self, text: str, document: Document, event: CompleteEvent) -> Iterable[Completion]:
        command, space, arg = text.partition(" ")
        if not space:
            for name in meta_names() + [":quit"]:
                if name.startswith(command):
                    help_text = COMMANDS.get(name[1:], ("", "leave the REPL"))[1]
                    yield Completion(name, start_position=-len(command), display_meta=help_text)
            return
        arg = arg.lstrip()
        if command in _FILE_COMMANDS:
            sub = Document(arg, len(arg))
            yield from self.paths.get_completions(sub, event)
        elif command in _FUNCTION_COMMANDS:
            session = self.session_getter()
            names = ["cell", *sorted(getattr(session.symbols, "functions", {}))]
            for name in names:
                if name.startswith(arg):
                    yield Completion(name, start_position=-len(arg))
