"""A runtime event as Python sees it: `Event` (resize, free, optimizer change, reset, re-initialisation).

Owns: the record noma.rt.runtime.Runtime.events() builds from the runtime's event log (the C
struct NomaEvent, noma.rt.native_types) and the session's history shows (noma.session.history
re-exports it).
Imports: the standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class Event:
    """A resize, free, optimizer change, reset, re-initialisation (`learn` of a defined
    parameter: kind "init") or an action of the live controls (kind "control"), at a global step."""

    kind: str
    step: int
    name: str
    old_shape: tuple[int, ...]
    new_shape: tuple[int, ...]
    policy: str
    output_change: Optional[float] = None
    #: a keep (`realloc NAME keep idx`, policy "keep"): the old indices of the units kept, in order
    kept: Optional[tuple[int, ...]] = None
    #: who asked for it: "program" (the code), "controls" (the live controls, noma.session.controls)
    origin: str = "program"
    #: kind "control" (an action of the live controls: name lr, pause, resume or stop): the new
    #: learning rate of an lr action
    value: Optional[float] = None
