"""A cell that fails at run time keeps what it completed and nothing more (issue 14): the
declarations after the failing statement do not exist afterwards, in a fresh compile and in a
replay of the same cell from the cell cache. A failed cell's name is not given to another cell."""

from __future__ import annotations

import noma


def _ok(session: noma.Session, text: str) -> str:
    result = session.execute(text)
    assert result.ok, [d.render() for d in result.diagnostics]
    return result.output.strip()


def _fails(session: noma.Session, text: str, message: str) -> None:
    result = session.execute(text)
    assert result.status == "error"
    assert any(message in d.message for d in result.errors), [d.render() for d in result.errors]


def test_declarations_after_the_failure_are_not_kept() -> None:
    s = noma.Session()
    _ok(s, "let x = ones([3]);")
    for _ in range(2):  # compiled, then replayed from the cell cache
        _fails(s, "let a = 1; print(x[5]); let later = 2;", "out of range")
        assert _ok(s, "print(a);") == "1"
        _fails(s, "print(later);", "undefined variable `later`")
        assert "later" not in s.globals()


def test_parameters_dims_and_redeclarations_roll_back_to_what_ran() -> None:
    s = noma.Session()
    _ok(s, "let x = ones([3]); let a = 7; learn keep = 2;")
    _fails(s, "learn w = 1; dim e = 2; print(x[7]); learn v = 2; dim d = 3; let a = tensor [5, 6];"
              "free keep; learn keep = zeros([2, 2]);", "out of range")
    assert _ok(s, "print(w, a, keep, e);") == "1 7 2 2"
    assert set(s.params) == {"w", "keep"} and s.dims == {"e": 2}
    _fails(s, "print(v);", "undefined variable `v`")
    _fails(s, "print(d);", "undefined variable `d`")


def test_a_free_that_did_not_run_leaves_the_parameter() -> None:
    s = noma.Session()
    _ok(s, "let x = ones([3]); learn w = 3;")
    _fails(s, "print(x[4]); free w;", "out of range")
    assert _ok(s, "print(w);") == "3"
    _fails(s, "free w; print(x[4]);", "out of range")
    _fails(s, "print(w);", "was freed")


def test_runtime_error_in_a_function_an_earlier_cell_compiled_is_located_there() -> None:
    """A later cell that reuses a function's compiled code and fails inside it is located at the
    function's line (span ids were per cell: no location, or another cell's unrelated token)."""
    from noma.session.core import Session

    s = Session()
    assert s.execute("fn f(x, y) {\n    x + y\n}\nprint(f(ones([2]), ones([2])));").ok
    for cell in ("print(f(ones([2]), ones([3])));",
                 "let q = 5; let r = q * 2; let t = r - q; print(q, r, t, f(ones([2]), ones([4])));",
                 "let q = 5; let r = q * 2; let t = r - q; print(q, r, t, f(ones([2]), ones([4])));"):
        r = s.execute(cell)
        (d,) = r.errors
        assert d.kind.value == "shape" and d.span is not None, d.render()
        assert (d.span.source.name, d.span.line, d.span.column) == ("<cell 1>", 2, 5), d.render()
    r = s.execute("print(zeros([2]) + zeros([5]));")
    assert (r.errors[0].span.source.name, r.errors[0].span.column) == ("<cell 5>", 7)


def test_every_cell_gets_its_own_name_failed_or_not() -> None:
    """`<cell N>` counts every execute without a name, so a name a diagnostic showed is never given
    to another cell (a failed compile did not count: the next cell was named like it)."""
    s = noma.Session()
    cells = ["let a = ;", "print(nothing);", "let a = 1;", "print(tensor [1][3]);", "let a = 1;", "print(a);"]
    names = []
    for cell in cells:
        r = s.execute(cell)
        spans = [d.span for d in r.errors if d.span is not None]
        names.append(spans[0].source.name if not r.ok else s.last_source.name if s.last_source else None)
    assert names == [f"<cell {n}>" for n in range(1, 7)]
    assert s.cell_count == 4  # committed cells (one a cache hit): what versions the symbols
    assert s.undo() == "<cell 6> `print(a);`" and s.undo() == "<cell 5> `let a = 1;`"
    r = s.execute("print(a + zeros([2]) + zeros([3]));")  # undo does not give a name back
    assert r.errors[0].span is not None and r.errors[0].span.source.name == "<cell 7>"
    assert s.execute("print(1);", name="In[9]").ok  # a named cell (the kernel's) takes no number
    after = s.execute("print(nothing);").errors[0].span
    assert after is not None and after.source.name == "<cell 8>"
