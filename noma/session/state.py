"""Whole-session state as data: snapshots for undo, checkpoints on disk.

Owns: capturing and restoring parameters (values, dim bindings, optimizer kind, moments and
per-entry step counts), dims, globals, the loss history and the symbol tables; checkpoints: the
runtime's checkpoint file (noma_rt_checkpoint.c, the format executables read and write) plus the
session's tensor globals, and a JSON file with what only a session has (definitions, events);
reading them back into a live or fresh session, or (without the JSON) into the declared params.
Imports: numpy, noma.rt, noma.compiler (parse, symbols), noma.diagnostics, noma.source_file.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from noma import source_file
from noma.compiler.front.symbols import GlobalVar, ParamVar, SymbolTable
from noma.diagnostics import RUNTIME_KIND_ORDER, Kind, NomaError, Source, Span, error
from noma.rt import native_lib

if TYPE_CHECKING:
    from noma.session.core import Session

STATE_KEYS = ("m", "v", "step", "pow1", "pow2")
FORMAT = "noma-checkpoint-3"
FORMATS = (FORMAT, "noma-checkpoint-2")  # PATH.json formats that load (2: before the bounded history)


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
    history: Any  # noma.rt.runtime.HistoryData: the loss history (bounded), the global step
    events_seen: int
    compiled: dict[str, Any]
    pointer_globals: set[str]
    cell_count: int
    rng: Any = None  # the generator's state (6 words), see rng_state
    replay: Any = None  # the forward pass resizes are measured against (noma_rt_probe.c)
    hidden_events: list = field(default_factory=list)
    restored_events: list = field(default_factory=list)
    metrics: dict = field(default_factory=dict)  # `report` metrics by name (noma.rt.metrics.Metric)
    #: what `:ir`/`:grad`/`:llvm` show: the last cell's artifacts, module and source
    last_compiled: tuple = (None, None, None)


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
        globals=globals_, history=rt.history(),
        events_seen=int(rt.lib.noma_event_count(rt.ctx)), compiled=dict(session.compiled),
        pointer_globals=set(session.pointer_globals), cell_count=session.cell_count,
        rng=rng_state(session),
        replay=rt.lib.noma_probe_replay_get(rt.ctx),
        hidden_events=list(session.hidden_events),
        restored_events=[dict(e) for e in session.restored_events],
        metrics=rt.metrics(),
        last_compiled=(session.last_artifacts, session.last_module, session.last_source),
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
    rt.set_history(snap.history)
    rt.restore_metrics(snap.metrics)
    set_rng_state(session, snap.rng)
    rt.lib.noma_probe_replay_put(rt.ctx, snap.replay)
    session.hidden_events = list(snap.hidden_events)
    session.restored_events = [dict(e) for e in snap.restored_events]
    session.hidden_events.append((snap.events_seen, before))
    session.hidden_events.append((before, int(rt.lib.noma_event_count(rt.ctx))))
    session.symbols = snap.symbols.clone()
    session.compiled = dict(snap.compiled)
    session.pointer_globals = set(snap.pointer_globals)
    session.last_artifacts, session.last_module, session.last_source = snap.last_compiled
    for spec, compiled in session.compiled.items():  # point redefined functions back at the old code
        address = session.jit.function_address(compiled.symbol)
        pointer = session.jit.global_address(f"noma.fp.{spec}")
        ctypes.c_void_p.from_address(pointer).value = address


def _tensor(session: "Session", value: Any) -> tuple[Any, Any]:
    """A NomaTensor over a NumPy copy (kept alive by the returned array)."""
    arr = np.array(value, dtype=session.rt.np_dtype, order="C")  # (ascontiguousarray makes scalars 1-d)
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


# ----------------------------------------------------------------------------- files
#
# The tensor part of a checkpoint is the native runtime's own format (noma_rt_checkpoint.c:
# parameters, optimizer state, dims, loss history, global step, RNG), the same file the
# `save_checkpoint` / `load_checkpoint` statements write and read in executables. A session adds
# its tensor globals to that file ("global/NAME") and writes PATH.json with what only a session
# has: the definitions (functions, names and ranks of parameters, dims, globals) and the events.


def _runtime_error(session: "Session") -> tuple[Kind, str]:
    kind, _, message = session.rt.error()
    return RUNTIME_KIND_ORDER[kind] if 0 <= kind < len(RUNTIME_KIND_ORDER) else Kind.IO, message


def save_checkpoint(session: "Session", path: str) -> str:
    """Write PATH (safetensors, by the runtime) and PATH.json (definitions). Returns the JSON path."""
    rt = session.rt
    rt.activate()
    extras: list[tuple[str, Any, Any]] = []
    globals_meta: dict[str, Any] = {}
    for name, var in session.symbols.globals.items():
        value = rt.read_global(var.slot)
        if value is None or name.startswith("_"):
            continue
        if np.ndim(value) == 0:
            globals_meta[name] = {"rank": 0, "value": float(value)}
        else:
            globals_meta[name] = {"rank": var.rank}
            extras.append((f"global/{name}", *_tensor(session, value)))
    names = (ctypes.c_char_p * max(len(extras), 1))(*[n.encode() for n, _, _ in extras])
    ptrs = (ctypes.c_void_p * max(len(extras), 1))(*[ctypes.addressof(t) for _, t, _ in extras])
    rt.lib.noma_error_clear(rt.ctx)
    rt.lib.noma_checkpoint_save(path.encode(), len(extras), names, ptrs, -1)
    failed = int(rt.lib.noma_error_kind(rt.ctx)) >= 0
    kind, message = _runtime_error(session) if failed else (Kind.IO, "")
    rt.lib.noma_error_clear(rt.ctx)
    rt.release_arena()
    if failed:
        raise error(kind, message)
    meta = {
        "format": FORMAT, "dtype": session.dtype,
        "params": _live_params(session),
        "dims": sorted(session.symbols.dims),
        "globals": globals_meta,
        "functions": {n: f.span.text() for n, f in session.symbols.functions.items()},
        "events": [e.__dict__ for e in session.events()],
    }
    meta_path = path + ".json"
    try:
        with source_file.open_regular(meta_path, "w") as f:
            json.dump(meta, f, indent=1)
    except OSError as exc:
        raise error(Kind.IO, f"cannot write {meta_path}: {exc.strerror or exc}") from None
    return meta_path


def _live_params(session: "Session") -> dict[str, dict[str, int]]:
    """Name and rank of every parameter the runtime holds: exactly those the checkpoint file has
    (a `free` or `learn` in a branch that did not run leaves the tables and the runtime apart)."""
    lib = session.rt.lib
    session.rt.activate()
    out = {}
    for slot in range(int(lib.noma_param_slot_count(session.rt.ctx))):
        if lib.noma_param_defined(slot):
            out[lib.noma_param_name(slot).decode()] = {"rank": int(lib.noma_param(slot).contents.rank)}
    return out


def load_checkpoint(session: "Session", path: str) -> None:
    """Replace the session's state by a checkpoint's (definitions, parameters, optimizer state, dims,
    history). Without PATH.json (a checkpoint an executable wrote), restore the file into the
    parameters and dims this session has declared, as the `load_checkpoint` statement does.

    Nothing changes unless the whole checkpoint loads: a missing, truncated or inconsistent
    checkpoint is an error (kind io when PATH.json and PATH disagree) that leaves the session as it was."""
    meta_path = path + ".json"
    if not os.path.exists(meta_path):
        _load_into_declared(session, path)
        return
    meta = _read_json(path, meta_path)
    if not isinstance(meta, dict) or meta.get("format") not in FORMATS:
        raise error(Kind.IO, f"{meta_path} is not a NOMA checkpoint ({FORMAT})")
    try:
        plan = _plan_load(meta)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        what = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise error(Kind.IO, f"cannot load checkpoint {path}: {meta_path} is malformed ({what})") from None
    snap = capture(session)
    new_slots: list[int] = []
    try:
        _replace(session, path, plan, new_slots)
    except NomaError:
        session.rt.activate()
        for slot in new_slots:
            if session.rt.lib.noma_param_defined(slot):
                session.rt.lib.noma_param_free(slot)
        restore(session, snap)
        raise


def _read_json(path: str, meta_path: str) -> Any:
    """PATH.json parsed; its undecodable bytes and JSON syntax errors are located in it."""
    source = source_file.read(meta_path, pipes=False)  # io error, or a located syntax error at a non-UTF-8 byte
    try:
        return json.loads(source.text)
    except json.JSONDecodeError as exc:
        at = Span(source, exc.pos, min(exc.pos + 1, len(source.text)))
        raise error(Kind.IO, f"cannot load checkpoint {path}: {meta_path} is not valid JSON ({exc.msg})",
                    at) from None
    except RecursionError:
        raise error(Kind.IO, f"cannot load checkpoint {path}: {meta_path} nests too deeply") from None


def _load_into_declared(session: "Session", path: str) -> None:
    rt = session.rt
    rt.activate()
    rt.lib.noma_error_clear(rt.ctx)
    rt.lib.noma_checkpoint_load(path.encode(), 0, -1)
    failed = int(rt.lib.noma_error_kind(rt.ctx)) >= 0
    kind, message = _runtime_error(session) if failed else (Kind.IO, "")
    rt.lib.noma_error_clear(rt.ctx)
    rt.release_arena()
    if failed:
        note = None
        if kind is Kind.NAME:
            note = (f"{path}.json (a session's definitions) is absent, so the checkpoint loads into what this "
                    "session has declared: run the program's `learn` and `dim` declarations first")
        raise error(kind, message, None, note)


def _replace(session: "Session", path: str, plan: tuple, new_slots: list[int]) -> None:
    """Load a checkpoint with its definitions: fresh tables, the runtime's loader fills the state."""
    params, dims, globals_, functions, events, metrics = plan
    rt, lib = session.rt, session.rt.lib
    rt.activate()  # the runtime calls below act on the current context
    old = session.symbols
    for var in old.params.values():
        if lib.noma_param_defined(var.slot):
            lib.noma_param_free(var.slot)
    symbols = SymbolTable(next_global=old.next_global, next_param=old.next_param, next_dim=old.next_dim)
    for name in dims:  # a dim name keeps its id in a session (the runtime finds dims by name)
        dim = old.dims.get(name)
        if dim is None:
            dim = symbols.dim_id(name)
        symbols.dims[name] = dim
        lib.noma_dim_set_name(dim, name.encode())
        if lib.noma_dim_get(dim) < 0:
            lib.noma_dim_set(dim, 0)
    for name, rank in params.items():
        var = symbols.param_slot(name, rank)
        new_slots.append(var.slot)
        write_param(session, var.slot, name, ParamState(np.zeros((1,) * rank) if rank else 0.0, {}, 0))
    lib.noma_error_clear(rt.ctx)
    lib.noma_checkpoint_load(path.encode(), 1, -1)  # 1: every parameter must be in the file
    _raise_runtime_error(session, path)
    by_id = {d: n for n, d in symbols.dims.items()}
    for name, var in symbols.params.items():
        for axis in range(var.rank):
            dim = int(lib.noma_param_bound_dim(var.slot, axis))
            if dim in by_id:
                var.dims[axis] = by_id[dim]
    for name, rank, value in globals_:
        if rank > 0:
            out = native_lib.tensor_class(session.dtype)()
            lib.noma_st_load(path.encode(), f"global/{name}".encode(), rank, ctypes.byref(out), -1)
            _raise_runtime_error(session, path)
            value = rt._tensor(out)
        slot = symbols.new_global_slot()
        symbols.globals[name] = GlobalVar(slot, rank)
        write_global(session, slot, value)
    rt.release_arena()
    symbols.functions.update(functions)
    session.hidden_events.append((0, int(lib.noma_event_count(rt.ctx))))
    session.restored_events = events
    if metrics is not None:
        rt.restore_metrics(metrics)
    session.symbols = symbols
    session.compiled = {}


def _raise_runtime_error(session: "Session", path: str) -> None:
    """After a runtime call on a session checkpoint: its error as an io error naming the file."""
    rt = session.rt
    if int(rt.lib.noma_error_kind(rt.ctx)) < 0:
        return
    _, message = _runtime_error(session)
    rt.lib.noma_error_clear(rt.ctx)
    rt.release_arena()
    if message.startswith(f"{path}: "):
        message = message[len(path) + 2:]
    raise error(Kind.IO, f"cannot load checkpoint {path}: {message}")


def _plan_load(meta: dict) -> tuple:
    """The definitions PATH.json holds, checked (raises KeyError/ValueError/...)."""
    from noma.compiler.front import ast
    from noma.compiler.front.modules import requalify
    from noma.compiler.front.parse import parse
    from noma.session.history import Event

    params = {str(n): int(pm["rank"]) for n, pm in meta["params"].items()}
    if any(not 0 <= r <= 4 for r in params.values()):
        raise ValueError("a parameter rank outside 0..4")
    dims = [str(n) for n in meta["dims"]]
    globals_ = []
    for name, gm in meta["globals"].items():
        rank = int(gm["rank"])
        if not 0 <= rank <= 4:
            raise ValueError(f"global {name} has rank {rank}")
        globals_.append((name, rank, float(gm["value"]) if rank == 0 else None))
    functions: dict[str, Any] = {}
    for name, text in meta["functions"].items():
        try:
            program = parse(Source(f"<checkpoint {name}>", text))
        except NomaError as exc:
            raise ValueError(f"function {name} does not parse: {exc.diagnostics[0].message}") from None
        for item in program.items:
            if isinstance(item, ast.FnDef) and item.name != name:  # a module's, imported `as`
                item = requalify(item, name, list(meta["functions"]) + list(params) + dims)
            functions[getattr(item, "name", name)] = item
    events = []
    for e in meta.get("events", []):
        e = dict(e)
        e["old_shape"], e["new_shape"] = tuple(e["old_shape"]), tuple(e["new_shape"])
        Event(**e)  # all fields, nothing else (TypeError otherwise)
        events.append(e)
    return params, dims, globals_, functions, events, plan_metrics(meta)


def plan_metrics(meta: dict) -> Optional[dict[str, Any]]:
    """The named metrics (`report`) an older PATH.json holds; None when it holds none, because the
    checkpoint file itself carries them ("metric/M", noma_rt_checkpoint.c) and its loader restored them."""
    from noma.rt.metrics import Metric

    if "metrics" not in meta:
        return None
    return {str(n): Metric.from_json(str(n), m) for n, m in meta["metrics"].items()}


def load_checkpoint_values(session: "Session", path: str) -> None:
    """Load a session checkpoint's state into the running program without replacing its
    definitions (so its compiled code stays valid): parameters, optimizer state and dims (the
    runtime's loader: a parameter with other sizes than the running one is resized to the
    checkpoint's), global step, history and named metrics, and from PATH.json its scalar globals
    the session also has (noma.tune's exploit). NomaError on a bad checkpoint."""
    meta_path = path + ".json"
    try:
        with source_file.open_regular(meta_path, "r") as f:
            meta = json.load(f)
        scalars = {str(n): float(g["value"]) for n, g in meta["globals"].items() if int(g["rank"]) == 0}
        metrics = plan_metrics(meta)
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise error(Kind.IO, f"cannot load checkpoint {path}: {meta_path}: {exc}") from None
    _load_into_declared(session, path)
    for name, value in scalars.items():
        var = session.symbols.globals.get(name)
        if var is not None and var.rank == 0:
            write_global(session, var.slot, value)
    if metrics is not None:
        session.rt.restore_metrics(metrics)


def keep_reached_declarations(session: "Session", before: SymbolTable, after: SymbolTable) -> SymbolTable:
    """The symbol table after a cell that failed (or was interrupted) at run time: `after` (the
    cell's compiled declarations) less those whose statement never ran, which get `before`'s entry
    back. Ran means: a global's slot was stored during the run (the session forgets the slots a
    cell declares before running it), a parameter exists with the declared rank (and a `free`
    that did not run leaves its parameter defined), a dim has a size. Function definitions are
    kept: they are not run."""
    lib = session.rt.lib
    session.rt.activate()
    table = after.clone()
    for name, var in after.globals.items():
        old = before.globals.get(name)
        if (old is not None and old.slot == var.slot) or lib.noma_global_defined(var.slot):
            continue
        _take_back(table.globals, name, old)
        _take_back(table.known_constants, name, before.known_constants.get(name))
    for name, pvar in after.params.items():
        if lib.noma_param_defined(pvar.slot) and int(lib.noma_param(pvar.slot).contents.rank) == pvar.rank:
            continue
        old_p = before.params.get(name)
        _take_back(table.params, name, None if old_p is None else ParamVar(old_p.slot, old_p.rank, dict(old_p.dims)))
        _take_back(table.freed, name, before.freed.get(name))
    for name, pvar in before.params.items():
        if name not in after.params and lib.noma_param_defined(pvar.slot):  # its `free` did not run
            table.params[name] = ParamVar(pvar.slot, pvar.rank, dict(pvar.dims))
            _take_back(table.freed, name, before.freed.get(name))
    for name, dim in after.dims.items():
        if name not in before.dims and int(lib.noma_dim_get(dim)) < 0:
            del table.dims[name]
    return table


def _take_back(entries: dict, name: str, old: Any) -> None:
    if old is None:
        entries.pop(name, None)
    else:
        entries[name] = old
