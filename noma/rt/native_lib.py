"""Load the NOMA native runtime (``noma/rt/native/*.c``) into the process and declare its C interface.

The runtime is plain C11. On first use it is compiled with the system C compiler into a shared
library kept in the runtime's build cache (noma.rt.native_build: ``$NOMA_CACHE_DIR`` or
``~/.cache/noma``, named by a hash of the sources, the flags, the dtype and the machine; builds
are atomic). The library is loaded with ``ctypes.CDLL(path, mode=RTLD_GLOBAL)`` so
JIT-compiled code can resolve the ``noma_*`` symbols; it is linked with
``-Wl,-Bsymbolic`` so an f64 and an f32 runtime loaded into one process each
call their own functions.

When NumPy ships its OpenBLAS (``numpy.libs/libscipy_openblas64_-*.so``), its
cblas dgemm (sgemm for f32) is registered with ``noma_set_gemm`` and OpenBLAS is
set to ``$NOMA_THREADS`` threads (default 1). ``NOMA_NO_BLAS=1`` disables this.

The ctypes declarations are generated from noma_rt.h (noma.rt.abi parses it).
Imports: the standard library, numpy, noma.rt (abi, native_build, native_types).
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from noma.rt import abi
from noma.rt.native_build import (  # noqa: F401  (re-exported: building the runtime lives there)
    NATIVE_DIR,
    CompilerNotFound,
    RuntimeBuildError,
    _cpu_fingerprint,
    build_flags,
    c_sources,
    cache_dir,
    compiler_command,
    header_files,
    include_dir,
    runtime_library_path,
)
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


#: The header's enums (noma_rt.h is their one declaration).
ERROR_KINDS = {v: k for k, v in abi.enum_group("NOMA_ERR_", skip=("NONE",)).items()}
POLICIES = abi.enum_group("NOMA_POLICY_")
OPTIMIZERS = abi.enum_group("NOMA_OPT_", skip=("NONE",))


# ---------------------------------------------------------------------------
# ctypes declarations
# ---------------------------------------------------------------------------

#: `const char *` parameters and results that are byte buffers (a length travels beside them),
#: not NUL-terminated strings: c_void_p, so ctypes hands back the address. Index -1 = the result.
_BYTE_BUFFERS = {("noma_output_data", -1), ("noma_warnings_data", -1), ("noma_st_load_globals", 2)}


def ctypes_type(ctype: str, dtype: str, *, result: bool = False, buffer: bool = False) -> Any:
    """The ctypes type of a C type of noma_rt.h (abi.Prototype's spelling) for runtime dtype.

    Scalars map to their ctypes; `const char *` is c_char_p (unless `buffer`), `const char **`
    POINTER(c_char_p), `uint64_t *` POINTER(c_uint64), `NomaEvent *` POINTER(NomaEvent), a
    returned `NomaTensor *` POINTER(tensor_class(dtype)); every other pointer (tensor arguments:
    pass ``ctypes.byref(t)`` of either tensor class; data buffers; function pointers) c_void_p.
    """
    scalars = {"void": None, "real": real_ctype(dtype), "int32_t": ctypes.c_int32,
               "int64_t": ctypes.c_int64}
    if ctype in scalars:
        return scalars[ctype]
    base = ctype.replace("const ", "")
    if base == "char *" and ctype.startswith("const") and not buffer:
        return ctypes.c_char_p
    if base == "char **" and ctype.startswith("const"):
        return ctypes.POINTER(ctypes.c_char_p)
    if base == "uint64_t *":
        return ctypes.POINTER(ctypes.c_uint64)
    if base == "NomaEvent *":
        return ctypes.POINTER(NomaEvent)
    if base == "NomaTensor *" and result:
        return ctypes.POINTER(tensor_class(dtype))
    if ctype == abi.FUNCTION_POINTER or ctype.endswith("*"):
        return ctypes.c_void_p
    raise RuntimeBuildError(f"noma_rt.h uses C type {ctype!r}, which has no ctypes mapping")


def ctypes_signature(proto: abi.Prototype, dtype: str) -> tuple[Any, list[Any]]:
    """(restype, [argtypes]) of one prototype of noma_rt.h for runtime dtype."""
    res = ctypes_type(proto.ret, dtype, result=True, buffer=(proto.name, -1) in _BYTE_BUFFERS)
    args = [ctypes_type(a, dtype, buffer=(proto.name, i) in _BYTE_BUFFERS) for i, a in enumerate(proto.args)]
    return res, args


def _declare(lib: ctypes.CDLL, dtype: str) -> None:
    """Set argtypes/restype of every function noma_rt.h declares (generated from the header)."""
    for name, proto in abi.prototypes().items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            if name.startswith("noma_test_"):
                continue  # built with -DNOMA_NO_TEST_HOOKS
            raise RuntimeBuildError(f"the native runtime lacks {name} (stale build?)") from None
        fn.restype, fn.argtypes = ctypes_signature(proto, dtype)


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

class RuntimeLibrary(ctypes.CDLL):
    """The loaded runtime: a CDLL that also says which dtype it was built for and its file."""

    noma_dtype: str
    noma_path: Path


_LIBS: dict[str, RuntimeLibrary] = {}
_LOAD_LOCK = threading.Lock()


def load_runtime(dtype: str = "f64") -> RuntimeLibrary:
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
        lib = RuntimeLibrary(str(path), mode=ctypes.RTLD_GLOBAL)
        _declare(lib, dtype)
        if lib.noma_real_size() != numpy_dtype(dtype).itemsize:
            raise RuntimeBuildError(f"{path} was not built for {dtype}")
        _register_blas(lib, dtype)
        lib.noma_dtype = dtype
        lib.noma_path = path
        _LIBS[dtype] = lib
        return lib
