"""Completion, inspection and HTML rendering for the NOMA Jupyter kernel.

Owns: the word under the cursor, completion candidates (keywords, builtins, optimizers, the
session's live names, meta-commands) with typed metadata, the shift-tab inspection text of a
parameter / variable / dim / function / builtin / keyword, and the text/html of tensors.
Pure functions over a Session; no Jupyter imports (the kernel wraps them into replies).
Imports: numpy, noma.display, noma.meta, the builtin table (noma.compiler.middle.ops), the
optimizer registry (noma.optimizers), parse.KEYWORDS.
"""

from __future__ import annotations

import html
import re
from typing import Any, Optional

import numpy as np

from noma import optimizers
from noma.compiler.middle import ops
from noma.display import format_scalar, format_value

_IDENT_END = re.compile(r"[A-Za-z_][A-Za-z_0-9.]*$")  # `nn.gelu`: names under a module alias
_IDENT_START = re.compile(r"^[A-Za-z_0-9.]*")
_CALL_BEFORE = re.compile(r"([A-Za-z_][A-Za-z_0-9.]*)\s*\([^()]*$")
_META_LINE = re.compile(r"^\s*(:[A-Za-z_?]*)$")

#: One line per builtin and optimizer, shown by shift-tab (the builtin table and the registry).
BUILTIN_DOCS: dict[str, str] = {b.name: b.doc for b in ops.BUILTINS.values()}
BUILTIN_DOCS.update({o.name: o.doc() for o in optimizers.OPTIMIZERS.values()})

KEYWORD_DOCS: dict[str, str] = {
    "let": "let x = e;  new variable", "learn": "learn w = e;  declare a learnable parameter",
    "dim": "dim hidden = 16;  a named dimension usable in shapes",
    "alloc": "alloc b = [d1, d2];  a zero-filled parameter-store buffer",
    "realloc": "realloc w = [d1, d2] [init POLICY];  or  realloc hidden = 16;  resize, optimizer state follows",
    "free": "free w;  remove a parameter and its optimizer state",
    "optimize": "optimize(W, b) with adam(lr = 0.05) until loss < 0.01 max 1000 { ...; minimize loss; }",
    "minimize": "minimize e;  the value an optimize body minimizes",
    "batch": "batch xb in X with n { }  loop over row blocks of X",
    "load_csv": 'load_csv x = "f.csv";  read a rank-2 CSV', "save_csv": 'save_csv e, "f.csv";',
    "fn": "fn name(a, b) { ...; return e; }", "for": "for i in a..b { }  (a..b excludes b)",
    "while": "while c { }", "if": "if c { } else { }", "return": "return e;",
    "import": 'import "layers.noma" [as nn];  or  import std.nn [as nn];  a module\'s definitions',
}

OPTIMIZERS = tuple(optimizers.OPTIMIZERS)


def builtin_names() -> list[str]:
    return sorted(ops.BUILTINS)


def keyword_names() -> list[str]:
    try:
        from noma.compiler.front.parse import KEYWORDS
        return sorted(KEYWORDS)
    except Exception:
        return sorted(KEYWORD_DOCS)


def shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def value_kind(value: Any) -> str:
    """`scalar` or `tensor[2, 3]`."""
    if value is None or np.ndim(value) == 0:
        return "scalar"
    return "tensor" + shape_text(np.shape(value))


# ----------------------------------------------------------------------------- completion


def complete(session: Any, code: str, cursor_pos: int, meta_names: list[str]) -> dict:
    """The content of a complete_reply: matches, cursor range and typed metadata."""
    before = code[:cursor_pos]
    line = before.rsplit("\n", 1)[-1]
    meta = _META_LINE.match(line)
    if meta:
        prefix = meta.group(1)
        matches = [(n, "magic", "") for n in meta_names if n.startswith(prefix)]
        start = cursor_pos - len(prefix)
    else:
        found = _IDENT_END.search(before)
        prefix = found.group(0) if found else ""
        start = cursor_pos - len(prefix)
        matches = [m for m in _candidates(session) if m[0].startswith(prefix)]
    seen: set[str] = set()
    unique = []
    for text, kind, signature in matches:
        if text not in seen:
            seen.add(text)
            unique.append((text, kind, signature))
    types = [{"text": t, "type": k, "signature": s, "start": start, "end": cursor_pos} for t, k, s in unique]
    return {"status": "ok", "matches": [t for t, _, _ in unique], "cursor_start": start,
            "cursor_end": cursor_pos, "metadata": {"_jupyter_types_experimental": types}}


def _candidates(session: Any) -> list[tuple[str, str, str]]:
    """(name, type, signature) of live names first, then builtins and keywords."""
    live: list[tuple[str, str, str]] = []
    if session is not None:
        try:
            for name, value in session.params.items():
                live.append((name, "param", "" if value is None else shape_text(np.shape(value))))
            for name, size in session.dims.items():
                live.append((name, "dim", str(size)))
            for name, value in session.globals().items():
                if value is not None:
                    live.append((name, "variable", value_kind(value)))
            for name, fn in session.symbols.functions.items():
                live.append((name, "function", f"fn {name}({', '.join(fn.params)})"))
        except Exception:  # a half-initialised session must not break completion
            pass
    live.sort()
    builtins = [(n, "builtin", BUILTIN_DOCS.get(n, "")) for n in builtin_names()]
    builtins += [(n, "optimizer", BUILTIN_DOCS[n]) for n in OPTIMIZERS]
    keywords = [(n, "keyword", KEYWORD_DOCS.get(n, "")) for n in keyword_names()]
    return live + sorted(builtins) + keywords


# ----------------------------------------------------------------------------- inspection


def word_at(code: str, cursor_pos: int) -> str:
    """The identifier under (or just before) the cursor, else the function of an open call."""
    left = _IDENT_END.search(code[:cursor_pos])
    right = _IDENT_START.match(code[cursor_pos:])
    word = (left.group(0) if left else "") + (right.group(0) if right else "")
    if word and not word[0].isdigit():
        return word
    call = _CALL_BEFORE.search(code[:cursor_pos])
    return call.group(1) if call else ""


def _stats(arr: np.ndarray) -> str:
    if arr.size == 0:
        return "empty"
    finite = arr[np.isfinite(arr)] if arr.size else arr
    if finite.size == 0:
        return "no finite entries"
    return (f"mean {format_scalar(float(finite.mean()))}  std {format_scalar(float(finite.std()))}  "
            f"min {format_scalar(float(finite.min()))}  max {format_scalar(float(finite.max()))}")


def describe(session: Any, name: str) -> Optional[str]:
    """Plain-text inspection of a name, or None when the name means nothing here."""
    if session is not None:
        text = _describe_live(session, name)
        if text:
            return text
    if name in BUILTIN_DOCS:
        return f"builtin {BUILTIN_DOCS[name]}"
    if name in builtin_names():
        return f"builtin {name}(...)"
    if name in KEYWORD_DOCS:
        return f"keyword {KEYWORD_DOCS[name]}"
    if name in keyword_names():
        return f"keyword {name}"
    return None


def _describe_live(session: Any, name: str) -> Optional[str]:
    symbols = session.symbols
    dtype = getattr(session, "dtype", "f64")
    if name in symbols.params:
        value = session.params.get(name)
        arr = np.asarray(value if value is not None else np.zeros(0))
        var = symbols.params[name]
        lines = [f"learn {name}: {shape_text(arr.shape)} {dtype}  ({arr.size} elements)", _stats(arr)]
        dims = getattr(var, "dims", {})
        if dims:
            lines.append("dims: " + ", ".join(f"axis {a} = {d}" for a, d in sorted(dims.items())))
        lines.extend(_optimizer_lines(session, name))
        lines.append(format_value(value) if np.ndim(value) else format_scalar(float(value)))
        return "\n".join(lines)
    if name in symbols.dims:
        return f"dim {name} = {session.dims.get(name)}"
    if name in symbols.globals:
        value = session.globals().get(name)
        if value is None:
            return f"let {name}: not yet assigned"
        if np.ndim(value) == 0:
            return f"let {name}: scalar {dtype} = {format_scalar(float(value))}"
        arr = np.asarray(value)
        return f"let {name}: {shape_text(arr.shape)} {dtype}\n{_stats(arr)}\n{format_value(arr)}"
    if name in symbols.functions:
        fn = symbols.functions[name]
        source = fn.span.text() if getattr(fn, "span", None) is not None else ""
        head = f"fn {name}({', '.join(fn.params)})"
        return head + ("\n\n" + source if source else "")
    return None


def _optimizer_lines(session: Any, name: str) -> list[str]:
    try:
        from noma.meta import optimizer_kind

        kind = optimizer_kind(session, name)
    except Exception:
        kind = "?"
    try:
        state = session.optimizer_state(name)
    except Exception:
        state = {}
    if not state:
        return [f"optimizer: {kind}, no state yet"]
    lines = [f"optimizer: {kind}"]
    for key, buf in state.items():
        arr = np.asarray(buf)
        lines.append(f"  {key}: {shape_text(arr.shape)}  {_stats(arr)}")
    return lines


def inspect(session: Any, code: str, cursor_pos: int) -> dict:
    """The content of an inspect_reply."""
    name = word_at(code, cursor_pos)
    text = describe(session, name) if name else None
    if text is None:
        return {"status": "ok", "found": False, "data": {}, "metadata": {}}
    return {"status": "ok", "found": True, "data": {"text/plain": text}, "metadata": {}}


# ----------------------------------------------------------------------------- HTML


def tensor_html(value: Any, dtype: str = "f64", max_rows: int = 12, max_cols: int = 12) -> str:
    """A tensor as an HTML table (rank 1-2) or preformatted text (rank 3-4), with its shape."""
    arr = np.asarray(value)
    head = f"<div><b>tensor{html.escape(shape_text(arr.shape))}</b> {dtype}</div>"
    if arr.ndim > 2 or arr.size == 0:
        return head + f"<pre>{html.escape(format_value(arr).split(chr(10), 1)[-1])}</pre>"
    grid = arr.reshape(1, -1) if arr.ndim == 1 else arr
    rows = _window(grid.shape[0], max_rows)
    cols = _window(grid.shape[1], max_cols)
    out = ["<table style='font-family:monospace'>"]
    for i in rows:
        cells = []
        for j in cols:
            text = "…" if i is None or j is None else format_scalar(float(grid[i, j]))
            cells.append(f"<td style='text-align:right'>{text}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return head + "".join(out)


def _window(n: int, limit: int) -> list[Optional[int]]:
    """Indexes to show, with None for the elided middle."""
    if n <= limit:
        return list(range(n))
    half = limit // 2
    return list(range(half)) + [None] + list(range(n - half, n))
