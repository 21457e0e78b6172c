"""The LALR(1) machine of the parser: grammar.lark's tables (built by lark and cached:
parse_tables.py) with the AST builder of each rule, the viability and expected-terminal queries on
its stack, and the reduction step; also the bracket scan of unfinished input (the REPL's
completeness and the syntax errors' notes use it).

lark compiles grammar.lark into an LALR(1) table; parse.py runs that table directly (lark's own
runtime loop is 2-3x slower: generic callbacks and Token-keyed tables), lexing with one regex
built from the grammar's terminals in lark's order (priority, then longest).
Imports: noma.compiler.front.parse_tables, parse_common, parse_build.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Callable, NamedTuple, Optional

from noma.compiler.front import parse_tables
from noma.compiler.front.parse_build import _Build
from noma.compiler.front.parse_common import _CLOSER, _END
from noma.compiler.front.parse_numbers import _always

class _Splice(list):
    """The children of a helper rule (`x*`, `(a b)?`): they go into the parent's children."""


class _Rule(NamedTuple):
    size: int
    origin: str
    fn: Optional[Callable[..., Any]]  # a _Build method, or None for a helper rule (spliced into its parent)
    expand1: bool  # `?rule`: a single child stands for the rule
    flatten: bool  # some child may be a _Splice
    unit: bool  # `?rule: other` (one symbol, not a helper): nothing to build
    direct: bool  # fn gets the children as they are (no splices, no `?rule` of one child, some child)


class _Machine(NamedTuple):
    scanner: re.Pattern
    keywords: dict  # "let" → "_LET"
    literal_kinds: dict  # "==" → "EQ": the terminal of a token the scanner's LITERAL group matched
    states: dict  # state → {symbol: next state (int) | unit reduce (origin, str) | _Rule}
    start: int
    end: int
    literals: dict  # terminal → its literal text (None: a regex terminal)
    units: dict  # (state below, top state, lookahead) → top state after its chain of unit reduces
    gotos: dict  # (state below, rule origin, lookahead) → top state after the goto and unit reduces


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
            direct = fn is not None and not flatten and not (expand1 and size == 1) and size > 0
            rules[rule] = _Rule(size, origin, fn, expand1, flatten, unit, direct)
        return rules[rule]

    states = {st: {sym: rule_of(act) if isinstance(act, tuple) else act for sym, act in row.items()}
              for st, row in tables.states.items()}
    literal_kinds = {text: name for name, text in tables.literals.items() if text is not None}
    return _Machine(re.compile(tables.scanner), tables.keywords, literal_kinds, states, tables.start,
                    tables.end, tables.literals, {}, {})



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
            if kind == "NAME":
                kind = machine.keywords.get(value, kind)
            elif kind == parse_tables.LITERAL:
                kind = machine.literal_kinds[value]
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
