"""The AST builders of the parser: one method per grammar rule, called on each reduction with the
rule's children, building noma.compiler.front.ast nodes with their spans.
Imports: noma.diagnostics, noma.compiler.front.ast, parse_common, parse_numbers.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, NamedTuple

from noma.compiler.front import ast
from noma.compiler.front.parse_common import _ESCAPES, CAST_TYPES, MAX_TENSOR_RANK, _Tok
from noma.compiler.front.parse_numbers import _Literal
from noma.diagnostics import Kind, NomaError, Source, Span, error

# ----------------------------------------------------------------------------- AST building


class _Args(NamedTuple):
    args: tuple
    kwargs: tuple
    end: int


class _Clause(NamedTuple):
    kind: str  # "until" | "max"
    value: ast.Expr


def _values(children) -> list:
    return [c for c in children if not isinstance(c, _Tok)]


def _err(message: str, span: Span) -> NomaError:
    return error(Kind.SYNTAX, message, span)


def _binding(cls):
    """`kw NAME = expr ;` → cls(name, value, span, name_span)"""
    def build(self, c):
        kw, name, _eq, value, semi = c
        src = self.src
        return cls(name.value, value, Span(src, kw.start_pos, semi.end_pos),
                   Span(src, name.start_pos, name.end_pos))
    return build


def _loader(cls):
    """`kw NAME = "path" ;` → cls(name, Str, span, name_span)"""
    def build(self, c):
        kw, name, _eq, path, semi = c
        return cls(name.value, self._string(path), self._span(kw, semi), self._span(name, name))
    return build


class _Build:
    """One method per grammar rule or alias; it gets the rule's children, every token included."""

    def __init__(self, source: Source):
        self.src = source

    def _span(self, first, last) -> Span:
        """From the start of `first` to the end of `last` (a token or a node), or to offset `last`."""
        start = first.start_pos if first.__class__ is _Tok else first.span.start
        if last.__class__ is not int:
            last = last.end_pos if last.__class__ is _Tok else last.span.end
        return Span(self.src, start, last)

    def _token_span(self, tok: _Tok) -> Span:
        return Span(self.src, tok.start_pos, tok.end_pos)

    # program structure
    def start(self, items):
        return ast.Program(tuple(items), Span(self.src, 0, len(self.src.text)))

    def block(self, c):
        for stmt in c[1:-1]:
            if isinstance(stmt, ast.FnDef):
                raise _err("functions are defined at the top level",
                           Span(self.src, stmt.span.start, stmt.name_span.end))
            if isinstance(stmt, ast.Import):
                raise _err("`import` stands at the top level of a file or cell", stmt.span)
        return ast.Block(tuple(c[1:-1]), self._span(c[0], c[-1]))

    def tail(self, c):
        return ast.ExprStmt(c[0], c[0].span, is_tail=True)

    def fn_def(self, c):
        kw, name, _lpar, *params, _rpar, body = c
        params = [p for p in params if p.type == "NAME"]
        return ast.FnDef(name.value, tuple(p.value for p in params), body,
                         self._span(kw, body), self._span(name, name),
                         tuple(self._span(p, p) for p in params))

    # statements
    let_stmt = _binding(ast.Let)
    learn_stmt = _binding(ast.Learn)
    dim_stmt = _binding(ast.DimDecl)
    alloc_stmt = _binding(ast.Alloc)
    load_csv_stmt = _loader(ast.LoadCsv)
    load_st_stmt = _loader(ast.LoadSafetensors)

    def assign_stmt(self, c):
        name, _eq, value, semi = c
        src = self.src
        return ast.Assign(name.value, value, Span(src, name.start_pos, semi.end_pos),
                          Span(src, name.start_pos, name.end_pos))

    def realloc_stmt(self, c):
        kw, name, _eq, dims, *policy, semi = c
        return ast.Realloc(name.id, dims, policy[0] if policy else None,
                           self._span(kw, semi), name.span)

    def realloc_keep_stmt(self, c: list[Any]) -> ast.ReallocKeep:
        kw, name, word, indices, *rest = c
        if word.value != "keep":
            raise _err(f"expected `=` or `keep` after `realloc {name.id}`, found `{word.value}`",
                       self._span(word, word))
        axis = None
        if len(rest) == 3:
            if rest[0].value != "axis":
                raise _err(f"expected `axis` or `;` after the indices, found `{rest[0].value}`",
                           self._span(rest[0], rest[0]))
            axis = rest[1]
        return ast.ReallocKeep(name.id, indices, axis, self._span(kw, c[-1]), name.span)

    def init_policy(self, c):
        kw, name, *rest = c
        args = rest[0] if rest else _Args((), (), name.end_pos)
        if args.kwargs:
            raise _err("an init policy takes positional arguments only", args.kwargs[0].span)
        return ast.InitPolicy(name.value, args.args, self._span(kw, args.end))

    def free_stmt(self, c):
        kw, name, semi = c
        return ast.Free(name.id, self._span(kw, semi), name.span)

    def dotted(self, c):
        """`a` or `nn.W`: one Name whose id holds the dots"""
        names = [t for t in c if t.type == "NAME"]
        return ast.Name(".".join(t.value for t in names), self._span(names[0], names[-1]))

    def import_stmt(self, c):
        kw, path, *rest = c
        semi = rest[-1]
        alias = rest[1] if len(rest) == 3 else None
        alias_span = self._span(alias, alias) if alias is not None else None
        if isinstance(path, ast.Name):
            return ast.Import(path.id, True, alias.value if alias else None, self._span(kw, semi),
                              path.span, alias_span)
        text = self._string(path)
        return ast.Import(text.value, False, alias.value if alias else None, self._span(kw, semi),
                          text.span, alias_span)

    def return_stmt(self, c):
        return ast.Return(c[1] if len(c) == 3 else None, self._span(c[0], c[-1]))

    def if_stmt(self, c):
        kw, cond, then, *rest = c
        return ast.If(cond, then, rest[0] if rest else None, self._span(kw, c[-1]))

    def else_part(self, c):
        branch = c[1]
        return branch if isinstance(branch, ast.Block) else ast.Block((branch,), branch.span)

    def while_stmt(self, c):
        kw, cond, body = c
        return ast.While(cond, body, self._span(kw, body))

    def for_stmt(self, c):
        kw, var, _in, start, _dots, stop, body = c
        return ast.For(var.value, start, stop, body, self._span(kw, body), self._span(var, var))

    def break_stmt(self, c):
        return ast.Break(self._span(c[0], c[1]))

    def continue_stmt(self, c):
        return ast.Continue(self._span(c[0], c[1]))

    def minimize_stmt(self, c):
        return ast.Minimize(c[1], self._span(c[0], c[2]))

    def optimize_stmt(self, c):
        kw, _lpar, params, _rpar, *parts, body = c
        spec = next((p for p in parts if isinstance(p, ast.OptimizerSpec)), None)
        clauses = {p.kind: p.value for p in parts if isinstance(p, _Clause)}
        return ast.Optimize(params, spec, clauses.get("until"), clauses.get("max"), body,
                            self._span(kw, body))

    def name_list(self, c):
        return tuple(n for n in c if isinstance(n, ast.Name))

    def opt_with(self, c):
        _kw, name, *rest = c
        args = rest[0] if rest else _Args((), (), name.end_pos)
        if args.args:
            raise _err("optimizer settings are given by name, e.g. `adam(lr = 0.05)`",
                       args.args[0].span)
        return ast.OptimizerSpec(name.value, args.kwargs, self._span(name, args.end))

    def opt_until(self, c):
        return _Clause("until", c[1])

    def opt_max(self, c):
        return _Clause("max", c[1])

    def batch_stmt(self, c):
        kw, var, *mid, body = c
        index_var = mid[1].value if len(mid) == 6 else None
        data, size = mid[-3], mid[-1]
        return ast.Batch(var.value, index_var, data, size, body, self._span(kw, body),
                         self._span(var, var))

    def save_csv_stmt(self, c):
        kw, value, _comma, path, semi = c
        return ast.SaveCsv(value, self._string(path), self._span(kw, semi))

    def save_st_stmt(self, c):
        kw, *mid, path, semi = c
        entries = tuple(x for x in mid if isinstance(x, tuple))
        return ast.SaveSafetensors(entries, self._string(path), self._span(kw, semi))

    def st_entry(self, c):
        return (c[0].value, c[2])

    def expr_stmt(self, c):
        return ast.ExprStmt(c[0], Span(self.src, c[0].span.start, c[1].end_pos))

    # expressions
    def number(self, c):
        tok = c[0]
        value = tok.value
        if type(value) is _Literal:
            return ast.TensorData(value.data.tobytes(), value.shape, self._token_span(tok))
        return ast.Num(float(value), Span(self.src, tok.start_pos, tok.end_pos))

    def string(self, c):
        return self._string(c[0])

    def _string(self, tok: _Tok) -> ast.Str:
        def unescape(m: re.Match) -> str:
            if m.group(1) not in _ESCAPES:
                at = tok.start_pos + 1 + m.start()
                raise _err(f"unknown escape `\\{m.group(1)}` in a string", Span(self.src, at, at + 2))
            return _ESCAPES[m.group(1)]

        return ast.Str(re.sub(r"\\(.)", unescape, tok.value[1:-1]), self._span(tok, tok))

    def name(self, c):
        tok = c[0]
        return ast.Name(tok.value, Span(self.src, tok.start_pos, tok.end_pos))

    def call(self, c):
        name, args = c
        return ast.Call(name.value, args.args, args.kwargs, self._span(name, args.end),
                        self._span(name, name))

    def call_args(self, c):
        items = _values(c)
        kwargs = tuple(a for a in items if isinstance(a, ast.KwArg))
        if kwargs:
            first = items.index(kwargs[0])
            late = [a for a in items[first:] if not isinstance(a, ast.KwArg)]
            if late:
                raise _err("a positional argument cannot follow a keyword argument", late[0].span)
        args = tuple(a for a in items if not isinstance(a, ast.KwArg))
        return _Args(args, kwargs, c[-1].end_pos)

    def kwarg(self, c):
        name, _eq, value = c
        return ast.KwArg(name.value, value, self._span(name, value))

    def paren(self, c):
        return dataclasses.replace(c[1], span=self._span(c[0], c[2]))

    def list_lit(self, c):
        return ast.ListLit(tuple(_values(c)), self._span(c[0], c[-1]))

    def tensor_lit(self, c):
        span = self._span(c[0], c[1])
        items, shape = _tensor_items(c[1])
        if len(shape) > MAX_TENSOR_RANK:
            raise _err(f"a tensor literal has at most {MAX_TENSOR_RANK} dimensions, this one "
                       f"has {len(shape)}", span)
        return ast.TensorLit(items, shape, span)

    def binary(self, c):
        left, op, right = c
        return ast.Binary("^" if op.value == "**" else op.value, left, right,
                          Span(self.src, left.span.start, right.span.end))

    def unary(self, c):
        return ast.Unary(c[0].value, c[1], self._span(c[0], c[1]))

    def index(self, c):
        return ast.Index(c[0], c[2], self._span(c[0], c[3]))

    def field(self, c):
        return ast.Field(c[0], c[2].value, self._span(c[0], c[2]))

    def qualified_call(self, c):
        """`nn.dense(x)`: a function of the module imported as `nn` (Call.func "nn.dense")"""
        target, _dot, name, args = c
        prefix = ast.dotted_name(target)
        if prefix is None:
            raise _err("only a function of an imported module can be called after `.` "
                       "(`nn.dense(x)` after `import ... as nn;`)", self._span(c[1], name))
        return ast.Call(f"{prefix}.{name.value}", args.args, args.kwargs, self._span(target, args.end),
                        self._span(target, name))

    def cast(self, c):
        operand, _as, to = c
        if to.value not in CAST_TYPES:
            raise _err(f"unknown type `{to.value}` after `as`: expected one of "
                       f"{', '.join(CAST_TYPES)}", self._span(to, to))
        return ast.Cast(operand, to.value, self._span(operand, to))


def _tensor_items(lit: ast.ListLit) -> tuple[tuple, tuple[int, ...]]:
    """Flatten nested rows row-major; every row must have the same shape."""
    rows = [item for item in lit.items if isinstance(item, ast.ListLit)]
    if not rows:
        return lit.items, (len(lit.items),)
    if len(rows) != len(lit.items):
        first_is_row = isinstance(lit.items[0], ast.ListLit)
        odd = next(x for x in lit.items if isinstance(x, ast.ListLit) != first_is_row)
        raise _err("ragged tensor literal: rows and single values are mixed", odd.span)
    first, first_shape = _tensor_items(rows[0])
    flat = list(first)
    for row in rows[1:]:
        items, shape = _tensor_items(row)
        if shape != first_shape:
            raise _err(f"ragged tensor literal: this row has shape {list(shape)}, the first row "
                       f"has shape {list(first_shape)}", row.span)
        flat.extend(items)
    return tuple(flat), (len(rows),) + first_shape
