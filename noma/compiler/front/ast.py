"""The NOMA abstract syntax tree.

Owns: frozen dataclasses for every syntactic form, each with its source span.
Input: built by noma.compiler.front.parse. Output: consumed by check and irgen.
Imports: only noma.diagnostics (for Span).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

from noma.diagnostics import Span


# ----------------------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Num:
    """`1.5`, `2`, `1e-3`"""

    value: float
    span: Span


@dataclass(frozen=True)
class Str:
    """`"text"` (only for print and file paths)"""

    value: str
    span: Span


@dataclass(frozen=True)
class Name:
    """`x`"""

    id: str
    span: Span


@dataclass(frozen=True)
class TensorLit:
    """`tensor [[1, 2], [3, 4]]`; rows holds nested lists of expressions."""

    items: tuple["Expr", ...]  # flat, row-major
    shape: tuple[int, ...]
    span: Span


@dataclass(frozen=True)
class TensorData:
    """`tensor [[1, 2], [3, -4.5]]` whose entries are all numbers: data, not expressions."""

    data: bytes = field(repr=False)  # the entries as f64, little-endian, row-major
    shape: tuple[int, ...]
    span: Span

    def __repr__(self) -> str:  # a million numbers are not printed
        return f"TensorData(shape={self.shape}, span={self.span!r})"


@dataclass(frozen=True)
class ListLit:
    """`[d1, d2]` — a shape list (in initialisers, reshape, alloc, realloc)."""

    items: tuple["Expr", ...]
    span: Span


@dataclass(frozen=True)
class Unary:
    """`-x`, `!x`"""

    op: str  # "-" | "!"
    operand: "Expr"
    span: Span


@dataclass(frozen=True)
class Binary:
    """`a + b`, `a ** b` (op "^" and "**" both arrive as "^"), `a && b`, `a < b` ..."""

    op: str  # + - * / % ^ == != < <= > >= && ||
    left: "Expr"
    right: "Expr"
    span: Span


@dataclass(frozen=True)
class KwArg:
    """`lr = 0.05` inside a call's argument list"""

    name: str
    value: "Expr"
    span: Span


@dataclass(frozen=True)
class Call:
    """`f(a, b)`; kwargs only for optimizer specs and a few builtins."""

    func: str
    args: tuple["Expr", ...]
    kwargs: tuple[KwArg, ...]
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Index:
    """`m[i]`"""

    target: "Expr"
    index: "Expr"
    span: Span


@dataclass(frozen=True)
class Field:
    """`m.name` (tensors loaded from a safetensors file)"""

    target: "Expr"
    name: str
    span: Span


@dataclass(frozen=True)
class Cast:
    """`e as f32`"""

    operand: "Expr"
    to: str  # f64 | f32 | i32 | i64
    span: Span


Expr = Union[Num, Str, Name, TensorLit, TensorData, ListLit, Unary, Binary, Call, Index, Field, Cast]


# ----------------------------------------------------------------------------- statements


@dataclass(frozen=True)
class Let:
    """`let x = e;`"""

    name: str
    value: Expr
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Learn:
    """`learn w = e;`"""

    name: str
    value: Expr
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Assign:
    """`x = e;`"""

    name: str
    value: Expr
    span: Span
    name_span: Span


@dataclass(frozen=True)
class DimDecl:
    """`dim hidden = 16;`"""

    name: str
    value: Expr
    span: Span
    name_span: Span


@dataclass(frozen=True)
class InitPolicy:
    """`init normal(0, 0.1)`, `init preserve`, `init copy`, `init zeros` ..."""

    name: str
    args: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True)
class Alloc:
    """`alloc b = [d1, d2];`"""

    name: str
    dims: ListLit
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Realloc:
    """`realloc w = [d1, d2] init P;` (dims is a ListLit) or `realloc hidden = 16 init P;` (dims is an Expr)"""

    name: str
    dims: Expr
    policy: Optional[InitPolicy]
    span: Span
    name_span: Span


@dataclass(frozen=True)
class ReallocKeep:
    """`realloc hidden keep idx;` or `realloc w keep idx axis 1;` (axis None for a dim)"""

    name: str
    indices: Expr
    axis: Optional[Expr]
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Free:
    """`free w;`"""

    name: str
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Return:
    """`return e;` / `return;`"""

    value: Optional[Expr]
    span: Span


@dataclass(frozen=True)
class ExprStmt:
    """`e;` — or, as the last item of a block without `;`, the block's value (is_tail=True)."""

    value: Expr
    span: Span
    is_tail: bool = False


@dataclass(frozen=True)
class If:
    """`if c { } else if d { } else { }` (else_ holds a nested If for `else if`)."""

    cond: Expr
    then: "Block"
    else_: Optional["Block"]
    span: Span


@dataclass(frozen=True)
class While:
    """`while c { }`"""

    cond: Expr
    body: "Block"
    span: Span


@dataclass(frozen=True)
class For:
    """`for i in a..b { }`"""

    var: str
    start: Expr
    stop: Expr
    body: "Block"
    span: Span
    var_span: Span


@dataclass(frozen=True)
class Break:
    """`break;`"""

    span: Span


@dataclass(frozen=True)
class Continue:
    """`continue;`"""

    span: Span


@dataclass(frozen=True)
class Minimize:
    """`minimize loss;`"""

    value: Expr
    span: Span


@dataclass(frozen=True)
class OptimizerSpec:
    """`adam(lr = 0.05)` after `with`"""

    name: str  # an optimizer of the registry noma/optimizers.py
    kwargs: tuple[KwArg, ...]
    span: Span


@dataclass(frozen=True)
class Optimize:
    """`optimize(W1, b1) with adam(lr=0.05) until loss < 0.002 max 400 { ... }`"""

    params: tuple[Name, ...]
    optimizer: Optional[OptimizerSpec]
    until: Optional[Expr]
    max_iter: Optional[Expr]
    body: "Block"
    span: Span


@dataclass(frozen=True)
class Batch:
    """`batch xb, i in X with 32 { }`"""

    var: str
    index_var: Optional[str]
    data: Expr
    size: Expr
    body: "Block"
    span: Span
    var_span: Span


@dataclass(frozen=True)
class LoadCsv:
    """`load_csv x = "f.csv";`"""

    name: str
    path: Str
    span: Span
    name_span: Span


@dataclass(frozen=True)
class SaveCsv:
    """`save_csv e, "f.csv";`"""

    value: Expr
    path: Str
    span: Span


@dataclass(frozen=True)
class LoadSafetensors:
    """`load_safetensors m = "f.safetensors";`"""

    name: str
    path: Str
    span: Span
    name_span: Span


@dataclass(frozen=True)
class SaveSafetensors:
    """`save_safetensors { w: W, b: b1 }, "f.safetensors";`"""

    entries: tuple[tuple[str, Expr], ...]
    path: Str
    span: Span


@dataclass(frozen=True)
class Import:
    """`import "layers.noma";`, `import "layers.noma" as nn;`, `import std.nn as nn;`"""

    path: str  # the file path as written, or the dotted module name (`std.nn`)
    dotted: bool  # written as a dotted name (a module of the standard library), not a string
    alias: Optional[str]
    span: Span
    path_span: Span
    alias_span: Optional[Span] = None


Stmt = Union[
    Let, Learn, Assign, DimDecl, Alloc, Realloc, Free, Return, ExprStmt, If, While, For, Break,
    Continue, Minimize, Optimize, Batch, LoadCsv, SaveCsv, LoadSafetensors, SaveSafetensors,
    Import, "FnDef",
]


@dataclass(frozen=True)
class Block:
    """`{ stmt* }`"""

    stmts: tuple[Stmt, ...]
    span: Span


@dataclass(frozen=True)
class FnDef:
    """`fn name(a, b) { ... }`"""

    name: str
    params: tuple[str, ...]
    body: Block
    span: Span
    name_span: Span
    param_spans: tuple[Span, ...] = field(default=())


@dataclass(frozen=True)
class Program:
    """A file or a cell: function definitions and top-level statements, in source order."""

    items: tuple[Stmt, ...]
    span: Span


def dotted_name(e: object) -> "str | None":
    """`nn` or `nn.o` (names joined by fields) as one dotted string; None for anything else."""
    parts: list[str] = []
    while isinstance(e, Field):
        parts.append(e.name)
        e = e.target
    if not isinstance(e, Name):
        return None
    return ".".join([e.id] + parts[::-1])
