"""The fuzz tests' inputs: program i of a seed (a corpus mutant or a grammar-generated program)
and the sample of them that the REPL and the kernel receive.

Owns: make_program (a pure function of seed and index), session_inputs, ISSUE_REPROS (programs
that once crashed, hung or lost their location; issue 14).
Imports: fuzz_mutate, fuzz_grammar, fuzz_outcome (may_run_long), noma.compiler.front.parse (is_complete).
"""

from __future__ import annotations

import random
from functools import lru_cache
from pathlib import Path

from fuzz_grammar import GrammarGenerator
from fuzz_mutate import mutate
from fuzz_outcome import may_run_long

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"

#: Inputs that crashed a session (signal), hung it or raised an internal error before issue 14.
ISSUE_REPROS = (
    "learn W0 = ones([0, 3]); dim d0 = 3; realloc d0 = 2;",
    "dim h0 = 2; learn W1 = ones([h0, 0]); realloc h0 = 4;",
    "learn W2 = zeros([2]); realloc W2 = [3037000500];",
    "let x0 = ones([4]); batch xb in x0 with 0 { }",
    "print(mean(ones([2]), -1));",
    "let z0 = zeros([100000, 100000]);",
    "dim d1 = -1;",
    "print((0/0) as i64);",
)


@lru_cache(maxsize=1)
def corpus() -> tuple[tuple[str, str], ...]:
    return tuple((p.name, p.read_text()) for p in sorted(PROGRAMS_DIR.glob("*.noma")))


@lru_cache(maxsize=1)
def grammar() -> GrammarGenerator:
    return GrammarGenerator()


def make_program(seed: int, index: int) -> tuple[str, bytes]:
    """Program `index` of `seed`: (where it comes from, its bytes)."""
    rng = random.Random(f"{seed}:{index}")
    if rng.random() < 0.65:
        name, text = rng.choice(corpus())
        return f"mutant of {name}", mutate(rng, text)
    return "generated from the grammar", grammar().generate(rng).encode()


def session_inputs(seed: int, count: int) -> list[str]:
    """The issue's repros, then fuzz programs that a session can take as one input: UTF-8, complete
    (the REPL would submit them), no `:command` line, short, and not possibly long-running."""
    from noma.compiler.front.parse import is_complete

    inputs = list(ISSUE_REPROS)
    index = 0
    while len(inputs) < count and index < 100 * count:
        _, program = make_program(seed, index)
        index += 1
        try:
            text = program.decode("utf-8")
        except UnicodeDecodeError:
            continue
        lines = [line for line in text.splitlines() if not line.lstrip().startswith("//")]
        text = "\n".join(lines).strip()
        if (not text or len(text) > 1500 or "\x00" in text or may_run_long(program)
                or any(line.lstrip().startswith(":") for line in lines)):
            continue
        try:
            if not is_complete(text):
                continue
        except Exception:  # noqa: BLE001 - whatever is_complete rejects, the REPL submits as is
            continue
        inputs.append(text)
    return inputs
