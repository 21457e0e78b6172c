"""Numeric literals read fast: a whole row of plain numbers (a tensor literal's data) scanned at
once instead of token by token, and the regex helper the lexer runs.
Imports: the standard library, parse_common.
"""

from __future__ import annotations

import re
from array import array
from typing import Callable, cast

from noma.compiler.front.parse_common import MAX_TENSOR_RANK

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
