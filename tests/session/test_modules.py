"""Modules in a live session: imports relative to the working directory, each module read once
while its file is unchanged, re-imported when it changed (functions redefined for every caller,
only new or changed declarations re-run), and a failing import changing nothing."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from noma.session.core import Session


@pytest.fixture
def cwd(tmp_path: Path) -> Iterator[Path]:
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(old)


def _write(path: Path, text: str) -> None:
    """Write a module (a changed text is noticed by its bytes, not its modification time)."""
    path.write_text(text)


def _ok(s: Session, text: str) -> str:
    result = s.execute(text)
    assert result.ok, [d.render() for d in result.diagnostics]
    return result.output.strip()


def test_reimport_after_the_file_changed(cwd: Path) -> None:
    mod = cwd / "lib" / "m.noma"
    mod.parent.mkdir()
    _write(mod, "dim h = 2;\nlearn W = ones([h]);\nfn f(x) { x + 1 }\n")
    s = Session()
    _ok(s, 'import "lib/m.noma" as m;')
    _ok(s, "fn g() { m.f(10) }")
    assert _ok(s, "print(g(), m.W);") == "11 [1, 1]"
    _ok(s, "optimize(m.W) with sgd(lr = 0.25) max 1 { minimize sum(m.W * m.W); }")
    trained = np.array(s.params["m.W"])
    np.testing.assert_allclose(trained, [0.5, 0.5])

    _ok(s, 'import "lib/m.noma" as m;')  # unchanged: nothing re-runs, the trained W stays
    np.testing.assert_allclose(s.params["m.W"], trained)

    _write(mod, "dim h = 2;\nlearn W = ones([h]);\nfn f(x) { x + 2 }\nlearn V = zeros([h]);\n")
    _ok(s, 'import "lib/m.noma" as m;')
    # f redefined for g, compiled before; W's declaration is unchanged (kept), V is new
    assert _ok(s, "print(g(), m.W, m.V);") == "12 [0.5, 0.5] [0, 0]"

    _write(mod, "dim h = 2;\nlearn W = full([h], 7);\nfn f(x) { x + 2 }\nlearn V = zeros([h]);\n")
    _ok(s, 'import "lib/m.noma" as m;')  # W's declaration changed: it runs again
    assert _ok(s, "print(m.W);") == "[7, 7]"


def test_a_module_is_parsed_once_while_unchanged(cwd: Path) -> None:
    _write(cwd / "a.noma", "fn one() { 1 }\n")
    s = Session()
    _ok(s, 'import "a.noma";')
    first = s.module_loader.parsed[str(cwd / "a.noma")]
    _ok(s, 'import "a.noma";\nimport "a.noma" as a;')
    assert s.module_loader.parsed[str(cwd / "a.noma")] is first
    assert _ok(s, "print(one(), a.one());") == "1 1"


def test_a_failing_import_changes_nothing(cwd: Path) -> None:
    _write(cwd / "a.noma", "fn f() { 1 }\n")
    s = Session()
    _ok(s, 'import "a.noma";')
    _write(cwd / "a.noma", "fn f() { 2 }\nlet x = 3;\n")
    result = s.execute('import "a.noma";')
    assert not result.ok
    diag = result.diagnostics[0]
    assert diag.kind.value == "syntax" and diag.span.source.name == "a.noma" and diag.span.line == 2
    assert "let x = 3;" in diag.render()
    assert _ok(s, "print(f());") == "1"
    _write(cwd / "a.noma", "fn f() { 2 }\n")  # fixed: the next import takes it
    _ok(s, 'import "a.noma";')
    assert _ok(s, "print(f());") == "2"


def test_cycles_and_missing_files_are_located(cwd: Path) -> None:
    _write(cwd / "a.noma", 'import "b.noma";\nfn a() { 1 }\n')
    _write(cwd / "b.noma", 'import "a.noma";\nfn b() { 2 }\n')
    s = Session()
    diag = s.execute('import "a.noma";').diagnostics[0]
    assert diag.kind.value == "name" and "cycle" in diag.message
    assert diag.span.source.name == "b.noma" and (diag.span.line, diag.span.column) == (1, 8)
    diag = s.execute('\nimport "nope.noma";').diagnostics[0]
    assert diag.kind.value == "io" and (diag.span.line, diag.span.column) == (2, 8)


def test_std_modules_import_in_a_session() -> None:
    s = Session()
    _ok(s, "import std.nn as nn;\nimport std.data;")
    assert _ok(s, "print(nn.softplus(0), one_hot(tensor [1], 2));") == "0.693147 [[0, 1]]"


def test_a_session_checkpoint_keeps_functions_of_aliased_modules(cwd: Path) -> None:
    _write(cwd / "m.noma", "learn W = full([2], 3);\nfn scale(x) { x * W }\nfn twice(x) { 2 * scale(x) }\n")
    s = Session()
    _ok(s, 'import "m.noma" as m;')
    s.save_checkpoint(str(cwd / "ck.safetensors"))
    t = Session()
    t.load_checkpoint(str(cwd / "ck.safetensors"))
    assert _ok(t, "print(m.twice(1));") == "[6, 6]"


def test_meta_ir_of_a_cell_that_imports(cwd: Path) -> None:
    from noma.meta import run_meta

    _write(cwd / "m.noma", "fn twice(x) { 2 * x }\n")
    s = Session()
    _ok(s, 'import "m.noma" as m;\nlet y = m.twice(tensor [1, 2]);')
    result = run_meta(s, ":ir m.twice")
    assert result.ok and "fn m.twice.t1(" in result.text


def test_a_file_importing_itself_is_a_cycle(cwd: Path) -> None:
    main = cwd / "main.noma"
    _write(main, 'import "main.noma";\nfn f() { 1 }\n')
    diag = Session().execute(main.read_text(), name=str(main), run_main=True).diagnostics[0]
    assert diag.kind.value == "name" and "cycle" in diag.message and diag.span.line == 1


def test_importing_a_fifo_is_an_error_not_a_wait(cwd: Path) -> None:
    """A FIFO named as a module is refused before it is opened (opening it waited for a writer
    forever); the session keeps working."""
    os.mkfifo(cwd / "pipe.noma")
    s = Session()
    r = s.execute('import "pipe.noma";')
    assert r.status == "error" and r.diagnostics[0].kind.value == "io", r.diagnostics
    assert "not a regular file" in r.diagnostics[0].message and r.diagnostics[0].span is not None
    assert s.execute("print(1);").output == "1\n"
