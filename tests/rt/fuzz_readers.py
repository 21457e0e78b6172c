"""Hypothesis fuzz targets for the file readers: safetensors (the C reader and the compile-time
header reader), CSV and the checkpoint loader. Run by tests/rt/test_fuzz_readers.py in a child
process under a memory and time bound (a crash, a hang or a huge allocation fails that test);
not collected by pytest itself (the name does not start with test_).

Each target feeds random and mutated files to a reader and accepts only a result or an io-style
diagnostic: a signal, an exception, a message with "internal error", or (checkpoints) a failed
load that changed the state fails. Seeded and derandomized; NOMA_FUZZ_EXAMPLES=N examples per
target (default 150, about 30 s for all of them).
"""

from __future__ import annotations

import ctypes
import json
import os
import struct
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from noma.rt import native_lib as nl
from noma.rt.safetensors_header import read_ranks

EXAMPLES = int(os.environ.get("NOMA_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))
KIND_NONE, KIND_NAME, KIND_TYPE, KIND_SHAPE, KIND_IO = -1, 1, 2, 3, 5
LIB = nl.load_runtime("f64")
CTX = LIB.noma_ctx_new()
LIB.noma_ctx_activate(CTX)
LIB.noma_set_capture(CTX, 1)
WORK = Path(tempfile.mkdtemp(prefix="noma-fuzz-"))


def error() -> tuple[int, str]:
    kind, msg = LIB.noma_error_kind(CTX), LIB.noma_error_message(CTX).decode(errors="replace")
    LIB.noma_error_clear(CTX)
    LIB.noma_arena_release(0)
    return kind, msg


def write(name: str, data: bytes) -> Path:
    path = WORK / name
    path.write_bytes(data)
    return path


# ----------------------------------------------------------------------------- mutations


@st.composite
def mutated(draw, seed: bytes) -> bytes:
    """seed with a few byte flips, insertions, deletions, splices of its own pieces and a cut."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "splice", "digit"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[at:at + draw(st.integers(1, 8))]
        elif op == "splice" and data:
            a = draw(st.integers(0, len(data) - 1))
            data[at:at] = data[a:a + draw(st.integers(1, 24))]
        elif op == "digit":  # a number in the text replaced by a hostile one
            digits = [i for i, c in enumerate(data) if 48 <= c <= 57]
            if digits:
                i = draw(st.sampled_from(digits))
                data[i:i + 1] = draw(st.sampled_from([b"0", b"9" * 20, b"-1", b"18446744073709551615", b"1e308"]))
    if draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data)))]
    return bytes(data)


# ----------------------------------------------------------------------------- safetensors


def safetensors_file(tensors: dict[str, np.ndarray], meta: dict[str, str] | None = None) -> bytes:
    header: dict = {"__metadata__": meta} if meta else {}
    blobs, at = [], 0
    for name, arr in tensors.items():
        raw = arr.tobytes()
        dtype = {"float64": "F64", "float32": "F32", "int64": "I64", "uint8": "U8"}[str(arr.dtype)]
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [at, at + len(raw)]}
        blobs.append(raw)
        at += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


ST_SEED = safetensors_file({
    "w": np.arange(6, dtype=np.float64).reshape(2, 3),
    "b": np.ones(3, dtype=np.float32),
    "i": np.array([1, -2], dtype=np.int64),
    "e": np.zeros((0, 2), dtype=np.float64),
    "u": np.array([7, 8, 9], dtype=np.uint8),
}, {"format": "pt"})


def check_st(data: bytes) -> None:
    path = write("f.safetensors", data)
    for name in ("w", "b", "i", "e", "u", "zz"):
        out = nl.NomaTensor()
        LIB.noma_st_load(str(path).encode(), name.encode(), -1, ctypes.byref(out), 4)
        kind, msg = error()
        assert kind in (KIND_NONE, KIND_IO), (kind, msg)
        assert "internal error" not in msg, msg
        if kind == KIND_NONE:
            assert 0 <= out.rank <= 4
    try:
        ranks = read_ranks(str(path))
    except (OSError, ValueError):
        return
    assert all(1 <= r <= 4 for r in ranks.values())


@FUZZ
@given(mutated(ST_SEED))
def test_safetensors_mutated(data: bytes) -> None:
    check_st(data)


@FUZZ
@given(st.binary(max_size=64), st.binary(max_size=200))
def test_safetensors_random(header: bytes, rest: bytes) -> None:
    check_st(struct.pack("<Q", len(header)) + header + rest)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "a ", "__metadata__"]),
                          st.integers(0, 40), st.integers(0, 40), st.integers(0, 5)), max_size=5),
       st.integers(0, 48))
def test_safetensors_offsets(entries, data_len: int) -> None:
    """Headers whose offsets overlap, leave gaps or repeat names: read or rejected, never trusted."""
    parts = [f'"{n}": {{"dtype": "U8", "shape": [{k}], "data_offsets": [{a}, {b}]}}' for n, a, b, k in entries]
    check_st(struct.pack("<Q", len("{" + ", ".join(parts) + "}")) + ("{" + ", ".join(parts) + "}").encode()
             + b"\x01" * data_len)


# ----------------------------------------------------------------------------- CSV

CSV_TEXT = st.text(alphabet=list("0123456789,,,  .-+eE#\n\n\r\tnaifx\ufeff"), max_size=120)


def check_csv(data: bytes) -> None:
    path = write("f.csv", data)
    out = nl.NomaTensor()
    LIB.noma_load_csv(str(path).encode(), ctypes.byref(out), 3)
    kind, msg = error()
    assert kind in (KIND_NONE, KIND_IO), (kind, msg)
    if kind == KIND_NONE:
        assert out.rank == 2 and out.dims[0] >= 1 and out.dims[1] >= 1


@FUZZ
@given(CSV_TEXT)
def test_csv_text(text: str) -> None:
    check_csv(text.encode("utf-8"))


@FUZZ
@given(mutated(b"\xef\xbb\xbfa, b ,c\n1,2,3\n# note\n4.5,-6e2,nan\n\n7,8,9\n"))
def test_csv_mutated(data: bytes) -> None:
    check_csv(data)


# ----------------------------------------------------------------------------- checkpoints


def _declare() -> None:
    """The program the checkpoints belong to: W [h, 3] bound to dim h, b [3], Adam state."""
    LIB.noma_dim_set(0, 2)
    LIB.noma_dim_set_name(0, b"h")
    w = nl.NomaTensor.from_array(np.arange(6, dtype=np.float64).reshape(2, 3))
    b = nl.NomaTensor.from_array(np.ones(3))
    LIB.noma_param_set(0, b"W", ctypes.byref(w))
    LIB.noma_param_bind_dim(0, 0, 0)
    LIB.noma_param_set(1, b"b", ctypes.byref(b))
    for slot, t in ((0, w), (1, b)):
        LIB.noma_opt_begin(slot, 2, None)
        LIB.noma_opt_step(slot, ctypes.byref(t))
    LIB.noma_log_loss(0.5)


_declare()
_CK = WORK / "seed.ck"
LIB.noma_checkpoint_save(str(_CK).encode(), 0, None, None, 1)
assert error()[0] == KIND_NONE
CK_SEED = _CK.read_bytes()


def _snapshot() -> list:
    out = []
    for slot in (0, 1):
        out.append(LIB.noma_param(slot).contents.to_numpy().tobytes())
        for which in range(5):
            t = nl.NomaTensor()
            LIB.noma_param_state(slot, which, ctypes.byref(t))
            out.append(t.to_numpy().tobytes())
    out.append(LIB.noma_dim_get(0))
    out.append(LIB.noma_log_len(CTX))
    LIB.noma_arena_release(0)
    return out


@FUZZ
@given(mutated(CK_SEED))
def test_checkpoint_mutated(data: bytes) -> None:
    path = write("f.ck", data)
    before = _snapshot()
    LIB.noma_checkpoint_load(str(path).encode(), 0, 2)
    kind, msg = error()
    assert kind in (KIND_NONE, KIND_IO, KIND_NAME, KIND_SHAPE, KIND_TYPE), (kind, msg)
    assert "internal error" not in msg, msg
    if kind != KIND_NONE:
        assert _snapshot() == before, f"a failed load changed the state: {msg}"
    LIB.noma_checkpoint_load(str(_CK).encode(), 0, 2)  # back to the seed's state for the next one
    assert error()[0] == KIND_NONE
