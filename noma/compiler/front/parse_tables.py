"""The parser's tables: grammar.lark compiled by lark into LALR(1) tables as plain data, cached.

Owns: building the tables (the one module that imports lark; parse.py runs the tables) and the
on-disk cache that spares every new process the ~0.1-0.3 s of lark's grammar analysis: a
`marshal` file in `$NOMA_CACHE_DIR` or `~/.cache/noma`, named by a hash of the grammar, this
module's own source, lark's `__init__.py` (its version) and Python's version (any change builds afresh; a missing,
unreadable or unwritable cache only costs the build). lark is imported only to build.
Output: `Tables` — states as {state: {symbol: next state (int) | unit-reduce origin (str) |
rule (size, origin, builder name, expand1, flatten, unit)}}, the scanner regex (skipped text,
then one token, named groups in lark's terminal order, the run of literal terminals one group
LITERAL), keywords, start/end states, and the literal text of each terminal (for error messages
and for naming a LITERAL token).
Imports: the standard library (lark only while building).
"""

from __future__ import annotations

import hashlib
import marshal
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple, Optional

GRAMMAR = Path(__file__).with_name("grammar.lark")
FORMAT = 2
#: the scanner's group of every literal terminal (see _token_pattern)
LITERAL = "LITERAL"
_KEYWORD_RE = re.compile(r"[A-Za-z_]\w*\\b")


class Tables(NamedTuple):
    states: dict
    scanner: str
    keywords: dict  # "let" → "_LET"
    start: int
    end: int
    literals: dict  # terminal name → its literal text, or None for a regex terminal


def load() -> Tables:
    """The tables of grammar.lark, from the cache when it holds them."""
    grammar = GRAMMAR.read_text()
    path = _cache_path(grammar)
    if path is not None:
        try:
            return Tables(*marshal.loads(path.read_bytes()))
        except (OSError, EOFError, ValueError, TypeError):
            pass
    tables = build(grammar)
    if path is not None:
        _store(path, marshal.dumps(tuple(tables)))
    return tables


def build(grammar: str) -> Tables:
    """Run lark's LALR(1) analysis of the grammar and keep what the parse loop needs."""
    from lark import Lark
    from lark.lexer import PatternStr
    from lark.parsers.lalr_analysis import Shift

    parser = Lark(grammar, parser="lalr", lexer="basic")
    conf = parser.parse_interactive("").parser_state.parse_conf
    rules: dict = {}

    def rule_of(rule) -> tuple:
        if rule not in rules:
            origin = str(rule.origin.name)
            expand1 = bool(rule.options.expand1 and not rule.alias)
            flatten = any(not s.is_term and s.name.startswith("_") for s in rule.expansion)
            unit = expand1 and len(rule.expansion) == 1 and not flatten
            rules[rule] = (len(rule.expansion), origin, str(rule.alias or origin), expand1, flatten, unit)
        return rules[rule]

    def encode(action, arg):  # shift/goto: the next state; unit reduce: the origin; else the rule
        if action is Shift:
            return int(arg)
        rule = rule_of(arg)
        return rule[1] if rule[5] else rule

    states = {int(st): {str(sym): encode(*act) for sym, act in row.items()}
              for st, row in conf.states.items()}
    terms = sorted(parser.terminals, key=lambda t: (
        -t.priority, -t.pattern.max_width, -len(t.pattern.value), t.name))
    # keyword terminals (`/let\b/`, priority over NAME) become a table looked up after NAME
    keywords = {t.pattern.value[:-2]: t.name for t in terms if _KEYWORD_RE.fullmatch(t.pattern.value)}
    skip = "|".join(t.pattern.to_regexp() for t in terms if t.name in parser.ignore_tokens)
    lexed = [t for t in terms if t.name not in parser.ignore_tokens and t.name not in keywords.values()]
    literals = {t.name: (t.pattern.value if isinstance(t.pattern, PatternStr) else None)
                for t in parser.terminals}
    return Tables(states, f"(?:{skip})*(?:{_token_pattern(lexed, literals)})?", keywords,
                  int(conf.start_state), int(conf.end_state), literals)


def _token_pattern(terms: list, literals: dict) -> str:
    """A named group per terminal, in lark's order; a run of literal terminals (`==`, `;`, ...)
    next to each other in that order is one group LITERAL instead (the parser names the token
    from its text: parse_machine's `literal_kinds`). The alternatives and their order are the
    same, so the same text matches; the shorter alternation of groups is faster to match."""
    def group(name: str, pattern: str) -> str:
        return f"(?P<{name}>{pattern})"

    is_literal = [literals.get(t.name) is not None for t in terms]
    first = is_literal.index(True) if True in is_literal else len(terms)
    last = first
    while last < len(terms) and is_literal[last]:
        last += 1
    if LITERAL in literals or any(is_literal[last:]):  # literals apart: a group each
        return "|".join(group(t.name, t.pattern.to_regexp()) for t in terms)
    run = "|".join(t.pattern.to_regexp() for t in terms[first:last])
    return "|".join([group(t.name, t.pattern.to_regexp()) for t in terms[:first]]
                    + ([group(LITERAL, run)] if run else [])
                    + [group(t.name, t.pattern.to_regexp()) for t in terms[last:]])


def _cache_path(grammar: str) -> Optional[Path]:
    import importlib.util

    try:  # lark's __init__.py holds its version (importing lark would cost what the cache saves)
        spec = importlib.util.find_spec("lark")
        lark_id = Path(spec.origin).read_text() if spec is not None and spec.origin else ""
    except (OSError, ImportError, ValueError):
        lark_id = ""
    if not lark_id:
        return None
    key = hashlib.sha256("\0".join((
        grammar, Path(__file__).read_text(), lark_id, sys.version, str(FORMAT))).encode()).hexdigest()
    env = os.environ.get("NOMA_CACHE_DIR")
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "noma"
    return base / f"parse-tables-{key[:24]}.marshal"


def _store(path: Path, data: bytes) -> None:
    """Write the cache file atomically (concurrent processes may race; the last rename wins)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        pass
