"""The VS Code extension in editors/vscode, tested from pytest through Node: the TextMate grammar
tokenised by vscode-textmate + vscode-oniguruma (VS Code's engine) against reviewed snapshots of
examples/*.noma and a sample of every language form; every keyword, builtin, optimizer, resize
policy and cast type of the compiler's own tables scoped; the Run/Build command lines; and the
.vsix that @vscode/vsce packages, with its manifest.

Needs `node` and `npm ci` run in editors/vscode (.ci/run does both). Without them these tests are
skipped, unless NOMA_REQUIRE_EDITOR_TESTS=1 (set by .ci/run), where that is a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from noma.lsp import vocabulary

ROOT = Path(__file__).resolve().parents[2]
EXT = ROOT / "editors" / "vscode"
SURFACE = EXT / "test" / "surface.noma"


def _need_node() -> str:
    node = shutil.which("node")
    missing = None
    if node is None:
        missing = "node is not installed"
    elif not (EXT / "node_modules" / "vscode-textmate").is_dir():
        missing = "editors/vscode/node_modules is missing (run `npm ci` in editors/vscode)"
    if missing is not None:
        if os.environ.get("NOMA_REQUIRE_EDITOR_TESTS") == "1":
            pytest.fail(missing)
        pytest.skip(missing)
    return node


def _node(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([_need_node(), *args], cwd=EXT, input=stdin, capture_output=True, text=True, timeout=300)


def _scopes(lines: list[str]) -> list[list[tuple[str, str]]]:
    done = _node("test/tokenize.js", "--scopes", stdin=json.dumps(lines))
    assert done.returncode == 0, done.stderr
    return [[(text, scopes) for text, scopes in line] for line in json.loads(done.stdout)]


def test_grammar_matches_reviewed_snapshots():
    files = sorted(str(p) for p in (ROOT / "examples").glob("*.noma")) + [str(SURFACE)]
    done = _node("test/tokenize.js", "--check", *files)
    # after changing the grammar or an example: `node test/tokenize.js --update FILES` in
    # editors/vscode, then review the snapshot diff before committing it
    assert done.returncode == 0, done.stdout + done.stderr
    snapshots = {p.name for p in (EXT / "test" / "snapshots").glob("*.snap")}
    assert snapshots == {Path(f).name + ".snap" for f in files}  # no stale snapshot left behind


def test_surface_sample_is_noma():
    """The sample the grammar is checked on is a program the compiler's parser accepts."""
    from noma.compiler.front.parse import parse
    from noma.diagnostics import Source

    parse(Source(str(SURFACE), SURFACE.read_text()))


def _scope_of(tokens: list[tuple[str, str]], word: str) -> str:
    found = [scopes for text, scopes in tokens if text == word]
    assert found, (word, tokens)
    return found[0]


def test_word_lists_are_the_compilers():
    from noma.compiler.middle import ir, irgen_builtins
    from noma.compiler.front import parse

    assert set(vocabulary.KEYWORDS) == set(parse.KEYWORDS) and "optimize" in vocabulary.KEYWORDS
    assert set(vocabulary.BUILTINS) == set(irgen_builtins.BUILTINS)
    assert set(vocabulary.OPTIMIZERS) == set(ir.OPTIMIZERS)
    assert set(vocabulary.POLICIES) == set(ir.POLICIES) - {"default"}


def test_every_word_of_the_compiler_tables_is_scoped():
    cases: list[tuple[str, str, str]] = []  # (line, word, scope prefix)
    for kw in vocabulary.KEYWORDS:
        cases.append((f"{kw} x" if kw != "max" else "max 10 {", kw, "keyword."))
    for name in vocabulary.BUILTINS:
        cases.append((f"let y = {name}(x);", name, "support.function.builtin.noma"))
    for name in vocabulary.OPTIMIZERS:
        cases.append((f"optimize(w) with {name}(lr = 0.1) {{", name, "support.function.optimizer.noma"))
    for name in vocabulary.POLICIES:
        cases.append((f"realloc w = [2] init {name};", name, "support.constant.policy.noma"))
    for name in vocabulary.CAST_TYPES:
        cases.append((f"let y = x as {name};", name, "storage.type.numeric.noma"))
    tokens = _scopes([line for line, _, _ in cases])
    wrong = [(word, line, _scope_of(toks, word)) for (line, word, prefix), toks in zip(cases, tokens)
             if not _scope_of(toks, word).startswith(prefix)]
    assert wrong == []


def test_language_md_builtins_are_in_the_compiler_table():
    """The Builtins table of docs/LANGUAGE.md names only builtins the compiler (and so the grammar test) knows."""
    text = (ROOT / "docs" / "LANGUAGE.md").read_text()
    section = text.split("## Builtins", 1)[1].split("\n## ", 1)[0]
    section = "\n".join(line.split("|", 2)[2] for line in section.splitlines()
                        if line.startswith("|") and not line.startswith("|---") and "| group |" not in line)
    named = set(re.findall(r"`([a-z_]+)\(", section))
    named |= {w for cell in re.findall(r"`([a-z ]+)`", section) for w in cell.split()}
    assert named and named <= set(vocabulary.BUILTINS), named - set(vocabulary.BUILTINS)


def test_run_and_build_command_lines():
    done = _node("test/commands.test.js")
    assert done.returncode == 0, done.stdout + done.stderr
    syntax = _node("--check", "extension.js")  # it needs VS Code to run; Node can still parse it
    assert syntax.returncode == 0, syntax.stderr


def test_vsix_packages_with_its_manifest(tmp_path):
    _need_node()
    vsix = tmp_path / "noma.vsix"
    vsce = str(EXT / "node_modules" / ".bin" / "vsce")
    done = subprocess.run([vsce, "package", "--skip-license", "--out", str(vsix)],
                          cwd=EXT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    with zipfile.ZipFile(vsix) as z:
        names = set(z.namelist())
        manifest = json.loads(z.read("extension/package.json"))
        vsixmanifest = z.read("extension.vsixmanifest").decode()
        snippets = json.loads(z.read("extension/snippets/noma.json"))
        config = json.loads(z.read("extension/language-configuration.json"))
    assert manifest["name"] == "noma-language" and manifest["main"] == "./extension.js"
    assert {"id": "noma", "extensions": [".noma"]}.items() <= manifest["contributes"]["languages"][0].items()
    grammar = manifest["contributes"]["grammars"][0]
    assert grammar["scopeName"] == "source.noma" and grammar["language"] == "noma"
    commands = {c["command"]: c["title"] for c in manifest["contributes"]["commands"]}
    assert commands["noma.runFile"] == "NOMA: Run File"
    assert commands["noma.buildExecutable"] == "NOMA: Build Executable"
    for rel in (grammar["path"], manifest["contributes"]["snippets"][0]["path"],
                manifest["contributes"]["languages"][0]["configuration"], manifest["main"], "./commands.js"):
        assert "extension/" + rel.removeprefix("./") in names, rel
    assert "extension/node_modules/vscode-languageclient/package.json" in names
    assert not any(n.startswith("extension/test/") or "/vscode-textmate/" in n for n in names)
    assert config["comments"] == {"lineComment": "//"} and ["{", "}"] in config["brackets"]
    bodies = {name: "\n".join(s["body"]) for name, s in snippets.items()}
    assert "with adam(" in bodies["optimize with adam"] and "minimize" in bodies["optimize with adam"]
    assert bodies["dim and learn layer"].startswith("dim ") and "learn " in bodies["dim and learn layer"]
    assert "init ${3|copy,preserve," in bodies["realloc with policy"]
    assert 'Id="noma-language"' in vsixmanifest and "Microsoft.VisualStudio.Code.Manifest" in vsixmanifest


def _expand(body: str) -> str:
    """A snippet body with each placeholder replaced by its default (a choice by its first option)."""
    while True:
        new = re.sub(r"\$\{\d+:([^${}]*)\}", r"\1", body)
        new = re.sub(r"\$\{\d+\|([^,|]*)[^}]*\|\}", r"\1", new)
        new = re.sub(r"\$\d+", "", new)
        if new == body:
            return body
        body = new


def test_snippets_expand_to_noma():
    """Every snippet, with its defaults filled in, is NOMA that the compiler's parser accepts."""
    from noma.compiler.front.parse import parse
    from noma.diagnostics import Source

    snippets = json.loads((EXT / "snippets" / "noma.json").read_text())
    for name, snippet in snippets.items():
        text = _expand("\n".join(snippet["body"]))
        assert "$" not in text, (name, text)
        parse(Source(name, text))
