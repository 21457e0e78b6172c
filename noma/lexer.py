"""A Pygments lexer for NOMA source (the REPL's highlighting, docs, Jupyter's code cells).

Owns: NomaLexer: keywords, builtins, optimizers, casts, numbers, strings, comments, operators
and meta-command lines (`:params`). Registered as the `noma` entry point of `pygments.lexers`
in setup.cfg. Keeps its own keyword list so that importing it stays cheap (no lark); a test checks it matches
noma.compiler.front.parse.KEYWORDS. Builtins come from the builtin table (noma.compiler.middle.ops,
stdlib-only) and optimizers from the registry noma.optimizers.
Imports: pygments, noma.optimizers, noma.compiler.middle.ops.
"""

from __future__ import annotations

from pygments.lexer import RegexLexer, bygroups, words
from pygments.token import (Comment, Keyword, Name, Number, Operator, Punctuation, String, Text,
                            Whitespace)

from noma import optimizers
from noma.compiler.middle import ops

__all__ = ["NomaLexer", "KEYWORDS", "BUILTINS", "OPTIMIZERS"]

#: Declarations and statements that introduce names.
DECLARATIONS = ("fn", "let", "learn", "dim", "alloc", "realloc", "free", "load_csv",
                "load_safetensors")
KEYWORDS = DECLARATIONS + (
    "return", "if", "else", "while", "for", "in", "break", "continue", "optimize", "with", "until",
    "max", "minimize", "batch", "save_csv", "save_safetensors", "init", "as", "tensor", "import",
)
BUILTINS = tuple(ops.BUILTINS)
OPTIMIZERS = tuple(optimizers.OPTIMIZERS)
CAST_TYPES = ("f64", "f32", "i32", "i64")
#: Resize policies after `init`.
POLICIES = ("copy", "preserve", "zeros", "normal", "uniform", "xavier", "he")


class NomaLexer(RegexLexer):
    """Lexer for the NOMA language."""

    name = "NOMA"
    aliases = ["noma"]
    filenames = ["*.noma"]
    mimetypes = ["text/x-noma"]
    url = "https://github.com/pierridotite/NOMA"

    tokens = {
        "root": [
            (r"\A(\s*)(:[A-Za-z?]+)(.*)$", bygroups(Whitespace, Keyword.Pseudo, Text)),
            (r"\s+", Whitespace),
            (r"//.*?$", Comment.Single),
            (r"(fn)(\s+)([A-Za-z_]\w*)", bygroups(Keyword.Declaration, Whitespace, Name.Function)),
            (r"(let|learn|dim|alloc|realloc|free|load_csv|load_safetensors)(\s+)([A-Za-z_]\w*)",
             bygroups(Keyword.Declaration, Whitespace, Name.Variable)),
            (r"(with)(\s+)(" + "|".join(sorted(OPTIMIZERS, key=len, reverse=True)) + r")\b",
             bygroups(Keyword, Whitespace, Name.Builtin)),
            (r"(init)(\s+)([A-Za-z_]\w*)", bygroups(Keyword, Whitespace, Name.Builtin)),
            (r"(as)(\s+)(f64|f32|i32|i64)\b", bygroups(Keyword, Whitespace, Keyword.Type)),
            (words(("max",), suffix=r"(?=\s*\()"), Name.Builtin),
            (words(KEYWORDS, suffix=r"\b"), Keyword),
            (words(BUILTINS, suffix=r"\b"), Name.Builtin),
            (r'"', String.Double, "string"),
            (r"\d+\.\d+([eE][+-]?\d+)?", Number.Float),
            (r"\d+[eE][+-]?\d+", Number.Float),
            (r"\d+", Number.Integer),
            (r"\.\.", Operator),
            (r"\*\*|&&|\|\||==|!=|<=|>=|[-+*/%^<>=!]", Operator),
            (r"[A-Za-z_]\w*(?=\s*\()", Name.Function),
            (r"[A-Za-z_]\w*", Name),
            (r"[()\[\]{},;:.]", Punctuation),
            (r".", Text),
        ],
        "string": [
            (r'\\[\\"nt]', String.Escape),
            (r'[^"\\\n]+', String.Double),
            (r"\\.", String.Double),
            (r'"', String.Double, "#pop"),
            (r"\n", String.Double, "#pop"),
        ],
    }
