"""Parse NOMA source text into the AST.

Owns: running the LALR(1) tables of grammar.lark (built by lark and cached: parse_tables.py)
with a lexer compiled from the grammar's own terminals, the callbacks that build AST nodes
while parsing, the translation of parse errors into plain Kind.SYNTAX diagnostics, and
is_complete() for the REPL.
Input: a noma.diagnostics.Source. Output: a noma.compiler.front.ast.Program with spans on every node.
Imports: noma.compiler.front.parse_tables (lark only there), noma.diagnostics, noma.compiler.front.ast.
"""

from __future__ import annotations

import dataclasses
import re
from array import array
from functools import lru_cache
from typing import Any, Callable, NamedTuple, Optional, cast

from noma.compiler.front import ast, parse_tables
from noma.compiler.front.budget import gc_paused
from noma.diagnostics import Diagnostic, Kind, NomaError, Source, Span, error

KEYWORDS = frozenset((
    "fn", "let", "learn", "dim", "alloc", "realloc", "free", "return", "if", "else", "while",
    "for", "in", "break", "continue", "optimize", "with", "until", "max", "minimize", "batch",
    "load_csv", "save_csv", "load_safetensors", "save_safetensors", "init", "as", "tensor",
    "import",
))
CAST_TYPES = ("f64", "f32", "i32", "i64")
#: How deep a program may nest (docs/LANGUAGE.md, Limits): every open bracket `(` `[` `{`, every
#: operator still waiting for its right operand and every `else` waiting for its branch count one.
#: Deeper text is a syntax error at the token that goes past the limit, found while parsing (the
#: stages after the parser recurse on this nesting; left-associative chains like 1+1+...+1 do not
#: nest and have no limit).
MAX_NESTING = 256
_NESTING = frozenset(("_LPAR", "_LSQB", "_LBRACE", "_ELSE", "OROR", "ANDAND", "EQ", "NE", "LT", "LE",
                      "GT", "GE", "PLUS", "MINUS", "STAR", "SLASH", "PERCENT", "CARET", "STARSTAR",
                      "BANG"))
MAX_TENSOR_RANK = 4
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}
_CLOSER = {"(": ")", "[": "]", "{": "}"}
_END = "$END"


def parse(source: Source) -> ast.Program:
    """Parse a whole file or cell; raises NomaError (Kind.SYNTAX) on the first syntax error.
    The last statement may omit its `;`."""
    with gc_paused():
        return _run(_machine(), source, _Build(source))


# ----------------------------------------------------------------------------- LALR machine
#
# lark compiles grammar.lark into an LALR(1) table; the loop below runs that table directly
# (lark's own runtime loop is 2-3x slower: generic callbacks and Token-keyed tables), lexing
# with one regex built from the grammar's terminals in lark's order (priority, then longest).


class _Tok:
    __slots__ = ("type", "value", "start_pos", "end_pos")

    def __init__(self, type_: str, value: str, start: int, end: int):
        self.type, self.value, self.start_pos, self.end_pos = type_, value, start, end


class _Splice(list):
    """The children of a helper rule (`x*`, `(a b)?`): they go into the parent's children."""


class _Rule(NamedTuple):
    size: int
    origin: str
    fn: Optional[Callable[..., Any]]  # a _Build method, or None for a helper rule (spliced into its parent)
    expand1: bool  # `?rule`: a single child stands for the rule
    flatten: bool  # some child may be a _Splice
    unit: bool  # `?rule: other` (one symbol, not a helper): nothing to build


class _Machine(NamedTuple):
    scanner: re.Pattern
    keywords: dict  # "let" → "_LET"
    states: dict  # state → {symbol: next state (int) | unit reduce (origin, str) | _Rule}
    start: int
    end: int
    literals: dict  # terminal → its literal text (None: a regex terminal)
    units: dict  # (state below, top state, lookahead) → top state after its chain of unit reduces


@lru_cache(maxsize=1)
def _machine() -> _Machine:
    tables = parse_tables.load()
    rules: dict = {}

    def rule_of(rule: tuple) -> _Rule:
        if rule not in rules:
            size, origin, name, expand1, flatten, unit = rule
            fn = None if origin.startswith("_") else getattr(_Build, name, None)
            if fn is None and not origin.startswith("_") and not (expand1 and size == 1):
                raise RuntimeError(f"grammar.lark: no AST builder for rule `{name}`")
            rules[rule] = _Rule(size, origin, fn, expand1, flatten, unit)
        return rules[rule]

    states = {st: {sym: rule_of(act) if isinstance(act, tuple) else act for sym, act in row.items()}
              for st, row in tables.states.items()}
    return _Machine(re.compile(tables.scanner), tables.keywords, states, tables.start, tables.end,
                    tables.literals, {})


def _run(machine: _Machine, source: Source, builder: _Build) -> ast.Program:
    text, states, keywords = source.text, machine.states, machine.keywords
    match = _always(machine.scanner)
    units = machine.units
    stack, values = [machine.start], []
    nesting = [0]  # per stack entry: the open brackets/operators/`else`s up to and including it
    pos, size, last_end = 0, len(text), 0
    while True:
        m = match(text, pos)
        kind, pos = m.lastgroup, m.end()
        if kind is not None:
            value = m.group(kind)
            tok = _Tok(keywords.get(value, kind) if kind == "NAME" else kind, value, m.start(kind), pos)
            kind = tok.type
            last_end = pos
        elif pos < size:
            raise NomaError(_bad_character(source, pos))
        else:
            kind, tok = _END, _Tok(_END, "", last_end, last_end)
            if not _viable(states, stack, _END) and _viable(states, stack, "_SEMI"):
                # the last statement may omit its `;` (then the end of input comes next)
                kind, tok, pos = "_SEMI", _Tok("_SEMI", ";", last_end, last_end), size
        if kind == "_TENSOR":  # a literal of numbers only is one token (data, not expressions)
            literal = _numeric_literal(text, pos)
            if literal is not None:
                tok = _Tok("NUMBER", literal, tok.start_pos, literal.end)
                kind, pos = "NUMBER", literal.end
                last_end = pos
        if kind == "_MAX" and not _viable(states, stack, kind):  # a keyword only after optimize(..)
            kind = tok.type = "NAME"
        row, before = states[stack[-1]], stack[:]
        while True:
            action = row.get(kind)
            if action is None:  # what was expected before this token's reductions
                raise NomaError(_unexpected(source, tok, _expected(states, before)))
            if action.__class__ is int:  # shift
                depth = nesting[-1] + (kind in _NESTING)
                if depth > MAX_NESTING:
                    raise NomaError(_too_deep(source, tok))
                stack.append(action)
                nesting.append(depth)
                values.append(tok)
                break
            if action.__class__ is str:  # `?a: b` reduce: b's value stands for a; the chain of
                # them on this lookahead (NUMBER → atom → postfix → … → expr) depends only on the
                # two top states, so it is walked once and remembered
                below = stack[-2]
                key = (below, stack[-1], kind)
                top = units.get(key)
                if top is None:
                    top = stack[-1]
                    while action.__class__ is str:
                        top = states[below][action]
                        action = states[top].get(kind)
                    units[key] = top
                stack[-1] = top
                row = states[top]
                continue
            else:
                values.append(_reduce(action, stack, values, builder))
                if action.size:
                    del nesting[-action.size:]
                origin = action.origin
            stack.append(states[stack[-1]][origin])
            nesting.append(nesting[-1])  # a reduced construct is complete: it opens nothing
            if kind == _END and stack[-1] == machine.end:
                return cast(ast.Program, values[-1])
            row = states[stack[-1]]


def _viable(states: dict, stack: list, terminal: str) -> bool:
    """Whether terminal can come next. An LALR row may list the lookahead of a reduction that a
    later state rejects, so the reductions are run on a copy of the stack until a shift."""
    sim = list(stack)
    while True:
        action = states[sim[-1]].get(terminal)
        if action is None or action.__class__ is int:
            return action is not None
        size, origin = (1, action) if action.__class__ is str else (action.size, action.origin)
        del sim[len(sim) - size:]
        sim.append(states[sim[-1]][origin])
        if origin == "start":
            return True


def _expected(states: dict, stack: list) -> set[str]:
    return {k for k in states[stack[-1]] if (k.isupper() or k == _END) and _viable(states, stack, k)}


def _reduce(rule: _Rule, stack: list, values: list, builder: _Build):
    if rule.size:
        children = values[-rule.size:]
        del values[-rule.size:], stack[-rule.size:]
    else:
        children = []
    if rule.flatten:
        if rule.fn is None and children and type(children[0]) is _Splice:
            # a helper list growing by one item (`x*` is left-recursive): extend it in place, so
            # a list of n statements or items costs O(n), not O(n^2)
            grown = children[0]
            for c in children[1:]:
                if type(c) is _Splice:
                    grown.extend(c)
                else:
                    grown.append(c)
            return grown
        children = [x for c in children for x in (c if type(c) is _Splice else (c,))]
    if rule.expand1 and len(children) == 1:
        return children[0]
    if rule.fn is None:
        return _Splice(children)
    return rule.fn(builder, children)


# ----------------------------------------------------------------------------- AST building


class _Args(NamedTuple):
    args: tuple
    kwargs: tuple
    end: int


class _Clause(NamedTuple):
    kind: str  # "until" | "max"
    value: ast.Expr


def _start(x) -> int:
    return x.start_pos if isinstance(x, _Tok) else x.span.start


def _end(x) -> int:
    return x.end_pos if isinstance(x, _Tok) else x.span.end


def _values(children) -> list:
    return [c for c in children if not isinstance(c, _Tok)]


def _err(message: str, span: Span) -> NomaError:
    return error(Kind.SYNTAX, message, span)


def _binding(cls):
    """`kw NAME = expr ;` → cls(name, value, span, name_span)"""
    def build(self, c):
        kw, name, _eq, value, semi = c
        return cls(name.value, value, self._span(kw, semi), self._span(name, name))
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
        return Span(self.src, _start(first), _end(last) if not isinstance(last, int) else last)

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
        return ast.Assign(name.value, value, self._span(name, semi), self._span(name, name))

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
        return ast.ExprStmt(c[0], self._span(c[0], c[1]))

    # expressions
    def number(self, c):
        value = c[0].value
        if type(value) is _Literal:
            return ast.TensorData(value.data.tobytes(), value.shape, self._span(c[0], c[0]))
        return ast.Num(float(value), self._span(c[0], c[0]))

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
        return ast.Name(c[0].value, self._span(c[0], c[0]))

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
        return ast.Binary("^" if op.value == "**" else op.value, left, right, self._span(left, right))

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


# ----------------------------------------------------------------------------- numeric literals
#
# `tensor [...]` holding only numbers (up to rank 4, rectangular, no comments inside) is scanned
# here in one pass with a few regex matches per row, and becomes one NUMBER token carrying the
# values (a _Literal): a literal of 10^6 numbers is data, it never becomes 10^6 tokens, AST nodes
# and IR values. Anything else (expressions, comments, ragged rows, `- 1`) goes through the
# grammar as before, which gives the same values or the usual diagnostics.

# A row is numbers separated by commas: only these characters, no `+` but in an exponent, no `.`
# but between digits; float() then accepts exactly grammar.lark's NUMBER with an optional `-`
# stuck to it (it fails on `- 1`, `1 2`, `--1`, `1e`, empty items: those take the grammar's path).
# The checks are whole-string C loops (str.translate and str.count), not a regex per number.
_ROW_CHARS = str.maketrans("", "", "0123456789eE.,+- \t\n\r")
_SHAPE_OF = str.maketrans("123456789E", "000000000e")


def _plain_numbers(row: str) -> bool:
    """Whether row is made of NUMBERs (with `-`), commas and spaces only, as far as float()
    would not check: no other character, `+` only after an exponent's e, `.` only between digits."""
    if row.translate(_ROW_CHARS):
        return False
    masked = row.translate(_SHAPE_OF) if ("." in row or "+" in row) else row
    return masked.count(".") == masked.count("0.0") and masked.count("+") == masked.count("e+")


_GAP = re.compile(r"\s*")


def _always(pattern: "re.Pattern[str]") -> Callable[[str, int], "re.Match[str]"]:
    """`pattern.match` for a pattern that matches everywhere (it may match the empty string)."""
    return cast(Callable[[str, int], "re.Match[str]"], pattern.match)


_gap = _always(_GAP)


class _Literal(str):
    """The source text of a numeric tensor literal (str, for messages), with its values."""

    end: int
    shape: tuple[int, ...]
    data: array


def _numeric_literal(text: str, start: int) -> "_Literal | None":
    """The numbers-only literal after `tensor` at start, or None (then the grammar parses it)."""
    i = _gap(text, start).end()
    if not text.startswith("[", i):
        return None
    values, counts, leaf_depth = array("d"), [], 0
    sizes: dict[int, int] = {}
    begin = i
    while True:  # at an opening bracket
        counts.append(0)
        if len(counts) > MAX_TENSOR_RANK:
            return None
        j = _gap(text, i + 1).end()
        if text.startswith("[", j):
            i = j
            continue
        k = text.find("]", j)
        row = text[i + 1:k] if k >= 0 else ""
        if k < 0 or not _plain_numbers(row) or leaf_depth not in (0, len(counts)):
            return None
        leaf_depth = len(counts)
        parts = row.split(",")
        if not parts[-1].strip():
            parts.pop()
        try:
            values.extend(map(float, parts))
        except ValueError:
            return None
        if not parts:
            return None
        counts[-1] = len(parts)
        i = k
        while True:  # at a closing bracket
            n = counts.pop()
            if sizes.setdefault(len(counts), n) != n:
                return None
            if not counts:
                lit = _Literal(text[begin:i + 1])
                lit.end, lit.data = i + 1, values
                lit.shape = tuple(sizes[d] for d in range(leaf_depth))
                return lit
            counts[-1] += 1
            j = _gap(text, i + 1).end()
            if text.startswith(",", j):
                j = _gap(text, j + 1).end()
                if text.startswith("[", j):  # the next row
                    i = j
                    break
            if not text.startswith("]", j):
                return None
            i = j


# ----------------------------------------------------------------------------- syntax errors

_EXPR_START = {"NAME", "NUMBER", "STRING", "_LPAR", "_LSQB", "MINUS", "BANG", "_TENSOR"}
_STMT_START = {"_LET", "_LEARN", "_DIM", "_ALLOC", "_REALLOC", "_FREE", "_RETURN", "_IF", "_WHILE",
               "_FOR", "_BREAK", "_CONTINUE", "_OPTIMIZE", "_MINIMIZE", "_BATCH", "_LOAD_CSV",
               "_SAVE_CSV", "_LOAD_SAFETENSORS", "_SAVE_SAFETENSORS", "_FN", "_IMPORT"} | _EXPR_START
_OPERATORS = {"OROR", "ANDAND", "EQ", "NE", "LT", "LE", "GT", "GE", "PLUS", "MINUS", "STAR",
              "SLASH", "PERCENT", "CARET", "STARSTAR", "_AS", "_DOT", "_LSQB", "_LPAR"}
_WORDS = {"NAME": "a name", "NUMBER": "a number", "STRING": "a string"}


def _bad_character(source: Source, pos: int) -> Diagnostic:
    char = source.text[pos]
    if char == '"':
        line_end = source.text.find("\n", pos)
        end = len(source.text) if line_end < 0 else line_end
        return Diagnostic(Kind.SYNTAX, "unterminated string", Span(source, pos, end),
                          "a string ends with `\"` on the same line")
    return Diagnostic(Kind.SYNTAX, f"unexpected character `{char}`", Span(source, pos, pos + 1))


def _too_deep(source: Source, tok: _Tok) -> Diagnostic:
    return Diagnostic(Kind.SYNTAX, f"the program nests more than {MAX_NESTING} levels deep here",
                      Span(source, tok.start_pos, tok.end_pos),
                      "brackets, blocks, operators waiting for their right operand and `else` "
                      "branches each count one level; split the expression or use variables")


def _unexpected(source: Source, tok: _Tok, expected: set[str]) -> Diagnostic:
    span = Span(source, tok.start_pos, tok.end_pos)
    wants_semi = "_SEMI" in expected and "NUMBER" not in expected
    wanted = _describe(expected)
    if tok.type == _END:
        opened = _scan(source.text).open
        if opened:
            char, pos = opened[-1]
            line, col = source.position(pos)
            return Diagnostic(Kind.SYNTAX, f"unexpected end of input: a `{_CLOSER[char]}` is missing",
                              span, f"the `{char}` at line {line}, column {col} is not closed")
        found = "end of input"
    else:
        found = "a string" if tok.type == "STRING" else f"`{tok.value[:20]}`"
    if wants_semi:
        message = (f"unexpected {found}: expected `;` after the statement" if tok.type == _END
                   else f"expected `;` after the statement, found {found}")
    else:
        message = f"unexpected {found}" + (f": expected {wanted}" if wanted else "")
    return Diagnostic(Kind.SYNTAX, message, span)


def _describe(expected: set[str]) -> str:
    """Lark's expected terminals in words: `;`, `{`, a name, an expression, a statement …"""
    names = set(expected)
    words = []
    if "_LET" in names:
        words.append("a statement")
        names -= _STMT_START
    if "NUMBER" in names:
        words.append("an expression")
        names -= _EXPR_START
    operators = names & _OPERATORS
    names -= _OPERATORS
    words += sorted(_display(n) for n in names if n != "$END")
    if operators and not words:
        words.append("an operator")
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " or " + words[-1]


def _display(terminal: str) -> str:
    if terminal in _WORDS:
        return _WORDS[terminal]
    keyword = terminal.lstrip("_").lower()
    if keyword in KEYWORDS:
        return f"`{keyword}`"
    literal = _machine().literals.get(terminal)
    return f"`{literal}`" if literal is not None else terminal.lower()


# ----------------------------------------------------------------------------- REPL support


class _ScanResult(NamedTuple):
    open: list  # [(bracket, offset)] still open at the end, innermost last
    broken: bool  # a stray closer or a string cut by a newline: more text cannot fix it
    open_string: bool  # the input ends inside a string on its last line
    last: str  # the terminal of the last token ("" if none)
    head: str  # the terminal of the last statement's first token (after the last `;`/`}`)


def _scan(text: str) -> _ScanResult:
    """Brackets and statement boundaries, with the grammar's own lexer; never fails."""
    machine = _machine()
    stack: list = []
    pos, last, head, fresh = 0, "", "", True
    match = _always(machine.scanner)
    while True:
        m = match(text, pos)
        kind, pos = m.lastgroup, m.end()
        if kind is None:
            if pos >= len(text):
                return _ScanResult(stack, False, False, last, head)
            if text[pos] == '"':  # a string without its closing quote on this line
                at_end = "\n" not in text[pos:]
                return _ScanResult(stack, not at_end, at_end, last, head)
            kind, value, start, pos = "?", text[pos], pos, pos + 1
        else:
            value, start = m.group(kind), m.start(kind)
            kind = machine.keywords.get(value, kind) if kind == "NAME" else kind
        if fresh:
            head, fresh = kind, False
        if value in _CLOSER and kind != "STRING":
            stack.append((value, start))
        elif kind in ("_RPAR", "_RSQB", "_RBRACE"):
            if not stack or _CLOSER[stack[-1][0]] != value:
                return _ScanResult(stack, True, False, kind, head)
            stack.pop()
        if not stack and kind in ("_SEMI", "_RBRACE"):
            head, fresh = "", True
        last = kind


def completeness(text: str) -> str:
    """"complete" (it parses), "incomplete" (more lines could finish it: open brackets or string,
    a dangling operator, keyword or block header) or "invalid" (no further line can: the parser
    stopped at a token before the end, and an LALR parser never accepts a prefix no input extends)."""
    scan = _scan(text)
    if scan.broken:
        return "invalid"
    if scan.open_string:
        return "incomplete"
    try:
        parse(Source("<input>", text))
    except NomaError as exc:
        span = exc.diagnostics[0].span if exc.diagnostics else None
        return "incomplete" if span is None or span.start >= len(text.rstrip()) else "invalid"
    return "complete"


def is_complete(text: str) -> bool:
    """False when more input could finish this text; True when it parses, and for errors more
    text would not fix (see completeness)."""
    return completeness(text) != "incomplete"
