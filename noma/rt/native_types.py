"""ctypes mirrors of the native runtime's C types (docs/RUNTIME_ABI.md) and dtype helpers.

Owns: NomaTensor / NomaTensorF32 (the tensor descriptor of the f64 and f32 runtimes), NomaEvent,
and the mapping of dtype names to ctypes/NumPy types. native_lib re-exports them.
Imports: the standard library, numpy and noma.rt.abi (the header's enums).
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from noma.rt import abi

#: NomaEvent.kind -> name, from the header's NOMA_EV_* enum.
EVENT_KINDS = {v: k for k, v in abi.enum_group("NOMA_EV_").items()}

# ---------------------------------------------------------------------------
# ctypes mirrors of the ABI structs
# ---------------------------------------------------------------------------


class _TensorMixin:
    """Methods shared by NomaTensor (f64) and NomaTensorF32."""

    # the ctypes fields of the structures below (declared for the type checker), and the array
    # a descriptor made by from_array keeps alive
    data: Any
    rank: int
    dims: Any
    _keep: Any

    _dtype = "f64"

    @classmethod
    def from_array(cls, arr, dtype: str | None = None):
        """Descriptor viewing a NumPy array (converted to the runtime dtype, C order).

        ``dtype`` picks the class (f64 -> NomaTensor, f32 -> NomaTensorF32); the array is
        kept alive by the returned object (attribute ``_keep``).
        """
        if dtype is not None and _norm_dtype(dtype) != cls._dtype:
            return tensor_class(dtype).from_array(arr)
        a = np.asarray(arr, dtype=numpy_dtype(cls._dtype))
        if not a.flags.c_contiguous:
            a = a.copy(order="C")
        if a.ndim > 4:
            raise ValueError("NOMA tensors have at most 4 axes")
        t = cls()
        t.data = ctypes.cast(a.ctypes.data, ctypes.POINTER(real_ctype(cls._dtype)))
        t.rank = a.ndim
        for i, d in enumerate(a.shape):
            t.dims[i] = d
        t._keep = a
        return t

    @property
    def address(self) -> int:
        """The data pointer as an int (0 for NULL)."""
        return ctypes.cast(self.data, ctypes.c_void_p).value or 0

    @property
    def shape(self) -> tuple:
        return tuple(int(self.dims[i]) for i in range(int(self.rank)))

    def to_numpy(self, dtype: str | None = None) -> np.ndarray:
        """Copy of the data as an array of this descriptor's shape (rank 0: a 0-d array)."""
        shape = self.shape
        n = int(np.prod(shape, dtype=np.int64)) if shape else 1
        dt = numpy_dtype(dtype or self._dtype)
        addr = self.address
        if n == 0 or not addr:
            return np.zeros(shape, dtype=dt)
        buf = (ctypes.c_char * (n * dt.itemsize)).from_address(addr)
        return np.frombuffer(memoryview(buf), dtype=dt, count=n).reshape(shape).copy()


_TENSOR_FIELDS_TAIL: list[tuple[str, Any]] = [("rank", ctypes.c_int64), ("dims", ctypes.c_int64 * 4)]


class NomaTensor(_TensorMixin, ctypes.Structure):
    """``typedef struct { real *data; int64_t rank; int64_t dims[4]; } NomaTensor;`` (f64 runtime).

    ``data`` is a ``POINTER(c_double)``; use ``NomaTensorF32`` (``POINTER(c_float)``) with the
    f32 runtime. Both are 48 bytes; functions taking tensors accept either (argtype c_void_p).
    """

    _dtype = "f64"
    _fields_ = [("data", ctypes.POINTER(ctypes.c_double))] + _TENSOR_FIELDS_TAIL


class NomaTensorF32(_TensorMixin, ctypes.Structure):
    """NomaTensor of the f32 runtime (``data`` is ``POINTER(c_float)``)."""

    _dtype = "f32"
    _fields_ = [("data", ctypes.POINTER(ctypes.c_float))] + _TENSOR_FIELDS_TAIL


def tensor_class(dtype: str = "f64"):
    """NomaTensor for 'f64', NomaTensorF32 for 'f32'."""
    return NomaTensorF32 if _norm_dtype(dtype) == "f32" else NomaTensor


class NomaEvent(ctypes.Structure):
    """Mirror of ``NomaEvent`` (128 bytes); see docs/RUNTIME_ABI.md."""

    _fields_ = [
        ("kind", ctypes.c_int32),
        ("policy", ctypes.c_int32),
        ("step", ctypes.c_int64),
        ("id", ctypes.c_int64),
        ("old_rank", ctypes.c_int64),
        ("old_dims", ctypes.c_int64 * 4),
        ("new_rank", ctypes.c_int64),
        ("new_dims", ctypes.c_int64 * 4),
        ("aux", ctypes.c_int64),
        ("output_change", ctypes.c_double),
        ("value", ctypes.c_double),
    ]

    @property
    def old_shape(self) -> tuple | None:
        r = int(self.old_rank)
        return None if r < 0 else tuple(int(self.old_dims[i]) for i in range(r))

    @property
    def new_shape(self) -> tuple | None:
        r = int(self.new_rank)
        return None if r < 0 else tuple(int(self.new_dims[i]) for i in range(r))

    @property
    def kind_name(self) -> str:
        return EVENT_KINDS.get(int(self.kind), "unknown")


# ---------------------------------------------------------------------------
# dtype helpers
# ---------------------------------------------------------------------------

_DTYPE_ALIASES = {"f64": "f64", "float64": "f64", "double": "f64", "f32": "f32", "float32": "f32", "float": "f32"}


def _norm_dtype(dtype: str) -> str:
    try:
        return _DTYPE_ALIASES[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"unknown runtime dtype {dtype!r} (expected 'f64' or 'f32')") from None


def real_ctype(dtype: str = "f64"):
    return ctypes.c_float if _norm_dtype(dtype) == "f32" else ctypes.c_double


def numpy_dtype(dtype: str = "f64") -> np.dtype:
    return np.dtype(np.float32 if _norm_dtype(dtype) == "f32" else np.float64)
