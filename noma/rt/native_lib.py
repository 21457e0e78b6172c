"""Build, cache and load the NOMA native runtime (``noma/rt/native/*.c``).

The runtime is plain C11. On first use it is compiled with the system C compiler
(``$CC``, else ``cc`` / ``gcc`` / ``clang``) into a shared library kept in a cache
directory (``$NOMA_CACHE_DIR`` or ``~/.cache/noma``), named by a hash of the
sources, the flags, the dtype and the machine. Builds are atomic (compile to a
temporary file in the cache directory, then rename), so concurrent processes do
not clash. The library is loaded with ``ctypes.CDLL(path, mode=RTLD_GLOBAL)`` so
JIT-compiled code can resolve the ``noma_*`` symbols; it is linked with
``-Wl,-Bsymbolic`` so an f64 and an f32 runtime loaded into one process each
call their own functions.

When NumPy ships its OpenBLAS (``numpy.libs/libscipy_openblas64_-*.so``), its
cblas dgemm (sgemm for f32) is registered with ``noma_set_gemm`` and OpenBLAS is
set to ``$NOMA_THREADS`` threads (default 1). ``NOMA_NO_BLAS=1`` disables this.

Only the standard library and numpy are imported here.
"""

from __future__ import annotations

import ctypes
import glob
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from noma.rt.native_types import (  # noqa: F401  (re-exported: the runtime's types live there)
    EVENT_KINDS,
    NomaEvent,
    NomaTensor,
    NomaTensorF32,
    _norm_dtype,
    numpy_dtype,
    real_ctype,
    tensor_class,
)

__all__ = [
    "CompilerNotFound",
    "RuntimeBuildError",
    "NomaTensor",
    "NomaTensorF32",
    "tensor_class",
    "NomaEvent",
    "c_sources",
    "header_files",
    "include_dir",
    "build_flags",
    "compiler_command",
    "cache_dir",
    "runtime_library_path",
    "load_runtime",
    "blas_info",
    "real_ctype",
    "numpy_dtype",
    "ERROR_KINDS",
    "POLICIES",
    "OPTIMIZERS",
    "EVENT_KINDS",
]

NATIVE_DIR = Path(__file__).resolve().parent / "native"

# Bump when the build recipe changes in a way the hash would not see.
_RECIPE_VERSION = "1"

_OPT_FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fno-semantic-interposition"]
_SHARED_FLAGS = ["-std=c11", "-fPIC", "-shared"]
_LINK_FLAGS = ["-Wl,-Bsymbolic", "-lm"]

ERROR_KINDS = {0: "syntax", 1: "name", 2: "type", 3: "shape", 4: "runtime", 5: "io"}
POLICIES = {
    "default": 0,
    "zeros": 1,
    "normal": 2,
    "uniform": 3,
    "xavier": 4,
    "he": 5,
    "copy": 6,
    "preserve": 7,
}
OPTIMIZERS = {"sgd": 1, "adam": 2, "rmsprop": 3, "adamw": 4}


class CompilerNotFound(Exception):
    """No C compiler is available to build the native runtime."""


class RuntimeBuildError(Exception):
    """The C compiler failed on the runtime sources."""

# ---------------------------------------------------------------------------
# Sources, compiler, cache
# ---------------------------------------------------------------------------


def c_sources() -> list[Path]:
    """The runtime's C files (all are compiled together)."""
    return sorted(NATIVE_DIR.glob("*.c"))


def header_files() -> list[Path]:
    return sorted(NATIVE_DIR.glob("*.h"))


def include_dir() -> Path:
    """Directory holding noma_rt.h (pass as -I when linking executables)."""
    return NATIVE_DIR


def build_flags(dtype: str = "f64") -> list[str]:
    """Compiler flags of the shared library (without sources, -o, link flags)."""
    flags = list(_OPT_FLAGS) + list(_SHARED_FLAGS)
    if _norm_dtype(dtype) == "f32":
        flags.append("-DNOMA_F32")
    return flags


def compiler_command() -> list[str]:
    """The C compiler as an argv prefix: ``$CC`` (may hold arguments) or cc/gcc/clang."""
    env = os.environ.get("CC", "").strip()
    if env:
        argv = shlex.split(env)
        if argv and shutil.which(argv[0]):
            return argv
        raise CompilerNotFound(
            f"the C compiler named by $CC ({env!r}) was not found. NOMA builds its native "
            "runtime with a C compiler: fix $CC, or install one (Debian/Ubuntu: "
            "`apt-get install build-essential`, or just `gcc`)."
        )
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return [path]
    raise CompilerNotFound(
        "no C compiler found (looked for cc, gcc and clang). NOMA builds its native runtime "
        "with the system C compiler: install one (Debian/Ubuntu: `apt-get install "
        "build-essential`, or just `gcc`) or set $CC."
    )


def cache_dir() -> Path:
    env = os.environ.get("NOMA_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "noma"


def _cpu_fingerprint() -> str:
    """-march=native code is CPU specific: key the cache by the CPU's features."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith(("flags", "Features", "isa")):
                    return line.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _build_key(dtype: str) -> str:
    h = hashlib.sha256()
    parts = [
        _RECIPE_VERSION,
        dtype,
        " ".join(build_flags(dtype)),
        " ".join(_LINK_FLAGS),
        os.environ.get("CC", ""),
        sys.platform,
        platform.machine(),
        _cpu_fingerprint(),
    ]
    for p in parts:
        h.update(p.encode("utf-8", "replace"))
        h.update(b"\0")
    for src in c_sources() + header_files():
        h.update(src.name.encode())
        h.update(b"\0")
        h.update(src.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def _compile(out: Path, dtype: str) -> None:
    cc = compiler_command()
    sources = [str(s) for s in c_sources()]
    if not sources:
        raise RuntimeBuildError(f"no C sources found in {NATIVE_DIR} (is the package complete?)")
    flags = build_flags(dtype)
    attempts = [flags]
    if "-march=native" in flags:  # some compilers / targets reject it
        attempts.append([f for f in flags if f != "-march=native"])
    errors = ""
    for fl in attempts:
        cmd = cc + fl + ["-I", str(NATIVE_DIR)] + sources + ["-o", str(out)] + _LINK_FLAGS
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True)
        except FileNotFoundError as exc:
            raise CompilerNotFound(
                f"cannot run the C compiler {cc[0]!r} ({exc}). Install one (Debian/Ubuntu: "
                "`apt-get install build-essential`, or just `gcc`) or set $CC."
            ) from None
        if proc.returncode == 0:
            return
        errors = f"$ {' '.join(cmd)}\n{proc.stderr}{proc.stdout}"
    raise RuntimeBuildError("building the NOMA native runtime failed:\n" + errors)


_BUILD_LOCK = threading.Lock()


def runtime_library_path(dtype: str = "f64") -> Path:
    """Path of the runtime shared library for dtype, building it when not cached."""
    dtype = _norm_dtype(dtype)
    key = _build_key(dtype)
    suffix = ".dylib" if sys.platform == "darwin" else ".so"
    d = cache_dir()
    path = d / f"libnoma_rt_{dtype}_{key[:20]}{suffix}"
    if path.is_file():
        return path
    with _BUILD_LOCK:
        if path.is_file():
            return path
        d.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=d, prefix=".build-", suffix=suffix)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            _compile(tmp, dtype)
            os.chmod(tmp, 0o755)
            os.replace(tmp, path)  # atomic: readers see the old name or the full file
        finally:
            if tmp.exists():
                tmp.unlink()
    return path


# ---------------------------------------------------------------------------
# ctypes declarations
# ---------------------------------------------------------------------------

_R = "real"  # c_double / c_float
_RP = "real*"  # POINTER(c_double) / POINTER(c_float)
_TR = "tensor*"  # POINTER(NomaTensor) / POINTER(NomaTensorF32), as a return type
_P = ctypes.c_void_p
_T = ctypes.c_void_p  # tensor arguments: byref()/pointer() of either tensor class
_I32 = ctypes.c_int32
_I64 = ctypes.c_int64
_S = ctypes.c_char_p

# name: (restype, [argtypes]); "real", "real*" and "tensor*" depend on the dtype.
_SIGNATURES: dict[str, tuple] = {
    # context, invoke, errors
    "noma_ctx_new": (_P, []),
    "noma_ctx_free": (None, [_P]),
    "noma_ctx_activate": (None, [_P]),
    "noma_ctx_current": (_P, []),
    "noma_invoke": (_I32, [_P, _P]),
    "noma_invoke_cell": (_I32, [_P, _P]),
    "noma_fail": (None, [_I32, _I64, _S]),
    "noma_fail_shape": (None, [_I64, _S, _T, _T]),
    "noma_fail_index": (None, [_I64, _I64, _I64]),
    "noma_fail_check": (None, [_S, _R, _I64]),
    "noma_check_int_cast": (None, [_T, _I32, _I64]),
    "noma_error_kind": (_I32, [_P]),
    "noma_error_span": (_I64, [_P]),
    "noma_error_message": (_S, [_P]),
    "noma_error_clear": (None, [_P]),
    "noma_enter": (None, [_I64]),
    "noma_leave": (None, []),
    "noma_set_span_texts": (None, [_I64, ctypes.POINTER(ctypes.c_char_p)]),
    "noma_exe_main": (_I32, [_P]),
    # arena and tape
    "noma_alloc": (_P, [_I64]),
    "noma_alloc_at": (_P, [_I64, _I64]),
    "noma_set_memory_limit": (None, [_P, _I64]),
    "noma_memory_limit": (_I64, [_P]),
    "noma_memory_used": (_I64, [_P]),
    "noma_parse_memory_limit": (_I64, [_S]),
    "noma_arena_mark": (_I64, []),
    "noma_arena_bump": (_P, []),
    "noma_arena_release": (None, [_I64]),
    "noma_set_arena_cap": (None, [_I64]),
    "noma_arena_used": (_I64, [_P]),
    "noma_arena_reserved": (_I64, [_P]),
    "noma_arena_trim": (None, [_P]),
    "noma_tape_push_s": (None, [_R]),
    "noma_tape_pop_s": (_R, []),
    "noma_tape_push_t": (None, [_T]),
    "noma_tape_pop_t": (None, [_T]),
    "noma_tape_reset": (None, []),
    "noma_tape_len": (_I64, [_P]),
    # broadcasting
    "noma_broadcast_dims": (None, [_I64, _S, _T, _T, _T]),
    "noma_expand": (None, [_T, _T]),
    # printing
    "noma_print_str": (None, [_S]),
    "noma_print_scalar": (None, [_R]),
    "noma_print_tensor": (None, [_T]),
    "noma_print_sep": (None, []),
    "noma_print_end": (None, []),
    "noma_set_capture": (None, [_P, _I32]),
    "noma_output_len": (_I64, [_P]),
    "noma_output_data": (_P, [_P]),
    "noma_output_clear": (None, [_P]),
    "noma_warn": (None, [_S]),
    "noma_warn_once": (None, [_I64, _S]),
    "noma_warnings_len": (_I64, [_P]),
    "noma_warnings_data": (_P, [_P]),
    "noma_warnings_clear": (None, [_P]),
    "noma_set_live": (None, [_P, _I32]),
    "noma_live_take": (_I64, [_P, _P]),
    "noma_live_free": (None, [_P]),
    # rng
    "noma_seed": (None, [_R]),
    "noma_rand": (_R, []),
    "noma_randn": (_R, []),
    "noma_fill": (None, [_P, _I64, _I32, _R, _R]),
    # globals
    "noma_global": (_TR, [_I64]),
    "noma_global_store": (None, [_I64, _T]),
    "noma_global_store_at": (None, [_I64, _T, _I64]),
    "noma_global_load_s": (_R, [_I64]),
    "noma_global_store_s": (None, [_I64, _R]),
    "noma_global_defined": (_I32, [_I64]),
    "noma_global_forget": (None, [_I64]),
    # params, dims, optimizers
    "noma_param_set": (None, [_I64, _S, _T]),
    "noma_param_set_at": (None, [_I64, _S, _T, _I64]),
    "noma_param": (_TR, [_I64]),
    "noma_param_free": (None, [_I64]),
    "noma_param_defined": (_I32, [_I64]),
    "noma_param_name": (_S, [_I64]),
    "noma_param_slot_count": (_I64, [_P]),
    "noma_param_bind_dim": (None, [_I64, _I32, _I64]),
    "noma_param_bound_dim": (_I64, [_I64, _I32]),
    "noma_param_resize": (None, [_I64, _I64, _P, _I32, _R, _R, _I64]),
    "noma_dim_resize": (None, [_I64, _I64, _I32, _R, _R, _I64]),
    "noma_dim_get": (_I64, [_I64]),
    "noma_dim_set": (None, [_I64, _I64]),
    "noma_defer_begin": (None, []),
    "noma_defer_apply": (None, []),
    "noma_probe_wanted": (_I32, []),
    "noma_probe_begin": (None, [_I32]),
    "noma_probe_value": (None, [_I32, _I64, _T]),
    "noma_probe_end": (None, [_I32]),
    "noma_probe_replay": (None, [_P]),
    "noma_probe_finish": (None, []),
    "noma_probe_replay_get": (_P, [_P]),
    "noma_probe_replay_put": (None, [_P, _P]),
    "noma_probe_enable": (None, [_P, _I32]),
    "noma_defer_end": (None, []),
    "noma_opt_begin": (None, [_I64, _I32, _P]),
    "noma_opt_begin_at": (None, [_I64, _I32, _P, _I64]),
    "noma_opt_step": (None, [_I64, _T]),
    "noma_opt_steps": (None, [_I64, _P, _P]),
    "noma_opt_reset_all": (None, []),
    "noma_param_opt_kind": (_I32, [_I64]),
    "noma_param_state": (None, [_I64, _I32, _T]),
    "noma_param_state_set": (None, [_I64, _I32, _T]),
    # log, events, interrupt
    "noma_log_loss": (None, [_R]),
    "noma_global_step": (_I64, []),
    "noma_log_len": (_I64, [_P]),
    "noma_log_copy": (_I64, [_P, _P, _I64]),
    "noma_log_last": (_R, [_P]),
    "noma_history_reset": (None, [_P, _I64]),
    "noma_history_get": (_I32, [_P, _P, _P, _P, _P, _P, _P, _I64]),
    "noma_history_set": (_I32, [_P, _I64, _I64, _P, _P, _P, _P, _I64, _P]),
    "noma_history_set_window": (_I32, [_P, _I64]),
    "noma_history_window": (_I64, [_P]),
    "noma_history_bytes": (_I64, [_P]),
    "noma_history_limit": (_I64, [_I32]),
    "noma_rng_state_get": (None, [_P, ctypes.POINTER(ctypes.c_uint64)]),
    "noma_rng_state_set": (None, [_P, ctypes.POINTER(ctypes.c_uint64)]),
    "noma_log_clear": (None, [_P]),
    "noma_event_count": (_I64, [_P]),
    "noma_event_get": (_I32, [_P, _I64, ctypes.POINTER(NomaEvent)]),
    "noma_poll_interrupt": (_I32, []),
    "noma_clear_interrupt": (None, []),
    "noma_set_stop_at": (None, [_P, _I64]),
    "noma_report": (None, [ctypes.c_char_p, _R, _I64]),
    "noma_metric_count": (_I32, [_P]),
    "noma_metric_get": (_I64, [_P, _I32, _P, _P, _P, _P, _I64]),
    "noma_metric_set": (_I32, [_P, ctypes.c_char_p, _P, _I64, _P, _P]),
    "noma_metrics_clear": (None, [_P]),
    "noma_metric_limit": (_I64, [_I32]),
    "noma_request_interrupt": (None, []),
    # live controls (noma_rt_controls.c)
    "noma_ctl_resize_dim": (_I32, [_I64, _I64, _I32, _I32, _R, _R]),
    "noma_ctl_set_lr": (_I32, [ctypes.c_double]),
    "noma_ctl_pause": (None, [_I32]),
    "noma_ctl_paused": (_I32, []),
    "noma_ctl_stop": (None, []),
    "noma_ctl_take_stop": (_I32, []),
    "noma_ctl_applied": (_I64, []),
    "noma_ctl_in_loop": (_I32, []),
    "noma_ctl_clear": (None, []),
    "noma_ctl_apply_now": (_I32, [_P]),
    "noma_check_interrupt": (None, [_I64]),
    "noma_check_interrupt_loop": (None, [_I64]),
    "noma_opt_result_begin": (None, [_I64]),
    "noma_opt_result_set": (None, [_R]),
    "noma_opt_result_end": (None, []),
    "noma_stop_interrupted": (None, []),
    "noma_sigint_install": (None, []),
    "noma_sigint_restore": (None, []),
    # linear algebra
    "noma_set_gemm": (None, [_P]),
    "noma_matmul": (None, [_P, _P, _P, _I64, _I64, _I64, _I32, _I32]),
    # files
    "noma_load_csv": (None, [_S, _T, _I64]),
    "noma_save_csv": (None, [_S, _T, _I64]),
    "noma_st_load": (None, [_S, _S, _I64, _T, _I64]),
    "noma_st_load_globals": (None, [_S, _I64, _P, _P, _P, _I64]),
    "noma_st_save": (None, [_S, _I64, ctypes.POINTER(ctypes.c_char_p), _P, _I64]),
    "noma_dim_set_name": (None, [_I64, _S]),
    "noma_dim_name": (_S, [_I64]),
    "noma_checkpoint_save": (None, [_S, _I64, ctypes.POINTER(ctypes.c_char_p), _P, _I64]),
    "noma_checkpoint_load": (None, [_S, _I32, _I64]),
    # introspection and test hooks
    "noma_real_size": (_I32, []),
    "noma_test_fail": (None, []),
    "noma_test_deep_recursion": (None, []),
    "noma_test_alloc_huge": (None, []),
    "noma_test_interrupt": (None, []),
    "noma_test_print": (None, []),
    "noma_test_reached": (_I64, []),
}


def _declare(lib: ctypes.CDLL, dtype: str) -> None:
    real = real_ctype(dtype)
    subs = {_R: real, _RP: ctypes.POINTER(real), _TR: ctypes.POINTER(tensor_class(dtype))}

    def sub(t):
        return subs.get(t, t) if isinstance(t, str) else t

    for name, (res, args) in _SIGNATURES.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            if name.startswith("noma_test_"):
                continue  # built with -DNOMA_NO_TEST_HOOKS
            raise RuntimeBuildError(f"the native runtime lacks {name} (stale build?)") from None
        fn.restype = sub(res)
        fn.argtypes = [sub(a) for a in args]


# ---------------------------------------------------------------------------
# BLAS (NumPy's bundled OpenBLAS)
# ---------------------------------------------------------------------------

_BLAS: dict | None = None
_BLAS_SEARCHED = False


def _blas_threads() -> int:
    try:
        n = int(os.environ.get("NOMA_THREADS", "1"))
    except ValueError:
        n = 1
    return max(1, n)


def _find_blas() -> dict | None:
    """NumPy's OpenBLAS with cblas dgemm/sgemm (64-bit ints); None when absent."""
    global _BLAS, _BLAS_SEARCHED
    if _BLAS_SEARCHED:
        return _BLAS
    _BLAS_SEARCHED = True
    if os.environ.get("NOMA_NO_BLAS", "") not in ("", "0"):
        return None
    base = Path(np.__file__).resolve().parent
    patterns = [
        str(base.parent / "numpy.libs" / "libscipy_openblas64_*"),
        str(base / ".dylibs" / "libscipy_openblas64_*"),
        str(base.parent / "numpy.libs" / "libopenblas64_*"),
        str(base / ".dylibs" / "libopenblas64_*"),
    ]
    candidates: list[str] = []
    for pat in patterns:
        candidates.extend(sorted(glob.glob(pat)))
    for cand in candidates:
        try:
            lib = ctypes.CDLL(cand)
        except OSError:
            continue

        def addr(*names):
            for nm in names:
                try:
                    return ctypes.cast(getattr(lib, nm), ctypes.c_void_p).value
                except AttributeError:
                    continue
            return None

        dgemm = addr("scipy_cblas_dgemm64_", "cblas_dgemm64_")
        sgemm = addr("scipy_cblas_sgemm64_", "cblas_sgemm64_")
        if not dgemm:
            continue
        for nm in ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_"):
            setter = getattr(lib, nm, None)
            if setter is not None:
                setter.argtypes = [ctypes.c_int]
                setter.restype = None
                setter(_blas_threads())
                break
        _BLAS = {"path": cand, "lib": lib, "dgemm": dgemm, "sgemm": sgemm}
        return _BLAS
    return None


def blas_info() -> dict | None:
    """{'path', 'dgemm', 'sgemm'} of the BLAS registered with the runtime, or None."""
    b = _find_blas()
    return None if b is None else {k: b[k] for k in ("path", "dgemm", "sgemm")}


def _register_blas(lib: ctypes.CDLL, dtype: str) -> None:
    b = _find_blas()
    if b is None:
        return
    fn = b["sgemm"] if dtype == "f32" else b["dgemm"]
    if fn:
        lib.noma_set_gemm(fn)


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------

_LIBS: dict[str, ctypes.CDLL] = {}
_LOAD_LOCK = threading.Lock()


def load_runtime(dtype: str = "f64") -> ctypes.CDLL:
    """The runtime for dtype ('f64' or 'f32'), built if needed, loaded once per process.

    Every function has argtypes/restype declared: ``real`` is c_double / c_float; tensor
    arguments are c_void_p (pass ``ctypes.byref(t)``); ``noma_param``/``noma_global`` return
    ``POINTER(tensor_class(dtype))``; other data
    pointers (``noma_alloc``, ``real*`` arguments, output buffers) are c_void_p (ints).
    """
    dtype = _norm_dtype(dtype)
    lib = _LIBS.get(dtype)
    if lib is not None:
        return lib
    with _LOAD_LOCK:
        lib = _LIBS.get(dtype)
        if lib is not None:
            return lib
        path = runtime_library_path(dtype)
        lib = ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
        _declare(lib, dtype)
        if lib.noma_real_size() != numpy_dtype(dtype).itemsize:
            raise RuntimeBuildError(f"{path} was not built for {dtype}")
        _register_blas(lib, dtype)
        lib.noma_dtype = dtype
        lib.noma_path = path
        _LIBS[dtype] = lib
        return lib
