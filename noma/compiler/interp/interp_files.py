"""The interpreter's file operations: CSV and safetensors reads and writes, with the runtime's
messages (noma_rt_io.c) for every way a file can be bad.

Owns: load_csv, save_csv, load_st, save_st. Each takes the file's path and data and `io`, which
makes the located IO error the interpreter raises (so the op's span stays with interp.py).
Used by interp.py only.
Imports: the standard library, numpy, interp_safetensors, noma.source_file (only regular files).
"""

from __future__ import annotations

import json
import struct
from typing import Any, Callable, Optional

import numpy as np

from noma.compiler.interp import interp_safetensors
from noma.source_file import open_regular

IoError = Callable[[str], Exception]
#: safetensors dtype tags the reader accepts -> NumPy dtypes.
_ST_KINDS = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "BF16": "<u2"}


def _csv_number(field: str) -> Optional[float]:
    """A CSV field as a number (what C's strtod reads whole), or None."""
    if "_" in field:  # Python reads 1_000, strtod does not
        return None
    try:
        return float(field)
    except ValueError:
        return None


def load_csv(path: str, dt: Any, io: IoError) -> np.ndarray:
    """A rank-2 array of the CSV file (`#` comments, one optional header row of text)."""
    rows: list[list[float]] = []
    try:
        with open_regular(path, "r", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise io(f"cannot read '{path}': {e.strerror}") from None
    if lines and lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]  # a UTF-8 byte order mark
    seen = False
    for n, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        fields = [x.strip() for x in text.split(",")]
        numbers = [_csv_number(x) for x in fields]
        text_col = next((k for k, (x, v) in enumerate(zip(fields, numbers), 1) if x and v is None), 0)
        if text_col and not seen:
            seen = True  # a header row: text that is not a number
            continue
        empty_col = next((k for k, x in enumerate(fields, 1) if not x), 0)
        if empty_col and (not text_col or empty_col < text_col):
            raise io(f"{path}: line {n}, column {empty_col} is empty")
        if text_col:
            raise io(f"{path}: line {n}, column {text_col}: cannot read '{fields[text_col - 1]}' as a number")
        row = [float(v) for v in numbers if v is not None]
        seen = True
        if rows and len(row) != len(rows[0]):
            raise io(f"{path}:{n}: expected {len(rows[0])} values, got {len(row)}")
        rows.append(row)
    return np.array(rows, dtype=dt).reshape(len(rows), len(rows[0]) if rows else 0)


def save_csv(path: str, value: Any, io: IoError) -> None:
    """Write value as CSV rows (scalars and vectors as one row, higher ranks flattened per row)."""
    a = np.asarray(value, dtype=np.float64)
    a = a.reshape(1, -1) if a.ndim < 2 else a.reshape(a.shape[0], -1)
    try:
        with open_regular(path, "w") as f:
            f.writelines(",".join(format(x, ".17g") for x in row) + "\n" for row in a)
    except OSError as e:
        raise io(f"cannot write '{path}': {e.strerror}") from None


def load_st(path: str, name: str, dt: Any, io: IoError) -> np.ndarray:
    """Tensor `name` of a safetensors file, converted to dt."""
    try:
        with open_regular(path, "rb") as f:
            data = f.read()
        n = struct.unpack("<Q", data[:8])[0]
        header = json.loads(data[8:8 + n])
    except (OSError, ValueError, struct.error) as e:
        raise io(f"cannot read safetensors file '{path}': {e}") from None
    if name not in header:
        raise io(f"'{path}' has no tensor named '{name}'")
    info = header[name]
    if info.get("dtype") not in _ST_KINDS:
        raise io(f"{path}: tensor '{name}': unknown dtype '{info.get('dtype')}'")
    start, end = info["data_offsets"]
    count = int(np.prod(info["shape"], dtype=object))
    if not 0 <= start <= end <= len(data) - 8 - n or count * np.dtype(_ST_KINDS[info["dtype"]]).itemsize != end - start:
        raise io(f"{path}: tensor '{name}': its data offsets [{start}, {end}] do not fit its shape and the file")
    raw = np.frombuffer(data[8 + n + start:8 + n + end], dtype=_ST_KINDS[info["dtype"]])
    if info["dtype"] == "BF16":
        raw = (raw.astype(np.uint32) << 16).view(np.float32)
    return raw.astype(dt).reshape(info["shape"])


def save_st(path: str, names: list[str], values: list[Any], tag: str, io: IoError) -> None:
    """Write the named values (in the statement's order, as the runtime does) as safetensors."""
    for name in names:
        if names.count(name) > 1:
            raise io(f"{path}: tensor name '{name}' given twice")
    try:
        interp_safetensors.write(path, [(n, v, tag) for n, v in zip(names, values)])
    except OSError as e:
        raise io(f"cannot write '{path}': {e.strerror}") from None
