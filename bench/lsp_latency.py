"""Diagnostic latency of `noma lsp` on a 500-line file: the time from sending a didChange to
receiving its publishDiagnostics, through the same stdio JSON-RPC client the tests use.

Usage: PYTHONPATH=. python bench/lsp_latency.py [--edits N] [--write FILE]
Prints the median, minimum and maximum over N edits (each edit changes a number on the last line,
and every other one also introduces an undefined name there, so half of them publish an error).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "lsp"))
from rpc_client import LspClient  # noqa: E402


def program(lines: int = 500) -> str:
    """A program of `lines` lines: functions, calls, parameters and a training loop (it compiles)."""
    out = ["// a 500-line NOMA file for the language server's latency", "seed(1);", "dim hidden = 8;",
           "let X = tensor [[0, 0], [0, 1], [1, 0], [1, 1]];", "let Y = tensor [[0], [1], [1], [0]];"]
    i = 0
    while len(out) < lines - 60:
        out += [f"fn f{i}(x, w) {{", f"    let z{i} = matmul(x, w);", f"    let a{i} = sigmoid(z{i}) * 2 + 1;",
                f"    return a{i};", "}", f"let s{i} = sum(f{i}(X, tensor [[1], [2]]));", ""]
        i += 1
    out += ["learn W1 = normal([2, hidden], 0, 1);", "learn b1 = zeros([hidden]);",
            "learn W2 = normal([hidden, 1], 0, 1);", "learn b2 = zeros([1]);",
            "optimize(W1, b1, W2, b2) with adam(lr = 0.05) until loss < 0.002 max 200 {",
            "    let h = sigmoid(matmul(X, W1) + b1);", "    let pred = sigmoid(matmul(h, W2) + b2);",
            "    let loss = mean((pred - Y) ^ 2);", "    minimize loss;", "}", "print(loss);"]
    while len(out) < lines - 1:
        out.append(f"let t{len(out)} = {len(out)} * 2 + 1;")
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--edits", type=int, default=20)
    ap.add_argument("--write", help="also write the generated program to this file")
    args = ap.parse_args()
    base = program()
    if args.write:
        Path(args.write).write_text(base)
    client = LspClient()
    client.initialize()
    uri = (ROOT / "bench" / "latency.noma").as_uri()
    first = time.perf_counter()
    assert client.open(uri, base)["diagnostics"] == []
    opened = time.perf_counter() - first
    times = []
    for n in range(args.edits):
        tail = f"let last = {n} + {'missing' if n % 2 else '1'};\n"
        text = base + tail
        start = time.perf_counter()
        diags = client.change(uri, text, n + 2)["diagnostics"]
        times.append(time.perf_counter() - start)
        assert len(diags) == n % 2, diags
    client.shutdown()
    ms = [t * 1000 for t in times]
    print(f"{len(text.splitlines())} lines; open: {opened * 1000:.0f} ms; after an edit, diagnostics in "
          f"median {statistics.median(ms):.0f} ms (min {min(ms):.0f}, max {max(ms):.0f}) over {len(ms)} edits")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
