"""Python's handle on one native runtime context (see docs/RUNTIME_ABI.md).

Owns: creating the context, invoking native entry points, and reading its state as NumPy:
parameters, globals, dims, optimizer state, loss log, events, captured output, errors.
Imports: numpy, noma.rt.native_lib. Not noma.compiler.
"""

from __future__ import annotations

import ctypes
import math
from typing import Any

import numpy as np

from noma.rt import native_lib

EVENT_KINDS = {0: "resize", 1: "dim_resize", 2: "free", 3: "optimizer", 4: "reset"}
POLICY_NAMES = {0: "default", 1: "zeros", 2: "normal", 3: "uniform", 4: "xavier", 5: "he",
                6: "copy", 7: "preserve"}
STATE_NAMES = ("m", "v", "step", "pow1", "pow2")


class Runtime:
    """One NomaCtx of the native runtime library."""

    def __init__(self, dtype: str = "f64", capture: bool = True):
        self.dtype = dtype
        self.np_dtype = np.float32 if dtype == "f32" else np.float64
        self.lib = native_lib.load_runtime(dtype)
        self.ctx = self.lib.noma_ctx_new()
        self.lib.noma_set_capture(self.ctx, 1 if capture else 0)
        self.capture = capture

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
        printed bytes as is, each warning as b"\\0MESSAGE\\n"."""
        data = ctypes.c_void_p()
        n = int(self.lib.noma_live_take(self.ctx, ctypes.byref(data)))
        if not n or not data.value:
            return b""
        try:
            return ctypes.string_at(data.value, n)
        finally:
            self.lib.noma_live_free(data)

    def interrupt_pending(self) -> bool:
        """An interrupt was requested (SIGINT, request_interrupt) and no training loop took it yet."""
        return bool(self.lib.noma_poll_interrupt())

    def take_warnings(self) -> list[str]:
        n = self.lib.noma_warnings_len(self.ctx)
        text = ctypes.string_at(self.lib.noma_warnings_data(self.ctx), n).decode("utf-8", "replace") if n else ""
        self.lib.noma_warnings_clear(self.ctx)
        lines = [line for line in text.splitlines() if line.strip()]
        return [line[len("warning: "):] if line.startswith("warning: ") else line for line in lines]

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
        n = int(self.lib.noma_log_len(self.ctx))
        if n == 0:
            return np.zeros(0)
        return np.ctypeslib.as_array(self.lib.noma_log_data(self.ctx), shape=(n,)).astype(np.float64)

    def events(self, param_names: dict[int, str], dim_names: dict[int, str]) -> list[Any]:
        from noma.session import Event

        out = []
        for i in range(int(self.lib.noma_event_count(self.ctx))):
            e = native_lib.NomaEvent()
            self.lib.noma_event_get(self.ctx, i, ctypes.byref(e))
            kind = EVENT_KINDS.get(int(e.kind), str(e.kind))
            ident = int(e.id)
            name = dim_names.get(ident, f"dim{ident}") if kind == "dim_resize" else param_names.get(ident, f"#{ident}")
            old = tuple(int(e.old_dims[i]) for i in range(e.old_rank))
            new = tuple(int(e.new_dims[i]) for i in range(e.new_rank))
            change = float(e.output_change)
            out.append(Event(kind, int(e.step), name, old, new, POLICY_NAMES.get(int(e.policy), str(e.policy)),
                             None if math.isnan(change) else change))
        return out
