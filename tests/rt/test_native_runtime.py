"""Tests of the native runtime (noma/rt/native/*.c) through ctypes."""

from __future__ import annotations

import ctypes
import json
import math
import os
import signal
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

try:
    from noma.rt import native_lib as nl
except ImportError:  # running without the project root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from noma.rt import native_lib as nl
from noma.compiler.interp.interp_rng import RuntimeRng, noma_log  # noqa: E402
from noma.display import format_print  # noqa: E402

NAN = float("nan")
KIND_SHAPE, KIND_NAME, KIND_RUNTIME, KIND_IO = 3, 1, 4, 5


# ---------------------------------------------------------------------------
# fixtures and helpers
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lib():
    try:
        return nl.load_runtime("f64")
    except nl.CompilerNotFound as exc:  # pragma: no cover
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def lib32():
    return nl.load_runtime("f32")


@pytest.fixture
def ctx(lib):
    c = lib.noma_ctx_new()
    lib.noma_ctx_activate(c)
    lib.noma_set_capture(c, 1)
    yield c
    lib.noma_ctx_free(c)


@pytest.fixture
def ctx32(lib32):
    c = lib32.noma_ctx_new()
    lib32.noma_ctx_activate(c)
    lib32.noma_set_capture(c, 1)
    yield c
    lib32.noma_ctx_free(c)


def T(arr, dtype="f64"):
    return nl.NomaTensor.from_array(np.asarray(arr, dtype=float), dtype)


def fn_addr(lib, name):
    return ctypes.cast(getattr(lib, name), ctypes.c_void_p).value


def output(lib, c):
    return ctypes.string_at(lib.noma_output_data(c), lib.noma_output_len(c)).decode()


def err(lib, c):
    return lib.noma_error_kind(c), lib.noma_error_message(c).decode()


def param(lib, slot):
    return lib.noma_param(slot).contents.to_numpy()


def state(lib, slot, which):
    t = nl.NomaTensor()
    lib.noma_param_state(slot, which, ctypes.byref(t))
    return t.to_numpy()


def dims_arg(dims):
    return (ctypes.c_int64 * max(1, len(dims)))(*dims)


def resize(lib, slot, dims, policy, a=NAN, b=NAN, span=-1):
    lib.noma_param_resize(slot, len(dims), dims_arg(dims), policy, a, b, span)


def events(lib, c):
    out = []
    for i in range(lib.noma_event_count(c)):
        e = nl.NomaEvent()
        assert lib.noma_event_get(c, i, ctypes.byref(e)) == 1
        out.append(e)
    return out


# ---------------------------------------------------------------------------
# The interpreter's model of the runtime's RNG (noma/compiler/interp/interp_rng.py), checked here against
# the runtime bit for bit
# ---------------------------------------------------------------------------


class PyRng(RuntimeRng):
    def uniform(self):  # type: ignore[override]
        return self.u53()

    def uniform_f32(self):
        return self.u24()

    def normal(self):  # type: ignore[override]
        return self.randn()


# ---------------------------------------------------------------------------
# build / load
# ---------------------------------------------------------------------------


def test_struct_sizes():
    assert ctypes.sizeof(nl.NomaTensor) == 48
    assert ctypes.sizeof(nl.NomaEvent) == 128


def test_sources_and_cached_build(tmp_path, monkeypatch, lib):
    srcs = nl.c_sources()
    assert any(p.name == "noma_rt.c" for p in srcs)
    assert all(p.suffix == ".c" and p.is_file() for p in srcs)
    assert (nl.include_dir() / "noma_rt.h").is_file()
    p1 = nl.runtime_library_path("f64")
    assert p1 == lib.noma_path and p1.is_file()
    assert nl.runtime_library_path("f64") == p1  # cached, same key
    # a fresh cache directory: built atomically, no temporaries left behind
    monkeypatch.setenv("NOMA_CACHE_DIR", str(tmp_path / "cache"))
    p2 = nl.runtime_library_path("f64")
    assert p2.parent == tmp_path / "cache" and p2.is_file()
    assert p2.name == p1.name
    assert [q.name for q in (tmp_path / "cache").iterdir()] == [p2.name]
    assert p1 != nl.load_runtime("f32").noma_path


def test_compiler_not_found(tmp_path, monkeypatch):
    monkeypatch.setenv("NOMA_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", "/nonexistent/bin/no-such-cc")
    with pytest.raises(nl.CompilerNotFound, match="build-essential"):
        nl.runtime_library_path("f64")
    monkeypatch.delenv("CC")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(nl.CompilerNotFound, match="gcc"):
        nl.runtime_library_path("f64")


def test_bad_dtype():
    with pytest.raises(ValueError):
        nl.runtime_library_path("f16")


def test_blas_registered(lib):
    info = nl.blas_info()
    if info is None:
        pytest.skip("numpy has no bundled OpenBLAS here")
    assert info["dgemm"] and info["sgemm"]


# ---------------------------------------------------------------------------
# arena, errors, invoke
# ---------------------------------------------------------------------------


def test_arena_mark_release(lib, ctx):
    assert lib.noma_arena_mark() == 0
    p0 = lib.noma_alloc(10)
    assert p0 and p0 % 64 == 0
    first = np.ctypeslib.as_array(ctypes.cast(p0, ctypes.POINTER(ctypes.c_double)), (10,))
    first[:] = np.arange(10)
    m = lib.noma_arena_mark()
    a = lib.noma_alloc(3)
    b = lib.noma_alloc(5)
    assert a % 64 == 0 and b % 64 == 0 and b >= a + 64
    lib.noma_arena_release(m)
    assert lib.noma_alloc(3) == a  # bump pointer went back
    # many chunks: live data never moves
    ptrs = [lib.noma_alloc(300_000) for _ in range(8)]  # 2.4 MB each > first chunk
    assert all(p and p % 64 == 0 for p in ptrs)
    assert len(set(ptrs)) == 8
    assert np.array_equal(first, np.arange(10))
    m2 = lib.noma_arena_mark()
    assert m2 >= 8 * 300_000 * 8
    lib.noma_arena_release(m)
    assert lib.noma_arena_mark() == m
    lib.noma_arena_release(m2)  # stale mark (beyond the bump pointer): ignored
    assert lib.noma_arena_mark() == m
    again = [lib.noma_alloc(300_000) for _ in range(8)]
    assert lib.noma_arena_reserved(ctx) >= lib.noma_arena_used(ctx)
    assert again[0] and again[-1]
    lib.noma_arena_release(0)
    assert lib.noma_arena_used(ctx) == 0
    assert lib.noma_arena_reserved(ctx) >= 8 * 300_000 * 8  # spare chunks kept for reuse
    lib.noma_arena_trim(ctx)
    assert lib.noma_arena_reserved(ctx) <= 4 << 20
    assert lib.noma_alloc(0) % 64 == 0
    assert lib.noma_error_kind(ctx) == -1


def test_memory_limit_on_the_arena(lib, ctx):
    lib.noma_set_memory_limit(ctx, 4 << 20)
    assert lib.noma_memory_limit(ctx) == 4 << 20
    assert lib.noma_alloc(1000) is not None
    assert lib.noma_alloc(1_000_000) is None  # 8 MB > 4 MiB limit: error, no crash
    kind, msg = err(lib, ctx)
    assert kind == KIND_RUNTIME and "cannot allocate 7.63 MiB for a tensor: over the memory limit of 4 MiB" in msg
    lib.noma_error_clear(ctx)
    assert lib.noma_alloc(-1) is None
    assert err(lib, ctx) == (KIND_RUNTIME, "cannot allocate -1 elements")
    lib.noma_error_clear(ctx)
    assert lib.noma_alloc_at(1_000_000, 7) is None  # located
    assert lib.noma_error_span(ctx) == 7
    # under invoke the failure unwinds
    before = lib.noma_test_reached()
    assert lib.noma_invoke(ctx, fn_addr(lib, "noma_test_alloc_huge")) == 1
    assert lib.noma_test_reached() == before
    kind, msg = err(lib, ctx)
    assert kind == KIND_RUNTIME and msg.startswith("cannot allocate 8 PiB for a tensor: over the memory limit")
    assert lib.noma_alloc(1000)  # still usable
    lib.noma_set_arena_cap(1 << 30)  # the former arena cap is the same limit
    assert lib.noma_memory_limit(ctx) == 1 << 30


def test_memory_limit_covers_parameters_state_globals_and_resizes(lib, ctx):
    """One limit for every allocation, checked before allocating: a parameter, its resize, its
    optimizer state and a global are refused with a located error and leave the state as it was."""
    lib.noma_set_memory_limit(ctx, 64 << 20)
    base = lib.noma_memory_used(ctx)
    lib.noma_param_set_at(0, b"W", ctypes.byref(T(np.ones(1000))), 3)
    assert lib.noma_error_kind(ctx) == -1 and lib.noma_memory_used(ctx) > base
    resize(lib, 0, [3_037_000_500], 1)  # 24 GB: refused before anything is allocated
    kind, msg = err(lib, ctx)
    assert kind == KIND_RUNTIME and "for W: over the memory limit of 64 MiB" in msg, msg
    assert param(lib, 0).shape == (1000,)
    lib.noma_error_clear(ctx)
    big = T(np.zeros(5_000_000))  # 40 MB: fits once, not twice
    lib.noma_param_set_at(1, b"V", ctypes.byref(big), 5)
    assert lib.noma_error_kind(ctx) == -1
    lib.noma_opt_begin_at(1, 2, None, 9)  # Adam: 4 more buffers of V's size and its step counts
    lib.noma_opt_step(1, ctypes.byref(big))
    kind, msg = err(lib, ctx)
    assert kind == KIND_RUNTIME and "for the optimizer state of V" in msg and lib.noma_error_span(ctx) == 9
    lib.noma_error_clear(ctx)
    lib.noma_global_store_at(0, ctypes.byref(big), 11)
    assert err(lib, ctx)[0] == KIND_RUNTIME and lib.noma_error_span(ctx) == 11
    lib.noma_error_clear(ctx)
    lib.noma_param_free(1)  # freeing gives the bytes back
    lib.noma_global_store_at(0, ctypes.byref(big), 11)
    assert lib.noma_error_kind(ctx) == -1


def test_memory_limit_covers_reading_csv(lib, ctx, tmp_path):
    f = tmp_path / "big.csv"
    f.write_text("1,2,3,4\n" * 100_000)  # 800 kB of text, 3.2 MB of values
    lib.noma_set_memory_limit(ctx, 2 << 20)
    used = lib.noma_memory_used(ctx)
    out = load_csv(lib, f)
    kind, msg = err(lib, ctx)
    assert kind == KIND_RUNTIME and str(f) in msg and "over the memory limit of 2 MiB" in msg
    assert not out.data and lib.noma_memory_used(ctx) == used  # everything given back
    lib.noma_error_clear(ctx)
    lib.noma_set_memory_limit(ctx, 64 << 20)
    assert load_csv(lib, f).to_numpy().shape == (100_000, 4)


def test_memory_limit_syntax(lib):
    parse = lib.noma_parse_memory_limit
    assert parse(b"100") == 100 and parse(b"8G") == 8 << 30 and parse(b"512MiB") == 512 << 20
    assert parse(b"4kb") == 4096 and parse(b"1T") == 1 << 40 and parse(None) == -1
    for bad in (b"", b"x", b"-1", b"1.5G", b"8Q", b"99999999999999999999", b"9999999999T"):
        assert parse(bad) == -2, bad


def test_invoke_failure_unwinds(lib, ctx):
    before = lib.noma_test_reached()
    assert lib.noma_invoke(ctx, fn_addr(lib, "noma_test_fail")) == 1
    assert lib.noma_test_reached() == before  # longjmp skipped the rest
    assert lib.noma_error_kind(ctx) == KIND_SHAPE
    assert lib.noma_error_span(ctx) == 42
    assert lib.noma_error_message(ctx) == b"test failure"
    # a successful invoke clears the error record
    assert lib.noma_invoke(ctx, fn_addr(lib, "noma_test_print")) == 0
    assert lib.noma_error_kind(ctx) == -1
    assert output(lib, ctx) == "t = [[1, 2, 3], [4, 5.5, 0]]\n"
    # the same failing function called directly (no jmp_buf armed) returns
    lib.noma_test_fail()
    assert lib.noma_test_reached() == before + 2
    assert err(lib, ctx) == (KIND_SHAPE, "test failure")
    lib.noma_error_clear(ctx)
    assert lib.noma_error_kind(ctx) == -1 and lib.noma_error_span(ctx) == -1


def test_recursion_limit(lib, ctx):
    assert lib.noma_invoke(ctx, fn_addr(lib, "noma_test_deep_recursion")) == 1
    assert err(lib, ctx) == (KIND_RUNTIME, "recursion deeper than 10000 calls")
    # depth was restored: a normal invoke works and enter/leave balance
    assert lib.noma_invoke(ctx, fn_addr(lib, "noma_test_print")) == 0
    for _ in range(100):
        lib.noma_enter(1)
    for _ in range(100):
        lib.noma_leave()
    assert lib.noma_error_kind(ctx) == -1


def test_fail_helpers(lib, ctx):
    a, b = T(np.zeros((2, 3))), T(np.zeros(4))
    lib.noma_fail_shape(5, b"add", ctypes.byref(a), ctypes.byref(b))
    assert err(lib, ctx) == (KIND_SHAPE, "add: shapes [2, 3] and [4] do not match")
    assert lib.noma_error_span(ctx) == 5
    lib.noma_fail_index(6, 5, 3)
    assert err(lib, ctx) == (KIND_RUNTIME, "index 5 is out of range for an axis of size 3")
    lib.noma_fail(KIND_IO, 1, b"custom")
    assert err(lib, ctx) == (KIND_IO, "custom")
    lib.noma_fail(99, 1, None)  # bad kind / message are tolerated
    assert lib.noma_error_kind(ctx) == KIND_RUNTIME


def test_interrupt(lib, ctx):
    seen = []
    old = signal.signal(signal.SIGINT, lambda *a: seen.append(1))
    try:
        lib.noma_sigint_install()
        lib.noma_sigint_install()  # idempotent
        os.kill(os.getpid(), signal.SIGINT)
        assert lib.noma_poll_interrupt() == 1
        assert lib.noma_poll_interrupt() == 1  # polling does not clear
        lib.noma_clear_interrupt()
        assert lib.noma_poll_interrupt() == 0
        # check_interrupt unwinds invoke with status 2
        before = lib.noma_test_reached()
        assert lib.noma_invoke(ctx, fn_addr(lib, "noma_test_interrupt")) == 2
        assert lib.noma_test_reached() == before
        assert lib.noma_poll_interrupt() == 0
        assert lib.noma_error_span(ctx) == 7
        lib.noma_check_interrupt(1)  # no flag: nothing happens
        lib.noma_sigint_restore()
        assert seen == []
        os.kill(os.getpid(), signal.SIGINT)  # Python's handler is back
        for _ in range(100):
            if seen:
                break
        assert seen and lib.noma_poll_interrupt() == 0
    finally:
        lib.noma_sigint_restore()
        signal.signal(signal.SIGINT, old)


def test_exe_main(lib, tmp_path):
    """An executable links the same sources; errors print with the span text."""
    prog = tmp_path / "prog.c"
    prog.write_text(
        '#include "noma_rt.h"\n'
        "static void body(void) {\n"
        '  noma_print_str("hello"); noma_print_sep(); noma_print_scalar(2.5); noma_print_end();\n'
        '  noma_fail(3, 1, "bad shapes");\n'
        "}\n"
        'static const char *spans[] = {"span zero", "  --> prog.noma:3:7"};\n'
        "int main(void) { noma_set_span_texts(2, spans); return noma_exe_main(body); }\n"
    )
    exe = tmp_path / "prog"
    cc = nl.compiler_command()
    srcs = [str(s) for s in nl.c_sources()]
    subprocess.run(
        cc + ["-O0", "-std=c11", "-I", str(nl.include_dir()), str(prog), *srcs, "-o", str(exe), "-lm"],
        check=True,
        capture_output=True,
    )
    r = subprocess.run([str(exe)], capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stdout == "hello 2.5\n"
    assert r.stderr == "error[shape]: bad shapes\n  --> prog.noma:3:7\n"


# ---------------------------------------------------------------------------
# tape, broadcasting
# ---------------------------------------------------------------------------


def test_typed_views(lib, lib32, ctx):
    """noma_param/noma_global return typed descriptors; the last loss reads as a real."""
    lib.noma_param_set(0, b"w", ctypes.byref(T([1.5, 2.5])))
    t = lib.noma_param(0).contents
    assert isinstance(t, nl.NomaTensor) and t.data[1] == 2.5
    assert np.array_equal(np.ctypeslib.as_array(t.data, shape=(2,)), [1.5, 2.5])
    lib.noma_log_loss(0.25)
    assert lib.noma_log_last(ctx) == 0.25
    assert lib.noma_param(99).contents.rank == 0  # undefined: dummy (+ name error)
    assert nl.tensor_class("f32") is nl.NomaTensorF32 and ctypes.sizeof(nl.NomaTensorF32) == 48
    t32 = nl.NomaTensor.from_array([1.0, 2.0], "f32")
    assert isinstance(t32, nl.NomaTensorF32) and t32.data[1] == 2.0
    assert lib32.noma_param.restype._type_ is nl.NomaTensorF32


def test_invoke_with_cfunctype_and_request_interrupt(lib, ctx):
    fn = ctypes.cast(ctypes.c_void_p(fn_addr(lib, "noma_test_fail")), ctypes.CFUNCTYPE(None))
    assert lib.noma_invoke(ctx, fn) == 1 and lib.noma_error_span(ctx) == 42
    lib.noma_request_interrupt()
    assert lib.noma_poll_interrupt() == 1
    lib.noma_check_interrupt(3)  # outside invoke: records, returns, clears
    assert lib.noma_poll_interrupt() == 0 and err(lib, ctx) == (KIND_RUNTIME, "interrupted")


def test_tape(lib, ctx):
    a, b = T([1.0, 2.0]), T(np.ones((2, 3)))
    lib.noma_tape_push_s(1.5)
    lib.noma_tape_push_t(ctypes.byref(a))
    lib.noma_tape_push_t(ctypes.byref(b))
    lib.noma_tape_push_s(-2.0)
    assert lib.noma_tape_len(ctx) == 4
    assert lib.noma_tape_pop_s() == -2.0
    out = nl.NomaTensor()
    lib.noma_tape_pop_t(ctypes.byref(out))
    assert out.shape == (2, 3) and out.address == b.address
    lib.noma_tape_pop_t(ctypes.byref(out))
    assert out.shape == (2,) and out.address == a.address
    lib.noma_tape_pop_t(ctypes.byref(out))  # a scalar is on top: error, zeroed output
    assert lib.noma_error_kind(ctx) == KIND_RUNTIME and out.rank == 0 and not out.data
    assert lib.noma_tape_pop_s() == 1.5
    lib.noma_error_clear(ctx)
    assert lib.noma_tape_pop_s() == 0.0
    assert lib.noma_error_kind(ctx) == KIND_RUNTIME
    for i in range(1000):
        lib.noma_tape_push_s(float(i))
    lib.noma_tape_reset()
    assert lib.noma_tape_len(ctx) == 0


@pytest.mark.parametrize(
    "sa,sb",
    [((2, 3), (3,)), ((4, 1, 3), (5, 1)), ((), (2, 2)), ((1,), (7,)), ((2, 1, 1, 4), (3, 1)), ((), ())],
)
def test_broadcast_dims(lib, ctx, sa, sb):
    a, b = T(np.zeros(sa)), T(np.zeros(sb))
    out = nl.NomaTensor()
    lib.noma_broadcast_dims(-1, b"add", ctypes.byref(a), ctypes.byref(b), ctypes.byref(out))
    assert out.shape == np.broadcast_shapes(sa, sb)
    assert lib.noma_error_kind(ctx) == -1


@pytest.mark.parametrize(
    "sx,so",
    [((3, 1), (3, 4)), ((4,), (2, 3, 4)), ((2, 1, 4), (2, 3, 4)), ((10,), (5, 10)), ((1,), (7,)),
     ((3, 1, 2), (2, 3, 5, 2)), ((2, 3), (2, 3)), ((1, 1), (1, 1))],
)
def test_expand_writes_the_numpy_broadcast(lib, ctx, sx, so):
    x = np.arange(1.0, 1.0 + np.prod(sx)).reshape(sx)
    out = np.full(so, np.nan)
    lib.noma_expand(ctypes.byref(T(out)), ctypes.byref(T(x)))
    assert np.array_equal(out, np.broadcast_to(x, so))
    assert lib.noma_error_kind(ctx) == -1


def test_broadcast_mismatch(lib, ctx):
    a, b = T(np.zeros((2, 3))), T(np.zeros((4,)))
    out = nl.NomaTensor()
    lib.noma_broadcast_dims(9, b"mul", ctypes.byref(a), ctypes.byref(b), ctypes.byref(out))
    assert err(lib, ctx) == (KIND_SHAPE, "mul: shapes [2, 3] and [4] do not match")
    assert lib.noma_error_span(ctx) == 9


# ---------------------------------------------------------------------------
# printing
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "x,text",
    [
        (1.0, "1"),
        (0.1, "0.1"),
        (-2.5, "-2.5"),
        (1e-7, "1e-07"),
        (123456789.0, "123456789"),  # integers up to 2^53 in full
        (123456789.5, "1.23457e+08"),
        (2.0 ** 53, "9007199254740992"),
        (2.0 ** 53 + 2, "9.0072e+15"),
        (-1e15, "-1000000000000000"),
        (1 / 3, "0.333333"),
        (NAN, "nan"),
        (-NAN, "nan"),
        (float("inf"), "inf"),
        (float("-inf"), "-inf"),
        (-0.0, "0"),
        (100000.0, "100000"),
        (1e6, "1000000"),
    ],
)
def test_print_scalar(lib, ctx, x, text):
    lib.noma_print_scalar(x)
    assert output(lib, ctx) == text


def print_tensor(lib, c, arr):
    lib.noma_output_clear(c)
    t = T(arr)
    lib.noma_print_tensor(ctypes.byref(t))
    return output(lib, c)


def test_print_tensors(lib, ctx):
    assert print_tensor(lib, ctx, [[1, 2], [3, 4.5]]) == "[[1, 2], [3, 4.5]]"
    assert print_tensor(lib, ctx, np.arange(12.0)) == "[" + ", ".join(str(i) for i in range(12)) + "]"
    # whole up to 1000 elements (NumPy's threshold), each axis longer than 6 elided beyond it
    assert print_tensor(lib, ctx, np.arange(1000.0)) == "[" + ", ".join(str(i) for i in range(1000)) + "]"
    assert print_tensor(lib, ctx, np.arange(1001.0)) == "[0, 1, 2, ..., 998, 999, 1000]"
    big = np.arange(2002.0).reshape(1001, 2)
    assert print_tensor(lib, ctx, big) == "[[0, 1], [2, 3], [4, 5], ..., [1996, 1997], [1998, 1999], [2000, 2001]]"
    for shape in [(13,), (20, 2), (1001,), (40, 30), (3, 7, 50)]:  # the front ends' rule is the same
        arr = np.arange(float(np.prod(shape))).reshape(shape)
        assert print_tensor(lib, ctx, arr) == format_print(arr)
    assert print_tensor(lib, ctx, np.arange(8.0).reshape(2, 2, 2)) == "[[[0, 1], [2, 3]], [[4, 5], [6, 7]]]"
    assert print_tensor(lib, ctx, np.ones((1, 1, 1, 1))) == "[[[[1]]]]"
    assert print_tensor(lib, ctx, np.array(3.25)) == "3.25"  # rank 0: the scalar
    assert print_tensor(lib, ctx, [NAN, -0.0, np.inf, 1e-10]) == "[nan, 0, inf, 1e-10]"
    assert print_tensor(lib, ctx, np.zeros(0)) == "[]"
    assert print_tensor(lib, ctx, np.zeros((2, 0))) == "[[], []]"


def test_print_line_and_capture(lib, ctx):
    lib.noma_print_str(b"loss")
    lib.noma_print_sep()
    lib.noma_print_scalar(0.5)
    lib.noma_print_end()
    assert output(lib, ctx) == "loss 0.5\n"
    for i in range(2000):  # the capture buffer grows
        lib.noma_print_scalar(float(i))
        lib.noma_print_end()
    text = output(lib, ctx)
    assert text.startswith("loss 0.5\n0\n1\n") and text.endswith("1998\n1999\n")
    assert lib.noma_output_len(ctx) == len(text)
    lib.noma_output_clear(ctx)
    assert lib.noma_output_len(ctx) == 0 and output(lib, ctx) == ""
    lib.noma_warn(-1, b"careful")
    lib.noma_warn(7, b"located")  # a record names its span: the session locates it
    assert output(lib, ctx) == ""
    w = ctypes.string_at(lib.noma_warnings_data(ctx), lib.noma_warnings_len(ctx))
    assert w == b"warning: careful\nwarning[7]: located\n"
    lib.noma_warnings_clear(ctx)
    assert lib.noma_warnings_len(ctx) == 0


# ---------------------------------------------------------------------------
# RNG
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0.0, 1.0, 42.0, -3.0, 2.0**40, 0.5, -1e300])
def test_rng_uniform_matches_python(lib, ctx, seed):
    lib.noma_seed(seed)
    py = PyRng(seed)
    got = [lib.noma_rand() for _ in range(500)]
    assert got == [py.uniform() for _ in range(500)]
    assert all(0.0 <= u < 1.0 for u in got)


@pytest.mark.parametrize("seed", [0.0, 7.0, 123456789.0])
def test_rng_normal_matches_python(lib, ctx, seed):
    lib.noma_seed(seed)
    py = PyRng(seed)
    got = [lib.noma_randn() for _ in range(2001)]
    assert got == [py.normal() for _ in range(2001)]  # bit for bit
    assert abs(np.mean(got)) < 0.1 and abs(np.std(got) - 1) < 0.1
    # mixing uniform and normal draws keeps the same stream
    lib.noma_seed(seed)
    py = PyRng(seed)
    seq = [lib.noma_randn(), lib.noma_rand(), lib.noma_randn(), lib.noma_randn(), lib.noma_rand()]
    assert seq == [py.normal(), py.uniform(), py.normal(), py.normal(), py.uniform()]


def test_noma_log_accuracy():
    """The generator's own logarithm stays within 1 ulp of libm's (which is within 0.52 ulp of ln;
    against a 120-bit reference NOMA's measured 0.81 ulp at most) on the whole range of q."""
    rng = np.random.default_rng(1)
    qs = np.concatenate([rng.random(4000), rng.random(1000) * 1e-3, 1 - rng.random(1000) * 1e-6,
                         2.0 ** rng.uniform(-104, 0, 1000), [1 - 2.0**-53, 0.5, 2.0**-104, 0.75]])
    for q in qs.tolist():
        if q > 0:
            assert abs(noma_log(q) - math.log(q)) <= math.ulp(math.log(q)), q
    assert noma_log(1.0) == 0.0 and noma_log(0.5) == -math.log(2.0)


@pytest.mark.parametrize("start_with_spare", [False, True])
def test_normal_fill_is_randn_calls(lib, ctx, start_with_spare):
    """A fill of n normals (batched; vectorised on AVX-512 hosts) gives bit for bit the values, and
    leaves the generator where, n randn() calls would: across batch sizes, odd counts (the last
    pair's second value becomes the spare) and a spare cached before the fill."""
    for n in [1, 2, 3, 7, 8, 9, 15, 16, 17, 33, 255, 256, 257, 511, 512, 513, 1023, 1024, 1025, 3001]:
        lib.noma_seed(float(n))
        if start_with_spare:
            lib.noma_randn()
        buf = np.zeros(n)
        lib.noma_fill(buf.ctypes.data, n, 2, 0.0, 1.0)
        after = [lib.noma_randn(), lib.noma_rand(), lib.noma_randn()]
        lib.noma_seed(float(n))
        if start_with_spare:
            lib.noma_randn()
        calls = [lib.noma_randn() for _ in range(n)]
        assert buf.tolist() == calls, n
        assert [lib.noma_randn(), lib.noma_rand(), lib.noma_randn()] == after, n
    py = PyRng(5)
    lib.noma_seed(5.0)
    buf = np.zeros(1001)
    lib.noma_fill(buf.ctypes.data, buf.size, 2, 0.0, 1.0)
    assert buf.tolist() == [py.normal() for _ in range(1001)]


def test_rng_default_seed_and_spare_reset(lib, ctx):
    py = PyRng(0)
    assert lib.noma_rand() == py.uniform()  # a new context is seeded with 0
    lib.noma_seed(5.0)
    z1 = lib.noma_randn()  # caches a spare
    lib.noma_seed(5.0)  # re-seeding drops the spare
    assert lib.noma_randn() == z1


def test_fill(lib, ctx):
    buf = np.zeros(101)
    lib.noma_seed(3.0)
    lib.noma_fill(buf.ctypes.data, buf.size, 1, -2.0, 4.0)
    py = PyRng(3)
    np.testing.assert_array_equal(buf, [-2.0 + 6.0 * py.uniform() for _ in range(101)])
    lib.noma_fill(buf.ctypes.data, buf.size, 2, 1.0, 0.5)
    np.testing.assert_array_equal(buf, [1.0 + 0.5 * py.normal() for _ in range(101)])
    lib.noma_fill(buf.ctypes.data, buf.size, 0, 7.0, 0.0)
    assert (buf == 7.0).all()
    lib.noma_fill(buf.ctypes.data, buf.size, 9, 0.0, 0.0)
    assert lib.noma_error_kind(ctx) == KIND_RUNTIME
    lib.noma_fill(None, 0, 1, 0.0, 1.0)  # nothing to do


# ---------------------------------------------------------------------------
# globals
# ---------------------------------------------------------------------------


def test_globals(lib, ctx):
    assert lib.noma_global_defined(3) == 0
    lib.noma_global_store_s(3, 2.5)
    assert lib.noma_global_defined(3) == 1 and lib.noma_global_load_s(3) == 2.5
    g = lib.noma_global(3).contents
    assert g.rank == 0 and g.to_numpy() == 2.5
    x = np.arange(6.0).reshape(2, 3)
    t = T(x)
    lib.noma_global_store(3, ctypes.byref(t))
    g = lib.noma_global(3).contents
    assert g.shape == (2, 3) and np.array_equal(g.to_numpy(), x)
    assert g.address != t.address  # copied into the slot's own buffer
    x[0, 0] = 99
    assert lib.noma_global(3).contents.to_numpy()[0, 0] == 0
    # growth, then reuse of the larger buffer
    lib.noma_global_store(3, ctypes.byref(T(np.arange(100.0))))
    buf = lib.noma_global(3).contents.address
    lib.noma_global_store(3, ctypes.byref(T([5.0, 6.0])))
    assert lib.noma_global(3).contents.address == buf
    assert np.array_equal(lib.noma_global(3).contents.to_numpy(), [5.0, 6.0])
    assert lib.noma_global_load_s(3) == 5.0
    assert lib.noma_global_defined(1000) == 0


def test_global_self_assignment(lib, ctx):
    lib.noma_global_store(0, ctypes.byref(T(np.arange(10.0))))
    desc = lib.noma_global(0)
    lib.noma_global_store(0, desc)  # v is the slot's own descriptor
    assert np.array_equal(lib.noma_global(0).contents.to_numpy(), np.arange(10.0))
    # a view into the slot's own buffer (x = x[2:6]) overlaps the destination
    g = lib.noma_global(0).contents
    view = nl.NomaTensor()
    view.data = ctypes.cast(g.address + 2 * 8, ctypes.POINTER(ctypes.c_double))
    view.rank = 1
    view.dims[0] = 4
    lib.noma_global_store(0, ctypes.byref(view))
    assert np.array_equal(lib.noma_global(0).contents.to_numpy(), [2.0, 3.0, 4.0, 5.0])
    # self assignment that must grow: reshape-like store bigger than capacity
    lib.noma_global_store(1, ctypes.byref(T([1.0])))
    small = lib.noma_global(1).contents
    lib.noma_global_store(1, ctypes.byref(small))
    assert lib.noma_global(1).contents.to_numpy() == 1.0


def test_global_bad_slot(lib, ctx):
    t = lib.noma_global(-1)
    assert t and lib.noma_error_kind(ctx) == KIND_RUNTIME
    lib.noma_error_clear(ctx)
    lib.noma_global_store(-5, ctypes.byref(T([1.0])))
    assert lib.noma_error_kind(ctx) == KIND_RUNTIME
    lib.noma_error_clear(ctx)
    lib.noma_global_store(0, None)
    assert lib.noma_error_kind(ctx) == KIND_RUNTIME


# ---------------------------------------------------------------------------
# parameters: definition, errors, events
# ---------------------------------------------------------------------------


def test_param_lifecycle(lib, ctx):
    w = np.arange(6.0).reshape(2, 3)
    lib.noma_param_set(2, b"W", ctypes.byref(T(w)))
    assert lib.noma_param_defined(2) == 1 and lib.noma_param_name(2) == b"W"
    assert np.array_equal(param(lib, 2), w)
    lib.noma_param_set(4, b"s", ctypes.byref(T(np.array(1.5))))
    assert lib.noma_param(4).contents.rank == 0 and param(lib, 4) == 1.5
    assert lib.noma_param_slot_count(ctx) == 5
    lib.noma_param_free(2)
    assert lib.noma_param_defined(2) == 0
    d = lib.noma_param(2)  # freed: name error, a harmless dummy comes back
    assert d and err(lib, ctx) == (KIND_NAME, "parameter 'W' was freed")
    lib.noma_error_clear(ctx)
    lib.noma_param(77)
    assert err(lib, ctx) == (KIND_NAME, "undefined parameter (slot 77)")
    lib.noma_param(-1)
    assert lib.noma_error_kind(ctx) == KIND_RUNTIME
    ev = events(lib, ctx)
    assert ev[-1].kind == 2 and ev[-1].id == 2 and ev[-1].old_shape == (2, 3) and ev[-1].new_shape is None
    # re-definition after free, and self re-initialisation
    lib.noma_param_set(2, b"W", ctypes.byref(T([1.0, 2.0])))
    lib.noma_param_set(2, None, lib.noma_param(2))
    assert np.array_equal(param(lib, 2), [1.0, 2.0]) and lib.noma_param_name(2) == b"W"


def test_log_and_events(lib, ctx):
    for v in [3.0, 2.0, 1.5]:
        lib.noma_log_loss(v)
    assert lib.noma_global_step() == 3 and lib.noma_log_len(ctx) == 3
    data = (ctypes.c_double * 3)()
    assert lib.noma_log_copy(ctx, data, 3) == 3 and list(data) == [3.0, 2.0, 1.5]
    lib.noma_param_set(0, b"w", ctypes.byref(T(np.ones(3))))
    resize(lib, 0, [5], 1)
    lib.noma_opt_begin(0, 1, None)
    lib.noma_opt_begin(0, 2, None)
    lib.noma_opt_reset_all()
    lib.noma_param_free(0)
    ev = events(lib, ctx)
    assert [e.kind_name for e in ev] == ["param_resize", "opt_change", "opt_reset", "param_free"]
    assert all(e.step == 3 for e in ev)
    assert ev[0].old_shape == (3,) and ev[0].new_shape == (5,) and ev[0].policy == 1 and ev[0].aux == -1
    assert ev[1].policy == 2 and ev[1].aux == 1
    assert ev[2].id == -1
    e = nl.NomaEvent()
    assert lib.noma_event_get(ctx, 99, ctypes.byref(e)) == 0
    lib.noma_log_clear(ctx)
    assert lib.noma_log_len(ctx) == 0 and lib.noma_global_step() == 3


# ---------------------------------------------------------------------------
# single-parameter resize
# ---------------------------------------------------------------------------


def kept(old, new_shape):
    """Expected array: old values at their index, zeros elsewhere; plus the new-entry mask."""
    out = np.zeros(new_shape)
    sl = tuple(slice(0, min(a, b)) for a, b in zip(old.shape, new_shape))
    out[sl] = old[sl]
    mask = np.ones(new_shape, bool)
    mask[tuple(slice(0, a) for a in old.shape)] = False
    return out, mask


def test_resize_hand_computed(lib, ctx):
    lib.noma_param_set(0, b"v", ctypes.byref(T([1.0, 2.0, 3.0])))
    resize(lib, 0, [5], 1)
    assert param(lib, 0).tolist() == [1, 2, 3, 0, 0]
    resize(lib, 0, [2], 1)
    assert param(lib, 0).tolist() == [1, 2]
    lib.noma_param_set(1, b"W", ctypes.byref(T([[1.0, 2.0], [3.0, 4.0]])))
    resize(lib, 1, [3, 3], 1)
    assert param(lib, 1).tolist() == [[1, 2, 0], [3, 4, 0], [0, 0, 0]]
    resize(lib, 1, [2, 1], 1)
    assert param(lib, 1).tolist() == [[1], [3]]
    resize(lib, 1, [1, 3], 1)
    assert param(lib, 1).tolist() == [[1, 0, 0]]
    lib.noma_param_set(2, b"K", ctypes.byref(T(np.arange(8.0).reshape(2, 2, 2))))
    resize(lib, 2, [2, 3, 1], 1)
    assert param(lib, 2).tolist() == [[[0], [2], [0]], [[4], [6], [0]]]
    resize(lib, 2, [1, 1, 3], 1)
    assert param(lib, 2).tolist() == [[[0, 0, 0]]]


@pytest.mark.parametrize(
    "old_shape,new_shape",
    [
        ((4,), (7,)),
        ((4,), (2,)),
        ((3, 4), (5, 4)),
        ((3, 4), (3, 6)),
        ((3, 4), (2, 4)),
        ((3, 4), (3, 1)),
        ((3, 4), (5, 2)),
        ((2, 3, 4), (4, 3, 4)),
        ((2, 3, 4), (2, 5, 4)),
        ((2, 3, 4), (2, 3, 6)),
        ((2, 3, 4), (1, 2, 3)),
        ((2, 3, 4), (3, 1, 5)),
        ((2, 2, 2, 2), (3, 2, 1, 3)),
    ],
)
def test_resize_keeps_indices_zeros(lib, ctx, old_shape, new_shape):
    old = np.random.default_rng(1).normal(size=old_shape)
    lib.noma_param_set(0, b"p", ctypes.byref(T(old)))
    resize(lib, 0, list(new_shape), 1)
    exp, _ = kept(old, new_shape)
    got = param(lib, 0)
    assert got.shape == new_shape and np.array_equal(got, exp)


@pytest.mark.parametrize("policy", [0, 2, 3, 4, 5])
@pytest.mark.parametrize("old_shape,new_shape", [((3, 4), (5, 6)), ((2, 3, 2), (3, 3, 3)), ((1,), (4,))])
def test_resize_random_policies_match_python(lib, ctx, policy, old_shape, new_shape):
    old = np.random.default_rng(2).normal(size=old_shape) * 0.3
    lib.noma_param_set(0, b"p", ctypes.byref(T(old)))
    lib.noma_seed(11.0)
    a, b = 0.5, 2.0
    resize(lib, 0, list(new_shape), policy, a, b)
    got = param(lib, 0)
    exp, mask = kept(old, new_shape)
    py = PyRng(11)
    fan_in, fan_out = new_shape[0], new_shape[-1]
    n_new = int(mask.sum())
    if policy == 0:
        s = old.std() if old.size >= 2 else 0.1
        vals = [s * py.normal() for _ in range(n_new)]
    elif policy == 2:
        vals = [a + b * py.normal() for _ in range(n_new)]
    elif policy == 3:
        vals = [a + (b - a) * py.uniform() for _ in range(n_new)]
    elif policy == 4:
        lim = math.sqrt(6.0 / (fan_in + fan_out))
        vals = [-lim + 2 * lim * py.uniform() for _ in range(n_new)]
        assert np.all(np.abs(got[mask]) <= lim)
    else:
        vals = [math.sqrt(2.0 / fan_in) * py.normal() for _ in range(n_new)]
    exp[mask] = vals  # row-major order of the new shape
    np.testing.assert_allclose(got, exp, rtol=1e-14, atol=0)
    assert np.array_equal(got[~mask], exp[~mask])


def test_resize_default_std_fallback(lib, ctx):
    lib.noma_param_set(0, b"c", ctypes.byref(T(np.full((2, 2), 3.0))))  # std 0 -> 0.1
    lib.noma_seed(4.0)
    resize(lib, 0, [2, 3], 0)
    py = PyRng(4)
    np.testing.assert_allclose(param(lib, 0)[:, 2], [0.1 * py.normal(), 0.1 * py.normal()], rtol=1e-14)


def test_resize_copy_and_preserve_single(lib, ctx):
    old = np.arange(6.0).reshape(2, 3) + 1
    lib.noma_param_set(0, b"W", ctypes.byref(T(old)))
    lib.noma_seed(9.0)
    resize(lib, 0, [4, 5], 6)
    py = PyRng(9)
    g0 = list(range(2)) + [int(py.uniform() * 2) for _ in range(2)]
    g1 = list(range(3)) + [int(py.uniform() * 3) for _ in range(2)]
    assert np.array_equal(param(lib, 0), old[np.ix_(g0, g1)])
    # preserve: new only along the last axis -> normal(0, std); others 0
    lib.noma_param_set(1, b"V", ctypes.byref(T(old)))
    lib.noma_seed(1.0)
    resize(lib, 1, [3, 5], 7)
    py = PyRng(1)
    s = old.std()
    exp = np.zeros((3, 5))
    exp[:2, :3] = old
    exp[0, 3:] = [s * py.normal(), s * py.normal()]
    exp[1, 3:] = [s * py.normal(), s * py.normal()]
    np.testing.assert_allclose(param(lib, 1), exp, rtol=1e-14)
    lib.noma_param_set(2, b"b", ctypes.byref(T([1.0, 2.0])))
    resize(lib, 2, [4], 7)
    assert param(lib, 2).tolist() == [1, 2, 0, 0]


@pytest.mark.parametrize("kind", [1, 2, 3, 4])
def test_resize_to_and_from_zero_keeps_optimizer_state_consistent(lib, ctx, kind):
    """A trained parameter shrunk to an empty axis and grown back: every state buffer follows
    (new entries at step 0, moments 0, powers read 1) and training continues as from fresh."""
    lib.noma_param_set(0, b"W", ctypes.byref(T(np.ones((2, 3)))))
    hyper = np.full(16, np.nan)
    hyper[5] = 0.9  # momentum (SGD, RMSprop)
    lib.noma_opt_begin(0, kind, hyper.ctypes.data)
    lib.noma_opt_step(0, ctypes.byref(T(np.ones((2, 3)))))
    assert state(lib, 0, 2).tolist() == [[1, 1, 1]] * 2  # one step each
    resize(lib, 0, [2, 0], 1)
    assert lib.noma_error_kind(ctx) == -1 and param(lib, 0).shape == (2, 0)
    for which in range(5):
        assert state(lib, 0, which).shape == (2, 0)
    lib.noma_opt_step(0, ctypes.byref(T(np.ones((2, 0)))))  # a step of nothing is fine
    assert lib.noma_error_kind(ctx) == -1
    resize(lib, 0, [3, 2], 1)
    assert param(lib, 0).tolist() == [[0, 0]] * 3
    assert state(lib, 0, 2).tolist() == [[0, 0]] * 3  # every entry new: step 0
    assert not state(lib, 0, 0).any() and not state(lib, 0, 1).any()
    assert state(lib, 0, 3).tolist() == [[1, 1]] * 3 and state(lib, 0, 4).tolist() == [[1, 1]] * 3
    # the next step is a first step: the same as a fresh parameter's
    lib.noma_param_set(1, b"F", ctypes.byref(T(np.zeros((3, 2)))))
    lib.noma_opt_begin(1, kind, hyper.ctypes.data)
    g = T(np.full((3, 2), 0.5))
    lib.noma_opt_step(0, ctypes.byref(g))
    lib.noma_opt_step(1, ctypes.byref(g))
    assert param(lib, 0).tolist() == param(lib, 1).tolist()
    assert state(lib, 0, 2).tolist() == [[1, 1]] * 3


def test_resize_errors(lib, ctx):
    lib.noma_param_set(0, b"W", ctypes.byref(T(np.ones((2, 3)))))
    resize(lib, 0, [2, 3, 1], 1)
    assert err(lib, ctx) == (KIND_SHAPE, "cannot resize W from rank 2 to rank 3")
    lib.noma_error_clear(ctx)
    resize(lib, 0, [2, 0], 1)  # a zero-size axis is a valid shape (NumPy's semantics)
    assert lib.noma_error_kind(ctx) == -1 and param(lib, 0).shape == (2, 0)
    resize(lib, 0, [2, 3], 1)
    assert param(lib, 0).shape == (2, 3) and not param(lib, 0).any()
    resize(lib, 0, [2, -4], 1)
    assert lib.noma_error_kind(ctx) == KIND_SHAPE
    resize(lib, 0, [1 << 40, 1 << 40], 1)
    assert lib.noma_error_kind(ctx) == KIND_SHAPE
    lib.noma_error_clear(ctx)
    resize(lib, 0, [3, 3], 42)
    assert lib.noma_error_kind(ctx) == KIND_RUNTIME
    lib.noma_param_resize(0, 2, None, 1, NAN, NAN, -1)
    assert lib.noma_error_kind(ctx) == KIND_SHAPE
    resize(lib, 9, [3], 1)
    assert lib.noma_error_kind(ctx) == KIND_NAME
    lib.noma_param_bind_dim(0, 1, 0)
    resize(lib, 0, [2, 4], 1)
    assert "sized by a dim" in err(lib, ctx)[1]
    resize(lib, 0, [5, 3], 1)  # the unbound axis may change
    assert param(lib, 0).shape == (5, 3)
    lib.noma_param_bind_dim(0, 2, 0)
    assert lib.noma_error_kind(ctx) == KIND_SHAPE
    lib.noma_param_bind_dim(0, 0, 0)  # dim 0 is 3, axis 0 is 5
    assert "to a dim of size 3" in err(lib, ctx)[1]
    assert param(lib, 0).shape == (5, 3)


# ---------------------------------------------------------------------------
# dim resize: function-preserving growth of an MLP
# ---------------------------------------------------------------------------

H = 0  # dim id


def setup_mlp(lib, hidden=5, seed=0):
    rng = np.random.default_rng(seed)
    W1, b1 = rng.normal(size=(4, hidden)), rng.normal(size=hidden)
    W2, b2 = rng.normal(size=(hidden, 3)), rng.normal(size=3)
    for slot, name, v in [(0, b"W1", W1), (1, b"b1", b1), (2, b"W2", W2), (3, b"b2", b2)]:
        lib.noma_param_set(slot, name, ctypes.byref(T(v)))
    lib.noma_dim_set(H, hidden)
    lib.noma_param_bind_dim(0, 1, H)
    lib.noma_param_bind_dim(1, 0, H)
    lib.noma_param_bind_dim(2, 0, H)
    return rng.normal(size=(7, 4))


def mlp(lib, x):
    W1, b1, W2, b2 = (param(lib, s) for s in range(4))
    return np.tanh(x @ W1 + b1) @ W2 + b2


def test_dim_resize_preserve_keeps_function(lib, ctx):
    x = setup_mlp(lib)
    W1o, W2o = param(lib, 0), param(lib, 2)
    y0 = mlp(lib, x)
    lib.noma_dim_resize(H, 9, 0, NAN, NAN, 3)  # default = preserve
    assert lib.noma_error_kind(ctx) == -1
    assert lib.noma_dim_get(H) == 9
    W1, b1, W2 = param(lib, 0), param(lib, 1), param(lib, 2)
    assert W1.shape == (4, 9) and b1.shape == (9,) and W2.shape == (9, 3)
    assert np.array_equal(W1[:, :5], W1o) and np.all(W1[:, 5:] != 0)  # incoming: normal
    assert np.all(b1[5:] == 0) and np.all(W2[5:] == 0)  # bias, outgoing: 0
    assert np.abs(mlp(lib, x) - y0).max() <= 1e-12
    # shrink drops trailing units
    lib.noma_dim_resize(H, 3, 0, NAN, NAN, 3)
    assert np.array_equal(param(lib, 0), W1o[:, :3]) and np.array_equal(param(lib, 2), W2o[:3])
    ev = events(lib, ctx)
    kinds = [(e.kind, e.id) for e in ev]
    assert kinds == [(1, H), (0, 0), (0, 1), (0, 2), (1, H), (0, 0), (0, 1), (0, 2)]
    assert ev[0].old_shape == (5,) and ev[0].new_shape == (9,) and ev[0].policy == 7
    assert ev[1].old_shape == (4, 5) and ev[1].new_shape == (4, 9) and ev[1].aux == H


def test_dim_resize_preserve_draws(lib, ctx):
    setup_mlp(lib)
    W1o = param(lib, 0)
    lib.noma_seed(21.0)
    lib.noma_dim_resize(H, 7, 7, NAN, NAN, -1)
    py = PyRng(21)
    s = W1o.std()
    exp = np.array([[s * py.normal() for _ in range(2)] for _ in range(4)])
    np.testing.assert_allclose(param(lib, 0)[:, 5:], exp, rtol=1e-14)


def test_dim_resize_copy_net2net(lib, ctx):
    x = setup_mlp(lib, hidden=4, seed=3)
    W1o, b1o, W2o = param(lib, 0), param(lib, 1), param(lib, 2)
    y0 = mlp(lib, x)
    lib.noma_seed(5.0)
    lib.noma_dim_resize(H, 10, 6, NAN, NAN, -1)
    py = PyRng(5)
    g = list(range(4)) + [int(py.uniform() * 4) for _ in range(6)]
    counts = np.bincount(g, minlength=4)
    W1, b1, W2 = param(lib, 0), param(lib, 1), param(lib, 2)
    assert np.array_equal(W1, W1o[:, g])  # incoming columns copied exactly (no noise)
    assert np.array_equal(b1, b1o[g])
    np.testing.assert_array_equal(W2, W2o[g] / counts[g][:, None])
    assert np.abs(mlp(lib, x) - y0).max() <= 1e-12


def test_dim_resize_copy_recurrent(lib, ctx):
    """A square H x H matrix bound on both axes keeps an RNN step's function."""
    rng = np.random.default_rng(8)
    Wx, Wh, b, Wo = rng.normal(size=(3, 4)), rng.normal(size=(4, 4)), rng.normal(size=4), rng.normal(size=(4, 2))
    for slot, v in enumerate([Wx, Wh, b, Wo]):
        lib.noma_param_set(slot, b"p%d" % slot, ctypes.byref(T(v)))
    lib.noma_dim_set(1, 4)
    for slot, axis in [(0, 1), (1, 0), (1, 1), (2, 0), (3, 0)]:
        lib.noma_param_bind_dim(slot, axis, 1)
    x, h0 = rng.normal(size=(5, 3)), rng.normal(size=(5, 4))
    y0 = np.tanh(x @ Wx + h0 @ Wh + b) @ Wo
    lib.noma_seed(2.0)
    lib.noma_dim_resize(1, 7, 6, NAN, NAN, -1)
    py = PyRng(2)
    g = list(range(4)) + [int(py.uniform() * 4) for _ in range(3)]
    Wx2, Wh2, b2, Wo2 = (param(lib, s) for s in range(4))
    assert Wh2.shape == (7, 7)
    y1 = np.tanh(x @ Wx2 + h0[:, g] @ Wh2 + b2) @ Wo2
    assert np.abs(y1 - y0).max() <= 1e-12


def test_dim_resize_copy_noise_and_other_policies(lib, ctx):
    setup_mlp(lib, hidden=3)
    W1o = param(lib, 0)
    lib.noma_dim_resize(H, 5, 6, NAN, 1e-3, -1)  # b > 0: noise on new incoming weights
    W1 = param(lib, 0)
    assert np.array_equal(W1[:, :3], W1o)  # old units untouched (values in test_dim_resize_noise_values)
    lib.noma_dim_resize(H, 6, 1, NAN, NAN, -1)  # zeros everywhere new
    assert np.all(param(lib, 0)[:, 5] == 0) and param(lib, 1)[5] == 0 and np.all(param(lib, 2)[5] == 0)
    lib.noma_dim_resize(H, 7, 3, -1.0, 1.0, -1)  # uniform(-1, 1) everywhere new
    assert np.all(param(lib, 2)[6] != 0) and np.all(np.abs(param(lib, 2)[6]) < 1)
    assert param(lib, 3).shape == (3,)  # b2 is not bound
    lib.noma_dim_resize(H, 7, 0, NAN, NAN, -1)  # same size: no-op, no event
    n_ev = lib.noma_event_count(ctx)
    lib.noma_dim_resize(H, -1, 0, NAN, NAN, -1)
    assert lib.noma_error_kind(ctx) == KIND_SHAPE and lib.noma_event_count(ctx) == n_ev
    lib.noma_error_clear(ctx)
    lib.noma_dim_resize(50, 4, 0, NAN, NAN, -1)  # undeclared dim: just declared
    assert lib.noma_dim_get(50) == 4 and lib.noma_dim_get(51) == -1


def test_dim_resize_noise_values(lib, ctx):
    setup_mlp(lib, hidden=3)
    W1o = param(lib, 0)
    lib.noma_seed(6.0)
    lib.noma_dim_resize(H, 5, 6, NAN, 1e-3, -1)
    py = PyRng(6)
    g = [0, 1, 2] + [int(py.uniform() * 3) for _ in range(2)]
    exp = W1o[:, g].copy()
    for i in range(4):
        for j in (3, 4):
            exp[i, j] += 1e-3 * py.normal()
    np.testing.assert_allclose(param(lib, 0), exp, rtol=1e-14)


def test_dim_set_unbinds_mismatched(lib, ctx):
    setup_mlp(lib, hidden=5)
    assert lib.noma_param_bound_dim(0, 1) == H
    lib.noma_dim_set(H, 8)  # re-declaration (program re-run): stale bindings dropped
    assert lib.noma_param_bound_dim(0, 1) == -1
    lib.noma_dim_set(H, -1)
    assert lib.noma_error_kind(ctx) == KIND_SHAPE


def test_deferred_resizes(lib, ctx):
    setup_mlp(lib, hidden=5)
    lib.noma_defer_begin()
    lib.noma_dim_resize(H, 6, 1, NAN, NAN, -1)
    resize(lib, 3, [4], 1)
    assert param(lib, 0).shape == (4, 5) and param(lib, 3).shape == (3,)
    lib.noma_defer_apply()
    assert param(lib, 0).shape == (4, 6) and param(lib, 3).shape == (4,)
    resize(lib, 3, [2], 1)
    assert param(lib, 3).shape == (4,)
    lib.noma_defer_end()  # applies what is still queued, leaves deferred mode
    assert param(lib, 3).shape == (2,)
    resize(lib, 3, [3], 1)
    assert param(lib, 3).shape == (3,)


# ---------------------------------------------------------------------------
# optimizers vs NumPy (with a resize in the middle)
# ---------------------------------------------------------------------------


class NpOpt:
    """Reference re-implementation with per-entry step counts and powers."""

    def __init__(self, kind, hyper, shape):
        self.kind = kind
        adam = kind in (2, 4)
        d = dict(
            lr=0.001 if adam else 0.01,
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            wd=0.01 if kind == 4 else 0.0,
            mu=0.0,
            alpha=0.99,
            damp=0.0,
            nest=0.0,
        )
        keys = ["lr", "b1", "b2", "eps", "wd", "mu", "alpha", "damp", "nest"]
        for k, v in zip(keys, hyper):
            if not math.isnan(v):
                d[k] = v
        self.h = d
        self.m, self.v = np.zeros(shape), np.zeros(shape)
        self.t = np.zeros(shape, np.int64)
        self.p1, self.p2 = np.ones(shape), np.ones(shape)

    def step(self, p, g):
        h = self.h
        if self.kind == 1:
            g = g + h["wd"] * p
            if h["mu"] != 0:
                self.m = np.where(self.t == 0, g, h["mu"] * self.m + (1 - h["damp"]) * g)
                g = g + h["mu"] * self.m if h["nest"] else self.m
            p = p - h["lr"] * g
        elif self.kind in (2, 4):
            if self.kind == 4:
                p = p * (1 - h["lr"] * h["wd"])
            else:
                g = g + h["wd"] * p
            self.m = h["b1"] * self.m + (1 - h["b1"]) * g
            self.v = h["b2"] * self.v + (1 - h["b2"]) * g * g
            self.p1 = self.p1 * h["b1"]
            self.p2 = self.p2 * h["b2"]
            denom = np.sqrt(self.v) / np.sqrt(1 - self.p2) + h["eps"]
            p = p - (h["lr"] / (1 - self.p1)) * (self.m / denom)
        else:
            g = g + h["wd"] * p
            self.v = h["alpha"] * self.v + (1 - h["alpha"]) * g * g
            avg = np.sqrt(self.v) + h["eps"]
            if h["mu"] != 0:
                self.m = h["mu"] * self.m + g / avg
                p = p - h["lr"] * self.m
            else:
                p = p - h["lr"] * (g / avg)
        self.t += 1
        return p

    def resize(self, new_shape):
        def rm(a, fill):
            out = np.full(new_shape, fill, dtype=a.dtype)
            sl = tuple(slice(0, min(x, y)) for x, y in zip(a.shape, new_shape))
            out[sl] = a[sl]
            return out

        self.m, self.v, self.t = rm(self.m, 0.0), rm(self.v, 0.0), rm(self.t, 0)
        self.p1, self.p2 = rm(self.p1, 1.0), rm(self.p2, 1.0)


OPT_CASES = [
    (1, [NAN] * 9),
    (1, [0.05, NAN, NAN, NAN, 0.01, 0.9, NAN, 0.1, 0.0]),
    (1, [0.05, NAN, NAN, NAN, 0.0, 0.8, NAN, 0.0, 1.0]),
    (2, [NAN] * 9),
    (2, [0.01, 0.8, 0.99, 1e-6, 0.05, NAN, NAN, NAN, NAN]),
    (4, [NAN] * 9),
    (4, [0.01, 0.85, 0.95, NAN, 0.1, NAN, NAN, NAN, NAN]),
    (3, [NAN] * 9),
    (3, [0.005, NAN, NAN, 1e-6, 0.01, 0.9, 0.9, NAN, NAN]),
]


@pytest.mark.parametrize("kind,hyper", OPT_CASES)
def test_optimizer_matches_numpy(lib, ctx, kind, hyper):
    rng = np.random.default_rng(kind * 7 + len([h for h in hyper if not math.isnan(h)]))
    p = rng.normal(size=(3, 4))
    lib.noma_param_set(0, b"W", ctypes.byref(T(p)))
    hyp = np.array(hyper + [0.0] * (16 - len(hyper)))
    ref = NpOpt(kind, hyper, p.shape)
    for step in range(100):
        if step == 50:  # grow in the middle; optimizer state is remapped
            resize(lib, 0, [4, 6], 1)
            exp, _ = kept(p, (4, 6))
            p = exp
            ref.resize((4, 6))
        lib.noma_opt_begin(0, kind, hyp.ctypes.data)
        g = rng.normal(size=p.shape)
        lib.noma_opt_step(0, ctypes.byref(T(g)))
        p = ref.step(p, g)
    np.testing.assert_allclose(param(lib, 0), p, rtol=1e-12, atol=1e-14)
    steps = state(lib, 0, 2)
    assert steps[:3, :4].min() == 100 and steps[3].max() == 50 and steps[:, 4:].max() == 50
    np.testing.assert_array_equal(steps, ref.t)
    if kind in (2, 4):
        np.testing.assert_allclose(state(lib, 0, 0), ref.m, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(state(lib, 0, 1), ref.v, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(state(lib, 0, 3), ref.p1, rtol=1e-12)
        np.testing.assert_allclose(state(lib, 0, 4), ref.p2, rtol=1e-12)
    elif kind == 3:
        np.testing.assert_allclose(state(lib, 0, 1), ref.v, rtol=1e-12, atol=1e-15)


def test_optimizer_state_roundtrip_and_errors(lib, ctx):
    lib.noma_param_set(0, b"W", ctypes.byref(T(np.ones(4))))
    lib.noma_opt_step(0, ctypes.byref(T(np.ones(4))))  # before opt_begin
    assert lib.noma_error_kind(ctx) == KIND_RUNTIME
    lib.noma_error_clear(ctx)
    lib.noma_opt_begin(0, 9, None)
    assert lib.noma_error_kind(ctx) == KIND_RUNTIME
    lib.noma_error_clear(ctx)
    lib.noma_opt_begin(0, 2, None)
    lib.noma_opt_step(0, ctypes.byref(T(np.ones(5))))
    kind, msg = err(lib, ctx)
    assert kind == KIND_SHAPE and "[5] and [4]" in msg
    lib.noma_error_clear(ctx)
    assert state(lib, 0, 3).tolist() == [1, 1, 1, 1]  # not allocated yet: initial values
    lib.noma_opt_step(0, ctypes.byref(T([1.0, 2.0, 3.0, 4.0])))
    m = state(lib, 0, 0)
    lib.noma_param_state_set(0, 0, ctypes.byref(T(m * 2)))
    lib.noma_param_state_set(0, 2, ctypes.byref(T([5.0, 5.0, 5.0, 5.0])))
    assert np.array_equal(state(lib, 0, 0), m * 2) and state(lib, 0, 2).tolist() == [5] * 4
    lib.noma_param_state_set(0, 0, ctypes.byref(T(np.ones(3))))
    assert lib.noma_error_kind(ctx) == KIND_SHAPE
    lib.noma_param_state(0, 7, ctypes.byref(nl.NomaTensor()))
    assert lib.noma_error_kind(ctx) == KIND_RUNTIME
    assert lib.noma_param_opt_kind(0) == 2
    lib.noma_opt_begin(0, 1, None)  # different kind: fresh state
    assert state(lib, 0, 2).tolist() == [0] * 4 and lib.noma_param_opt_kind(0) == 1
    lib.noma_opt_reset_all()
    assert lib.noma_param_opt_kind(0) == 0


# ---------------------------------------------------------------------------
# matmul
# ---------------------------------------------------------------------------


def run_matmul(lib, a, b, ta, tb, dt=np.float64):
    A = np.ascontiguousarray(a.T if ta else a, dtype=dt)
    B = np.ascontiguousarray(b.T if tb else b, dtype=dt)
    m, k = a.shape
    n = b.shape[1]
    C = np.full((m, n), np.nan, dtype=dt)
    lib.noma_matmul(A.ctypes.data, B.ctypes.data, C.ctypes.data, m, k, n, ta, tb)
    return C


@pytest.mark.parametrize("ta", [0, 1])
@pytest.mark.parametrize("tb", [0, 1])
@pytest.mark.parametrize("mkn", [(3, 5, 4), (1, 1, 1), (7, 1, 9), (5, 3, 1), (6, 0, 3), (9, 13, 17), (33, 300, 5)])
def test_matmul_small(lib, ctx, ta, tb, mkn):
    m, k, n = mkn
    rng = np.random.default_rng(m * 100 + k * 10 + n)
    a, b = rng.normal(size=(m, k)), rng.normal(size=(k, n))
    np.testing.assert_allclose(run_matmul(lib, a, b, ta, tb), a @ b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("ta", [0, 1])
@pytest.mark.parametrize("tb", [0, 1])
def test_matmul_large_blas_and_loop(lib, ctx, ta, tb):
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(67, 130)), rng.normal(size=(130, 601))
    ref = a @ b
    np.testing.assert_allclose(run_matmul(lib, a, b, ta, tb), ref, rtol=1e-10, atol=1e-10)
    info = nl.blas_info()
    lib.noma_set_gemm(None)  # the blocked loop on the same sizes
    try:
        np.testing.assert_allclose(run_matmul(lib, a, b, ta, tb), ref, rtol=1e-10, atol=1e-10)
    finally:
        if info:
            lib.noma_set_gemm(info["dgemm"])


def test_matmul_bad_sizes(lib, ctx):
    lib.noma_matmul(None, None, None, -1, 2, 2, 0, 0)
    assert lib.noma_error_kind(ctx) == KIND_RUNTIME
    lib.noma_error_clear(ctx)
    lib.noma_matmul(None, None, None, 0, 2, 2, 0, 0)  # empty: nothing
    assert lib.noma_error_kind(ctx) == -1


# ---------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------


def load_csv(lib, path):
    out = nl.NomaTensor()
    lib.noma_load_csv(str(path).encode(), ctypes.byref(out), 3)
    return out


def test_csv_load(lib, ctx, tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("# comment\n\nx, y ,z\n1, 2,3\r\n 4.5 ,-6e2, nan  # trailing comment\n\n7,8,9\n")
    out = load_csv(lib, f)
    assert lib.noma_error_kind(ctx) == -1
    got = out.to_numpy()
    assert got.shape == (3, 3)
    np.testing.assert_array_equal(got[[0, 2]], [[1, 2, 3], [7, 8, 9]])
    assert got[1, 0] == 4.5 and got[1, 1] == -600 and np.isnan(got[1, 2])
    f.write_text("1,2\n3,4\n")
    assert load_csv(lib, f).to_numpy().tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize(
    "data,expected",
    [
        (b"\xef\xbb\xbf1,2,3\n4,5,6\n", [[1, 2, 3], [4, 5, 6]]),  # a BOM is skipped, not a header
        (b"\xef\xbb\xbfa,b\n1,2\n", [[1, 2]]),
        (b"a,,b\n1,2,3\n", [[1, 2, 3]]),  # text in one field makes a header
        (b"1,2\r\n3,4\r\n", [[1, 2], [3, 4]]),
    ],
)
def test_csv_header_rule(lib, ctx, tmp_path, data, expected):
    f = tmp_path / "h.csv"
    f.write_bytes(data)
    assert load_csv(lib, f).to_numpy().tolist() == expected


@pytest.mark.parametrize(
    "text,needle",
    [
        ("1,2,3\n4,5\n", "line 2 has 2 values, expected 3"),
        ("a,b\n1,2\n# c\n3,4,5\n", "line 4 has 3 values, expected 2"),
        ("1,2\nx,3\n", "line 2, column 1: cannot read 'x' as a number"),
        ("1,2,3\n4,,6\n", "line 2, column 2 is empty"),
        ("1,,3\n4,5,6\n", "line 1, column 2 is empty"),  # an empty field does not make a header
        ("\ufeff1,,3\n", "line 1, column 2 is empty"),
        ("a,b\n1,2,\n", "line 2, column 3 is empty"),
        ("a,,b\n1,x,\n", "line 2, column 2: cannot read 'x' as a number"),
        (",,\n", "line 1, column 1 is empty"),
        ("h1,h2\n", "no numeric rows"),
        ("", "no numeric rows"),
    ],
)
def test_csv_errors(lib, ctx, tmp_path, text, needle):
    f = tmp_path / "bad.csv"
    f.write_text(text)
    out = load_csv(lib, f)
    kind, msg = err(lib, ctx)
    assert kind == KIND_IO and needle in msg and str(f) in msg
    assert lib.noma_error_span(ctx) == 3 and not out.data


def test_csv_missing_file_and_save(lib, ctx, tmp_path):
    load_csv(lib, tmp_path / "nope.csv")
    kind, msg = err(lib, ctx)
    assert kind == KIND_IO and "nope.csv" in msg
    lib.noma_error_clear(ctx)
    x = np.random.default_rng(0).normal(size=(5, 3))
    x[0, 0], x[1, 1], x[2, 2] = np.nan, np.inf, -np.inf
    f = tmp_path / "out.csv"
    lib.noma_save_csv(str(f).encode(), ctypes.byref(T(x)), -1)
    back = load_csv(lib, f).to_numpy()
    np.testing.assert_array_equal(back, x)  # %.17g round-trips exactly
    lib.noma_save_csv(str(f).encode(), ctypes.byref(T([1.5, 2.5])), -1)
    assert f.read_text() == "1.5\n2.5\n"
    lib.noma_save_csv(str(f).encode(), ctypes.byref(T(np.zeros((2, 2, 2)))), -1)
    assert lib.noma_error_kind(ctx) == KIND_SHAPE
    lib.noma_error_clear(ctx)
    lib.noma_save_csv(str(tmp_path / "no" / "dir.csv").encode(), ctypes.byref(T([1.0])), -1)
    assert lib.noma_error_kind(ctx) == KIND_IO


# ---------------------------------------------------------------------------
# safetensors
# ---------------------------------------------------------------------------


def st_save(lib, path, tensors: dict, dtype="f64"):
    names = list(tensors)
    ts = [nl.NomaTensor.from_array(np.asarray(tensors[k], dtype=float), dtype) for k in names]
    name_arr = (ctypes.c_char_p * len(names))(*[n.encode() for n in names])
    ptr_arr = (ctypes.POINTER(nl.tensor_class(dtype)) * len(names))(*[ctypes.pointer(t) for t in ts])
    lib.noma_st_save(str(path).encode(), len(names), name_arr, ptr_arr, -1)


def st_load(lib, path, name, rank=-1):
    out = nl.NomaTensor()
    lib.noma_st_load(str(path).encode(), name.encode(), rank, ctypes.byref(out), 4)
    return out


def test_safetensors_noma_to_python(lib, ctx, tmp_path):
    sn = pytest.importorskip("safetensors.numpy")
    rng = np.random.default_rng(0)
    data = {
        "zeta": rng.normal(size=(3, 4)),
        "alpha": rng.normal(size=(5,)),
        "scalar": np.array(2.5),
        "four": rng.normal(size=(2, 1, 3, 2)),
        'we"ird\\name': np.arange(3.0),
    }
    f = tmp_path / "m.safetensors"
    st_save(lib, f, data)
    assert lib.noma_error_kind(ctx) == -1
    raw = f.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    assert n % 8 == 0
    header = json.loads(raw[8 : 8 + n])
    assert list(header) == list(data)  # the order given (save_safetensors: the statement's, as the original)
    assert header["alpha"] == {"dtype": "F64", "shape": [5], "data_offsets": [96, 136]}
    back = sn.load_file(str(f))
    assert set(back) == set(data)
    for k, v in data.items():
        assert back[k].dtype == np.float64 and np.array_equal(back[k], v)
    assert not (tmp_path / "m.safetensors.tmp").exists()


def test_safetensors_python_to_noma(lib, ctx, tmp_path):
    sn = pytest.importorskip("safetensors.numpy")
    rng = np.random.default_rng(1)
    data = {
        "f64": rng.normal(size=(2, 3)),
        "f32": rng.normal(size=(4,)).astype(np.float32),
        "f16": rng.normal(size=(3, 2)).astype(np.float16),
        "i64": np.arange(-3, 3, dtype=np.int64).reshape(2, 3),
        "i32": np.array([7, -8], dtype=np.int32),
        "u8": np.array([0, 255], dtype=np.uint8),
        "b": np.array([True, False]),
        "s": np.array(1.25),
        "empty": np.zeros((0, 3)),
    }
    f = tmp_path / "py.safetensors"
    sn.save_file(data, str(f), metadata={"format": "np", "note": 'quote " and \\u00e9'})
    for k, v in data.items():
        out = st_load(lib, f, k)
        assert lib.noma_error_kind(ctx) == -1, (k, err(lib, ctx))
        got = out.to_numpy()
        assert got.shape == v.shape and np.array_equal(got, v.astype(np.float64)), k
    # expected rank checked
    st_load(lib, f, "f64", rank=1)
    assert err(lib, ctx)[0] == KIND_SHAPE and "has rank 2, expected 1" in err(lib, ctx)[1]
    st_load(lib, f, "missing")
    assert err(lib, ctx) == (KIND_IO, f"{f}: no tensor named 'missing'")
    # round trip through noma again
    g = tmp_path / "again.safetensors"
    st_save(lib, g, {"x": st_load(lib, f, "f64").to_numpy()})
    assert np.array_equal(sn.load_file(str(g))["x"], data["f64"])


def test_safetensors_bf16(lib, ctx, tmp_path):
    vals = np.array([1.0, -2.5, 3.140625], dtype=np.float32)
    bits = (vals.view(np.uint32) >> 16).astype(np.uint16)
    hdr = json.dumps({"w": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]}}).encode()
    f = tmp_path / "bf.safetensors"
    f.write_bytes(struct.pack("<Q", len(hdr)) + hdr + bits.tobytes())
    assert st_load(lib, f, "w").to_numpy().tolist() == [1.0, -2.5, 3.140625]


def write_st(path, header, data=b"", n_override=None):
    hdr = header if isinstance(header, bytes) else json.dumps(header).encode()
    n = len(hdr) if n_override is None else n_override
    path.write_bytes(struct.pack("<Q", n) + hdr + data)


HOSTILE = [
    (
        "huge_header",
        {"w": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}},
        b"\0" * 8,
        200_000_000,
        "larger than 100 MB",
    ),
    (
        "header_past_eof",
        {"w": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}},
        b"\0" * 8,
        90_000_000,
        "does not fit in the file",
    ),
    (
        "offsets_beyond",
        {"w": {"dtype": "F64", "shape": [4], "data_offsets": [0, 32]}},
        b"\0" * 16,
        None,
        "outside the data region",
    ),
    (
        "offsets_vs_shape",
        {"w": {"dtype": "F64", "shape": [3], "data_offsets": [0, 16]}},
        b"\0" * 16,
        None,
        "do not match shape [3]",
    ),
    (
        "reversed_offsets",
        {"w": {"dtype": "F64", "shape": [0], "data_offsets": [8, 0]}},
        b"\0" * 16,
        None,
        "outside the data region",
    ),
    (
        "unknown_dtype",
        {"w": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 8]}},
        b"\0" * 8,
        None,
        "unknown dtype 'Q7'",
    ),
    ("rank5", {"w": {"dtype": "F64", "shape": [1, 1, 1, 1, 1], "data_offsets": [0, 8]}}, b"\0" * 8, None, "rank 5"),
    (
        "negative_shape",
        {"w": {"dtype": "F64", "shape": [-1], "data_offsets": [0, 8]}},
        b"\0" * 8,
        None,
        "non-negative integer",
    ),
    (
        "huge_shape",
        {"w": {"dtype": "F64", "shape": [2**40, 2**40], "data_offsets": [0, 8]}},
        b"\0" * 8,
        None,
        "do not match shape",
    ),
    (
        "huge_int",
        {"w": {"dtype": "F64", "shape": [10**30], "data_offsets": [0, 8]}},
        b"\0" * 8,
        None,
        "integer too large",
    ),
    (
        "float_shape",
        {"w": {"dtype": "F64", "shape": [1.5], "data_offsets": [0, 8]}},
        b"\0" * 8,
        None,
        "expected an integer",
    ),
    ("truncated_json", b'{"w": {"dtype": "F64", "sha', b"", None, "invalid safetensors header"),
    ("not_object", b"[1, 2, 3]", b"", None, "invalid safetensors header"),
    ("missing_offsets", {"w": {"dtype": "F64", "shape": [1]}}, b"\0" * 8, None, "needs dtype, shape and"),
    ("bad_escape", b'{"w\\q": {}}', b"", None, "invalid escape"),
    ("trailing", b"{}  x", b"", None, "trailing characters"),
    # the layout rules of the reference implementation (the Rust safetensors crate)
    (
        "overlapping_offsets",
        {"w": {"dtype": "F64", "shape": [2], "data_offsets": [0, 16]},
         "v": {"dtype": "F64", "shape": [1], "data_offsets": [8, 16]}},
        b"\0" * 16,
        None,
        "overlap the previous tensor's data",
    ),
    (
        "gap_in_offsets",
        {"w": {"dtype": "F64", "shape": [1], "data_offsets": [8, 16]}},
        b"\0" * 16,
        None,
        "leave a gap after",
    ),
    (
        "data_after_last_tensor",
        {"w": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}},
        b"\0" * 24,
        None,
        "ends at byte 8 of a data region of 24 bytes",
    ),
    (
        "duplicate_name",
        b'{"w": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]},'
        b' "w": {"dtype": "F64", "shape": [1], "data_offsets": [8, 16]}}',
        b"\0" * 16,
        None,
        "tensor 'w' appears twice",
    ),
    (
        "duplicate_metadata",
        b'{"__metadata__": {}, "__metadata__": {}, "w": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}}',
        b"\0" * 8,
        None,
        "__metadata__ appears twice",
    ),
    (
        "f8_unsupported",
        {"w": {"dtype": "F8_E4M3", "shape": [1], "data_offsets": [0, 1]}},
        b"\0",
        None,
        "unsupported dtype",
    ),
]


@pytest.mark.parametrize("case", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_safetensors_hostile(lib, ctx, tmp_path, case):
    name, header, data, n_override, needle = case
    f = tmp_path / f"{name}.safetensors"
    write_st(f, header, data, n_override)
    used = lib.noma_arena_used(ctx)
    out = st_load(lib, f, "w")
    kind, msg = err(lib, ctx)
    assert kind == KIND_IO, msg
    assert msg.startswith(str(f)) and needle in msg, msg
    assert lib.noma_error_span(ctx) == 4
    assert not out.data and lib.noma_arena_used(ctx) == used  # nothing allocated


def test_safetensors_header_is_read_once_per_file_version(lib, ctx, tmp_path):
    """Loading the tensors of one file one by one reuses its parsed header; a file replaced
    since (another inode, size or modification time) is read again."""
    f = tmp_path / "m.safetensors"
    st_save(lib, f, {f"t{i}": [float(i)] for i in range(2000)})
    for i in (0, 1999, 7):
        assert st_load(lib, f, f"t{i}").to_numpy().tolist() == [float(i)]
    st_save(lib, f, {"t7": [70.0, 71.0]})  # written to f.tmp and renamed: a new file
    assert st_load(lib, f, "t7").to_numpy().tolist() == [70.0, 71.0]
    st_load(lib, f, "t0")
    assert "no tensor named 't0'" in err(lib, ctx)[1]
    lib.noma_error_clear(ctx)
    f.unlink()
    st_load(lib, f, "t7")
    assert err(lib, ctx)[0] == KIND_IO


def test_safetensors_short_file_and_save_errors(lib, ctx, tmp_path):
    f = tmp_path / "short.safetensors"
    f.write_bytes(b"\x01\x02")
    st_load(lib, f, "w")
    assert err(lib, ctx)[0] == KIND_IO and "too short" in err(lib, ctx)[1]
    lib.noma_error_clear(ctx)
    st_save(lib, tmp_path / "dup.safetensors", {"a": [1.0]})
    names = (ctypes.c_char_p * 2)(b"a", b"a")
    t = T([1.0])
    ptrs = (ctypes.POINTER(nl.NomaTensor) * 2)(ctypes.pointer(t), ctypes.pointer(t))
    lib.noma_st_save(str(tmp_path / "dup.safetensors").encode(), 2, names, ptrs, -1)
    assert "given twice" in err(lib, ctx)[1]
    lib.noma_error_clear(ctx)
    st_save(lib, tmp_path / "no" / "dir" / "x.safetensors", {"a": [1.0]})
    assert lib.noma_error_kind(ctx) == KIND_IO


# ---------------------------------------------------------------------------
# f32 build
# ---------------------------------------------------------------------------


def test_f32_runtime(lib32, ctx32, tmp_path):
    lib = lib32
    assert lib.noma_real_size() == 4
    lib.noma_seed(3.0)
    py = PyRng(3)
    assert [lib.noma_rand() for _ in range(50)] == [np.float32(py.uniform_f32()) for _ in range(50)]
    lib.noma_seed(3.0)
    py = PyRng(3)
    assert [lib.noma_randn() for _ in range(9)] == [np.float32(py.normal()) for _ in range(9)]
    buf = np.zeros(301, dtype=np.float32)  # the batched fill: the same draws, rounded to f32
    lib.noma_fill(buf.ctypes.data, buf.size, 2, 0.0, 1.0)
    assert buf.tolist() == [np.float32(py.normal()) for _ in range(301)]
    # params / optimizer in float32
    p = np.arange(4, dtype=np.float32)
    lib.noma_param_set(0, b"w", ctypes.byref(nl.NomaTensor.from_array(p, "f32")))
    lib.noma_opt_begin(0, 2, None)
    g = np.ones(4, dtype=np.float32)
    lib.noma_opt_step(0, ctypes.byref(nl.NomaTensor.from_array(g, "f32")))
    got = lib.noma_param(0).contents.to_numpy("f32")
    np.testing.assert_allclose(got, p - 0.001, rtol=1e-6)
    lib.noma_param_resize(0, 1, dims_arg([6]), 1, 0.0, 0.0, -1)
    assert lib.noma_param(0).contents.to_numpy("f32").shape == (6,)
    # printing
    t = nl.NomaTensor.from_array(np.array([0.1, 2.0], dtype=np.float32), "f32")
    lib.noma_print_tensor(ctypes.byref(t))
    assert output(lib, ctx32) == "[0.1, 2]"
    # matmul through sgemm and the loop
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(40, 50)), rng.normal(size=(50, 30))
    for ta in (0, 1):
        for tb in (0, 1):
            np.testing.assert_allclose(run_matmul(lib, a, b, ta, tb, np.float32), a @ b, rtol=1e-4, atol=1e-4)
    # safetensors F32 out, F64 in
    sn = pytest.importorskip("safetensors.numpy")
    f = tmp_path / "f32.safetensors"
    st_save(lib, f, {"x": np.arange(3.0)}, dtype="f32")
    back = sn.load_file(str(f))["x"]
    assert back.dtype == np.float32 and back.tolist() == [0, 1, 2]
    sn.save_file({"y": np.array([0.5, 1e-3])}, str(f))
    out = nl.NomaTensor()
    lib.noma_st_load(str(f).encode(), b"y", 1, ctypes.byref(out), -1)
    np.testing.assert_allclose(out.to_numpy("f32"), [0.5, 1e-3], rtol=1e-7)
    # both runtimes loaded at once stay independent (-Bsymbolic)
    assert lib.noma_error_kind(ctx32) == -1
