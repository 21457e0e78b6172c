"""Fuzzing `noma run`: mutated corpus programs and programs generated from the grammar must each
end in a result or a located diagnostic, never in a traceback, an internal error, a signal, a
hang or an unlocated diagnostic (the classes of fuzz_outcome).

Program i of seed S is a pure function of (S, i), so a failure reproduces with
`NOMA_FUZZ_SEED=S NOMA_FUZZ_ONLY=i`. Most programs run in-process (a fuzz_worker process through
the CLI's code path, under RLIMIT_AS and NOMA_MEMORY_LIMIT); every failure found there and a
sample of the rest also run as `python -m noma run` in a subprocess under the same limits.

Environment: NOMA_FUZZ_SEED (default 14), NOMA_FUZZ_SECONDS (time budget, default 80),
NOMA_FUZZ_EXAMPLES (run exactly this many programs; with it, no time budget unless
NOMA_FUZZ_SECONDS is set too), NOMA_FUZZ_ONLY (run only program i), NOMA_FUZZ_SAVE (a directory
that receives each failing program as fail-S-i.noma, and the run's summary as summary-S.txt).
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from fuzz_inputs import make_program
from fuzz_outcome import DIAGNOSTIC, LONG, OK, Outcome, huge_numbers
from fuzz_pool import InProcess, Limits, run_cli

SUBPROCESS_SAMPLE = 15  # one program in this many (of those that pass in-process) also runs as `noma run`
DANGEROUS_SAMPLE = 4  # ... and one in this many of those with huge numbers
SUBPROCESS_SHARE = 0.3  # at most this share of the time budget goes to subprocesses


def _settings() -> tuple[int, float, int | None, int | None]:
    seed = int(os.environ.get("NOMA_FUZZ_SEED", "14"))
    examples = os.environ.get("NOMA_FUZZ_EXAMPLES")
    seconds = os.environ.get("NOMA_FUZZ_SECONDS")
    budget = float(seconds) if seconds else (float("inf") if examples else 80.0)
    only = os.environ.get("NOMA_FUZZ_ONLY")
    return seed, budget, int(examples) if examples else None, int(only) if only is not None else None


def _describe(seed: int, index: int, origin: str, program: bytes, outcome: Outcome, where: str,
              stderr: str) -> str:
    text = program.decode("utf-8", errors="backslashreplace")
    if len(text) > 3000:
        text = text[:3000] + f"\n... ({len(program)} bytes in all)"
    return (f"--- [{outcome.cls}] {where}, seed {seed} program {index} ({origin}); reproduce with "
            f"NOMA_FUZZ_SEED={seed} NOMA_FUZZ_ONLY={index}\n    {outcome.detail}\n"
            f"{text}\n--- stderr (end):\n{stderr[-1200:]}")


def test_fuzz_programs(tmp_path: Path) -> None:
    seed, budget, examples, only = _settings()
    save = Path(os.environ.get("NOMA_FUZZ_SAVE", str(tmp_path)))
    save.mkdir(parents=True, exist_ok=True)
    limits = Limits()
    started = time.monotonic()
    deadline = started + budget
    counts: Counter[str] = Counter()
    cli_counts: Counter[str] = Counter()
    kinds: Counter[str] = Counter()  # diagnostics by kind
    failures: list[tuple[int, str]] = []  # (program size, description), smallest first in the report
    cli_seconds = 0.0
    worker = InProcess(limits)
    indices = [only] if only is not None else range(examples if examples is not None else 10 ** 9)
    try:
        for index in indices:
            if time.monotonic() >= deadline:
                break
            origin, program = make_program(seed, index)
            outcome, stderr = worker.run(program)
            counts[outcome.cls] += 1
            rng = random.Random(f"{seed}:{index}:cli")
            if outcome.cls == DIAGNOSTIC:
                kinds[outcome.detail.split(":")[0]] += 1
            every = DANGEROUS_SAMPLE if huge_numbers(program) else SUBPROCESS_SAMPLE
            sample = (only is not None or outcome.failed
                      or (outcome.cls != LONG and rng.randrange(every) == 0
                          and cli_seconds < SUBPROCESS_SHARE * (time.monotonic() - started + 1)))
            if outcome.failed:
                failures.append((len(program), _describe(seed, index, origin, program, outcome, "in-process", stderr)))
                (save / f"fail-{seed}-{index}.noma").write_bytes(program)
            if sample:
                t0 = time.monotonic()
                cli_outcome, cli_stderr = run_cli(program, limits)
                cli_seconds += time.monotonic() - t0
                cli_counts[cli_outcome.cls] += 1
                agree = cli_outcome.cls == outcome.cls or {cli_outcome.cls, outcome.cls} <= {OK, LONG} \
                    or outcome.failed
                if cli_outcome.failed or not agree:
                    if not agree and not cli_outcome.failed:
                        cli_outcome = Outcome("disagreement", f"`noma run`: {cli_outcome.cls}, in-process: "
                                                              f"{outcome.cls} ({outcome.detail})")
                    failures.append((len(program), _describe(seed, index, origin, program, cli_outcome,
                                                             "`python -m noma run`", cli_stderr)))
                    (save / f"fail-{seed}-{index}.noma").write_bytes(program)
    finally:
        worker.close()
    total = sum(counts.values())
    summary = (f"noma fuzz: seed {seed}, {total} programs in {time.monotonic() - started:.0f} s "
               f"({worker.started} worker start(s)); in-process: {dict(counts)} (diagnostics: {dict(kinds)}); "
               f"`noma run` subprocesses: {dict(cli_counts)}; failing programs saved in {save}")
    print(summary)
    (save / f"summary-{seed}.txt").write_text(summary + "\n")
    if failures:
        failures.sort(key=lambda f: f[0])
        shown = "\n".join(d for _, d in failures[:12])
        pytest.fail(f"{summary}\n{len(failures)} failure(s), smallest first:\n{shown}", pytrace=False)
    assert total > 0 and counts[OK] + counts[DIAGNOSTIC] > 0, summary
