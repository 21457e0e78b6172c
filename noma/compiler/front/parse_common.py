"""The parser's shared vocabulary: keywords, limits, string escapes and the token record.

Owns: KEYWORDS, CAST_TYPES, MAX_NESTING (docs/LANGUAGE.md, Limits), MAX_TENSOR_RANK, the string
escapes and the `_Tok` every parser module passes around. Imports: nothing of NOMA's.
"""

from __future__ import annotations

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



class _Tok:
    __slots__ = ("type", "value", "start_pos", "end_pos")

    def __init__(self, type_: str, value: str, start: int, end: int):
        self.type, self.value, self.start_pos, self.end_pos = type_, value, start, end


