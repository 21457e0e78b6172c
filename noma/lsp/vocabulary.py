"""The words of NOMA that the language server completes and explains, taken from the compiler.

Owns: nothing of its own — it collects the keyword terminals of grammar.lark (parse_tables), the
builtin table with arities and docs (noma.compiler.middle.ops.BUILTINS), optimizers
(noma.optimizers), resize policies (noma.compiler.middle.ir), cast types (parse.CAST_TYPES) and the
one-line docs the Jupyter kernel shows (noma.kernel.introspect), so the server, the kernel and the
VS Code grammar's test share one source.
Imports: noma.compiler (parse_tables, parse, ops, ir), noma.optimizers, noma.kernel.introspect.
"""

from __future__ import annotations

from noma import optimizers
from noma.compiler.middle import ir

from noma.compiler.front import parse_tables
from noma.compiler.middle.ops import BUILTINS as _BUILTIN_TABLE
from noma.compiler.middle.ops import MANY
from noma.compiler.front.parse import CAST_TYPES as _CASTS
from noma.kernel.introspect import BUILTIN_DOCS, KEYWORD_DOCS

#: The keyword terminals of grammar.lark, as its compiled tables list them (= parse.KEYWORDS).
KEYWORDS: tuple[str, ...] = tuple(sorted(parse_tables.load().keywords))
BUILTINS: tuple[str, ...] = tuple(sorted(_BUILTIN_TABLE))
_BUILTIN_ARITY = {b.name: (b.low, b.high) for b in _BUILTIN_TABLE.values()}
OPTIMIZERS: tuple[str, ...] = tuple(sorted(optimizers.OPTIMIZERS))
#: Resize policies after `init` (the IR's "default" is the absence of a policy, not a word).
POLICIES: tuple[str, ...] = tuple(sorted(p for p in ir.POLICIES if p != "default"))
CAST_TYPES: tuple[str, ...] = tuple(_CASTS)


def editor_words() -> dict[str, list[str]]:
    """The word lists of editors' NOMA modes (the JupyterLab extension's vocabulary.json): keywords,
    builtins, optimizers, init policies, cast types and meta-commands (without their colon)."""
    from noma.meta import meta_names

    return {"keywords": list(KEYWORDS), "builtins": list(BUILTINS), "optimizers": list(OPTIMIZERS),
            "policies": list(POLICIES), "types": list(CAST_TYPES),
            "meta": [name.lstrip(":") for name in meta_names()]}


def signature(name: str) -> str:
    """`softmax(x)` — the call form of a builtin or optimizer (from its doc line, else its arity)."""
    doc = BUILTIN_DOCS.get(name)
    if doc is not None:
        head = doc.split(":", 1)[0].strip()
        if head.startswith(name + "("):
            return head
    low, high = _BUILTIN_ARITY.get(name, (0, 0))
    args = [f"a{i + 1}" for i in range(low)]
    if high == MANY:
        args.append("...")
    elif high > low:
        args.append(f"[{', '.join(f'a{i + 1}' for i in range(low, high))}]")
    return f"{name}({', '.join(args)})"


def arity_text(name: str) -> str:
    low, high = _BUILTIN_ARITY[name]
    if high == MANY:
        return f"{low} or more arguments"
    if low == high:
        return f"{low} argument" + ("" if low == 1 else "s")
    return f"{low} to {high} arguments"


def doc(name: str) -> str:
    """The doc line of a builtin, optimizer or keyword ('' when there is none)."""
    if name in BUILTIN_DOCS:
        return BUILTIN_DOCS[name]
    if name in KEYWORD_DOCS:
        return KEYWORD_DOCS[name]
    return ""
