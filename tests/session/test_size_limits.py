"""Issue 14's size and depth cases through the Session (what `noma run`, the REPL and the kernel
use): each compiles and gives the right values, or a located syntax error. Behaviour only: how
long they take is measured by bench/bench_compile_size.py, not here."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import noma


def _run(text: str):
    return noma.Session().execute(text, name="big.noma")


def _syntax_error_at(result, line: int, col: int) -> None:
    assert result.status == "error"
    diag = result.errors[0]
    assert diag.kind.value == "syntax" and "nests more than 256 levels" in diag.message
    assert (diag.span.line, diag.span.column) == (line, col)


def test_a_literal_of_a_million_numbers() -> None:
    values = [(i * 7919) % 1000 / 8 for i in range(10**6)]
    text = "let t = tensor [" + ", ".join(map(repr, values)) + "];\nprint(sum(t), t[999999], rows(t));\n"
    result = _run(text)
    assert result.ok, [d.render() for d in result.diagnostics]
    total, last, count = map(float, result.output.split())
    assert (total, last, count) == (float(f"{sum(values):.6g}"), values[-1], 1e6)


def test_a_chain_of_200000_terms_and_nesting_past_the_limit() -> None:
    result = _run("print(" + "+".join(["1"] * 200000) + ");")
    assert result.ok and result.output.strip() == "200000"
    _syntax_error_at(_run("let a = 0;\n" + "if 1 { " * 20000 + "a = 1;" + " }" * 20000), 2, 1798)
    _syntax_error_at(_run("print(" + "(" * 100000 + "1" + ")" * 100000 + ");"), 1, 262)


def test_a_megabyte_of_statements() -> None:
    lines, n = [], 0
    while sum(map(len, lines)) < 1_000_000:
        lines.append(f"let v{n} = {n} * 2 + 1;\n" if n % 2 == 0 else f"v{n - 1} = v{n - 1} - {n % 7};\n")
        n += 1
    result = _run("".join(lines) + f"print(v0, v{n - 2});\n")
    assert result.ok, [d.render() for d in result.diagnostics]
    last = n - 2 if n % 2 == 0 else n - 1
    expected_last = (last * 2 + 1) - ((last + 1) % 7 if last + 1 < n else 0)
    assert result.output.split() == ["0", f"{expected_last:g}"]


def test_a_safetensors_file_of_50000_tensors(tmp_path: Path) -> None:
    n = 50000
    header = {f"t{i}": {"dtype": "F64", "shape": [1], "data_offsets": [8 * i, 8 * i + 8]} for i in range(n)}
    raw = json.dumps(header).encode()
    path = tmp_path / "many.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + struct.pack(f"<{n}d", *range(n)))
    result = _run(f'load_safetensors m = "{path}";\nprint(m.t0, m.t12345, m.t49999);\n')
    assert result.ok, [d.render() for d in result.diagnostics]
    assert result.output.strip() == "[0] [12345] [49999]"


def test_a_function_of_many_early_returns() -> None:
    # each `if ... { return }` nests the rest of the function: 1,000 levels of IR, walked linearly
    body = "".join(f"if x == {i} {{ return {i * 3}; }}\n" for i in range(1000))
    result = _run("fn f(x) {\n" + body + "return -1; }\nprint(f(2), f(999), f(5000));\n")
    assert result.ok, [d.render() for d in result.diagnostics]
    assert result.output.split() == ["6", "2997", "-1"]
