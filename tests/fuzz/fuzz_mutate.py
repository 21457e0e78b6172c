"""Mutated corpus programs for the fuzz tests: tokens deleted, duplicated and swapped, numbers
replaced by hostile values, identifiers swapped, truncation, stray bytes.

Owns: tokenize (a NOMA source as tokens with the text between them) and mutate (one seeded
mutant of a corpus program, as bytes: a mutant may not be UTF-8).
Imports: nothing of NOMA's (the token classes follow noma/compiler/front/grammar.lark's terminals).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Callable

_TOKEN = re.compile(r"""
    (?P<comment>//[^\n]*)
  | (?P<string>"(?:\\[^\n]|[^"\\\n])*")
  | (?P<number>[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\.\.|\|\||&&|==|!=|<=|>=|\*\*|[-+*/%^!<>=(){}\[\];,:.])
  | (?P<other>\S)
""", re.VERBOSE)

#: Hostile replacements for a number: zero, negatives, overflow, nan, inf and huge shapes.
NUMBERS = ("0", "-1", "1e308", "-1e308", "(0/0)", "(1/0)", "nan", "0.5", "2147483648",
           "3037000500", "9223372036854775807", "18446744073709551616", "100000", "1e9", "1e-320",
           "99999999999999999999999999999999", "2", "3", "-0")
#: Tokens that are inserted at random places.
INSERTS = ("{", "}", "(", ")", "[", "]", ";", ",", "fn", "let", "learn", "optimize", "minimize",
           "return", "break", "dim", "realloc", "free", "batch", "with", "as", "i32", "i64", "f32",
           "tensor", "..", "=", "-", "reset_optimizer()", "loss", "0", "\"", "//", "'", "@", "\u00e9",
           "\u0000", "\\")


@dataclass
class Token:
    kind: str  # comment | string | number | name | op | other
    text: str
    before: str  # the whitespace (or nothing) before it


def tokenize(text: str) -> tuple[list[Token], str]:
    """The tokens of `text` and the text after the last token."""
    tokens: list[Token] = []
    pos = 0
    for m in _TOKEN.finditer(text):
        tokens.append(Token(m.lastgroup or "other", m.group(), text[pos:m.start()]))
        pos = m.end()
    return tokens, text[pos:]


def _join(tokens: list[Token], tail: str) -> str:
    return "".join(t.before + t.text for t in tokens) + tail


def _code(tokens: list[Token]) -> list[int]:
    return [i for i, t in enumerate(tokens) if t.kind != "comment"]


def _delete(rng: random.Random, tokens: list[Token]) -> None:
    code = _code(tokens)
    if code:
        del tokens[rng.choice(code)]


def _duplicate(rng: random.Random, tokens: list[Token]) -> None:
    code = _code(tokens)
    if code:
        i = rng.choice(code)
        n = rng.choice((1, 1, 1, 2, 10, 200))
        copies = [Token(tokens[i].kind, tokens[i].text, " ") for _ in range(n)]
        tokens[i + 1:i + 1] = copies


def _duplicate_span(rng: random.Random, tokens: list[Token]) -> None:
    code = _code(tokens)
    if len(code) > 2:
        a = rng.choice(code)
        b = min(len(tokens), a + rng.randint(1, 12))
        tokens[b:b] = [Token(t.kind, t.text, t.before) for t in tokens[a:b]]


def _swap(rng: random.Random, tokens: list[Token]) -> None:
    code = _code(tokens)
    if len(code) > 1:
        i, j = rng.sample(code, 2)
        tokens[i].text, tokens[j].text = tokens[j].text, tokens[i].text
        tokens[i].kind, tokens[j].kind = tokens[j].kind, tokens[i].kind


def _number(rng: random.Random, tokens: list[Token]) -> None:
    numbers = [i for i, t in enumerate(tokens) if t.kind == "number"]
    if numbers:
        i = rng.choice(numbers)
        tokens[i].text = rng.choice(NUMBERS)


def _all_numbers(rng: random.Random, tokens: list[Token]) -> None:
    value = rng.choice(NUMBERS)
    for t in tokens:
        if t.kind == "number" and rng.random() < 0.5:
            t.text = value


def _identifier(rng: random.Random, tokens: list[Token]) -> None:
    names = [i for i, t in enumerate(tokens) if t.kind == "name"]
    if len(names) > 1:
        i = rng.choice(names)
        tokens[i].text = tokens[rng.choice(names)].text


def _insert(rng: random.Random, tokens: list[Token]) -> None:
    i = rng.randint(0, len(tokens))
    tokens.insert(i, Token("other", rng.choice(INSERTS), " "))


def _nest(rng: random.Random, tokens: list[Token]) -> None:
    """Wrap a number in many parentheses or a unary minus chain (deep nesting)."""
    numbers = [i for i, t in enumerate(tokens) if t.kind == "number"]
    if numbers:
        i = rng.choice(numbers)
        depth = rng.choice((50, 300, 2000))
        opener, closer = rng.choice((("(", ")"), ("-", ""), ("[", "]")))
        tokens[i].text = opener * depth + tokens[i].text + closer * depth


MUTATIONS: tuple[Callable[[random.Random, list[Token]], None], ...] = (
    _delete, _delete, _duplicate, _duplicate_span, _swap, _swap, _number, _number, _number,
    _all_numbers, _identifier, _identifier, _insert, _nest,
)


def mutate(rng: random.Random, text: str) -> bytes:
    """One mutant of `text`: one to three token mutations, sometimes truncated or with bad bytes."""
    tokens, tail = tokenize(text)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        rng.choice(MUTATIONS)(rng, tokens)
    out = _join(tokens, tail)
    if rng.random() < 0.1:  # truncation at any character
        out = out[:rng.randint(0, len(out))]
    data = out.encode("utf-8")
    if rng.random() < 0.02:  # a byte that is not UTF-8
        i = rng.randint(0, len(data))
        data = data[:i] + rng.choice((b"\xff", b"\xc3", b"\x80")) + data[i:]
    return data
