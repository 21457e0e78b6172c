"""The interpreter's safetensors writer, shared by `save_safetensors` and `save_checkpoint`.

Owns: write(path, tensors, meta): tensors in the given order (the order the runtime writes), each
as (name, value, dtype tag `F64`/`F32`/`I64`), little-endian, the header padded with spaces to a
multiple of 8 as the runtime pads it. Raises OSError; the callers turn it into a located io error.
Imports: the standard library, numpy, noma.source_file (only regular files are written).
"""

from __future__ import annotations

import json
import struct
from typing import Any, Optional

import numpy as np

from noma.source_file import open_regular

#: numpy dtype of each safetensors tag the interpreter writes
DTYPES = {"F64": "<f8", "F32": "<f4", "I64": "<i8"}


def write(path: str, tensors: list[tuple[str, Any, str]], meta: Optional[dict[str, str]] = None) -> None:
    header: dict[str, Any] = {} if meta is None else {"__metadata__": meta}
    blobs, offset = [], 0
    for name, value, tag in tensors:
        blob = np.asarray(value, dtype=DTYPES[tag]).tobytes()
        header[name] = {"dtype": tag, "shape": list(np.shape(value)), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open_regular(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
