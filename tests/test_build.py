"""`noma build`: standalone executables behave like `noma run`.

Every program of the corpus (tests/programs/*.noma, the one tests/test_programs.py runs through
`noma run`) is built into an executable and run; its stdout must equal the program's
`// expect:` lines, its exit code and `error[KIND]` + location must match `// error[...]`.
Compile-time errors make the build itself fail with the diagnostic (and `noma build` exit 1).
The corpus is built by a few worker processes at once (each imports NOMA once and builds its
share; the C runtime is compiled once and cached, so a build is one LLVM compile plus one link).

Also: examples/grow_xor.noma prints what `noma run` prints; the same seed gives bit-identical
numbers; SIGINT stops training with exit 130 and the step; no C compiler → a clear error; the
executable depends on no Python/NumPy library.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from test_programs import (  # the corpus and its expectation format (tests/programs/README.md)
    DATA_DIR,
    PROGRAMS,
    ROOT,
    _has_location,
    check_run,
    parse_expectations,
)

RUN_TIMEOUT_S = 60
BUILD_TIMEOUT_S = 600
WORKERS = max(1, min(4, os.cpu_count() or 1))



def _have_cc() -> bool:
    cc = os.environ.get("CC", "").split()
    return bool(shutil.which(cc[0])) if cc else any(shutil.which(n) for n in ("cc", "gcc", "clang"))


pytestmark = pytest.mark.skipif(not _have_cc(), reason="no C compiler (the runtime needs one anyway)")


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


def _noma(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "noma", *args], cwd=cwd, env=env or _env(),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


def _run_exe(exe: Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(exe)], cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT_S)


def _program(stem: str) -> Path:
    return next(p for p in PROGRAMS if p.stem == stem)


def _workdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    if DATA_DIR.is_dir() and not (path / "data").exists():
        shutil.copytree(DATA_DIR, path / "data")
    return path


# ----------------------------------------------------------------------------- building the corpus

# One worker: build each (source, exe) job from stdin in its own cwd (compile-time reads such as
# safetensors headers are relative to it, as in `noma run`); print {source: null | diagnostics}.
_WORKER = r"""
import json, os, sys, traceback
from pathlib import Path
from noma.build import build_executable
from noma.diagnostics import NomaError, Source
job = json.load(sys.stdin)
os.chdir(job["cwd"])
out = {}
for src, exe, defines in job["items"]:
    try:
        build_executable(Source(src, Path(src).read_text()), exe, defines=defines)
        out[src] = None
    except NomaError as exc:
        out[src] = "\n".join(d.render() for d in exc.diagnostics)
    except Exception:
        out[src] = "INTERNAL " + traceback.format_exc()
print(json.dumps(out))
"""


def _build_many(paths: list[Path], out_dir: Path, cwd: Path) -> dict[str, str | None]:
    """Build every program; {str(path): None when built, else the rendered diagnostics}."""
    shares = [paths[i::WORKERS] for i in range(WORKERS)]
    procs = []
    for share in shares:
        if not share:
            continue
        job = {"cwd": str(cwd), "items": [[str(p), str(out_dir / p.stem), parse_expectations(p.read_text()).defines]
                                          for p in share]}
        proc = subprocess.Popen([sys.executable, "-c", _WORKER], cwd=cwd, env=_env(), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append((proc, json.dumps(job)))
    results: dict[str, str | None] = {}
    for proc, job in procs:
        stdout, stderr = proc.communicate(job, timeout=BUILD_TIMEOUT_S)
        assert proc.returncode == 0, f"build worker failed:\n{stderr}"
        results.update(json.loads(stdout.strip().splitlines()[-1]))
    return results


def _selected_programs(request: pytest.FixtureRequest) -> list[Path]:
    chosen = []
    for item in request.session.items:
        spec = getattr(item, "callspec", None)
        if spec is not None and getattr(item, "originalname", "") == "test_built_program":
            chosen.append(spec.params["path"])
    return chosen or list(PROGRAMS)


@pytest.fixture(scope="module")
def corpus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("build")
    out_dir = base / "bin"
    out_dir.mkdir()
    cwd = _workdir(base / "cwd")
    return out_dir, _build_many(_selected_programs(request), out_dir, cwd)


def _report(path: Path, problem: str, proc: subprocess.CompletedProcess | None = None,
            diagnostics: str | None = None) -> str:
    exp = parse_expectations(path.read_text())
    numbered = "\n".join(f"{i + 1:4d} | {line}" for i, line in enumerate(path.read_text().splitlines()))
    text = (f"{path.name} (built executable): {problem}\n---- program ----\n{numbered}\n"
            f"---- expected stdout ----\n{chr(10).join(exp.stdout) or '(nothing)'}\n"
            f"---- expected exit ----\n{'1 with error[%s] at %d:%d' % exp.error if exp.error else '0'}\n")
    if diagnostics is not None:
        text += f"---- build diagnostics ----\n{diagnostics}\n"
    if proc is not None:
        text += (f"---- actual stdout ----\n{proc.stdout}\n---- actual stderr ----\n{proc.stderr}\n"
                 f"---- actual exit code: {proc.returncode} ----")
    return text


@pytest.mark.parametrize("path", PROGRAMS, ids=[p.stem for p in PROGRAMS])
def test_built_program(path: Path, corpus, tmp_path: Path) -> None:
    out_dir, results = corpus
    exp = parse_expectations(path.read_text())
    diagnostics = results[str(path)]
    if diagnostics is not None:  # the build failed: only a compile-time error may do that
        if diagnostics.startswith("INTERNAL"):
            pytest.fail(_report(path, "the build crashed", diagnostics=diagnostics), pytrace=False)
        if exp.error is None:
            pytest.fail(_report(path, "the build failed", diagnostics=diagnostics), pytrace=False)
        kind, line, col = exp.error

        def expect(cond: bool, problem: str) -> None:
            if not cond:
                pytest.fail(_report(path, problem, diagnostics=diagnostics), pytrace=False)

        expect(not exp.stdout, "a compile-time error cannot follow printed output")
        expect(f"error[{kind}]" in diagnostics, f"build diagnostics lack error[{kind}]")
        expect(_has_location(diagnostics, line, col, exp.error_file),
               f"build diagnostics lack {exp.error_file or ''}:{line}:{col}")
        assert not (out_dir / path.stem).exists(), "a failed build left an executable behind"
        for text in exp.stderr_contains:
            expect(text in diagnostics, f"build diagnostics lack {text!r}")
        return
    exe = out_dir / path.stem
    try:
        proc = _run_exe(exe, _workdir(tmp_path))
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{path.name}: executable timed out after {RUN_TIMEOUT_S} s\n{e.stdout}\n{e.stderr}")

    check_run(path, exp, proc, " (built executable)")


def test_corpus_has_both_kinds_of_errors(corpus) -> None:
    """Some error programs fail at build time, others only when the executable runs."""
    _, results = corpus
    if len(results) < len(PROGRAMS):
        pytest.skip("only part of the corpus was selected")
    failed = [p for p, d in results.items() if d is not None]
    runtime_errors = [p for p in PROGRAMS if parse_expectations(p.read_text()).error and results[str(p)] is None]
    assert len(failed) >= 10 and len(runtime_errors) >= 8, (failed, runtime_errors)


# ----------------------------------------------------------------------------- the CLI


def test_cli_build_compile_error_exits_1_with_diagnostic(tmp_path: Path) -> None:
    src = tmp_path / "bad.noma"
    src.write_text("let a = 1;\nprint(a + b);\n")
    proc = _noma("build", str(src), "-o", str(tmp_path / "bad"), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "error[name]" in proc.stderr and ":2:11" in proc.stderr, proc.stderr
    assert "^" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "bad").exists()


def test_grow_xor_executable_prints_what_noma_run_prints(tmp_path: Path) -> None:
    example = ROOT / "examples" / "grow_xor.noma"
    exe = tmp_path / "grow_xor"
    build = _noma("build", str(example), "-o", str(exe), cwd=tmp_path)
    assert build.returncode == 0, build.stderr
    assert build.stdout == "" and os.access(exe, os.X_OK)
    ran = _run_exe(exe, tmp_path)
    ref = _noma("run", str(example), cwd=tmp_path)
    assert ref.returncode == 0, ref.stderr
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == ref.stdout.splitlines()
    assert "converged" in ran.stdout and "hidden = 16" in ran.stdout


_TRAIN = """// trains with Adam and a resize; writes the parameters with 17 significant digits
seed(3);
dim h = 3;
let X = normal([16, 4], 0, 1);
let Y = normal([16, 1], 0, 1);
learn W1 = normal([4, h], 0, 0.5);
learn W2 = normal([h, 1], 0, 0.5);
let k = 0;
optimize(W1, W2) with adam(lr = 0.01) max 300 {
    let loss = mean((matmul(tanh(matmul(X, W1)), W2) - Y) ^ 2);
    k = k + 1;
    if k == 100 { realloc h = 5; }
    minimize loss;
}
save_csv W1, "W1.csv";
save_csv W2, "W2.csv";
print(loss);
"""


def test_same_seed_gives_bit_identical_numbers(tmp_path: Path) -> None:
    src = tmp_path / "train.noma"
    src.write_text(_TRAIN)
    exe = tmp_path / "train"
    build = _noma("build", str(src), "-o", str(exe), cwd=tmp_path)
    assert build.returncode == 0, build.stderr
    a, b = _workdir(tmp_path / "a"), _workdir(tmp_path / "b")
    ran = _run_exe(exe, a)
    ref = _noma("run", str(src), cwd=b, env=_env(NOMA_NO_BLAS="1"))
    assert ran.returncode == 0 and ref.returncode == 0, (ran.stderr, ref.stderr)
    assert ran.stdout == ref.stdout
    for name in ("W1.csv", "W2.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert len((a / "W1.csv").read_text().split("\n")[0].split(",")) == 5


def test_value_of_last_expression_is_printed(tmp_path: Path) -> None:
    src = tmp_path / "value.noma"
    src.write_text("let a = 3;\nprint(\"a is\", a);\na * 2.5\n")
    exe = tmp_path / "value"
    assert _noma("build", str(src), "-o", str(exe), cwd=tmp_path).returncode == 0
    ran = _run_exe(exe, tmp_path)
    assert ran.returncode == 0 and ran.stdout.splitlines() == ["a is 3", "7.5"]
    assert ran.stdout.splitlines() == _noma("run", str(src), cwd=tmp_path).stdout.splitlines()


def test_f32_and_portable_cpu_builds(tmp_path: Path) -> None:
    example = ROOT / "examples" / "grow_xor.noma"
    f32 = tmp_path / "g32"
    assert _noma("--dtype", "f32", "build", str(example), "-o", str(f32), cwd=tmp_path).returncode == 0
    ref32 = _noma("--dtype", "f32", "run", str(example), cwd=tmp_path)
    assert _run_exe(f32, tmp_path).stdout == ref32.stdout
    if platform.machine() not in ("x86_64", "AMD64"):
        return
    v3 = tmp_path / "gv3"
    build = _noma("build", "--cpu", "x86-64-v3", "-O", "3", str(example), "-o", str(v3), cwd=tmp_path)
    assert build.returncode == 0, build.stderr
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists() and " avx2 " in cpuinfo.read_text() and " fma " in cpuinfo.read_text():
        ran = _run_exe(v3, tmp_path)
        assert ran.returncode == 0 and "converged" in ran.stdout, ran.stderr


_LONG = """// trains until interrupted
seed(1);
learn w = normal([32, 32], 0, 1);
let X = normal([32, 32], 0, 1);
let step = 0;
optimize(w) with sgd(lr = 0.000001) until loss < 0 max 1000000000 {
    let loss = mean(matmul(X, w) ^ 2);
    step = step + 1;
    if step == 1 { print("started"); }
    minimize loss;
}
print("finished");
"""


def test_sigint_stops_training_with_exit_130(tmp_path: Path) -> None:
    src = tmp_path / "long.noma"
    src.write_text(_LONG)
    exe = tmp_path / "long"
    build = _noma("build", str(src), "-o", str(exe), cwd=tmp_path)
    assert build.returncode == 0, build.stderr
    proc = subprocess.Popen([str(exe)], cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "started"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    m = re.search(r"interrupted at step (\d+)", err)
    assert m and int(m.group(1)) >= 1, err
    assert "finished" not in out


def test_no_c_compiler_gives_a_clear_error(tmp_path: Path) -> None:
    src = tmp_path / "hello.noma"
    src.write_text('print("hello");\n')
    nowhere = str(tmp_path / "nowhere")
    for extra in ({"PATH": nowhere, "CC": nowhere + "/cc"}, {"PATH": nowhere, "CC": ""}):
        proc = _noma("build", str(src), "-o", str(tmp_path / "hello"), cwd=tmp_path, env=_env(**extra))
        assert proc.returncode == 1, proc.stderr
        assert "C compiler" in proc.stderr and "apt install gcc" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
        assert not (tmp_path / "hello").exists()


_ALLOWED_LIBS = re.compile(r"^(linux-vdso|linux-gate|libc\.so|libm\.so|ld-linux|libgcc_s\.so|libmvec\.so)")


@pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("ldd") is None, reason="needs ldd")
def test_executable_does_not_depend_on_python_or_numpy(tmp_path: Path) -> None:
    exe = tmp_path / "xor"
    assert _noma("build", str(_program("37_xor_network")), "-o", str(exe), cwd=tmp_path).returncode == 0
    out = subprocess.run(["ldd", str(exe)], capture_output=True, text=True).stdout
    libs = [line.split()[0].rsplit("/", 1)[-1] for line in out.splitlines() if line.strip()]
    assert libs, out
    unexpected = [lib for lib in libs if not _ALLOWED_LIBS.match(lib)]
    assert not unexpected, out
    assert not re.search(r"python|numpy|openblas", out, re.IGNORECASE), out


def test_emit_asm_works(tmp_path: Path) -> None:
    proc = _noma("emit", "--stage", "asm", str(_program("01_hello")), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "noma___main" in proc.stdout
