"""The bad inputs of issue 14, as cells for the REPL and kernel tests: each must give its result
or a located diagnostic, the session must survive it, and the next cell must work.

`cells(tmp)` writes the files some of them need into tmp and returns (input, expected text)
pairs in order: an input is a cell's text or a meta command (`:run FILE`), the expected text a
piece of what it prints. Big inputs go through `:run FILE` so a terminal need not type them."""

from __future__ import annotations

import struct
from pathlib import Path


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def cells(tmp: Path) -> list[tuple[str, str]]:
    deep_header = ("[" * 100000 + "]" * 100000).encode()
    (tmp / "deep.safetensors").write_bytes(struct.pack("<Q", len(deep_header)) + deep_header)
    (tmp / "latin1.noma").write_bytes(b"print(1);\nlet s = 2; // caf\xe9\n")
    ifs = _write(tmp / "ifs.noma", "let a = 0;\n" + "if 1 { " * 20000 + "a = 1;" + " }" * 20000 + "\n")
    chain = _write(tmp / "chain.noma", "print(" + "+".join(["1"] * 200000) + ");\n")
    parens = _write(tmp / "parens.noma", "print(" + "(" * 100000 + "1" + ")" * 100000 + ");\n")
    literal = _write(tmp / "literal.noma",
                     "let big = tensor [" + ", ".join(str(i % 10) for i in range(100000)) + "];\n"
                     "print(sum(big));\n")
    return [
        ("print(mean(ones([2]), -1));", "1"),
        ("learn w = 1; optimize(w) with adam(lr = 0.1) max 3 { reset_optimizer(); "
         "let loss = (w - 3) ^ 2; minimize loss; } print(w);", "1.3"),
        (f":run {ifs}", "nests more than 256 levels"),
        (f":run {chain}", "200000"),
        (f":run {parens}", "nests more than 256 levels"),
        (f'load_safetensors m = "{tmp / "deep.safetensors"}";', "nests deeper than"),
        ("let x = ones([3]);", ""),
        ("let a = 1; print(x[5]); let later = 2;", "out of range"),
        ("print(later);", "undefined variable `later`"),
        ("dim d = -1;", "a dim's size must be a whole number"),
        (f":run {tmp / 'latin1.noma'}", "latin1.noma:2:18"),
        (f":run {literal}", "450000"),
    ]


#: the cell after them all, and what it prints
NEXT_CELL = ("print(a + 41, sum(x));", "42 3")
