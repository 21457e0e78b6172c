"""Readable text for values: scalars and tensors with shape and dtype.

Owns: the one formatting rule of values, shared with the runtime's `print` (noma_rt.c): integers
up to 2^53 in full (`1000000`), other numbers as C's `%.6g` (nan, inf, -inf; -0 as 0); tensors as
nested brackets with ", " between elements, whole up to PRINT_THRESHOLD elements (NumPy's
threshold) and, beyond it, every axis longer than 2 * PRINT_EDGE shown as its first and last
PRINT_EDGE entries around "...". The front ends (`noma run`, the REPL, the kernel's text/plain)
show `tensor[2, 3] f64` and then that text, one row of a matrix per line; the NumPy interpreter
(the test oracle) prints through format_print.
Imports: numpy.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

PRINT_THRESHOLD = 1000
PRINT_EDGE = 3
_EXACT_INTEGERS = 2.0 ** 53


def format_scalar(x: float) -> str:
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    if abs(x) <= _EXACT_INTEGERS and x.is_integer():
        return str(int(x))
    return format(x, ".6g")


def format_print(value: Any) -> str:
    """A value as `print` writes it: a scalar, or a tensor on one line."""
    arr = np.asarray(value)
    if arr.ndim == 0:
        return format_scalar(float(arr))
    return _rows(arr, arr.size > PRINT_THRESHOLD)


def _rows(arr: np.ndarray, summarize: bool, top_sep: str = ", ") -> str:
    n = arr.shape[0]
    if summarize and n > 2 * PRINT_EDGE:
        index: list[Any] = [*range(PRINT_EDGE), None, *range(n - PRINT_EDGE, n)]
    else:
        index = list(range(n))
    items = ["..." if i is None else
             (format_scalar(float(arr[i])) if arr.ndim == 1 else _rows(arr[i], summarize)) for i in index]
    return "[" + top_sep.join(items) + "]"


def format_value(value: Any) -> str:
    """`0.5`, or `tensor[2, 3] f64` followed by the printed layout (a matrix's rows on their own lines)."""
    if value is None:
        return ""
    if isinstance(value, (int, float, np.floating)):
        return format_scalar(float(value))
    arr = np.asarray(value)
    dtype = "f32" if arr.dtype == np.float32 else "f64"
    if arr.ndim == 0:
        body = format_scalar(float(arr))
    else:
        body = _rows(arr, arr.size > PRINT_THRESHOLD, ",\n " if arr.ndim > 1 else ", ")
    shape = ", ".join(str(d) for d in arr.shape)
    return f"tensor[{shape}] {dtype}\n{body}"
