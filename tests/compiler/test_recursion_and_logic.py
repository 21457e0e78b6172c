"""Recursion inside training loops and short-circuit `&&` / `||`, from NOMA source.

* Gradients through recursive calls (the adjoint pair on the runtime tape, autodiff_calls.py)
  agree with central finite differences of the program's own loss, run in the NumPy interpreter
  (fourth-order stencil, f64, error ≤ 1e-6 relative to max(1, |gradient|)).
* The JIT and the interpreter agree on printed lines, parameters, globals and the loss log,
  in f64 (≤ 1e-12 relative) and f32 (≤ 1e-4 relative).
* A built executable prints what `noma run` prints, in f64 and f32.
Programs use no random draws and no files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import noma
from noma.compiler.middle import ir
from noma.compiler.interp.interp import InterpState, Interpreter
from noma.diagnostics import Source

POWER = "fn p(x, n) { if n == 0 { return 1; } return x * p(x, n - 1); }\n"

#: Programs whose first optimize loop (one step) is checked against finite differences.
GRADIENT_PROGRAMS = {
    "power": POWER + """
        learn w = 1.3;
        optimize(w) with sgd(lr = 0.1) max 1 { let loss = p(w, 3); minimize loss; }
    """,
    "tensor_layers": """
        fn apply(x, W, n) { if n == 0 { return x; } return tanh(matmul(apply(x, W, n - 1), W)); }
        let X = tensor [[1, 0.5, -1], [-0.5, 1, 0.25]];
        learn W = tensor [[0.5, -0.3, 0.1], [0.2, 0.8, -0.4], [0.3, -0.6, 0.7]];
        learn b = tensor [0.1, -0.2, 0.3];
        optimize(W, b) with sgd(lr = 0.1) max 1 {
            let loss = sum((apply(X, W, 3) + b) ^ 2);
            minimize loss;
        }
    """,
    "branch_and_depth_depend_on_the_parameter": """
        fn walk(x, n) {
            if n == 0 { return x; }
            if x > 1 { return walk(x * 0.5, n - 1); }
            return walk(x * x + 0.5, n - 1);
        }
        fn grow(x) { if x > 4 { return x; } return grow(x * 1.5) + sin(x); }
        learn u = 1.5;
        learn v = 1.1;
        optimize(u, v) with sgd(lr = 0.1) max 1 { let loss = walk(u, 3) * grow(v); minimize loss; }
    """,
    "parameter_read_inside_and_mutual_recursion": """
        learn a = 0.5;
        learn M = tensor [[0.3, -0.2], [0.1, 0.4]];
        fn series(n) { if n == 0 { return 1; } return 1 + a * series(n - 1); }
        fn mpow(x, n) { if n == 0 { return x; } return matmul(M, mpow(x, n - 1)) * a; }
        fn ev(x, n) { if n == 0 { return x; } return od(x * 2, n - 1); }
        fn od(x, n) { if n == 0 { return x; } return ev(sin(x), n - 1); }
        optimize(a, M) with sgd(lr = 0.1) max 1 {
            let loss = series(4) + sum(mpow(tensor [[1], [2]], 3)) + ev(a, 5);
            minimize loss;
        }
    """,
    "calls_in_nested_blocks_and_arguments": POWER + """
        fn twice(x, n) { let y = x; let i = 0; while i < 2 { y = sin(y) + x; i = i + 1; }
                         if n == 0 { return y; } return twice(y, n - 1) * x; }
        learn w = 0.7;
        optimize(w) with sgd(lr = 0.1) max 1 {
            let loss = 0;
            for i in 1..4 {
                if i != 2 { loss = loss + p(w, i); } else { loss = loss + p(p(w, 2), 2); }
            }
            let k = 0;
            while k < 2 { loss = loss + twice(w, k); k = k + 1; }
            minimize loss;
        }
    """,
    "short_circuit_chooses_the_branch": POWER + """
        learn w = 1.2;
        let v = tensor [1, 2];
        optimize(w) with sgd(lr = 0.1) max 1 {
            let loss = 0;
            let i = 2;
            if w > 0 && p(w, 2) < 5 { loss = p(w, 3); } else { loss = w; }
            if i < rows(v) && v[i] > 0 || w > 1 { loss = loss + 3 * w * w; }
            minimize loss;
        }
    """,
}

#: Programs run by both the JIT and the interpreter (and, some of them, built).
RUN_PROGRAMS = dict(GRADIENT_PROGRAMS, **{
    "training_through_recursion": POWER + """
        fn apply(x, W, n) { if n == 0 { return x; } return tanh(matmul(apply(x, W, n - 1), W)); }
        let X = tensor [[1, 0.5], [-0.5, 1]];
        let Y = tensor [[0.2, -0.1], [0.3, 0.4]];
        learn W = tensor [[0.5, -0.3], [0.2, 0.8]];
        learn s = 0.9;
        optimize(W, s) with adam(lr = 0.05) max 40 {
            let loss = mean((apply(X, W, 3) * p(s, 2) - Y) ^ 2);
            minimize loss;
        }
        print(W, s, loss);
    """,
    "recursion_through_loops": """
        fn f(x, n) {
            let y = x;
            let i = 0;
            while i < 2 { if n > 0 { y = y + f(x * 10, n - 1); } else { y = y + x; } i = i + 1; }
            return y;
        }
        fn countdown(n) { if n > 0 { print(n); countdown(n - 1); } }
        print(f(tensor [1, 2], 2));
        countdown(2);
    """,
    "short_circuit_effects": """
        let calls = 0;
        fn mark(x) { calls = calls + 1; return x; }
        let v = tensor [1, -2, 3];
        let i = 3;
        if i < rows(v) && v[i] > 0 { print("in"); } else { print("guarded"); }
        print(0 && mark(1), 1 && mark(5), 1 || mark(0), 0 || mark(0), calls);
        print(0 && print(7), 1 || print(9), (0 || mark(2)) && mark(0), calls);
        learn w = 1.0;
        optimize(w) with sgd(lr = 0.1) max 3 {
            let loss = w * w;
            if w > 100 && mark(1) > 0 { loss = loss + w; }
            if w < 100 || mark(1) > 0 { loss = loss + 3 * w; }
            minimize loss;
        }
        print(w, calls);
    """,
})


def _compile(source: str, dtype: str = "f64") -> tuple[noma.Session, ir.Module, str]:
    session = noma.Session(dtype=dtype)
    module, cell, _, _ = session.compile(Source("<test>", source))
    return session, module, cell


def _first_optimize(module: ir.Module, cell: str) -> ir.OptimizeOp:
    return next(op for op in module.functions[cell].body.ops if isinstance(op, ir.OptimizeOp))


def _fd(it: Interpreter, opt: ir.OptimizeOp, env: dict, slot: int, h: float = 1e-4) -> np.ndarray:
    p0 = np.array(it.state.params[slot], dtype=np.float64)
    out = np.zeros_like(p0)
    for idx in np.ndindex(p0.shape):
        def f(t: float) -> float:
            p = p0.copy()
            p[idx] += t
            it.state.params[slot] = p
            return float(np.sum(it.forward(opt, env)[0]))
        out[idx] = (8 * (f(h) - f(-h)) - (f(2 * h) - f(-2 * h))) / (12 * h)
    it.state.params[slot] = p0
    return out


@pytest.mark.parametrize("name", sorted(GRADIENT_PROGRAMS))
def test_gradient_through_recursion_matches_finite_differences(name: str) -> None:
    _, module, cell = _compile(GRADIENT_PROGRAMS[name])
    opt = _first_optimize(module, cell)
    it = Interpreter(module, InterpState())
    env = it.prelude(cell, opt)
    _, grads = it.gradients(opt, env)  # also checks that the tape is balanced
    for ref, g in zip(opt.params, grads):
        fd = _fd(it, opt, env, ref.slot)
        g = np.asarray(g, dtype=np.float64)
        assert g.shape == fd.shape
        assert np.max(np.abs(g - fd), initial=0.0) <= 1e-6 * max(1.0, float(np.max(np.abs(fd), initial=0.0))), \
            (ref.name, g, fd)
        assert np.any(g != 0), ref.name  # the gradient really flows through the calls


def test_power_gradient_is_three_w_squared() -> None:
    _, module, cell = _compile(GRADIENT_PROGRAMS["power"])
    opt = _first_optimize(module, cell)
    it = Interpreter(module, InterpState())
    _, grads = it.gradients(opt, it.prelude(cell, opt))
    assert float(grads[0]) == pytest.approx(3 * 1.3 ** 2, rel=1e-14)
    assert any(name.startswith("p.s.s.fwd") for name in module.functions)  # the adjoint pair


@pytest.mark.parametrize("dtype", ["f64", "f32"])
@pytest.mark.parametrize("name", sorted(RUN_PROGRAMS))
def test_jit_equals_interpreter(name: str, dtype: str) -> None:
    session, module, cell = _compile(RUN_PROGRAMS[name], dtype)
    state = InterpState()
    Interpreter(module, state).call(cell)
    result = session.execute(RUN_PROGRAMS[name])
    assert result.ok, [d.render() for d in result.diagnostics]
    tol = dict(rtol=1e-12, atol=1e-300) if dtype == "f64" else dict(rtol=1e-4, atol=1e-6)
    _same_lines(result.output.splitlines(), state.output, exact=dtype == "f64")
    for pname, var in session.symbols.params.items():
        np.testing.assert_allclose(session.params[pname], state.params[var.slot], **tol)
    for gname, var in session.symbols.globals.items():
        if var.slot in state.globals:
            np.testing.assert_allclose(np.asarray(session.globals()[gname], float),
                                       np.asarray(state.globals[var.slot], float), **tol)
    np.testing.assert_allclose(session.history.losses, np.asarray(state.loss_log), **tol)


def _cc() -> bool:
    return any(shutil.which(n) for n in ("cc", "gcc", "clang"))


#: Recursion and short-circuit together, for the executables.
BUILD_PROGRAM = POWER + """
fn apply(x, W, n) { if n == 0 { return x; } return tanh(matmul(apply(x, W, n - 1), W)); }
let calls = 0;
fn mark(x) { calls = calls + 1; return x; }
let X = tensor [[1, 0.5], [-0.5, 1]];
let Y = tensor [[0.2, -0.1], [0.3, 0.4]];
learn W = tensor [[0.5, -0.3], [0.2, 0.8]];
learn s = 0.9;
let v = tensor [1, 2];
optimize(W, s) with adam(lr = 0.05) max 40 {
    let i = 2;
    let loss = mean((apply(X, W, 3) * p(s, 2) - Y) ^ 2);
    if i < rows(v) && v[i] > 0 { loss = loss * 2; }
    if s > 100 && mark(1) > 0 { loss = loss + s; }
    minimize loss;
}
print(W, s, loss, calls);
print(0 && mark(1), 1 || print(9), 0 || print(10), calls);
"""


def _same_lines(got: list[str], want: list[str], exact: bool) -> None:
    """Equal lines; with exact=False numbers may differ by 1e-4 relative (f32 round-off)."""
    assert len(got) == len(want), (got, want)
    for g, w in zip(got, want):
        if exact:
            assert g == w
            continue
        gt, wt = g.replace("[", " ").replace("]", " ").replace(",", " ").split(), \
            w.replace("[", " ").replace("]", " ").replace(",", " ").split()
        assert len(gt) == len(wt), (g, w)
        for a, b in zip(gt, wt):
            try:
                assert float(a) == pytest.approx(float(b), rel=1e-4, abs=1e-6), (g, w)
            except ValueError:
                assert a == b, (g, w)


def _cc() -> bool:
    return any(shutil.which(n) for n in ("cc", "gcc", "clang"))


@pytest.mark.skipif(not _cc(), reason="no C compiler")
@pytest.mark.parametrize("dtype", ["f64", "f32"])
def test_executable_prints_what_noma_run_prints(dtype: str, tmp_path: Path) -> None:
    program = tmp_path / "prog.noma"
    program.write_text(BUILD_PROGRAM)
    env = dict(os.environ, PYTHONPATH=str(Path(noma.__file__).resolve().parents[1]), NO_COLOR="1")
    exe = tmp_path / "prog"
    build = subprocess.run([sys.executable, "-m", "noma", "--dtype", dtype, "build", str(program), "-o", str(exe)],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    ran = subprocess.run([sys.executable, "-m", "noma", "--dtype", dtype, "run", str(program)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    built = subprocess.run([str(exe)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0 and built.returncode == 0, (ran.stderr, built.stderr)
    assert built.stdout == ran.stdout
    assert ran.stdout.splitlines()[1:] == ["10", "0 1 1 0"]


def test_whole_safetensors_model_warns_in_a_session_across_cells(tmp_path: Path, monkeypatch) -> None:
    """The original NOMA's `sum(loaded_model)`: the file's first tensor, with a located warning,
    also when the load and the use are different cells, and when a cell's code is reused."""
    monkeypatch.chdir(tmp_path)
    session = noma.Session()
    first = session.execute('save_safetensors { w: tensor [1, 2], a: tensor [10, 20, 30] }, "m.safetensors";'
                            'load_safetensors m = "m.safetensors";')
    assert first.ok and not first.warnings
    for _ in range(2):  # the second run of the same text reuses its compiled code
        use = session.execute("print(sum(m), m.a);")
        assert use.ok and use.output == "3 [10, 20, 30]\n"
        (warning,) = use.warnings
        assert "`m` holds 2 tensors (`w`, `a`)" in warning.message and "`w`" in warning.message
        assert warning.span is not None and "m.w" in (warning.note or "")
    assert session.cache_hits >= 1
    session.execute("let m = tensor [5];")
    assert not session.execute("print(sum(m));").warnings


@pytest.mark.parametrize("source, callee", [
    ("learn w = 1.0; let g = 0;\n"  # assigns a parameter-dependent value, the body reads it
     "fn sg(x, n) { if n == 0 { g = x; return 0; } return sg(x, n - 1); }\n"
     "optimize(w) with sgd(lr = 0.1) max 1 { let z = sg(w * 3, 2); let loss = g * g + z; minimize loss; }",
     "sg"),
    ("learn w = 1.0; let g = 0;\n"  # assigns a parameter-dependent value and reads it back itself
     "fn ag(n) { if n <= 0 { return g; } g = g + w; return ag(n - 1); }\n"
     "optimize(w) with sgd(lr = 0.1) max 1 { g = 0; let loss = ag(2); minimize loss; }",
     "ag"),
])
def test_gradient_through_a_global_a_recursive_function_assigns_is_refused(source: str, callee: str) -> None:
    result = noma.Session().execute(source)
    assert not result.ok
    (diag,) = result.errors
    assert diag.kind.value == "type" and "global `g`" in diag.message and diag.span is not None
    assert diag.span.source.line_text(3)[diag.span.source.position(diag.span.start)[1] - 1:].startswith(callee + "(")


def test_gradient_flows_through_a_global_a_recursive_function_reads() -> None:
    """rg only reads g: it gets g as an argument (globals_ssa), so d(rg(2))/dw = d(3w)/dw = 3."""
    result = noma.Session().execute(
        "learn w = 1.0; let g = 0;\n"
        "fn rg(n) { if n == 0 { return g; } return rg(n - 1); }\n"
        "optimize(w) with sgd(lr = 0.1) max 1 { g = w * 3; let loss = rg(2); minimize loss; }\n"
        "print(w, g);")
    assert result.ok, [d.render() for d in result.errors]
    assert result.output == "0.7 3\n"


def test_recursive_function_with_an_untrained_global_counter_trains() -> None:
    """A global a recursive function only counts with (no gradient through it) is fine."""
    result = noma.Session().execute(POWER.replace("return 1; }", "calls = calls + 1; return 1; }", 1).replace(
        "fn p", "let calls = 0;\nfn p") + """
        learn w = 2.0;
        optimize(w) with sgd(lr = 0.01) max 2 { let loss = p(w, 2) + calls * 0; minimize loss; }
        print(w, calls);
    """)
    assert result.ok, [d.render() for d in result.errors]
    assert result.output == "1.9208 2\n"  # w: 2 - 0.01·4 = 1.96, then 1.96 - 0.01·3.92 = 1.9208
