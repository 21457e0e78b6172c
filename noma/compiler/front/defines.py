"""Values from outside a program: `noma run FILE -D hidden=16 -D lr=0.05`, `Session(defines=...)`,
and noma.tune's trial configurations.

A define `NAME=VALUE` replaces the value of the top-level `let NAME = ...;` or `dim NAME = ...;`
(not one inside a function or block) before the program is checked:
  - a `dim` takes a positive integer (at most 2^53, which a double holds exactly);
  - a `let` whose value is a number literal (`0.01`, `-3`) takes a finite number.
Any other `let` cannot be defined from outside. Mistakes are located diagnostics: in the define
itself (a Source named `-D` holding `NAME=VALUE`) for a malformed define, an unknown name or a
value of the wrong kind, with a note naming the declaration it would replace.
Input: parsed programs (noma.compiler.front.ast). Imports only diagnostics and the AST.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Union

from noma.compiler.front import ast
from noma.diagnostics import Diagnostic, Kind, NomaError, Source, Span

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
DefineValue = Union[str, int, float]
#: the largest dim a define sets: beyond 2^53 a program's numbers (doubles) cannot hold it exactly
MAX_DIM_DEFINE = 2**53


@dataclass(frozen=True)
class Define:
    """`NAME=VALUE` from the command line or a trial's configuration; spans in its own Source."""

    name: str
    value: str
    name_span: Span
    value_span: Span


def parse_define(text: str) -> Define:
    """`"hidden=16"` → Define; a located syntax error when it is not NAME=VALUE."""
    source = Source("-D", text)
    name, sep, value = text.partition("=")
    if not sep or not _NAME.match(name.strip()) or not value.strip():
        raise NomaError(Diagnostic(Kind.SYNTAX, "a define is NAME=VALUE (e.g. -D hidden=16)",
                                   Span(source, 0, max(1, len(text)))))
    start = len(name) + 1
    return Define(name.strip(), value.strip(), Span(source, 0, len(name)), Span(source, start, len(text)))


def make_defines(defines: Union[Mapping[str, DefineValue], Iterable[str], None]) -> dict[str, Define]:
    """Defines by name from a mapping {name: value} or `NAME=VALUE` strings (the last one wins)."""
    if defines is None:
        return {}
    items = [f"{k}={_text(v)}" for k, v in defines.items()] if isinstance(defines, Mapping) else list(defines)
    out: dict[str, Define] = {}
    for text in items:
        d = parse_define(text)
        out[d.name] = d
    return out


def _text(value: DefineValue) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return repr(value)
    return str(value)


def _number_literal(node: ast.Expr) -> bool:
    if isinstance(node, ast.Unary) and node.op == "-":
        node = node.operand
    return isinstance(node, ast.Num)


def _error(kind: Kind, message: str, span: Span, decl: ast.Stmt) -> NomaError:
    line, col = decl.span.source.position(decl.span.start)
    return NomaError(Diagnostic(kind, message, span, f"it replaces the value at {decl.span.source.name}:{line}:{col}"))


def _replacement(d: Define, stmt: Union[ast.Let, ast.DimDecl]) -> ast.Expr:
    span = stmt.value.span  # the program's location: later diagnostics point at the declaration
    if isinstance(stmt, ast.DimDecl):
        if not re.fullmatch(r"\+?[0-9]+", d.value) or not 1 <= int(d.value) <= MAX_DIM_DEFINE:
            raise _error(Kind.TYPE, f"`{d.name}` is a dim: its value must be a positive integer "
                         f"(at most 2^53), not {d.value!r}", d.value_span, stmt)
        return ast.Num(float(int(d.value)), span)
    if not _number_literal(stmt.value):
        raise _error(Kind.TYPE, f"`let {d.name}` is not a number literal; -D replaces only those "
                     "(and dims)", d.name_span, stmt)
    try:
        number = float(d.value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise _error(Kind.TYPE, f"`{d.name}` is a number: {d.value!r} is not a finite number", d.value_span, stmt)
    return ast.Num(number, span)


def apply_defines(program: ast.Program, defines: Mapping[str, Define]) -> tuple[ast.Program, set[str]]:
    """The program with the defined top-level values replaced, and the names it replaced."""
    if not defines:
        return program, set()
    used: set[str] = set()
    items = []
    for stmt in program.items:
        if isinstance(stmt, (ast.Let, ast.DimDecl)) and stmt.name in defines:
            stmt = dataclasses.replace(stmt, value=_replacement(defines[stmt.name], stmt))
            used.add(stmt.name)
        items.append(stmt)
    return dataclasses.replace(program, items=tuple(items)), used


def check_all_used(defines: Mapping[str, Define], used: set[str], program_name: str) -> None:
    """A located name error for the first define the program has no top-level let or dim for."""
    for d in defines.values():
        if d.name not in used:
            raise NomaError(Diagnostic(Kind.NAME, f"{program_name} has no top-level `let` or `dim` named "
                                       f"`{d.name}`", d.name_span))


def parse_with_defines(source: Source, defines: Mapping[str, Define]) -> ast.Program:
    """Parse a whole program and apply `defines`; a located error when one names nothing."""
    from noma.compiler.front.parse import parse

    program, used = apply_defines(parse(source), defines)
    check_all_used(defines, used, source.name)
    return program
