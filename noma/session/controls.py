"""Live controls of a session's training loops: what a front end may change while a cell trains.

Owns: turning a front end's actions (grow or shrink a named dim by a step with an init policy,
set the learning rate of the running loop, pause/resume, stop the loop) into requests of the
native runtime (noma/rt/native/noma_rt_controls.c). The running training loop applies them at its
next step boundary, on its own thread, through the deferred-resize path a `realloc` in its body
takes (values and optimizer state remapped, no recompilation); the resize is an event of the
session history with its global step and origin "controls". Any thread may call these while
another runs the cell. When no cell runs, `apply_pending()` applies queued requests at once.
Input: dim names, sizes, policy names, a learning rate. Output: runtime requests; `applied`.
Imports: noma.compiler.middle.ir (the policy codes), noma.diagnostics.
"""

from __future__ import annotations

import math
from typing import Any, Optional

from noma.compiler.middle import ir
from noma.diagnostics import Diagnostic, Kind, NomaError

#: Init policies the controls offer for grown units (`realloc DIM = N init POLICY`), with the
#: parameters the runtime gets for each: (a, b); NaN means the policy's default.
POLICY_ARGS: dict[str, tuple[float, float]] = {
    "preserve": (math.nan, math.nan),
    "copy": (math.nan, math.nan),
    "zeros": (math.nan, math.nan),
    "normal": (0.0, 0.1),
    "xavier": (math.nan, math.nan),
    "he": (math.nan, math.nan),
}


class Controls:
    """The live controls of one session (the runtime keeps one set per process)."""

    def __init__(self, session: Any):
        self.session = session

    @property
    def lib(self) -> Any:
        return self.session.rt.lib

    def _dim_id(self, name: str) -> int:
        dims = self.session.symbols.dims
        if name not in dims:
            known = ", ".join(sorted(dims)) or "none"
            raise NomaError(Diagnostic(Kind.NAME, f"no dim named `{name}` (dims: {known})"))
        return int(dims[name])

    def resize(self, name: str, size: int, policy: str = "preserve", relative: bool = False) -> None:
        """Ask for `realloc NAME = SIZE init POLICY` (relative: by SIZE, keeping at least one
        unit) at the running loop's next step boundary."""
        if policy not in POLICY_ARGS:
            raise NomaError(Diagnostic(Kind.NAME, f"unknown init policy `{policy}` "
                                       f"(one of {', '.join(POLICY_ARGS)})"))
        if not relative and size < 1:
            raise NomaError(Diagnostic(Kind.SHAPE, f"a dim needs at least one unit, not {size}"))
        a, b = POLICY_ARGS[policy]
        if not self.lib.noma_ctl_resize_dim(self._dim_id(name), int(size), int(relative),
                                            ir.POLICIES[policy], a, b):
            raise NomaError(Diagnostic(Kind.RUNTIME, "too many control requests wait for a step boundary"))

    def grow(self, name: str, by: int, policy: str = "preserve") -> None:
        """Add `by` units to dim NAME at the next step boundary."""
        self.resize(name, abs(int(by)), policy, relative=True)

    def shrink(self, name: str, by: int, policy: str = "preserve") -> None:
        """Remove `by` units (the last ones) from dim NAME at the next step boundary (one stays)."""
        self.resize(name, -abs(int(by)), policy, relative=True)

    def set_lr(self, lr: float) -> None:
        """The learning rate of the running loop's parameters from its next step on (the next
        loop sets its own again)."""
        if not (lr > 0 and math.isfinite(lr)):
            raise NomaError(Diagnostic(Kind.RUNTIME, f"a learning rate must be positive, not {lr}"))
        if not self.lib.noma_ctl_set_lr(float(lr)):
            raise NomaError(Diagnostic(Kind.RUNTIME, "too many control requests wait for a step boundary"))

    def pause(self, on: bool = True) -> None:
        """Hold the running loop at its next step boundary (False: let it go on)."""
        self.lib.noma_ctl_pause(int(bool(on)))

    @property
    def paused(self) -> bool:
        return bool(self.lib.noma_ctl_paused())

    @property
    def in_loop(self) -> bool:
        """Whether a training loop has reached its first step boundary and not ended yet."""
        return bool(self.lib.noma_ctl_in_loop())

    def stop(self) -> None:
        """End the running loop at its next stop test, as if its `until` held (the cell goes on)."""
        self.lib.noma_ctl_stop()

    @property
    def applied(self) -> int:
        """How many requests running loops (or apply_pending) have applied, in this process."""
        return int(self.lib.noma_ctl_applied())

    def apply_pending(self) -> None:
        """Apply queued requests now. Only when no cell of this session runs (a front end knows)."""
        rt = self.session.rt
        rt.activate()
        if not rt.lib.noma_ctl_apply_now(rt.ctx):
            raise NomaError(Diagnostic(Kind.RUNTIME, rt.error()[2]))

    def settle(self) -> Optional[str]:
        """After a cell (nothing runs): requests still queued are applied now (a grow asked for
        as the loop ended), pause and stop are forgotten. The message of a failed request."""
        self.pause(False)
        self.lib.noma_ctl_take_stop()
        try:
            self.apply_pending()
        except NomaError as exc:
            return exc.diagnostics[0].message
        return None

    def clear(self) -> None:
        """Forget queued requests, pause and stop (a cell ended, the session was reset)."""
        self.lib.noma_ctl_clear()
