"""The interpreter's checkpoints (`save_checkpoint` / `load_checkpoint`), written from the format
docs/LANGUAGE.md documents ("noma-checkpoint-2"): one safetensors file with `param/P`, `opt/P/m`,
`opt/P/v`, `opt/P/pow1`, `opt/P/pow2`, `opt/P/step` (I64), `history/losses`, and the metadata
`format`, `dtype`, `step`, `rng` (six words), `dim/D`, `opt/P`, `bind/P/AXIS`.

Loading is all or nothing and matches by name: a parameter or dim the program has not declared is
a name error, a parameter of another rank a shape error, a checkpoint of the other dtype a type
error, a missing or malformed file an io error, a load inside an optimize body a runtime error.

Owns: save, load. Imports: the standard library, numpy, noma.compiler.interp.interp_safetensors,
noma.compiler.interp.interp_optimizers, noma.diagnostics, noma.source_file (regular files only).
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

from noma import optimizers
from noma.compiler.interp import interp_safetensors
from noma.compiler.interp.interp_optimizers import OptSlot
from noma.diagnostics import Kind, error
from noma.source_file import open_regular

FORMAT = "noma-checkpoint-2"
OPT_NAMES = {o.kind: o.name for o in optimizers.OPTIMIZERS.values()}


def _names(table: dict[int, str]) -> dict[str, int]:
    return {n: k for k, n in table.items()}


def save(state: Any, path: str, dtype: str, span: Any) -> None:
    tag = "F32" if dtype == "f32" else "F64"
    tensors: list[tuple[str, np.ndarray, str]] = []
    meta = {"format": FORMAT, "dtype": dtype, "step": str(len(state.loss_log)),
            "rng": " ".join(str(w) for w in state.rng.words())}
    for d, size in state.dims.items():
        if d in state.dim_names and size >= 0:
            meta[f"dim/{state.dim_names[d]}"] = str(size)
    for slot in sorted(state.params):
        name, p = state.param_names[slot], state.params[slot]
        tensors.append((f"param/{name}", p, tag))
        for (s, axis), d in state.bindings.items():
            if s == slot:
                meta[f"bind/{name}/{axis}"] = state.dim_names[d]
        o = state.opt.get(slot)
        if o is None:
            continue
        meta[f"opt/{name}"] = OPT_NAMES[o.kind]
        for key in ("m", "v", "pow1", "pow2"):
            tensors.append((f"opt/{name}/{key}", getattr(o, key), tag))
        tensors.append((f"opt/{name}/step", o.step, "I64"))
    tensors.append(("history/losses", np.asarray(state.loss_log), tag))
    try:
        interp_safetensors.write(path, tensors, meta)
    except OSError as e:
        raise error(Kind.IO, f"cannot write '{path}': {e.strerror}", span) from None


def _read(path: str, span: Any) -> tuple[dict[str, Any], bytes]:
    try:
        with open_regular(path, "rb") as f:
            data = f.read()
        n = struct.unpack("<Q", data[:8])[0]
        if n > len(data) - 8:
            raise ValueError("the header is longer than the file")
        header = json.loads(data[8:8 + n])
        return header, data[8 + n:]
    except (OSError, ValueError, struct.error) as e:
        raise error(Kind.IO, f"{path}: cannot read the checkpoint: {e}", span) from None


def _tensor(header: dict[str, Any], blob: bytes, name: str, path: str, span: Any) -> np.ndarray:
    info = header.get(name)
    if info is None:
        raise error(Kind.IO, f"{path}: malformed checkpoint: no tensor '{name}'", span)
    kind = {"F64": "<f8", "F32": "<f4", "I64": "<i8"}.get(info["dtype"])
    start, end = info["data_offsets"]
    if kind is None or not 0 <= start <= end <= len(blob):
        raise error(Kind.IO, f"{path}: malformed checkpoint: tensor '{name}'", span)
    raw = np.frombuffer(blob[start:end], dtype=kind)
    if raw.size != int(np.prod(info["shape"])):
        raise error(Kind.IO, f"{path}: malformed checkpoint: tensor '{name}'", span)
    return raw.reshape(info["shape"]).copy()


def load(state: Any, path: str, dtype: str, span: Any, in_training: bool) -> None:
    if in_training:
        raise error(Kind.RUNTIME, "load_checkpoint cannot run inside an optimize body (load before training)", span)
    header, blob = _read(path, span)
    meta = header.get("__metadata__", {})
    if meta.get("format") != FORMAT:
        raise error(Kind.IO, f"{path}: not a NOMA checkpoint", span)
    if meta.get("dtype") != dtype:
        raise error(Kind.TYPE, f"{path}: the checkpoint holds {meta.get('dtype')} values, the program {dtype}", span)
    slots, dims = _names(state.param_names), _names(state.dim_names)
    slots = {n: s for n, s in slots.items() if s in state.params}
    plan = []
    for key in header:
        if not key.startswith("param/"):
            continue
        name = key[6:]
        if name not in slots:
            raise error(Kind.NAME, f"{path}: the checkpoint's parameter '{name}' is not declared by the program "
                        "(declare it with `learn` before loading)", span)
        value = _tensor(header, blob, key, path, span)
        if value.ndim != state.params[slots[name]].ndim:
            raise error(Kind.SHAPE, f"{path}: parameter '{name}' has rank {value.ndim} in the checkpoint but rank "
                        f"{state.params[slots[name]].ndim} in the program", span)
        opt = None
        if f"opt/{name}" in meta:
            kind = _names(OPT_NAMES).get(meta[f"opt/{name}"])
            if kind is None:
                raise error(Kind.IO, f"{path}: malformed checkpoint: unknown optimizer of '{name}'", span)
            st = {k: _tensor(header, blob, f"opt/{name}/{k}", path, span) for k in ("m", "v", "pow1", "pow2", "step")}
            opt = OptSlot(kind, st["step"].astype(np.int64), st["pow1"], st["pow2"], st["m"], st["v"])
        binds = {int(k.rsplit("/", 1)[1]): dims.get(v, -1) for k, v in meta.items()
                 if k.startswith(f"bind/{name}/")}
        plan.append((slots[name], value, opt, binds))
    new_dims = {}
    for key, value in meta.items():
        if key.startswith("dim/"):
            if key[4:] not in dims or state.dims.get(dims[key[4:]], -1) < 0:
                raise error(Kind.NAME, f"{path}: the checkpoint's dim '{key[4:]}' is not declared by the program "
                            "(declare it with `dim` before loading)", span)
            new_dims[dims[key[4:]]] = int(value)
    losses = _tensor(header, blob, "history/losses", path, span)
    rng = [int(w) for w in meta["rng"].split()]
    # every check passed: swap the state in
    for d, size in new_dims.items():
        state.set_dim(d, size)
    real = np.float32 if dtype == "f32" else np.float64
    for slot, value, opt, binds in plan:
        state.params[slot] = value.astype(real)
        state.opt.pop(slot, None)
        for key in [k for k in state.bindings if k[0] == slot]:
            del state.bindings[key]
        for axis, d in binds.items():
            if d >= 0:
                state.bindings[(slot, axis)] = d
        if opt is not None:
            state.opt[slot] = opt
    state.loss_log[:] = [float(x) for x in losses]
    state.rng.set_words(rng)
