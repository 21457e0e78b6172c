"""Random NOMA programs (tests/program_gen.py) checked three ways; failures shrink to small programs.

Training programs (one `optimize(...) with sgd(lr = 1) max 1` loop whose body assigns locals and
globals at every nesting level, calls functions that read and write globals, recurses, and
accumulates `loss` from random broadcasting expressions of the differentiable builtins):

1. interpreter vs JIT: output, warnings, errors, parameters, optimizer state, loss log and every
   global agree (≤ 1e-12 relative, f64);
2. the loop against the same body run as a plain block at the top level (the `forward` program,
   in the interpreter): the same printed lines, the same `loss` and globals (the interpreter runs
   the IR irgen built, so this second program, whose statements take irgen's ordinary path, is
   what makes the check independent of how training steps are compiled);
3. the gradient the step applied (w_before - w_after, as lr = 1) against central finite
   differences of the forward program's loss along two random directions, with two step sizes
   (points where the two disagree, or where the one-sided differences disagree, sit on a kink or
   a jump of the loss, e.g. a tie of `min`, and are skipped);
4. JIT vs a `noma build` executable, for every EXE_EVERY-th example.

Resize programs (random `realloc` of parameters and dims with every policy, `free`, re-`learn`,
short training loops that also resize inside their body): interpreter vs JIT, and JIT vs
executable for a sample.

Hypothesis runs derandomized (a fixed seed) with CI_EXAMPLES examples per test, about two minutes
in all on the 2-core CI machine; `NOMA_FUZZ_EXAMPLES=N` runs N examples per test instead (long
runs). Every shrunk failure is kept as a corpus program in tests/programs/.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from program_gen import GenProgram, resize_programs, training_programs
from three_ways import (
    Outcome,
    close,
    numbers_close,
    build,
    differences,
    global_slots,
    run_exe,
    run_interp,
    run_jit,
    with_final_checkpoint,
    workdir,
)

from noma.diagnostics import NomaError, Source

CI_EXAMPLES = {"training": 60, "resize": 25}
EXE_EVERY = 10
FD_STEPS = (1e-5, 4e-5)
FD_RTOL = 1e-5
KINK_RTOL = 1e-3  # one-sided differences further apart than this: the loss has a kink at w


def _settings(kind: str) -> Any:
    n = int(os.environ.get("NOMA_FUZZ_EXAMPLES", "0")) or CI_EXAMPLES[kind]
    return settings(max_examples=n, derandomize=True, deadline=None, database=None, print_blob=False,
                    phases=[Phase.explicit, Phase.generate, Phase.shrink],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def cwd(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with workdir(tmp_path_factory.mktemp("generated")) as path:
        yield path


_count = {"training": 0, "resize": 0}


def _fail(what: str, text: str, diffs: list[str]) -> None:
    pytest.fail(f"{what}:\n" + "\n".join(diffs) + "\n---- program ----\n" + text, pytrace=False)


# ----------------------------------------------------------------------------- forward program


class _Forward:
    """The forward program compiled once; its loss (and outcome) at parameters w + delta."""

    def __init__(self, text: str):
        from noma.emit import compile_ir

        self.module, _ = compile_ir(Source("<forward>", text), optimize=False)
        self.loss_slot = global_slots(self.module)["loss"]

    def loss(self, delta: dict[str, np.ndarray]) -> float:
        from noma.compiler.interp.interp import InterpState, Interpreter
        from noma.emit import ENTRY

        class Perturbed(Interpreter):
            def _param_set(self, ins: Any, args: list[Any]) -> None:
                super()._param_set(ins, args)
                d = delta.get(ins.attr("name"))
                if d is not None:
                    slot = ins.attr("slot")
                    self.state.params[slot] = self.state.params[slot] + d

        state = InterpState()
        Perturbed(self.module, state).call(ENTRY)
        return float(state.globals[self.loss_slot])


def _gradient_check(program: GenProgram, jit: Outcome) -> list[str]:
    grad = {n: program.params[n] - jit.params[n] for n in program.params}
    forward = _Forward(program.forward)
    rng = np.random.default_rng(zlib.crc32(program.training.encode()))
    diffs = []
    at = forward.loss({})
    for _ in range(2):
        u = {n: rng.choice([-1.0, 1.0], size=np.shape(w)) for n, w in program.params.items()}
        exact = sum(float(np.sum(grad[n] * u[n])) for n in u)
        fds, sides = [], []
        for h in FD_STEPS:
            up = forward.loss({n: h * d for n, d in u.items()})
            down = forward.loss({n: -h * d for n, d in u.items()})
            fds.append((up - down) / (2 * h))
            sides.append(((up - at) / h, (at - down) / h))
        scale = max(1.0, abs(exact), abs(float(jit.globals["loss"])))
        if not all(np.isfinite(fds + [exact, at])) or abs(fds[0] - fds[1]) > FD_RTOL * scale \
                or any(abs(a - b) > KINK_RTOL * scale for a, b in sides):
            continue  # a kink or jump of the loss at w or within the step: finite differences say nothing
        if abs(exact - fds[0]) > FD_RTOL * scale:
            diffs.append(f"gradient along {u}: the step applied {exact!r}, finite differences give {fds[0]!r}")
    return diffs


def _forward_check(program: GenProgram, jit: Outcome) -> list[str]:
    ref = run_interp(program.forward, "<forward>")
    diffs = []
    if ref.error != jit.error:
        diffs.append(f"error: forward program {ref.error} vs training loop {jit.error}")
    same = len(ref.output) == len(jit.output) and all(map(numbers_close, ref.output, jit.output, [0] * len(ref.output)))
    if not same:
        diffs.append(f"stdout: forward program {ref.output} vs training loop {jit.output}")
    for name in program.globals + ["loss"]:
        mine, theirs = ref.globals.get(name), jit.globals.get(name)
        if mine is not None and not close(np.asarray(mine), np.asarray(theirs, dtype=float), 1e-10):
            diffs.append(f"global {name}: forward program {mine!r} vs training loop {theirs!r}")
    return diffs


def _globals_check(a: Outcome, b: Outcome) -> list[str]:
    return [f"global {n}: interpreter {a.globals[n]!r} vs JIT {b.globals.get(n)!r}" for n in sorted(a.globals)
            if n != "_" and not close(np.asarray(a.globals[n]), np.asarray(b.globals.get(n, np.nan)), 1e-12)]


def _exe_check(text: str, jit: Outcome, cwd: Path) -> list[str]:
    error = build(text, "<generated>", cwd / "program")
    if error is not None:
        return [f"noma build failed with {error}, the JIT with {jit.error}"] if error != jit.error else []
    return differences(jit, run_exe(cwd / "program", cwd), "JIT", "executable", state=jit.error is None)


# ----------------------------------------------------------------------------- checks


def training_problems(program: GenProgram, cwd: Path, exe: bool) -> list[tuple[str, list[str]]]:
    """Every check of a training program that fails: (what, the differences)."""
    text = with_final_checkpoint(program.training)
    oracle, jit = run_interp(text, "<generated>"), run_jit(text, "<generated>")
    if jit.error is not None:
        return [("the generated program does not run", [str(jit.error)])]
    found = [("interpreter vs JIT", differences(oracle, jit, "interpreter", "JIT") + _globals_check(oracle, jit)),
             ("training loop vs the same body as plain code", _forward_check(program, jit))]
    try:
        found.append(("gradient vs finite differences", _gradient_check(program, jit)))
    except NomaError as exc:
        found.append(("the forward program fails", [exc.diagnostics[0].render()]))
    if exe:
        found.append(("JIT vs executable", _exe_check(text, jit, cwd)))
    return [(what, diffs) for what, diffs in found if diffs]


def resize_problems(text: str, cwd: Path, exe: bool) -> list[tuple[str, list[str]]]:
    text = with_final_checkpoint(text)
    oracle, jit = run_interp(text, "<generated>"), run_jit(text, "<generated>")
    found = [("interpreter vs JIT", differences(oracle, jit, "interpreter", "JIT") + _globals_check(oracle, jit))]
    if exe:
        found.append(("JIT vs executable", _exe_check(text, jit, cwd)))
    return [(what, diffs) for what, diffs in found if diffs]


# ----------------------------------------------------------------------------- tests


@_settings("training")
@given(program=training_programs())
def test_generated_training_programs(program: GenProgram, cwd: Path) -> None:
    note(program.training)
    _count["training"] += 1
    for what, diffs in training_problems(program, cwd, _count["training"] % EXE_EVERY == 1):
        _fail(what, program.training + "\n---- forward ----\n" + program.forward, diffs)


@_settings("resize")
@given(text=resize_programs())
def test_generated_resize_programs(text: str, cwd: Path) -> None:
    note(text)
    _count["resize"] += 1
    for what, diffs in resize_problems(text, cwd, _count["resize"] % EXE_EVERY == 1):
        _fail(what, text, diffs)
