"""The fuzz tests' own parts: the outcome classes (the oracle that decides what is a failure),
seeded determinism of the program sources, and that grammar-generated programs mostly parse."""

from __future__ import annotations

import random

import pytest

from fuzz_grammar import GrammarGenerator
from fuzz_inputs import make_program
from fuzz_mutate import mutate, tokenize
from fuzz_outcome import DIAGNOSTIC, LONG, OK, classify

LOCATED = "error[shape]: add: shapes [2] and [3] do not match\n --> prog.noma:3:7\n  |\n3 | x\n  |   ^\n"


@pytest.mark.parametrize("returncode, stderr, program, timed_out, phase, expected", [
    (0, "", b"print(1);", False, "run", OK),
    (0, "warning: optimize reached its iteration bound\n", b"", False, "run", OK),
    (1, LOCATED, b"", False, "run", DIAGNOSTIC),
    (1, "warning: w\n" + LOCATED, b"", False, "run", DIAGNOSTIC),
    (1, "error[io]: prog.noma is not UTF-8 text\n", b"", False, "run", "unlocated-diagnostic"),
    (1, "", b"", False, "run", "exit-1-without-diagnostic"),
    (0, LOCATED, b"", False, "run", "error-with-exit-0"),
    (-8, "", b"", False, "run", "signal"),
    (1, "Traceback (most recent call last):\n  File ...\n", b"", False, "run", "traceback"),
    (3, "error[runtime]: internal compiler error (RecursionError: x); please report this program\n",
     b"", False, "compile", "internal-error"),
    (1, LOCATED + "error[runtime]: internal error: tape is empty\n --> p:1:1\n", b"", False, "run",
     "internal-error"),
    (130, "", b"", False, "run", "exit-130"),
    (None, "", b"while 1 { }", True, "run", LONG),
    (None, "", b"let x = zeros([100000]);", True, "run", LONG),
    (None, "", b"let x = ones([4]); batch xb in x with 0 { }", True, "run", "hang"),
    (None, "", b"while 1 { }", True, "compile", "hang"),
])
def test_classify(returncode, stderr, program, timed_out, phase, expected):
    assert classify(returncode, stderr, program, timed_out=timed_out, phase=phase).cls == expected


def test_programs_are_a_function_of_seed_and_index():
    assert make_program(3, 17) == make_program(3, 17)
    assert len({make_program(3, i)[1] for i in range(20)}) > 15
    text = "let a = 1;\nprint(a + 2); // note\n"
    assert mutate(random.Random(5), text) == mutate(random.Random(5), text)


def test_tokenize_keeps_the_text():
    text = 'let x = tensor [1.5e3, 2];\n// c\nprint("a b", x[0]..2);\n'
    tokens, tail = tokenize(text)
    assert "".join(t.before + t.text for t in tokens) + tail == text
    assert [t.kind for t in tokens[:4]] == ["name", "name", "op", "name"]


def test_generated_programs_mostly_parse():
    from noma.compiler.front.parse import parse
    from noma.diagnostics import NomaError, Source

    generator = GrammarGenerator()
    parsed = 0
    for seed in range(60):
        try:
            parse(Source("generated", generator.generate(random.Random(seed))))
            parsed += 1
        except NomaError:  # context rules the grammar does not state (`as` + a cast name, ...)
            pass
    assert parsed >= 30, parsed
