"""What the native runtime keeps in its context, for the interpreter: parameters and their
optimizer state, globals, dims and their bindings, printed lines and warnings, the loss log and
metrics, the tape, the generator and the resizes queued by a training step.

Owns: InterpState (re-exported by interp.py, where the session and the tests import it).
Imports: the standard library, numpy, interp_optimizers (OptSlot), interp_rng (RuntimeRng).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from noma.compiler.interp.interp_optimizers import OptSlot
from noma.compiler.interp.interp_rng import RuntimeRng

#: The runtime's default memory limit (NOMA_MEMORY_LIMIT overrides it there). The interpreter
#: refuses any single result larger than this before NumPy allocates it; it does not account for
#: the total in use as the runtime does, so it refuses a subset of what the runtime refuses.
MEMORY_LIMIT = 8 << 30


@dataclass
class InterpState:
    """What the native runtime keeps in its context, for the interpreter."""

    params: dict[int, np.ndarray] = field(default_factory=dict)
    param_names: dict[int, str] = field(default_factory=dict)
    opt: dict[int, OptSlot] = field(default_factory=dict)
    globals: dict[int, Any] = field(default_factory=dict)
    dims: dict[int, int] = field(default_factory=dict)
    dim_names: dict[int, str] = field(default_factory=dict)
    bindings: dict[tuple[int, int], int] = field(default_factory=dict)  # (slot, axis) -> dim id
    memory_limit: int = MEMORY_LIMIT  # bytes a parameter's resize may allocate (interp_resize)
    output: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    warned_spans: set[int] = field(default_factory=set)  # CHECK warnings already given (once each)
    loss_log: list[float] = field(default_factory=list)
    #: `report`: name -> [(global step, value)]
    metrics: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    tape: list[Any] = field(default_factory=list)
    rng: Any = field(default_factory=RuntimeRng)
    #: resizes queued by a training step (None outside training loops): applied after its update
    deferred: Optional[list[Callable[[], None]]] = None

    def set_dim(self, dim: int, size: int) -> None:
        """Declare a dim's size; parameters bound to it with another size lose that binding."""
        for (slot, axis), d in list(self.bindings.items()):
            if d == dim and self.params[slot].shape[axis] != size:
                del self.bindings[(slot, axis)]
        self.dims[dim] = size

    def apply_deferred(self) -> None:
        queue, self.deferred = self.deferred or [], []
        for apply in queue:
            apply()
