"""Readable text for values: scalars and tensors with shape, dtype and a NumPy-like layout.

Owns: the one formatting of values shown by `noma run`, the REPL and the kernel's text/plain.
Imports: numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def format_scalar(x: float) -> str:
    if x != x:
        return "nan"
    if x in (float("inf"), float("-inf")):
        return "inf" if x > 0 else "-inf"
    text = format(x, ".6g")
    return "0" if text == "-0" else text


def format_value(value: Any) -> str:
    """`0.5`, or `tensor[2, 3] f64` followed by a NumPy-style truncated layout."""
    if value is None:
        return ""
    if isinstance(value, (int, float, np.floating)):
        return format_scalar(float(value))
    arr = np.asarray(value)
    dtype = "f32" if arr.dtype == np.float32 else "f64"
    body = np.array2string(arr, precision=6, suppress_small=False, threshold=200, edgeitems=3,
                           separator=", ", max_line_width=100)
    shape = ", ".join(str(d) for d in arr.shape)
    return f"tensor[{shape}] {dtype}\n{body}"
