"""Syntax errors as people read them: a bad character, nesting past the limit, and an
unexpected token with what could have come instead (in words, not terminal names).
Imports: noma.diagnostics, parse_common, parse_machine.
"""

from __future__ import annotations

from noma.compiler.front.parse_common import _CLOSER, _END, KEYWORDS, MAX_NESTING, _Tok
from noma.compiler.front.parse_machine import _machine, _scan
from noma.diagnostics import Diagnostic, Kind, Source, Span

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
