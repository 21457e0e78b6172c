"""The compile-time safetensors header reader (noma/rt/safetensors_header.py) applies the
reference implementation's rules, like the C reader: unique names, contiguous offsets that cover
the data region."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from noma.rt.safetensors_header import read_ranks


def write(path: Path, header: bytes | dict, data: bytes) -> Path:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def entry(shape: list[int], begin: int, end: int) -> dict:
    return {"dtype": "F64", "shape": shape, "data_offsets": [begin, end]}


def test_valid_layouts(tmp_path: Path) -> None:
    f = write(tmp_path / "ok.safetensors", {"__metadata__": {"a": "b"}, "b": entry([1], 8, 16),
                                            "a": entry([1], 0, 8), "e": entry([0], 16, 16)}, b"\0" * 16)
    assert read_ranks(str(f)) == {"b": 1, "a": 1, "e": 1}


@pytest.mark.parametrize("header,data,needle", [
    ({"a": entry([2], 0, 16), "b": entry([1], 8, 16)}, 16, "overlap the previous tensor's data"),
    ({"a": entry([1], 8, 16)}, 16, "leave a gap after"),
    ({"a": entry([1], 0, 8)}, 24, "ends at byte 8 of a data region of 24 bytes"),
    ({"a": entry([1], 0, 32)}, 16, "ends at byte 32 of a data region of 16 bytes"),
    ({"a": {"dtype": "F64", "shape": [1], "data_offsets": [8, 0]}}, 8, "invalid data_offsets"),
    ({"a": {"dtype": "F64", "shape": [1], "data_offsets": "x"}}, 8, "invalid data_offsets"),
    (b'{"a": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}, '
     b'"a": {"dtype": "F64", "shape": [1], "data_offsets": [8, 16]}}', 16, "names `a` twice"),
])
def test_rejected_layouts(tmp_path: Path, header, data: int, needle: str) -> None:
    f = write(tmp_path / "bad.safetensors", header, b"\0" * data)
    with pytest.raises(ValueError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        read_ranks(str(f))
