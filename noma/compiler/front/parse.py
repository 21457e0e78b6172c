"""Parse NOMA source text into the AST.

Owns: `parse` (the lexer compiled from the grammar's own terminals driving the LALR(1) machine
of parse_machine.py, whose reductions call parse_build.py's AST builders; syntax errors come from
parse_errors.py) and the REPL's completeness()/is_complete(). KEYWORDS, CAST_TYPES and
MAX_NESTING (parse_common.py) are re-exported.
Input: a noma.diagnostics.Source. Output: a noma.compiler.front.ast.Program with spans on every node.
Imports: noma.compiler.front.parse_tables (lark only there), noma.diagnostics, noma.compiler.front.ast.
"""

from __future__ import annotations

from typing import cast

from noma.compiler.front import ast
from noma.compiler.front.budget import gc_paused
from noma.compiler.front.parse_build import _Build
from noma.compiler.front.parse_common import _END, _NESTING, CAST_TYPES, KEYWORDS, MAX_NESTING, _Tok
from noma.compiler.front.parse_errors import _bad_character, _too_deep, _unexpected
from noma.compiler.front.parse_machine import _expected, _machine, _Machine, _reduce, _scan, _viable
from noma.compiler.front.parse_numbers import _always, _numeric_literal
from noma.compiler.front.parse_tables import LITERAL
from noma.diagnostics import NomaError, Source

__all__ = ["CAST_TYPES", "KEYWORDS", "MAX_NESTING", "completeness", "is_complete", "parse"]


def parse(source: Source) -> ast.Program:
    """Parse a whole file or cell; raises NomaError (Kind.SYNTAX) on the first syntax error.
    The last statement may omit its `;`."""
    with gc_paused():
        return _run(_machine(), source, _Build(source))



def _run(machine: _Machine, source: Source, builder: _Build) -> ast.Program:
    text, states, keywords, literal_kinds = source.text, machine.states, machine.keywords, machine.literal_kinds
    match = _always(machine.scanner)
    units, gotos, accept = machine.units, machine.gotos, machine.end
    stack: list[int] = [machine.start]
    values: list = []  # per stack entry but the first: its token or the value built from it
    #: the stack indices of the shifted tokens that open a nesting level (brackets, operators,
    #: `else`s; a reduction drops those it consumes): the nesting depth is their count
    opens: list[int] = []
    pos, size, last_end = 0, len(text), 0
    while True:
        m = match(text, pos)
        kind = m.lastgroup
        if kind is not None:
            start, pos = m.span(kind)  # the token is the end of the match (after skipped text)
            value = text[start:pos]
            if kind == "NAME":
                kind = keywords.get(value, kind)
            elif kind == LITERAL:
                kind = literal_kinds[value]
            tok = _Tok(kind, value, start, pos)
            last_end = pos
        else:
            pos = m.end()
            if pos < size:
                raise NomaError(_bad_character(source, pos))
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
        action = states[stack[-1]].get(kind)
        if action.__class__ is not int:  # reductions until the token can be shifted
            before = stack[:]  # what was expected before them, for a syntax error
            while action.__class__ is not int:
                if action is None:
                    raise NomaError(_unexpected(source, tok, _expected(states, before)))
                if action.__class__ is str:  # `?a: b` reduce: b's value stands for a; the chain
                    # of them on this lookahead (NUMBER → atom → postfix → … → expr) depends only
                    # on the two top states, so it is walked once and remembered
                    key = (stack[-2], stack[-1], kind)
                    top = units.get(key)
                    if top is None:
                        top = units[key] = _unit_chain(states, stack[-2], action, kind)
                    stack[-1] = top
                else:
                    n, origin, fn, _expand1, _flatten, _unit, direct = action
                    if direct:  # _reduce's common case, inlined: the builder gets the children
                        children = values[-n:]
                        del values[-n:], stack[-n:]
                        values.append(fn(builder, children))
                    else:
                        values.append(_reduce(action, stack, values, builder))
                    while opens and opens[-1] >= len(stack):  # consumed: a reduced construct
                        opens.pop()  # is complete, it opens nothing
                    # the goto, then the chain of unit reduces it meets on this lookahead
                    # (walked once per state below, rule and lookahead, and remembered)
                    key = (stack[-1], origin, kind)
                    top = gotos.get(key)
                    if top is None:
                        top = gotos[key] = _goto(states, stack[-1], origin, kind, accept)
                    stack.append(top)
                    if kind == _END and top == accept:
                        return cast(ast.Program, values[-1])
                action = states[top].get(kind)
        if kind in _NESTING:
            if len(opens) >= MAX_NESTING:
                raise NomaError(_too_deep(source, tok))
            opens.append(len(stack))
        stack.append(action)  # shift
        values.append(tok)


def _unit_chain(states: dict, below: int, origin: str, kind: str) -> int:
    """The state after the unit reduce to `origin` over the state `below`, then each further
    unit reduce its row has for the lookahead `kind`."""
    top = states[below][origin]
    action = states[top].get(kind)
    while action.__class__ is str:
        top = states[below][action]
        action = states[top].get(kind)
    return top


def _goto(states: dict, below: int, origin: str, kind: str, accept: int) -> int:
    """The state after reducing to `origin` over the state `below`, then after every unit reduce
    its row has for the lookahead `kind` (the steps the loop in _run would take)."""
    top = states[below][origin]
    if kind == _END and top == accept:
        return top
    action = states[top].get(kind)
    return _unit_chain(states, below, action, kind) if action.__class__ is str else top


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
