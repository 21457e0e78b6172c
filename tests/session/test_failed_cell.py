"""A cell that fails at run time keeps what it completed and nothing more (issue 14): the
declarations after the failing statement do not exist afterwards, in a fresh compile and in a
replay of the same cell from the cell cache."""

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
