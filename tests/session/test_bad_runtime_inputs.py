"""Issue 14's runtime repros in a live session: each cell gives a located diagnostic (or the
right result), and the session survives it and runs the next cell.

The cells run in a child process (one session for all of them), so a signal or a hang of the
native code fails this test instead of killing pytest; the kernel runs the same cells in
tests/kernel/test_bad_inputs_kernel.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "programs" / "data"

#: (cell, expected diagnostic kind or None for success, text its output or message must contain)
CELLS: list[tuple[str, str | None, str]] = [
    ("learn W0 = ones([0, 3]); dim d0 = 3; realloc d0 = 2; print(shape(W0));", None, "[0, 3]"),
    ("dim h0 = 2; learn W1 = ones([h0, 0]); realloc h0 = 4; print(shape(W1));", None, "[4, 0]"),
    ("realloc h0 = 0; realloc h0 = 3 init copy;", "shape", "no units to copy"),
    ("let x = ones([4, 2]); batch xb in x with 0 { print(xb); }", "runtime", "positive whole number"),
    ("batch xb in x with -1 { print(xb); }", "runtime", "positive whole number"),
    ("batch xb in x with 2.5 { print(xb); }", "runtime", "positive whole number"),
    ("print(x[0 / 0]);", "runtime", "got nan"),
    ("print(1e308 as i32);", "runtime", "out of range"),
    ("print((0 / 0) as i64);", "runtime", "cannot convert nan"),
    ("learn W2 = zeros([2]); realloc W2 = [3037000500];", "runtime", "over the memory limit"),
    ("print(zeros([100000, 100000]));", "runtime", "over the memory limit"),
    (f'load_csv c = "{DATA / "empty_field.csv"}";', "io", "line 1, column 2 is empty"),
    (f'load_csv c = "{DATA / "bom.csv"}"; print(c);', None, "[[1, 2, 3], [4, 5, 6]]"),
    (f'load_safetensors m = "{DATA / "overlapping.safetensors"}";', "io", "overlap"),
    (f'load_safetensors m = "{DATA / "duplicate_key.safetensors"}";', "io", "twice"),
    ("print(mean(zeros([0])));", None, "nan"),
]

_CHILD = r"""
import json, sys
import noma
cells = json.loads(sys.stdin.read())
s = noma.Session(memory_limit=sys.argv[1])
out = []
for cell in cells:
    r = s.execute(cell)
    after = s.execute("print(40 + 2);")
    out.append({
        "status": r.status, "output": r.output,
        "diags": [{"kind": d.kind.value if hasattr(d.kind, "value") else str(d.kind),
                   "message": d.message, "text": d.render()} for d in r.diagnostics],
        "after": [after.status, after.output],
    })
print(json.dumps(out))
"""


def test_session_survives_every_bad_runtime_input() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1")
    proc = subprocess.run([sys.executable, "-c", _CHILD, "1G"], input=json.dumps([c for c, _, _ in CELLS]),
                          capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert proc.returncode == 0, f"the session process died ({proc.returncode}):\n{proc.stderr[-3000:]}"
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for (cell, kind, needle), r in zip(CELLS, results):
        assert r["after"] == ["ok", "42\n"], (cell, r)
        if kind is None:
            assert r["status"] == "ok" and needle in r["output"], (cell, r)
            continue
        assert r["status"] == "error", (cell, r)
        (d,) = [d for d in r["diags"] if "error" in d["text"].split("\n")[0]]
        assert f"error[{kind}]" in d["text"] and needle in d["message"], (cell, d)
        assert "--> <cell" in d["text"], ("no location", cell, d["text"])
    assert "Traceback" not in proc.stderr


def test_memory_limit_option_and_environment() -> None:
    import noma

    s = noma.Session(memory_limit="16M")
    assert s.rt.memory_limit == 16 << 20
    r = s.execute("let a = zeros([1000000]); let b = zeros([1000000]);")
    assert r.status == "error" and "over the memory limit of 16 MiB" in r.diagnostics[0].message
    s.rt.memory_limit = "1G"
    assert s.execute("let b = zeros([1000000]); print(sum(b));").output == "0\n"
    for bad in ("lots", -1, "1.5G"):
        try:
            noma.Session(memory_limit=bad)
        except ValueError as e:
            assert "memory" in str(e)
        else:
            raise AssertionError(f"memory_limit={bad!r} was accepted")
    env = dict(os.environ, PYTHONPATH=str(ROOT), NOMA_MEMORY_LIMIT="8M")
    code = "import noma; s = noma.Session(); print(s.rt.memory_limit)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == str(8 << 20), out.stderr


def test_load_over_the_memory_limit_leaves_the_session_as_it_was(tmp_path: Path) -> None:
    """`:load` of a checkpoint whose history and metrics table do not fit the session's memory
    limit is an error naming the limit, and the session keeps its state and keeps working (the
    rollback needed the history memory again: an internal MemoryError and a half-replaced session)."""
    import noma
    from noma.meta import run_meta

    saved = noma.Session()
    assert saved.execute('learn w = 1; report("k", 2);').ok
    assert run_meta(saved, f":save {tmp_path}/ck.st").ok
    for cell in ("let keep = 7;",
                 "learn w = 3; optimize(w) with sgd(lr = 0.1) max 3 { let loss = w * w; minimize loss; }"):
        s = noma.Session(memory_limit="1M")
        s.execute(cell)
        before = dict(s.params), s.globals(), list(s.history.losses)
        r = run_meta(s, f":load {tmp_path}/ck.st")
        assert not r.ok and "over the memory limit of 1 MiB" in r.text and "internal" not in r.text, r.text
        assert "e+" not in r.text  # "1016 KiB in use", not "1.02e+03 KiB"
        assert (dict(s.params), s.globals(), list(s.history.losses)) == before
        assert len(s.undo_labels) == 1
        assert s.execute("print(2 + 3);").output == "5\n"


def test_piped_repl_survives_every_bad_runtime_input(tmp_path: Path) -> None:
    """`noma repl` with the same cells on stdin: one located diagnostic per bad cell, every
    `print(40 + 2);` after them runs, and the process ends normally (exit 1: some input failed)."""
    text = "".join(f"{cell}\nprint(40 + 2);\n" for cell, _, _ in CELLS)
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1", NOMA_MEMORY_LIMIT="1G",
               NOMA_HISTORY_FILE=str(tmp_path / "history"))
    done = subprocess.run([sys.executable, "-m", "noma", "repl"], input=text, capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    assert done.stdout.count("42\n") == len(CELLS)
    errors = [kind for _, kind, _ in CELLS if kind is not None]
    assert done.stderr.count("error[") == len(errors) and done.stderr.count("-->") == len(errors)
    assert "Traceback" not in done.stderr


_TRAIN = """learn w = 0.0;
optimize(w) with sgd(lr = 0.1) max 5 {
    let loss = (w - 3) ^ 2;
    minimize loss;
}
print(w);
"""


def test_loss_log_over_the_memory_limit_is_located_at_the_training_loop(tmp_path: Path) -> None:
    """The loss log (~700 KiB) is allocated when the first training loop starts: refused, it is a
    runtime error at that `optimize` (it had no location), and the session goes on."""
    import noma

    s = noma.Session(memory_limit="600K")
    r = s.execute(_TRAIN, name="train.noma")
    assert r.status == "error"
    diag = r.errors[0]
    assert diag.kind.value == "runtime" and "the loss history" in diag.message
    assert "over the memory limit" in diag.message
    assert (diag.span.line, diag.span.column) == (2, 1)
    s.rt.memory_limit = "64M"
    assert s.execute(_TRAIN, name="train.noma").output.strip() == f"{3 * (1 - 0.8 ** 5):g}"
    path = tmp_path / "train.noma"
    path.write_text(_TRAIN)
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1", NOMA_MEMORY_LIMIT="600K")
    done = subprocess.run([sys.executable, "-m", "noma", "run", str(path)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "error[runtime]" in done.stderr and f"{path}:2:1" in done.stderr, done.stderr


def test_a_training_step_that_never_ends_is_stopped_by_the_memory_limit_at_its_optimize() -> None:
    """Found by the fuzzer (a mutant of corpus program 114): the loop in the step never ends and
    its tape grew until the process ran out of memory ("out of memory (tape)", no location). The
    tape is charged to the memory limit now, and a refusal points at the training loop."""
    import noma

    program = """learn w = 0.7;
let c = 0;
fn step(x) { return c + x; }
optimize(w) with sgd(lr = 0.1) max 1 {
    let v = 1;
    while step(w) < 2 { v = v * c + w; }
    minimize v * w;
}
"""
    s = noma.Session(memory_limit="64M")
    r = s.execute(program, name="never.noma")
    assert r.status == "error"
    diag = r.errors[0]
    assert diag.kind.value == "runtime" and "the training tape" in diag.message, diag.message
    assert (diag.span.line, diag.span.column) == (4, 1)
    assert s.execute("print(40 + 2);").output == "42\n"
