"""Reads a safetensors header at compile time to learn the names and ranks of its tensors.

Owns: bounded, validated header parsing (no large allocation for hostile files).
Imports: the standard library, noma.source_file (only regular files are read).
"""

from __future__ import annotations

import json
import os
import re
import struct
from typing import Any

from noma.source_file import open_regular

MAX_HEADER = 100 * 1024 * 1024
DTYPES = {"F64", "F32", "F16", "BF16", "I64", "I32"}
#: nesting allowed in a header (a real one nests 3: {name: {shape: [...]}})
MAX_JSON_DEPTH = 16
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = re.compile(r"[^{}\[\]]+")
_OPEN_CLOSE = str.maketrans("{[]}", "(())")


def _nesting(text: str) -> int:
    """How deep the JSON text's arrays and objects nest (strings skipped), in one pass."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text)).translate(_OPEN_CLOSE)
    depth = deepest = 0
    for ch in brackets:
        depth += 1 if ch == "(" else -1
        if depth > deepest:
            deepest = depth
            if deepest > MAX_JSON_DEPTH:
                break
    return deepest


def read_ranks(path: str) -> dict[str, int]:
    """{tensor name: rank} of a safetensors file. Raises OSError or ValueError with a plain message."""
    with open_regular(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        if len(head) < 8:
            raise ValueError("the file is shorter than a safetensors header")
        (length,) = struct.unpack("<Q", head)
        if length > MAX_HEADER or length + 8 > size:
            raise ValueError(f"its header claims {length} bytes, more than the file holds")
        try:
            text = f.read(length).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("its header is not valid JSON") from None
    if _nesting(text) > MAX_JSON_DEPTH:  # before json, whose decoder recurses per level
        raise ValueError(f"its header nests deeper than {MAX_JSON_DEPTH} levels (a safetensors header "
                         "nests 3)")
    try:
        header = json.loads(text, object_pairs_hook=_unique_keys)
    except (json.JSONDecodeError, RecursionError):
        raise ValueError("its header is not valid JSON") from None
    if not isinstance(header, dict):
        raise ValueError("its header is not a JSON object")
    check_layout(header, size - 8 - length)
    ranks: dict[str, int] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or not isinstance(info.get("shape"), list):
            raise ValueError(f"tensor `{name}` has no shape")
        if info.get("dtype") not in DTYPES:
            raise ValueError(f"tensor `{name}` has unsupported dtype {info.get('dtype')!r}")
        rank = len(info["shape"])
        if not 1 <= rank <= 4:
            raise ValueError(f"tensor `{name}` has rank {rank}; NOMA tensors have rank 1 to 4")
        ranks[name] = rank
    return ranks


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json object_pairs_hook: a key given twice is an error (the reference implementation's rule)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"its header names `{key}` twice")
        out[key] = value
    return out


def check_layout(header: dict[str, Any], data_len: int) -> None:
    """The reference implementation's layout rule (the Rust safetensors crate): every tensor has
    data_offsets [begin, end] of two whole numbers, and in the order of their offsets the tensors'
    data are contiguous and cover the data region exactly (no overlap, no gap, nothing after)."""
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in offsets)
                or offsets[1] < offsets[0]):
            raise ValueError(f"tensor `{name}` has invalid data_offsets {offsets!r}")
        spans.append((offsets[0], offsets[1], name))
    at = 0
    for begin, end, name in sorted(spans):
        if begin != at:
            how = "overlap" if begin < at else "leave a gap after"
            raise ValueError(f"tensor `{name}`: data offsets [{begin}, {end}] {how} the previous "
                             f"tensor's data (which ends at byte {at})")
        at = end
    if at != data_len:
        raise ValueError(f"the tensors' data ends at byte {at} of a data region of {data_len} bytes")
