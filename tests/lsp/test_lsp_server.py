"""`noma lsp` through a real client over stdio (tests/lsp/rpc_client.py): diagnostics with the
messages and spans of `noma check`, completion, hover, definition, references, symbols and rename
on a sample program, and an answer to every request kind on every corpus program (and on each cut
in half, a broken file). One server process serves the whole module.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from rpc_client import ROOT, LspClient, ServerError

from noma import optimizers as noma_optimizers
from noma.compiler import pipeline
from noma.compiler.front.parse import parse
from noma.lsp.analysis import in_document
from noma.compiler.front.symbols import SymbolTable
from noma.diagnostics import NomaError, Source
from noma.rt.safetensors_header import read_ranks

PROGRAMS = sorted((ROOT / "tests" / "programs").glob("*.noma"))

SAMPLE = """\
// a sample for the language server
dim hidden = 4;
let X = tensor [[0, 0], [0, 1], [1, 0], [1, 1]];
learn W1 = normal([2, hidden], 0, 1);
learn b1 = zeros([hidden]);

fn layer(x, w) {
    let z = matmul(x, w);
    return sigmoid(z);
}

optimize(W1, b1) with adam(lr = 0.05) max 3 {
    let h = layer(X, W1) + b1;
    let loss = mean(h ^ 2);
    minimize loss;
}
print(loss);
"""


def _uri(name: str) -> str:
    return (ROOT / "tests" / "lsp" / name).as_uri()


@pytest.fixture(scope="module")
def client():
    c = LspClient()
    caps = c.initialize()["capabilities"]
    for cap in ("completionProvider", "hoverProvider", "definitionProvider", "documentSymbolProvider",
                "renameProvider", "referencesProvider"):
        assert caps.get(cap), cap
    yield c
    assert c.shutdown() == 0
    assert "Traceback" not in c.stderr_text()


@pytest.fixture(scope="module")
def sample(client):
    uri = _uri("sample.noma")
    diags = client.open(uri, SAMPLE)
    assert diags["diagnostics"] == []
    return uri


def _pos(text: str, needle: str, nth: int = 0, delta: int = 0) -> tuple[int, int]:
    """(line, character) of the nth occurrence of needle (plus delta characters)."""
    start = -1
    for _ in range(nth + 1):
        start = text.index(needle, start + 1)
    offset = start + delta
    line = text.count("\n", 0, offset)
    return line, offset - (text.rfind("\n", 0, offset) + 1)


# ----------------------------------------------------------------------------- diagnostics


def _check_cli(path: Path) -> str:
    return subprocess.run([sys.executable, "-m", "noma", "check", str(path)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}).stderr


def test_broken_file_diagnostics_match_noma_check(client, tmp_path):
    cases = {
        "syntax.noma": ("let a = 1;\nlet b = (a + ;\n", "syntax", (1, 13), (1, 14)),
        "name.noma": ("let a = 1;\nprint(a + missing);\n", "name", (1, 10), (1, 17)),
        "type.noma": ("let a = tensor [1, 2];\nlet b = a[0][1];\n", "type", (1, 8), (1, 15)),
    }
    for name, (text, kind, start, end) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        diags = client.open(path.as_uri(), text)["diagnostics"]
        assert len(diags) == 1, diags
        d = diags[0]
        assert d["code"] == kind and d["severity"] == 1 and d["source"] == "noma"
        assert (d["range"]["start"]["line"], d["range"]["start"]["character"]) == start, d
        assert (d["range"]["end"]["line"], d["range"]["end"]["character"]) == end, d
        cli = _check_cli(path)
        assert f"error[{kind}]: {d['message'].splitlines()[0]}" in cli
        assert f"{path}:{start[0] + 1}:{start[1] + 1}" in cli
        client.close(path.as_uri())


def test_an_edit_updates_the_diagnostics(client):
    uri = _uri("edited.noma")
    assert client.open(uri, "let a = 1;\n")["diagnostics"] == []
    broken = client.change(uri, "let a = 1;\nprint(b);\n", 2)["diagnostics"]
    assert [d["code"] for d in broken] == ["name"]
    assert client.change(uri, "let a = 1;\nprint(a);\n", 3)["diagnostics"] == []
    client.close(uri)


def test_positions_count_utf16_units(client):
    """LSP columns are UTF-16 code units: an emoji before the error counts twice."""
    uri = _uri("utf16.noma")
    d = client.open(uri, 'print("\U0001F600", missing);\n')["diagnostics"][0]
    assert d["range"]["start"] == {"line": 0, "character": 12} and d["range"]["end"]["character"] == 19
    hover = client.request("textDocument/hover", client.at(uri, 0, 2))
    assert hover["range"]["start"] == {"line": 0, "character": 0}
    client.close(uri)


def test_load_safetensors_is_not_read(client, tmp_path):
    """The server opens no files: an existing safetensors file is not read, and it says so."""
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"not a safetensors file")
    text = f'load_safetensors m = "{path}";\nprint(m);\nlet x = 1;\n'
    diags = client.open(_uri("load_st.noma"), text)["diagnostics"]
    assert len(diags) == 1 and diags[0]["severity"] == 3 and diags[0]["code"] == "io"
    assert "opens no files" in diags[0]["message"]
    assert diags[0]["range"]["start"] == {"line": 0, "character": 21}
    csv = client.open(_uri("load_csv.noma"), 'load_csv d = "/nonexistent/data.csv";\nprint(rows(d));\n')
    assert csv["diagnostics"] == []


def test_notebook_meta_commands_are_skipped(client):
    """jupyterlab-lsp sends a notebook's cells as one document: its `:command` lines are not NOMA."""
    text = ":params\nlet a = 1;\n  :time print(a)\nprint(a + b);\n"
    notebook = client.open(_uri(".virtual_documents/tour.ipynb"), text)["diagnostics"]
    assert [(d["code"], d["range"]["start"]) for d in notebook] == [("name", {"line": 3, "character": 10})]
    file = client.open(_uri("meta.noma"), text)["diagnostics"]
    assert [(d["code"], d["range"]["start"]) for d in file] == [("syntax", {"line": 0, "character": 0})]


def _check_in_process(path: Path) -> list:
    """What `noma check` reports (Session.compile runs the pipeline with read_ranks)."""
    source = Source(str(path), path.read_text())
    try:
        pipeline.compile(source, SymbolTable(), read_header=read_ranks, cell="__cell0", stop="grad")
    except NomaError as exc:  # an error in an imported file shows at the document's import
        imported = [d for d in exc.diagnostics if d.span is not None and d.span.source is not source]
        if not imported:
            return exc.diagnostics
        return [in_document(d, source, parse(source)) for d in exc.diagnostics]
    return []


def test_corpus_diagnostics_match_the_compiler(client):
    """Every corpus program: no diagnostics when it compiles; else the compiler's first error,
    same message and place (a file the server would have to read is reported as unknown instead)."""
    for path in PROGRAMS:
        text = path.read_text()
        diags = client.open(path.as_uri(), text)["diagnostics"]
        expected = _check_in_process(path)
        reads = "load_safetensors" in text
        if reads and diags and diags[0]["severity"] == 3:
            assert "opens no files" in diags[0]["message"], path.name
        elif not expected:
            assert diags == [], (path.name, diags)
        else:
            want = expected[0]
            got = diags[0]
            assert got["message"].splitlines()[0] == want.message, path.name
            assert got["code"] == want.kind.value, path.name
            if want.span is not None:
                assert got["range"]["start"]["line"] == want.span.line - 1, path.name
                assert got["range"]["start"]["character"] == want.span.column - 1, path.name
        client.close(path.as_uri())


# ----------------------------------------------------------------------------- requests


def test_completion_lists_names_builtins_and_keywords(client, sample):
    line, char = _pos(SAMPLE, "let loss", delta=0)
    items = client.request("textDocument/completion", client.at(sample, line, char))["items"]
    by = {i["label"]: i for i in items}
    assert by["W1"]["detail"] == "learn W1: [2, hidden] rank-2 tensor f64 (axis 1 = dim hidden)"
    assert by["b1"]["detail"].startswith("learn b1: [hidden] rank-1 tensor f64")
    assert by["hidden"]["detail"] == "dim hidden = 4"
    assert by["h"]["detail"].startswith("let h")
    assert by["layer"]["detail"] == "fn layer(x, w)"
    assert by["softmax"]["detail"] == "softmax(x)"
    assert by["optimize"]["kind"] == 14  # Keyword
    assert "z" not in by  # a local of `layer`, not in scope here
    inside = client.request("textDocument/completion", client.at(sample, *_pos(SAMPLE, "return sigmoid")))["items"]
    labels = {i["label"] for i in inside}
    assert {"x", "w", "z", "W1", "X", "hidden"} <= labels and "h" not in labels
    uri = _uri("shadow.noma")  # a local shadows a global of the same name declared later
    client.open(uri, "fn f(a) {\n    let g = a;\n    return g;\n}\nlet g = f(2);\n")
    items = client.request("textDocument/completion", client.at(uri, 2, 11))["items"]
    assert [i["detail"] for i in items if i["label"] == "g"] == ["let g: shape known at run time f64 (local of fn f)"]
    client.close(uri)


def test_completion_after_with_as_and_init(client):
    uri = _uri("contexts.noma")
    client.open(uri, "learn w = zeros([2]);\noptimize(w) with \nlet y = 1 as \nrealloc w = [3] init \n")
    optimizers = client.request("textDocument/completion", client.at(uri, 1, 17))["items"]
    assert {i["label"] for i in optimizers} == set(noma_optimizers.OPTIMIZERS)
    casts = client.request("textDocument/completion", client.at(uri, 2, 13))["items"]
    assert {i["label"] for i in casts} == {"f64", "f32", "i32", "i64"}
    policies = client.request("textDocument/completion", client.at(uri, 3, 21))["items"]
    assert {"copy", "preserve", "normal", "xavier"} <= {i["label"] for i in policies}
    client.close(uri)


def test_hover(client, sample):
    def hover(needle: str, nth: int = 0) -> str:
        result = client.request("textDocument/hover", client.at(sample, *_pos(SAMPLE, needle, nth, 1)))
        return result["contents"]["value"]

    assert "learn W1: [2, hidden] rank-2 tensor f64" in hover("W1", 2)
    assert "dim hidden = 4" in hover("hidden", 1)
    assert "let X: [4, 2] f64 (global)" in hover("X", 1)
    assert "x: argument of fn layer" in hover("x, w)", 1)
    assert "softmax" not in hover("sigmoid")
    assert "sigmoid(x): 1 / (1 + exp(-x)), elementwise" in hover("sigmoid")
    assert "adam(lr = 0.001" in hover("adam")
    assert "minimize e;" in hover("minimize")
    assert client.request("textDocument/hover", client.at(sample, 0, 3)) is None  # in a comment


def test_definition_and_references(client, sample):
    loc = client.request("textDocument/definition", client.at(sample, *_pos(SAMPLE, "layer(X")))
    assert loc["range"]["start"] == {"line": 6, "character": 3} and loc["uri"] == sample
    loc = client.request("textDocument/definition", client.at(sample, *_pos(SAMPLE, "loss);")))
    assert loc["range"]["start"] == {"line": 13, "character": 8}  # the body's `loss` outlives the loop
    loc = client.request("textDocument/definition", client.at(sample, *_pos(SAMPLE, "w);")))
    assert loc["range"]["start"] == {"line": 6, "character": 12}
    assert client.request("textDocument/definition", client.at(sample, *_pos(SAMPLE, "matmul"))) is None
    refs = client.request("textDocument/references", {**client.at(sample, *_pos(SAMPLE, "W1")),
                                                      "context": {"includeDeclaration": True}})
    assert sorted(r["range"]["start"]["line"] for r in refs) == [3, 11, 12]


def test_document_symbols(client, sample):
    symbols = client.request("textDocument/documentSymbol", {"textDocument": {"uri": sample}})
    names = [(s["name"], s["kind"]) for s in symbols]
    assert names == [("hidden", 14), ("X", 13), ("W1", 8), ("b1", 8), ("layer", 12)]
    layer = symbols[4]
    assert [c["name"] for c in layer["children"]] == ["x", "w"]
    assert layer["range"]["start"]["line"] == 6 and layer["range"]["end"]["line"] == 9


def test_rename_a_local(client, sample):
    edit = client.request("textDocument/rename", {**client.at(sample, *_pos(SAMPLE, "z)")), "newName": "pre"})
    edits = edit["changes"][sample]
    assert sorted((e["range"]["start"]["line"], e["range"]["start"]["character"]) for e in edits) == [(7, 8), (8, 19)]
    assert all(e["newText"] == "pre" for e in edits)
    for taken in ("let", "sigmoid", "w", "W1"):  # a keyword, a builtin, names already in scope there
        with pytest.raises(ServerError):
            client.request("textDocument/rename", {**client.at(sample, *_pos(SAMPLE, "z)")), "newName": taken})
    edit = client.request("textDocument/rename", {**client.at(sample, *_pos(SAMPLE, "hidden")), "newName": "width"})
    assert len(edit["changes"][sample]) == 3


def test_long_chains_compile_and_deep_nesting_is_a_located_error(client):
    """A sum of 3000 terms compiles (left chains are generated with a loop, issue 14); nesting past
    the parser's limit is a located syntax error; the server keeps answering either way."""
    uri = _uri("deep.noma")
    diags = client.open(uri, "let x = " + "+".join(["1"] * 3000) + ";\nprint(x);\n")["diagnostics"]
    assert diags == []
    assert client.request("textDocument/completion", client.at(uri, 1, 6))["items"]
    client.close(uri)
    uri = _uri("nested.noma")
    diags = client.open(uri, "print(" + "(" * 300 + "1" + ")" * 300 + ");\n")["diagnostics"]
    assert len(diags) == 1 and "nests more than 256 levels" in diags[0]["message"]
    assert diags[0]["range"]["start"] == {"line": 0, "character": 261}
    assert client.request("textDocument/completion", client.at(uri, 0, 3))["items"]
    client.close(uri)


def test_every_request_answered_on_every_corpus_program(client):
    """No crash and an answer to each request kind, on each corpus program and its first half."""
    kinds = ("textDocument/completion", "textDocument/hover", "textDocument/definition",
             "textDocument/prepareRename")
    for path in PROGRAMS:
        text = path.read_text()
        for version, body in enumerate((text, text[: len(text) // 2]), start=1):
            uri = path.as_uri() + f"?v={version}"
            client.open(uri, body)
            lines = body.splitlines() or [""]
            for n, line in enumerate(lines[:: max(1, len(lines) // 3)]):
                row = lines.index(line)
                for kind in kinds:
                    client.request(kind, client.at(uri, row, len(line) // 2))
            client.request("textDocument/documentSymbol", {"textDocument": {"uri": uri}})
            client.close(uri)
    assert client.proc.poll() is None


def test_imports_errors_in_modules_and_definitions_in_them(client, tmp_path):
    """An error inside an imported file shows at the document's import, naming the file, line and
    column; go-to-definition on `m.f` opens the module at `f`."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "m.noma").write_text("// module\nfn f(x) { x + 1 }\nfn bad() { 1 + missing }\n")
    text = 'import "lib/m.noma" as m;\nprint(m.f(2));\n'
    main = tmp_path / "main.noma"
    main.write_text(text)
    assert client.open(main.as_uri(), text)["diagnostics"] == []
    loc = client.request("textDocument/definition", client.at(main.as_uri(), *_pos(text, "f(2)")))
    assert loc["uri"] == (tmp_path / "lib" / "m.noma").as_uri()
    assert loc["range"]["start"] == {"line": 1, "character": 3}
    broken = text + "print(m.bad());\n"
    d = client.change(main.as_uri(), broken, 2)["diagnostics"][0]
    assert d["code"] == "name" and "m.noma:3:16" in d["message"] and "missing" in d["message"]
    assert d["range"]["start"] == {"line": 0, "character": 7}
    client.close(main.as_uri())
