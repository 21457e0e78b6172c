"""`noma emit`, the session and the pipeline agree: every user runs noma.compiler.pipeline."""

from __future__ import annotations

import pytest

from noma.compiler import pipeline
from noma.compiler.front.symbols import SymbolTable
from noma.diagnostics import NomaError, Source
from noma.emit import ENTRY, compile_program, emit_stage
from noma.meta import run_meta
from noma.session import Session

PROGRAM = """
seed(1);
let X = tensor [[0, 1], [1, 0]];
learn w = normal([2, 1], 0, 1);
fn fwd(x) { sigmoid(matmul(x, w)) }
optimize(w) with sgd(lr = 0.1) max 3 {
    minimize mean(fwd(X) ^ 2);
}
fwd(X);
"""


def _session_text(stage: str) -> str:
    """A fresh session's `:STAGE` after running the program as `noma run` does, named as emit names it."""
    session = Session()
    assert session.execute(PROGRAM, name="<program>", run_main=True).ok
    result = run_meta(session, f":{stage}")
    assert result.ok, result.text
    return result.text.replace("__cell0", ENTRY) + "\n"


@pytest.mark.parametrize("stage", ["ir", "grad"])
def test_emit_and_session_agree(stage: str) -> None:
    assert emit_stage(Source("<program>", PROGRAM), stage) == _session_text(stage)


def test_artifacts_of_each_stage() -> None:
    source = Source("<program>", PROGRAM)
    parsed = pipeline.compile(source, SymbolTable(), stop="ast")
    assert parsed.program is not None and parsed.module is None
    art = compile_program(source, keep_ir=True)
    assert art.module is not None and art.llvm_text is not None and art.linkage is not None
    assert art.ir_module_text() == emit_stage(source, "ir")
    assert art.linkage.symbols[ENTRY] == "noma___main"
    assert art.llvm_text == emit_stage(source, "llvm")
    assert set(art.phases) == {"front_end", "lowering"}


def test_native_needs_a_jit() -> None:
    with pytest.raises(ValueError):
        pipeline.compile(Source("<x>", "1 + 1;"), SymbolTable(), stop="native")


def test_diagnostics_are_the_pipelines() -> None:
    source = Source("<bad>", "let a = 1;\nlet b = a + nope;\n")
    with pytest.raises(NomaError) as emitted:
        emit_stage(source, "grad")
    with pytest.raises(NomaError) as checked:
        Session().compile(source, run_main=True)
    assert [d.render() for d in emitted.value.diagnostics] == [d.render() for d in checked.value.diagnostics]


def test_emit_one_function_by_its_source_name() -> None:
    """`noma emit --function fwd` prints fwd's specialisations; an unknown name is a name error
    that lists the functions there are, never an internal error (it was a KeyError)."""
    source = Source("<program>", PROGRAM)
    text = emit_stage(source, "grad", function="fwd")
    assert text.startswith("fn fwd.t2(") and "fn __main" not in text
    assert emit_stage(source, "ir", function="cell").startswith(f"fn {ENTRY}(")
    with pytest.raises(NomaError) as missing:
        emit_stage(source, "ir", function="nosuch")
    assert "no compiled function" in missing.value.diagnostics[0].message
    assert "fwd.t2" in missing.value.diagnostics[0].message
