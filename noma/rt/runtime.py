"""Python's handle on one native runtime context (see docs/RUNTIME_ABI.md).

Owns: creating the context, invoking native entry points, and reading its state as NumPy:
parameters, globals, dims, optimizer state, the loss history (exact window and summary), events,
captured output, errors.
Imports: numpy, noma.rt.native_lib, noma.session.history (Event). Not noma.compiler.
"""

from __future__ import annotations

import ctypes
import math
import os
import re
import sys
from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np

from noma.rt import abi, native_lib

EVENT_KINDS = {0: "resize", 1: "dim_resize", 2: "free", 3: "optimizer", 4: "reset", 5: "init", 6: "control"}
#: the action of a control event (NomaEvent.policy of NOMA_EV_CONTROL), its Event.name
CONTROL_ACTIONS = {v: k for k, v in abi.enum_group("NOMA_CTL_EV_").items()}
POLICY_NAMES = {v: k for k, v in native_lib.POLICIES.items()}  # from noma_rt.h
KEEP_EVENT = abi.enums()["NOMA_EVENT_KEEP"]  # the policy number of a keep's resize events
STATE_NAMES = ("m", "v", "step", "pow1", "pow2")

_WARNING = re.compile(r"warning(?:\[(\d+)\])?: (.*)", re.S)


def parse_warning(record: str) -> tuple[int, str]:
    """(span id or -1, message) of a runtime warning record: "warning[SPAN]: MSG" (located at the
    span) or "warning: MSG" (noma_warn in noma_rt.c writes them)."""
    m = _WARNING.fullmatch(record.strip("\n"))
    if m is None:
        return -1, record.strip("\n")
    return (int(m.group(1)) if m.group(1) is not None else -1), m.group(2)


@dataclass
class HistoryData:
    """The runtime's loss history as arrays (noma_history_get): the global step; `start`, the
    steps before the summarised ones; buckets per level (level l: 2^l losses per bucket); each
    bucket's min, max and sum, oldest first (highest level first); the exact window, oldest first."""

    step: int
    start: int
    counts: np.ndarray
    bmin: np.ndarray
    bmax: np.ndarray
    bsum: np.ndarray
    recent: np.ndarray

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.counts, self.bmin, self.bmax, self.bsum, self.recent))


class Runtime:
    """One NomaCtx of the native runtime library."""

    def __init__(self, dtype: str = "f64", capture: bool = True,
                 memory_limit: Optional[Union[int, str]] = None):
        self.dtype = dtype
        self.np_dtype = np.float32 if dtype == "f32" else np.float64
        self.lib = native_lib.load_runtime(dtype)
        limit = None if memory_limit is None else self.parse_memory_limit(memory_limit)
        self.ctx = self.lib.noma_ctx_new()
        self.lib.noma_set_capture(self.ctx, 1 if capture else 0)
        self.capture = capture
        env = os.environ.get("NOMA_MEMORY_LIMIT")
        if limit is not None:
            self.lib.noma_set_memory_limit(self.ctx, limit)
        elif env is not None and self.lib.noma_parse_memory_limit(env.encode()) == -2:
            print(f"warning: NOMA_MEMORY_LIMIT={env!r} is not a size (a number of bytes, optionally "
                  "with K, M, G or T); using the default limit of 8 GiB", file=sys.stderr)

    def parse_memory_limit(self, value: Union[int, str]) -> int:
        """Bytes for a memory limit given as a number of bytes or a string like "512M" / "8GiB"
        (the NOMA_MEMORY_LIMIT syntax, parsed by the runtime). ValueError when malformed."""
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 0:
                raise ValueError(f"a memory limit cannot be negative (got {value})")
            return value
        n = int(self.lib.noma_parse_memory_limit(str(value).encode())) if isinstance(value, str) else -2
        if n < 0:
            raise ValueError(f"{value!r} is not a memory size (a number of bytes, optionally with "
                             "K, M, G or T)")
        return n

    @property
    def memory_limit(self) -> int:
        """The context's memory limit in bytes (every allocation of the runtime counts)."""
        return int(self.lib.noma_memory_limit(self.ctx))

    @memory_limit.setter
    def memory_limit(self, value: Union[int, str]) -> None:
        self.lib.noma_set_memory_limit(self.ctx, self.parse_memory_limit(value))

    @property
    def memory_used(self) -> int:
        """Bytes the context holds now (arena chunks, parameters, optimizer state, globals, history)."""
        return int(self.lib.noma_memory_used(self.ctx))

    def __del__(self) -> None:
        try:
            self.lib.noma_ctx_free(self.ctx)
        except Exception:
            pass

    # ---------------------------------------------------------------- running

    def invoke(self, address: int) -> int:
        """Run a `void()` native entry point (its address, passed as a plain pointer) with the
        C SIGINT handler installed; 0 ok, 1 error, 2 interrupted. One ctypes call: a cell's run
        time starts and ends here."""
        return int(self.lib.noma_invoke_cell(self.ctx, address))

    def clear_interrupt(self) -> None:
        self.lib.noma_clear_interrupt()

    def request_interrupt(self) -> None:
        self.lib.noma_request_interrupt()

    def activate(self) -> None:
        self.lib.noma_ctx_activate(self.ctx)

    def release_arena(self) -> None:
        self.activate()
        self.lib.noma_arena_release(0)

    def error(self) -> tuple[int, int, str]:
        message = self.lib.noma_error_message(self.ctx)
        return (int(self.lib.noma_error_kind(self.ctx)), int(self.lib.noma_error_span(self.ctx)),
                message.decode("utf-8", "replace") if message else "runtime error")

    def error_calls(self) -> list[int]:
        """The span ids of the calls that were active when the last error was recorded, innermost
        first (the error's `called from here` notes)."""
        n = int(self.lib.noma_error_calls(self.ctx, None, 0))
        if n <= 0:
            return []
        out = (ctypes.c_int64 * n)()
        self.lib.noma_error_calls(self.ctx, out, n)
        return list(out)

    def take_output(self) -> str:
        n = self.lib.noma_output_len(self.ctx)
        if not n:
            return ""
        text = ctypes.string_at(self.lib.noma_output_data(self.ctx), n).decode("utf-8", "replace")
        self.lib.noma_output_clear(self.ctx)
        return text

    def peek_output(self) -> str:
        n = self.lib.noma_output_len(self.ctx)
        return ctypes.string_at(self.lib.noma_output_data(self.ctx), n).decode("utf-8", "replace") if n else ""

    def set_live(self, on: bool) -> None:
        """Prints and warnings go to the live buffer (take_live) instead of output / warnings."""
        self.lib.noma_set_live(self.ctx, 1 if on else 0)

    def take_live(self) -> bytes:
        """What was printed since the last call, safe while native code runs in another thread:
        printed bytes as is, each warning as b"\\0RECORD\\n" (parse_warning reads the record)."""
        data = ctypes.c_void_p()
        n = int(self.lib.noma_live_take(self.ctx, ctypes.byref(data)))
        if not n or not data.value:
            return b""
        try:
            return ctypes.string_at(data.value, n)
        finally:
            self.lib.noma_live_free(data)

    def set_stop_at(self, step: int) -> None:
        """Training loops stop (status 2) at the step boundary where the global step reaches
        `step`; -1: never (noma.tune advances training this way)."""
        self.lib.noma_set_stop_at(self.ctx, step)

    def metrics(self) -> dict[str, Any]:
        """Named metrics (`report`), by name: noma.rt.metrics.Metric records."""
        from noma.rt.metrics import read_metrics

        return read_metrics(self.lib, self.ctx)

    def restore_metrics(self, metrics: dict[str, Any]) -> None:
        from noma.rt.metrics import restore_metrics

        restore_metrics(self.lib, self.ctx, metrics)

    def interrupt_pending(self) -> bool:
        """An interrupt was requested (SIGINT, request_interrupt) and no training loop took it yet."""
        return bool(self.lib.noma_poll_interrupt())

    def take_warnings(self) -> list[tuple[int, str]]:
        """The warnings given since the last call, each as (span id or -1, message)."""
        n = self.lib.noma_warnings_len(self.ctx)
        text = ctypes.string_at(self.lib.noma_warnings_data(self.ctx), n).decode("utf-8", "replace") if n else ""
        self.lib.noma_warnings_clear(self.ctx)
        return [parse_warning(line) for line in text.splitlines() if line.strip()]

    # ---------------------------------------------------------------- state

    def _tensor(self, t: Any) -> Any:
        """A NumPy copy of a NomaTensor (a float for rank 0)."""
        if t.rank == 0:
            return float(t.data[0]) if t.data else 0.0
        shape = tuple(int(t.dims[i]) for i in range(t.rank))
        count = int(np.prod(shape))
        if count == 0 or not t.data:
            return np.zeros(shape, self.np_dtype)
        buf = np.ctypeslib.as_array(t.data, shape=(count,))
        return buf.copy().reshape(shape)

    def read_param(self, slot: int) -> Any:
        self.activate()
        ptr = self.lib.noma_param(slot)
        return self._tensor(ptr.contents) if ptr else None

    def read_global(self, slot: int) -> Any:
        self.activate()
        if not self.lib.noma_global_defined(slot):
            return None
        return self._tensor(self.lib.noma_global(slot).contents)

    def dim(self, dim_id: int) -> int:
        self.activate()
        return int(self.lib.noma_dim_get(dim_id))

    def optimizer_state(self, slot: int) -> dict[str, np.ndarray]:
        self.activate()
        out: dict[str, np.ndarray] = {}
        for which, name in enumerate(STATE_NAMES):
            t = native_lib.tensor_class(self.dtype)()
            mark = self.lib.noma_arena_mark()
            self.lib.noma_param_state(slot, which, ctypes.byref(t))
            if t.data:
                out[name] = np.asarray(self._tensor(t))
            self.lib.noma_arena_release(mark)  # the copy is NumPy's: one arena buffer serves all
        return out

    def global_step(self) -> int:
        self.activate()
        return int(self.lib.noma_global_step())

    def losses(self) -> np.ndarray:
        """The exact window: the last losses (all of them up to the window's size), oldest first."""
        n = int(self.lib.noma_log_len(self.ctx))
        out = np.zeros(n, self.np_dtype)
        if n:
            n = int(self.lib.noma_log_copy(self.ctx, out.ctypes.data, n))
        return out[:n].astype(np.float64)

    def last_loss(self) -> Optional[float]:
        """The last logged loss (no copy of anything); None when none was logged."""
        x = float(self.lib.noma_log_last(self.ctx))
        return None if math.isnan(x) and int(self.lib.noma_log_len(self.ctx)) == 0 else x

    def history(self, recent: bool = True) -> "HistoryData":
        """A consistent copy of the loss history (safe while another thread trains); without
        `recent` the exact window is left out (what a plot needs: the summary only)."""
        lib = self.lib
        nb = int(lib.noma_history_limit(0)) * int(lib.noma_history_limit(1))
        info = np.zeros(5, np.int64)
        counts = np.zeros(int(lib.noma_history_limit(0)), np.int64)
        buckets = np.zeros((3, nb), np.float64)
        cap = int(lib.noma_history_window(self.ctx)) if recent else 0
        window = np.zeros(max(cap, 1), self.np_dtype)
        lib.noma_history_get(self.ctx, info.ctypes.data, counts.ctypes.data, buckets[0].ctypes.data,
                             buckets[1].ctypes.data, buckets[2].ctypes.data, window.ctypes.data, cap)
        step, start, nlevels, nbuckets, nrecent = (int(v) for v in info)
        return HistoryData(step, start, counts[:nlevels].copy(), buckets[0, :nbuckets].copy(),
                           buckets[1, :nbuckets].copy(), buckets[2, :nbuckets].copy(),
                           window[:nrecent].astype(np.float64))

    def set_history(self, data: "HistoryData") -> None:
        """Replace the loss history (and the global step) by a copy taken with `history()`."""
        recent = np.ascontiguousarray(data.recent, dtype=self.np_dtype)
        counts = np.ascontiguousarray(data.counts, dtype=np.int64)
        arrays = [np.ascontiguousarray(a, dtype=np.float64) for a in (data.bmin, data.bmax, data.bsum)]
        ok = self.lib.noma_history_set(self.ctx, data.step, len(counts), counts.ctypes.data,
                                       *[a.ctypes.data for a in arrays], len(recent), recent.ctypes.data)
        if ok == -1:  # over the memory limit (or out of memory)
            raise MemoryError(self.error()[2])
        if not ok:
            raise ValueError("not a valid loss history")

    def history_bytes(self) -> int:
        """Heap bytes the runtime holds for the loss history (constant once allocated)."""
        return int(self.lib.noma_history_bytes(self.ctx))

    def events(self, param_names: dict[int, str], dim_names: dict[int, str]) -> list[Any]:
        from noma.rt.events import Event

        out = []
        self.activate()  # a freed parameter's name: the runtime keeps it (the tables do not)
        param_names = {**{s: n for s in range(int(self.lib.noma_param_slot_count(self.ctx)))
                          if (n := self.lib.noma_param_name(s).decode("utf-8", "replace"))}, **param_names}
        for i in range(int(self.lib.noma_event_count(self.ctx))):
            e = native_lib.NomaEvent()
            self.lib.noma_event_get(self.ctx, i, ctypes.byref(e))
            kind = EVENT_KINDS.get(int(e.kind), str(e.kind))
            ident = int(e.id)
            if kind == "control":  # the live controls: lr (value: the rate), pause, resume, stop
                value = float(e.value)
                out.append(Event(kind, int(e.step), CONTROL_ACTIONS.get(int(e.policy), str(e.policy)), (), (), "",
                                 origin="controls", value=None if math.isnan(value) else value))
                continue
            name = dim_names.get(ident, f"dim{ident}") if kind == "dim_resize" else param_names.get(ident, f"#{ident}")
            old = tuple(int(e.old_dims[i]) for i in range(e.old_rank))
            new = tuple(int(e.new_dims[i]) for i in range(e.new_rank))
            change = float(e.output_change)
            kept = None
            if int(e.policy) == KEEP_EVENT and kind in ("resize", "dim_resize"):  # the units kept, in order
                buf = (ctypes.c_int64 * max([1, *new]))()
                n = int(self.lib.noma_event_kept(self.ctx, i, buf, len(buf)))
                kept = tuple(int(buf[j]) for j in range(min(n, len(buf)))) if n >= 0 else None
            policy = "keep" if kept is not None else POLICY_NAMES.get(int(e.policy), str(e.policy))
            origin = "controls" if kind == "dim_resize" and int(e.aux) == 1 else "program"
            out.append(Event(kind, int(e.step), name, old, new, policy,
                             None if math.isnan(change) else change, kept, origin))
        return out
