"""A Pygments lexer for NOMA source (the REPL's highlighting, docs, Jupyter's code cells).

Owns: NomaLexer: keywords, builtins, optimizers, casts, numbers, strings, comments, operators
and meta-command lines (`:params`). Registered as the `noma` entry point of `pygments.lexers`
in setup.cfg. Keeps its own keyword/builtin lists so that importing it stays cheap (no lark);
tests check they match noma.compiler.front.parse.KEYWORDS and irgen_builtins.BUILTINS.
Imports: pygments.
"""

from __future__ import annotations

from pygments.lexer import RegexLexer, bygroups, words
from pygments.token import (Comment, Keyword, Name, Number, Operator, Punctuation, String, Text,
                            Whitespace)

__all__ = ["NomaLexer", "KEYWORDS", "BUILTINS", "OPTIMIZERS"]

#: Declarations and statements that introduce names.
DECLARATIONS = ("fn", "let", "learn", "dim", "alloc", "realloc", "free", "load_csv",
                "load_safetensors")
KEYWORDS = DECLARATIONS + (
    "return", "if", "else", "while", "for", "in", "break", "continue", "optimize", "with", "until",
    "max", "minimize", "batch", "save_csv", "save_safetensors", "init", "as", "tensor", "import",
)
BUILTINS = (
    "sigmoid", "relu", "tanh", "exp", "log", "sqrt", "abs", "sin", "cos", "tan", "floor", "ceil",
    "pow", "min", "max", "clip", "sum", "mean", "dot", "matmul", "transpose", "shape", "rows",
    "cols", "reshape", "concat", "slice", "softmax", "log_softmax", "cross_entropy", "argmax",
    "accuracy", "print", "report", "seed", "reset_optimizer", "save_checkpoint", "load_checkpoint", "rand",
    "rand_uniform", "rand_normal",
    "rand_tensor", "rand_normal_tensor", "xavier_init", "he_init", "zeros", "ones", "full",
    "normal", "uniform", "xavier", "he",
)
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
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
            (r"(with)(\s+)(sgd|adamw|adam|rmsprop)\b", bygroups(Keyword, Whitespace, Name.Builtin)),
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
