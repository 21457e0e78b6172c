"""noma.lexer.NomaLexer (Pygments), its registration, and the REPL's completion candidates."""

from __future__ import annotations

import configparser
from pathlib import Path

from pygments import lex
from pygments.token import Comment, Keyword, Name, Number, Operator, String

from noma.lexer import BUILTINS, KEYWORDS, NomaLexer

ROOT = Path(__file__).resolve().parents[2]


def tokens(text: str) -> list[tuple[object, str]]:
    return [(t, v) for t, v in lex(text, NomaLexer()) if v.strip()]


def kind_of(text: str, word: str):
    return next(t for t, v in tokens(text) if v == word)


def test_word_lists_match_the_compiler():
    from noma.compiler.middle.irgen_builtins import BUILTINS as COMPILER_BUILTINS
    from noma.compiler.front.parse import KEYWORDS as COMPILER_KEYWORDS

    assert set(KEYWORDS) == set(COMPILER_KEYWORDS)
    assert set(BUILTINS) == set(COMPILER_BUILTINS)


def test_lexer_metadata_and_entry_point():
    assert NomaLexer.name == "NOMA"
    assert NomaLexer.aliases == ["noma"]
    assert NomaLexer.filenames == ["*.noma"]
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    entry = cfg["options.entry_points"]["pygments.lexers"]
    assert "noma = noma.lexer:NomaLexer" in entry


def test_token_kinds():
    src = ('fn f(x) { x * 2.5e-3 } // note\n'
           'optimize(W) with adam(lr = 0.05) until loss < 0.002 max 20 { let y = max(a, b) as f32; }\n'
           'for i in 0..10 { print("a\\n", i ** 2); }\n'
           'realloc hidden = 8 init copy;\n')
    assert kind_of(src, "fn") in Keyword
    assert kind_of(src, "f") is Name.Function
    assert kind_of(src, "2.5e-3") is Number.Float
    assert kind_of(src, "// note") in Comment
    assert kind_of(src, "optimize") in Keyword
    assert kind_of(src, "adam") is Name.Builtin
    assert kind_of(src, "f32") is Keyword.Type
    assert kind_of(src, "**") is Operator
    assert kind_of(src, "realloc") in Keyword
    assert kind_of(src, "copy") is Name.Builtin
    words = [v for _, v in tokens(src)]
    assert "0" in words and "10" in words and ".." in words  # a range, not floats
    maxes = [t for t, v in tokens(src) if v == "max"]
    assert maxes == [Keyword, Name.Builtin]  # `max 20` vs `max(a, b)`
    assert any(t in String for t, v in tokens(src) if v == "\\n")
    assert kind_of(":params", ":params") is Keyword.Pseudo


def test_lexer_never_fails_on_garbage():
    text = 'let s = "open\n$ @ # ` \x00 é'
    assert "".join(v for _, v in lex(text, NomaLexer())).rstrip("\n") == text


def test_completion_candidates_and_meta_column():
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document

    from noma.repl.completion import NomaCompleter, candidates
    from noma.session.core import Session

    session = Session()
    assert session.execute("dim hidden = 3; learn weights = zeros([2, hidden]); let total = 1.5;"
                           "fn double(x) { x * 2 }").ok
    found = dict(candidates(session))
    assert found["weights"] == "[2, 3] f64 param"
    assert found["hidden"] == "dim = 3"
    assert found["total"] == "scalar f64"
    assert found["double"] == "fn(x)"
    assert found["matmul"] == "builtin" and found["optimize"] == "keyword" and found["adam"] == "optimizer"

    completer = NomaCompleter(lambda: session)

    def complete(text: str) -> list[tuple[str, str]]:
        got = completer.get_completions(Document(text, len(text)), CompleteEvent(completion_requested=True))
        return [(c.text, c.display_meta_text) for c in got]

    assert complete("print(wei") == [("weights", "[2, 3] f64 param")]
    assert [t for t, _ in complete("softm")] == ["softmax"]
    assert (":params", "parameters: shape, dtype, size, optimizer and its state (step counts)") in complete(":pa")
    assert [t for t, _ in complete(":ir d")] == ["double"]
    assert complete("1 + ") == []


def test_completion_of_names_under_a_module_alias():
    """`nn.gel` completes to `nn.gelu` (the word before the cursor includes the alias's dot), in
    the REPL and the kernel alike; the kernel's inspection finds `nn.gelu(` too."""
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document

    from noma.kernel.introspect import complete as kernel_complete
    from noma.kernel.introspect import word_at
    from noma.repl.completion import NomaCompleter
    from noma.session.core import Session

    session = Session()
    assert session.execute("import std.nn as nn;").ok
    text = "let y = nn.gel"
    got = NomaCompleter(lambda: session).get_completions(Document(text, len(text)),
                                                         CompleteEvent(completion_requested=True))
    assert [(c.text, c.start_position) for c in got] == [("nn.gelu", -len("nn.gel"))]
    reply = kernel_complete(session, text, len(text), [])
    assert reply["matches"] == ["nn.gelu"] and reply["cursor_start"] == len("let y = ")
    assert word_at("nn.gelu(1, ", len("nn.gelu(1, ")) == "nn.gelu"
    assert word_at("x = nn.ge", len("x = nn.g")) == "nn.ge"
