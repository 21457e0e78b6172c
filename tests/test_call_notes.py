"""The call notes of run-time errors (`note: called from here`, innermost first, bounded) in a
live session: calls across cells, a cell re-run from the cell cache, code inlined into a training
step, and the bound itself (noma.diagnostics.call_notes). The corpus (270-274) checks `noma run`,
executables and the interpreter."""
from __future__ import annotations

import noma
from noma.diagnostics import CALL_NOTES_INNER, Diagnostic, Source, Span, call_notes, call_sites
from noma.session.output import ExecResult


def _failed(s: noma.Session, text: str, name: str) -> ExecResult:
    result = s.execute(text, name=name)
    assert result.status == "error", result.output
    return result


def _sites(diag: Diagnostic) -> list[tuple[str, int, int, str]]:
    return [(n.span.source.name, n.span.line, n.span.column, n.span.text()) for n in diag.notes if n.span]


def test_calls_across_cells_are_named_in_the_cells_that_made_them() -> None:
    s = noma.Session()
    assert s.execute("fn pick(v, i) { v[i] }", name="In[1]").ok
    assert s.execute("fn twice(v) { pick(v, 4) * 2 }", name="In[2]").ok
    diag = _failed(s, "let v = tensor [1, 2];\nprint(twice(v));", "In[3]").errors[0]
    assert diag.span is not None
    assert (diag.span.source.name, diag.span.line, diag.span.column) == ("In[1]", 1, 17)
    assert _sites(diag) == [("In[2]", 1, 15, "pick"), ("In[3]", 2, 7, "twice")]
    text = diag.render()
    assert text.count("note: called from here") == 2 and "2 | print(twice(v));" in text
    assert text.index("In[2]:1:15") < text.index("In[3]:2:7")  # innermost first


def test_a_cell_replayed_from_the_cache_names_this_run_in_its_notes() -> None:
    s = noma.Session()
    assert s.execute("fn pick(v, i) { v[i] }\nfn outer(v) { pick(v, 3) }", name="In[1]").ok
    first = _failed(s, "print(outer(tensor [1, 2]));", "In[2]")
    again = _failed(s, "print(outer(tensor [1, 2]));", "In[3]")
    assert again.cache_hit
    assert _sites(first.errors[0]) == [("In[1]", 2, 15, "pick"), ("In[2]", 1, 7, "outer")]
    assert _sites(again.errors[0]) == [("In[1]", 2, 15, "pick"), ("In[3]", 1, 7, "outer")]


def test_code_inlined_into_a_training_step_names_its_calls() -> None:
    s = noma.Session()
    assert s.execute("fn dense(x, W) { matmul(x, W) }\nfn net(x, W) { relu(dense(x, W)) }", name="In[1]").ok
    cell = ("learn W = ones([2, 2]);\nlet X = ones([3, 3]);\n"
            "optimize(W) with sgd(lr = 0.1) max 2 {\n    let loss = sum(net(X, W));\n    minimize loss;\n}")
    diag = _failed(s, cell, "In[2]").errors[0]
    assert diag.kind.value == "shape" and diag.span is not None and diag.span.text() == "matmul(x, W)"
    assert _sites(diag) == [("In[1]", 2, 21, "dense"), ("In[2]", 4, 20, "net")]


def test_an_error_outside_any_call_has_no_notes() -> None:
    s = noma.Session()
    diag = _failed(s, "let v = tensor [1, 2];\nprint(v[5]);", "In[1]").errors[0]
    assert diag.notes == () and "note:" not in diag.render()


def test_the_notes_are_bounded_to_the_innermost_and_the_outermost() -> None:
    src = Source("f.noma", "".join(f"call{i}\n" for i in range(20)))
    spans = [Span(src, 6 * i, 6 * i + 5) for i in range(20)]
    assert [n.span for n in call_notes(spans[:CALL_NOTES_INNER + 1])] == spans[:CALL_NOTES_INNER + 1]
    notes = call_notes(spans)
    assert [n.span for n in notes[:CALL_NOTES_INNER]] == spans[:CALL_NOTES_INNER]
    assert notes[CALL_NOTES_INNER].span is None and notes[CALL_NOTES_INNER].message == "... 11 more calls"
    assert notes[-1].span == spans[-1] and len(notes) == CALL_NOTES_INNER + 2
    assert call_notes(spans[:CALL_NOTES_INNER + 2])[CALL_NOTES_INNER].message == "... 1 more call"


def test_inlined_code_lists_its_call_sites_before_the_active_calls() -> None:
    src = Source("f.noma", "abcdefghij")
    outer_call = Span(src, 0, 1)
    inner_call = Span(src, 1, 2, inlined_at=outer_call)
    failing = Span(src, 2, 3, inlined_at=inner_call)
    frame = Span(src, 5, 6)
    assert call_sites(failing, [None, frame]) == [inner_call, outer_call, frame]
