"""Whole-session state as data: snapshots for undo, checkpoints on disk.

Owns: capturing and restoring parameters (values, dim bindings, optimizer kind, moments and
per-entry step counts), dims, globals, the loss log and the symbol tables; writing them as a
safetensors file (tensors) plus a JSON file (everything else, including the source of function
definitions) and reading them back into a live or fresh session.
Imports: numpy, noma.rt, noma.compiler (parse, symbols), noma.diagnostics.
"""

from __future__ import annotations

import ctypes
import json
import math
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from noma.compiler.symbols import GlobalVar, ParamVar, SymbolTable
from noma.diagnostics import Kind, Source, error
from noma.rt import native_lib

if TYPE_CHECKING:
    from noma.session import Session

STATE_KEYS = ("m", "v", "step", "pow1", "pow2")
FORMAT = "noma-checkpoint-1"


@dataclass
class ParamState:
    """One parameter's values and optimizer state."""

    value: Any
    dims: dict[int, int]  # axis -> dim id
    opt_kind: int
    state: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Snapshot:
    """Everything needed to put a session back as it was."""

    symbols: SymbolTable
    params: dict[int, ParamState]
    dims: dict[int, int]
    globals: dict[int, Any]
    losses: np.ndarray
    events_seen: int
    compiled: dict[str, Any]
    pointer_globals: set[str]
    cell_count: int
    rng: Any = None  # the generator's state (6 words), see rng_state
    hidden_events: list = field(default_factory=list)
    restored_events: list = field(default_factory=list)


def capture(session: "Session") -> Snapshot:
    """A deep copy of the session's state (parameters are copied out of the runtime)."""
    rt = session.rt
    params = {}
    for var in session.symbols.params.values():
        params[var.slot] = _param_state(session, var)
    globals_ = {var.slot: rt.read_global(var.slot) for var in session.symbols.globals.values()}
    return Snapshot(
        symbols=session.symbols.clone(), params=params,
        dims={d: rt.dim(d) for d in session.symbols.dims.values()},
        globals=globals_, losses=rt.losses().copy(),
        events_seen=int(rt.lib.noma_event_count(rt.ctx)), compiled=dict(session.compiled),
        pointer_globals=set(session.pointer_globals), cell_count=session.cell_count,
        rng=rng_state(session),
        hidden_events=list(session.hidden_events),
        restored_events=[dict(e) for e in session.restored_events],
    )


def rng_state(session: "Session") -> list[int]:
    """The seeded generator's state as 6 ints (xoshiro256** words, has_spare, spare bits)."""
    words = (ctypes.c_uint64 * 6)()
    session.rt.lib.noma_rng_state_get(session.rt.ctx, words)
    return [int(w) for w in words]


def set_rng_state(session: "Session", words: Any) -> None:
    if words is not None:
        session.rt.lib.noma_rng_state_set(session.rt.ctx, (ctypes.c_uint64 * 6)(*[int(w) for w in words]))


def _param_state(session: "Session", var: ParamVar) -> ParamState:
    rt = session.rt
    rt.activate()
    kind = int(rt.lib.noma_param_opt_kind(var.slot))
    state = rt.optimizer_state(var.slot) if kind else {}
    dims = {axis: session.symbols.dims[name] for axis, name in var.dims.items() if name in session.symbols.dims}
    return ParamState(rt.read_param(var.slot), dims, kind, state)


def restore(session: "Session", snap: Snapshot) -> None:
    """Put the runtime and the tables back as in the snapshot; events added meanwhile are hidden."""
    rt = session.rt
    rt.activate()
    before = int(rt.lib.noma_event_count(rt.ctx))
    for name, var in session.symbols.params.items():
        if var.slot not in snap.params:
            rt.lib.noma_param_free(var.slot)
    for dim, size in snap.dims.items():
        rt.lib.noma_dim_set(dim, int(size))
    names = {v.slot: n for n, v in snap.symbols.params.items()}
    for slot, ps in snap.params.items():
        write_param(session, slot, names[slot], ps)
    for slot, value in snap.globals.items():
        if value is not None:
            write_global(session, slot, value)
    write_losses(session, snap.losses)
    set_rng_state(session, snap.rng)
    session.hidden_events = list(snap.hidden_events)
    session.restored_events = [dict(e) for e in snap.restored_events]
    session.hidden_events.append((snap.events_seen, before))
    session.hidden_events.append((before, int(rt.lib.noma_event_count(rt.ctx))))
    session.symbols = snap.symbols.clone()
    session.compiled = dict(snap.compiled)
    session.pointer_globals = set(snap.pointer_globals)
    for spec, compiled in session.compiled.items():  # point redefined functions back at the old code
        address = session.jit.function_address(compiled.symbol)
        pointer = session.jit.global_address(f"noma.fp.{spec}")
        ctypes.c_void_p.from_address(pointer).value = address


def _tensor(session: "Session", value: Any) -> tuple[Any, Any]:
    """A NomaTensor over a NumPy copy (kept alive by the returned array)."""
    arr = np.ascontiguousarray(np.asarray(value, dtype=session.rt.np_dtype))
    t = native_lib.tensor_class(session.dtype)()
    t.rank = arr.ndim
    for i, d in enumerate(arr.shape):
        t.dims[i] = d
    t.data = arr.ctypes.data_as(type(t.data))
    return t, arr


def write_param(session: "Session", slot: int, name: str, ps: ParamState) -> None:
    lib = session.rt.lib
    t, keep = _tensor(session, ps.value)
    lib.noma_param_set(slot, name.encode(), ctypes.byref(t))
    for axis, dim in ps.dims.items():
        lib.noma_param_bind_dim(slot, axis, dim)
    if ps.opt_kind:
        hyper = (ctypes.c_double * 16)(*([math.nan] * 16)) if session.dtype == "f64" else \
            (ctypes.c_float * 16)(*([math.nan] * 16))
        lib.noma_opt_begin(slot, ps.opt_kind, hyper)
        for which, key in enumerate(STATE_KEYS):
            if key in ps.state:
                st, keep2 = _tensor(session, ps.state[key])
                lib.noma_param_state_set(slot, which, ctypes.byref(st))
    del keep


def write_global(session: "Session", slot: int, value: Any) -> None:
    lib = session.rt.lib
    if np.ndim(value) == 0:
        lib.noma_global_store_s(slot, float(value))
        return
    t, keep = _tensor(session, value)
    lib.noma_global_store(slot, ctypes.byref(t))
    del keep


def write_losses(session: "Session", losses: np.ndarray) -> None:
    rt = session.rt
    current = rt.losses()
    if len(current) >= len(losses) and np.array_equal(current[:len(losses)], losses):
        rt.lib.noma_log_truncate(rt.ctx, len(losses))
        return
    rt.lib.noma_log_truncate(rt.ctx, 0)
    for x in losses:
        rt.lib.noma_log_loss(float(x))


# ----------------------------------------------------------------------------- files


def _write_safetensors(path: str, tensors: dict[str, np.ndarray]) -> None:
    header: dict[str, Any] = {}
    offset = 0
    blobs = []
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name], dtype="<f8")
        data = arr.tobytes()
        header[name] = {"dtype": "F64", "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError("file too short")
    (n,) = struct.unpack("<Q", data[:8])
    if n + 8 > len(data):
        raise ValueError("header longer than the file")
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        if info["dtype"] != "F64" or not 0 <= start <= end <= len(data) - base:
            raise ValueError(f"bad tensor entry {name}")
        arr = np.frombuffer(data[base + start:base + end], dtype="<f8")
        out[name] = arr.reshape(info["shape"]).copy()
    return out


def save_checkpoint(session: "Session", path: str) -> str:
    """Write PATH (safetensors) and PATH.json (metadata). Returns the JSON path."""
    snap = capture(session)
    tensors: dict[str, np.ndarray] = {"history/losses": snap.losses.astype(np.float64)}
    params_meta = {}
    for name, var in snap.symbols.params.items():
        ps = snap.params[var.slot]
        tensors[f"param/{name}"] = np.atleast_1d(np.asarray(ps.value, np.float64))
        for key, arr in ps.state.items():
            tensors[f"opt/{name}/{key}"] = np.atleast_1d(np.asarray(arr, np.float64))
        params_meta[name] = {"rank": var.rank, "dims": {str(a): n for a, n in var.dims.items()},
                             "optimizer": ps.opt_kind}
    globals_meta: dict[str, Any] = {}
    for name, var in snap.symbols.globals.items():
        value = snap.globals.get(var.slot)
        if value is None or name.startswith("_"):
            continue
        if np.ndim(value) == 0:
            globals_meta[name] = {"rank": 0, "value": float(value)}
        else:
            globals_meta[name] = {"rank": var.rank}
            tensors[f"global/{name}"] = np.asarray(value, np.float64)
    meta = {
        "format": FORMAT, "dtype": session.dtype, "params": params_meta,
        "dims": {n: snap.dims[d] for n, d in snap.symbols.dims.items()},
        "globals": globals_meta,
        "functions": {n: f.span.text() for n, f in snap.symbols.functions.items()},
        "events": [e.__dict__ for e in session.history.events],
        "rng": snap.rng,
    }
    _write_safetensors(path, tensors)
    meta_path = path + ".json"
    with open(meta_path, "w") as f:
        json.dump(meta, f, indent=1)
    return meta_path


def load_checkpoint(session: "Session", path: str) -> None:
    """Replace the session's state by a checkpoint's (definitions, parameters, optimizer state, dims, history).

    The files are read and checked completely before anything changes: a missing, truncated or
    inconsistent checkpoint is an io error that leaves the session as it was."""
    try:
        with open(path + ".json") as f:
            meta = json.load(f)
        tensors = _read_safetensors(path)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, struct.error) as exc:
        raise error(Kind.IO, f"cannot load checkpoint {path}: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise error(Kind.IO, f"{path}.json is not a NOMA checkpoint")
    try:
        plan = _plan_load(meta, tensors, path)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        what = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise error(Kind.IO, f"cannot load checkpoint {path}: the checkpoint is malformed ({what})") from None
    dims, params, globals_, functions, losses, events = plan

    session.rt.activate()  # the runtime calls below act on the current context
    symbols = SymbolTable(next_global=session.symbols.next_global, next_param=session.symbols.next_param,
                          next_dim=session.symbols.next_dim)
    for name, size in dims.items():
        session.rt.lib.noma_dim_set(symbols.dim_id(name), size)
    for name, rank, axis_dims, value, opt_kind, state in params:
        var = symbols.param_slot(name, rank)
        var.dims = axis_dims
        ps = ParamState(value, {a: symbols.dims[n] for a, n in axis_dims.items()}, opt_kind, state)
        write_param(session, var.slot, name, ps)
    for name, rank, value in globals_:
        slot = symbols.new_global_slot()
        symbols.globals[name] = GlobalVar(slot, rank)
        write_global(session, slot, value)
    symbols.functions.update(functions)
    write_losses(session, losses)
    set_rng_state(session, meta.get("rng"))
    session.hidden_events.append((0, int(session.rt.lib.noma_event_count(session.rt.ctx))))
    session.restored_events = events
    session.symbols = symbols
    session.compiled = {}


def _plan_load(meta: dict, tensors: dict[str, np.ndarray], path: str) -> tuple:
    """Everything a checkpoint holds, checked for consistency (raises KeyError/ValueError/...)."""
    from noma.compiler.parse import parse
    from noma.diagnostics import NomaError
    from noma.session import Event

    dims = {str(n): int(v) for n, v in meta["dims"].items()}
    if any(v < 0 for v in dims.values()):
        raise ValueError("a negative dim")
    params = []
    for name, pm in meta["params"].items():
        rank = int(pm["rank"])
        if not 0 <= rank <= 4:
            raise ValueError(f"parameter {name} has rank {rank}")
        axis_dims = {int(a): str(n) for a, n in pm["dims"].items()}
        value = tensors[f"param/{name}"]
        if (rank == 0 and value.size != 1) or (rank > 0 and value.ndim != rank):
            raise ValueError(f"parameter {name}: a tensor of shape {list(value.shape)} for rank {rank}")
        for axis, dim in axis_dims.items():
            if not 0 <= axis < rank or dims[dim] != value.shape[axis]:
                raise ValueError(f"parameter {name}: axis {axis} does not match dim {dim}")
        opt_kind = int(pm["optimizer"])
        if not 0 <= opt_kind <= 4:
            raise ValueError(f"parameter {name}: unknown optimizer {opt_kind}")
        state = {k: tensors[f"opt/{name}/{k}"] for k in STATE_KEYS if f"opt/{name}/{k}" in tensors}
        for k, arr in state.items():
            if arr.size != value.size:
                raise ValueError(f"optimizer state {name}.{k} does not match the parameter")
        shape = () if rank == 0 else value.shape
        state = {k: v.reshape(shape) for k, v in state.items()}
        params.append((name, rank, axis_dims, float(value.reshape(-1)[0]) if rank == 0 else value, opt_kind, state))
    globals_ = []
    for name, gm in meta["globals"].items():
        rank = int(gm["rank"])
        value = float(gm["value"]) if rank == 0 else tensors[f"global/{name}"]
        if rank > 0 and np.ndim(value) != rank:
            raise ValueError(f"global {name}: a tensor of shape {list(np.shape(value))} for rank {rank}")
        globals_.append((name, rank, value))
    functions: dict[str, Any] = {}
    for name, text in meta["functions"].items():
        try:
            program = parse(Source(f"<checkpoint {name}>", text))
        except NomaError as exc:
            raise ValueError(f"function {name} does not parse: {exc.diagnostics[0].message}") from None
        for item in program.items:
            functions[getattr(item, "name", name)] = item
    losses = np.asarray(tensors["history/losses"], np.float64).reshape(-1)
    events = []
    for e in meta.get("events", []):
        e = dict(e)
        e["old_shape"], e["new_shape"] = tuple(e["old_shape"]), tuple(e["new_shape"])
        Event(**e)  # all fields, nothing else (TypeError otherwise)
        events.append(e)
    rng = meta.get("rng")
    if rng is not None and (len(rng) != 6 or not all(isinstance(w, int) and 0 <= w < 2 ** 64 for w in rng)):
        raise ValueError("bad generator state")
    return dims, params, globals_, functions, losses, events
