"""Checkpoints are one format for executables and sessions (issue #6).

A checkpoint written by a `noma build` executable (`save_checkpoint("f")`) loads in a session (the
`load_checkpoint` statement in a cell, `Session.load_checkpoint`, `:load`) and training continues
exactly as if it had never stopped; a session's checkpoint (`Session.save_checkpoint`) loads in an
executable the same way. Bad checkpoints (missing, malformed, a parameter or dim the program does
not declare, a rank or dtype mismatch) are positioned diagnostics: exit code 1 for an executable,
an error that changes nothing for a session.

Checkpoint files are read here with a few lines of NumPy (an oracle independent of the runtime's
reader). Also: `noma emit --stage obj` writes an object file.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import noma
from noma.diagnostics import Kind, NomaError, Source
from noma.meta import run_meta
from conftest import run

ROOT = Path(__file__).resolve().parent.parent
TOL = 1e-12
N_FIRST, N_SECOND = 12, 10


def _have_cc() -> bool:
    cc = os.environ.get("CC", "").split()
    return bool(shutil.which(cc[0])) if cc else any(shutil.which(n) for n in ("cc", "gcc", "clang"))


pytestmark = pytest.mark.skipif(not _have_cc(), reason="no C compiler (the runtime needs one anyway)")

DECLS = """seed(5);
dim hidden = 3;
let X = tensor [[0, 0], [0, 1], [1, 0], [1, 1], [0.5, 0.2]];
let Y = tensor [[0], [1], [1], [0], [0.3]];
learn W1 = normal([2, hidden], 0, 1);
learn b1 = zeros([hidden]);
learn W2 = normal([hidden, 1], 0, 1);
learn c = 0.1;
"""
LOAD_LINE = DECLS.count("\n") + 1  # where executable B's load_checkpoint statement stands


def phase(steps: int, grow_at: int = 0, grow_to: int = 0) -> str:
    """`steps` Adam steps; with grow_at, `realloc hidden = grow_to` inside the loop at that step."""
    grow = f"    if k == {grow_at} {{ realloc hidden = {grow_to}; }}\n" if grow_at else ""
    return (f"let k = 0;\noptimize(W1, b1, W2, c) with adam(lr = 0.03) max {steps} {{\n    k = k + 1;\n"
            f"{grow}    let h = tanh(matmul(X, W1) + b1);\n    let loss = mean((matmul(h, W2) + c - Y) ^ 2);\n"
            "    minimize loss;\n}\n")


PROGRAMS = {
    "adam": (phase(N_FIRST), phase(N_SECOND)),
    "adam_realloc": (phase(N_FIRST, grow_at=5, grow_to=4), phase(N_SECOND, grow_at=4, grow_to=6)),
}


# ----------------------------------------------------------------------------- helpers


def read_checkpoint(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Tensors and metadata of a safetensors file (F64 and I64 only: what NOMA f64 writes)."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        dtype = {"F64": "<f8", "I64": "<i8"}[info["dtype"]]
        out[name] = np.frombuffer(data[8 + n + start:8 + n + end], dtype=dtype).reshape(info["shape"])
    return out, meta


def session_view(s: noma.Session) -> tuple[dict[str, np.ndarray], dict[str, int], int]:
    """A session's training state under the checkpoint's tensor names, its dims and global step."""
    h = s.history
    out = {"history/losses": np.asarray(h.losses),
           "history/summary": np.stack([h.summary.min, h.summary.max, h.summary.mean], axis=1).reshape(-1, 3)}
    for name, value in s.params.items():
        out[f"param/{name}"] = np.asarray(value, np.float64)
        for key, arr in s.optimizer_state(name).items():
            out[f"opt/{name}/{key}"] = np.asarray(arr, np.float64)
    return out, dict(s.dims), s.rt.global_step()


def file_view(path: Path) -> tuple[dict[str, np.ndarray], dict[str, int], int]:
    tensors, meta = read_checkpoint(path)
    tensors = {k: v.astype(np.float64) for k, v in tensors.items() if not k.startswith("global/")}
    dims = {k[4:]: int(v) for k, v in meta.items() if k.startswith("dim/")}
    return tensors, dims, int(meta["step"])


def assert_same_training_state(got, want) -> None:
    tensors, dims, step = got
    want_tensors, want_dims, want_step = want
    assert dims == want_dims and step == want_step
    assert sorted(tensors) == sorted(want_tensors)
    for key, arr in want_tensors.items():
        assert tensors[key].shape == arr.shape, key
        if arr.size:
            assert np.max(np.abs(tensors[key] - arr)) <= TOL, key


def build(text: str, exe: Path) -> Path:
    from noma.build import build_executable

    return build_executable(Source(exe.name + ".noma", text), exe)


def run_exe(exe: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(exe)], cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def exes(tmp_path_factory):
    """Per program: A trains the first phase and saves ck.safetensors; B loads ck.safetensors, trains
    the second phase and saves final.safetensors."""
    base = tmp_path_factory.mktemp("exes")
    out = {}
    for name, (first, second) in PROGRAMS.items():
        a = build(DECLS + first + 'save_checkpoint("ck.safetensors");\n', base / f"{name}_a")
        b = build(DECLS + 'load_checkpoint("ck.safetensors");\n' + second
                  + 'save_checkpoint("final.safetensors");\n', base / f"{name}_b")
        out[name] = (a, b)
    return out


def reference(name: str) -> noma.Session:
    """The uninterrupted run: both phases in one session."""
    first, second = PROGRAMS[name]
    s = noma.Session()
    for cell in (DECLS, first, second):
        run(s, cell)
    return s


# ----------------------------------------------------------------------------- executable -> session


@pytest.mark.parametrize("how", ["statement", "api", "meta"])
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_executable_checkpoint_continues_in_a_session(exes, tmp_path, name, how):
    proc = run_exe(exes[name][0], tmp_path)
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / "ck.safetensors"
    assert path.exists() and not (tmp_path / "ck.safetensors.json").exists()
    tensors, meta = read_checkpoint(path)
    assert meta["format"] == "noma-checkpoint-3" and meta["step"] == str(N_FIRST)
    assert tensors["opt/W1/step"].dtype == np.int64 and tensors["param/c"].shape == ()

    s = noma.Session()
    run(s, DECLS)  # the same program's declarations, then the checkpoint's state
    if how == "statement":
        run(s, f'load_checkpoint("{path}");')
    elif how == "api":
        s.load_checkpoint(str(path))
    else:
        assert run_meta(s, f":load {path}").ok
    assert s.rt.global_step() == N_FIRST and len(s.history.losses) == N_FIRST
    r = run(s, PROGRAMS[name][1])
    assert r.steps == N_SECOND
    assert_same_training_state(session_view(s), session_view(reference(name)))
    if name == "adam_realloc":
        assert s.dims["hidden"] == 6 and s.params["W1"].shape == (2, 6)
        steps = s.optimizer_state("W1")["step"]  # per-entry step counts came through the file
        assert steps[0, 0] == N_FIRST + N_SECOND and steps[0, 3] == N_FIRST + N_SECOND - 5
        assert steps[0, 5] == N_SECOND - 4


# ----------------------------------------------------------------------------- session -> executable


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_session_checkpoint_continues_in_an_executable(exes, tmp_path, name):
    s = noma.Session()
    run(s, DECLS)
    run(s, PROGRAMS[name][0])
    s.save_checkpoint(str(tmp_path / "ck.safetensors"))  # + ck.safetensors.json, ignored by the executable
    proc = run_exe(exes[name][1], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "error[" not in proc.stderr
    ref = reference(name)
    assert_same_training_state(file_view(tmp_path / "final.safetensors"), session_view(ref))

    # and the executable's final checkpoint loads back into a session (with the program declared)
    back = noma.Session()
    run(back, DECLS)
    back.load_checkpoint(str(tmp_path / "final.safetensors"))
    assert_same_training_state(session_view(back), session_view(ref))


def test_session_checkpoint_with_definitions_still_loads_into_a_fresh_session(tmp_path):
    s = noma.Session()
    run(s, DECLS)
    run(s, PROGRAMS["adam_realloc"][0])
    path = tmp_path / "ck.safetensors"
    s.save_checkpoint(str(path))
    fresh = noma.Session()  # nothing declared: PATH.json brings the definitions
    fresh.load_checkpoint(str(path))
    assert fresh.symbols.params["W1"].dims == {1: "hidden"}
    run(fresh, PROGRAMS["adam_realloc"][1])
    assert_same_training_state(session_view(fresh), session_view(reference("adam_realloc")))


# ----------------------------------------------------------------------------- bad checkpoints


def _session_file(tmp_path: Path, label: str, extra: str, dtype: str = "f64") -> Path:
    s = noma.Session(dtype=dtype)
    run(s, DECLS + extra)
    path = tmp_path / f"{label}.safetensors"
    s.save_checkpoint(str(path))
    os.remove(str(path) + ".json")
    return path


def bad_checkpoint(tmp_path: Path, how: str) -> tuple[Path, str, str]:
    """(path, expected error kind, a phrase of the message)."""
    path = tmp_path / f"{how}.safetensors"
    if how == "missing":
        return path, "io", "cannot read"
    if how == "garbage":
        path.write_bytes(b"this is not a safetensors file at all")
        return path, "io", "safetensors header"
    if how == "truncated":
        good = _session_file(tmp_path, "good", "")
        path.write_bytes(good.read_bytes()[:-40])
        return path, "io", "outside the data region"
    if how == "not_a_checkpoint":
        header = json.dumps({"w": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}}).encode()
        header += b" " * (-len(header) % 8)
        path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
        return path, "io", "not a NOMA checkpoint"
    if how == "undeclared_param":
        return _session_file(tmp_path, how, "learn extra = ones([2]);"), "name", "'extra' is not declared"
    if how == "undeclared_dim":
        return _session_file(tmp_path, how, "dim width = 4;"), "name", "dim 'width' is not declared"
    if how == "rank_mismatch":
        return _session_file(tmp_path, how, "learn c = ones([2]);"), "shape", "rank 1 in the checkpoint"
    if how == "dtype_mismatch":
        return _session_file(tmp_path, how, "", dtype="f32"), "type", "f32 values"
    raise AssertionError(how)


BAD = ["missing", "garbage", "truncated", "not_a_checkpoint", "undeclared_param", "undeclared_dim",
       "rank_mismatch", "dtype_mismatch"]


@pytest.mark.parametrize("how", BAD)
def test_bad_checkpoint_in_an_executable_is_a_positioned_error(exes, tmp_path, how):
    path, kind, phrase = bad_checkpoint(tmp_path, how)
    if how != "missing":
        shutil.copy(path, tmp_path / "ck.safetensors")
    proc = run_exe(exes["adam"][1], tmp_path)
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert proc.stdout == ""
    assert f"error[{kind}]" in proc.stderr and phrase in proc.stderr, proc.stderr
    assert f":{LOAD_LINE}:1" in proc.stderr and 'load_checkpoint("ck.safetensors");' in proc.stderr
    assert not (tmp_path / "final.safetensors").exists()


def _observable(s: noma.Session) -> dict:
    tensors, dims, step = session_view(s)
    return {"tensors": {k: (v.shape, v.tobytes()) for k, v in tensors.items()}, "dims": dims, "step": step,
            "events": [(e.kind, e.step, e.name) for e in s.history.events]}


@pytest.mark.parametrize("how", BAD)
def test_bad_checkpoint_in_a_session_changes_nothing(tmp_path, how):
    path, kind, phrase = bad_checkpoint(tmp_path, how)
    s = noma.Session()
    run(s, DECLS)
    run(s, PROGRAMS["adam"][0])
    before = _observable(s)
    r = s.execute(f'\nload_checkpoint("{path}");')
    assert r.status == "error"
    diag = r.errors[0]
    assert diag.kind is Kind(kind) and phrase in diag.message and "Traceback" not in diag.message
    assert diag.span is not None and (diag.span.line, diag.span.column) == (2, 1)
    assert _observable(s) == before
    with pytest.raises(NomaError) as info:
        s.load_checkpoint(str(path))
    assert info.value.diagnostics[0].kind is Kind(kind) and phrase in info.value.diagnostics[0].message
    assert _observable(s) == before
    rerun = noma.Session()  # the failed loads left the session as a twin that never saw them
    run(rerun, DECLS)
    run(rerun, PROGRAMS["adam"][0])
    assert run(s, "rand()").value == run(rerun, "rand()").value
    run(s, PROGRAMS["adam"][1])
    run(rerun, PROGRAMS["adam"][1])
    assert _observable(s) == _observable(rerun)


def test_load_inside_an_optimize_body_is_a_runtime_error(tmp_path):
    s = noma.Session()
    run(s, DECLS)
    path = tmp_path / "ck.safetensors"
    run(s, f'save_checkpoint("{path}");')
    r = s.execute(f'optimize(c) with sgd() max 3 {{ load_checkpoint("{path}"); let loss = c * c; minimize loss; }}')
    assert r.status == "error" and r.errors[0].kind is Kind.RUNTIME
    assert "inside an optimize body" in r.errors[0].message and r.errors[0].span is not None


def test_save_errors_are_diagnostics(tmp_path):
    s = noma.Session()
    r = s.execute("save_checkpoint(3);")
    assert r.status == "error" and r.errors[0].kind is Kind.TYPE and "file path string" in r.errors[0].message
    run(s, "learn w = ones([2]);")
    r = s.execute(f'let x = 1;\nsave_checkpoint("{tmp_path}/no/such/dir/ck.safetensors");')
    assert r.status == "error" and r.errors[0].kind is Kind.IO and "cannot write" in r.errors[0].message
    assert (r.errors[0].span.line, r.errors[0].span.column) == (2, 1)
    with pytest.raises(NomaError) as info:
        s.save_checkpoint(f"{tmp_path}/no/such/dir/ck.safetensors")
    assert info.value.diagnostics[0].kind is Kind.IO


# ----------------------------------------------------------------------------- noma emit --stage obj


def _noma(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "noma", *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=300)


def test_emit_obj_writes_an_object_file(tmp_path):
    src = tmp_path / "prog.noma"
    src.write_text(DECLS + PROGRAMS["adam"][0] + 'save_checkpoint("ck.safetensors");\n')
    proc = _noma("emit", "--stage", "obj", str(src), "-o", str(tmp_path / "out.o"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b""  # nothing binary on the terminal
    data = (tmp_path / "out.o").read_bytes()
    if sys.platform.startswith("linux"):
        assert data[:4] == b"\x7fELF"
    assert b"noma___main" in data and b"noma_checkpoint_save" in data
    proc = _noma("emit", "--stage", "obj", "prog.noma", cwd=tmp_path)  # default: FILE's name with .o
    assert proc.returncode == 0 and (tmp_path / "prog.o").read_bytes() == data
    assert b"prog.o" in proc.stderr
    proc = _noma("emit", "--stage", "obj", "prog.noma", "-o", str(tmp_path / "no" / "dir.o"), cwd=tmp_path)
    assert proc.returncode == 1 and b"error[io]" in proc.stderr and b"Traceback" not in proc.stderr
