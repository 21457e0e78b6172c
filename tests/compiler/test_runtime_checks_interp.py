"""The run-time checks of issue 14 are the same in the interpreter (the oracle) and native code:
batch sizes, NaN indices, integer casts, CSV files and the mean of nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

import noma
from noma.compiler.interp.interp import Interpreter, InterpState
from noma.diagnostics import NomaError, Source

DATA = Path(__file__).resolve().parents[1] / "programs" / "data"

AGREE = {
    "batch_sizes": "let x = tensor [[1], [2], [3]]; let n = 2; batch xb, i in x with n { print(i, sum(xb)); }",
    "casts": "print(2.9 as i32, -2.9 as i64, tensor [1.5, -0.5] as i32, 2147483647.5 as i32 == 2147483647);",
    "mean_of_nothing": "print(mean(zeros([0])), mean(zeros([0, 2]), 0), sum(zeros([0, 2])));",
    "csv_bom": f'load_csv a = "{DATA / "bom.csv"}"; print(a);',
}

FAIL = {
    "batch_zero": ("let x = ones([4, 2]); batch xb in x with 0 { print(xb); }", "positive whole number"),
    "batch_negative": ("let x = ones([4, 2]); batch xb in x with 0 - 1 { print(xb); }", "positive whole number"),
    "batch_fraction": ("let x = ones([4, 2]); batch xb in x with 1.5 { print(xb); }", "positive whole number"),
    "nan_index": ("let x = tensor [1, 2]; let i = 0 / 0; print(x[i]);", "got nan"),
    "cast_range": ("let b = 1e308; print(b as i32);", "cannot convert 1e+308 to i32: out of range"),
    "cast_nan": ("print((0 / 0) as i64);", "cannot convert nan to i64"),
    "cast_tensor": ("let t = tensor [1, 1e19]; print(t as i64);", "cannot convert 1e+19 to i64"),
    "csv_empty_field": (f'load_csv a = "{DATA / "empty_field.csv"}";', "line 1, column 2 is empty"),
}


def interpret(source: str) -> InterpState:
    module, cell, _, _ = noma.Session().compile(Source("<test>", source))
    state = InterpState()
    Interpreter(module, state).call(cell)
    return state


@pytest.mark.parametrize("name", sorted(AGREE))
def test_same_results(name: str) -> None:
    source = AGREE[name]
    state = interpret(source)
    result = noma.Session().execute(source)
    assert result.ok, [d.render() for d in result.diagnostics]
    assert result.output.splitlines() == state.output
    native = [w.message for w in result.warnings if "mean of an empty" in w.message]
    assert native == [w for w in state.warnings if "mean of an empty" in w]  # once per call site


@pytest.mark.parametrize("name", sorted(FAIL))
def test_same_errors(name: str) -> None:
    source, needle = FAIL[name]
    with pytest.raises(NomaError) as info:
        interpret(source)
    (oracle,) = info.value.diagnostics
    result = noma.Session().execute(source)
    assert not result.ok
    (native,) = result.diagnostics
    assert (oracle.kind, oracle.span) == (native.kind, native.span), (oracle.render(), native.render())
    assert needle in oracle.message and needle in native.message, (oracle.message, native.message)
