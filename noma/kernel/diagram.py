"""The network diagram the kernel shows after a cell resizes parameters.

Owns: reconstructing the chain of layer widths from a session's rank-2 parameters (W1 [2, h],
W2 [h, 1] → layers 2, h, 1) with their sizes before and after a cell's resize events, and
drawing it: layers as columns of circles, units added in the cell green, removed units red.
Imports: numpy, matplotlib (Figure only, Agg; lazily).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

RESIZE_KINDS = ("resize", "param_resize", "dim_resize")
MAX_SHOWN = 16  # circles drawn per column; a larger layer draws one circle per group of units


@dataclass
class Layer:
    """One column: a label (a dim name or a size), its width before and after."""

    label: str
    old: int
    new: int


def resize_events(events: list[Any]) -> list[Any]:
    return [e for e in events if e.kind in RESIZE_KINDS]


def layers_from_session(session: Any, events: list[Any]) -> list[Layer]:
    """Layer widths (before → after `events`) along the longest chain of matrices W_k [a, b]."""
    symbols = session.symbols
    shapes = {n: tuple(np.shape(v)) for n, v in session.params.items() if v is not None}
    old_shapes = dict(shapes)
    dim_old: dict[str, int] = {}
    for event in events:  # the first event of each name holds its shape before the cell
        if event.kind == "dim_resize":
            if event.old_shape:
                dim_old.setdefault(event.name, int(event.old_shape[0]))
        elif event.name in shapes and event.name not in _seen(events, event):
            old_shapes[event.name] = tuple(int(d) for d in event.old_shape)
    touched_by_event = {e.name for e in events if e.kind != "dim_resize"}
    for name, var in symbols.params.items():  # dims resized without per-parameter events
        if name in touched_by_event or name not in shapes:
            continue
        shape = list(old_shapes[name])
        for axis, dname in getattr(var, "dims", {}).items():
            if dname in dim_old and axis < len(shape):
                shape[axis] = dim_old[dname]
        old_shapes[name] = tuple(shape)
    order = sorted(shapes, key=lambda n: symbols.params[n].slot if n in symbols.params else 0)
    matrices = [n for n in order if len(shapes[n]) == 2]
    best = _longest_chain(matrices, shapes, events)
    if not best:  # no matrices: one column per resized parameter (its first axis)
        names = [n for n in order if n in touched_by_event and shapes[n]]
        return [Layer(n, int(old_shapes[n][0]) if old_shapes[n] else 0, int(shapes[n][0])) for n in names]
    layers = []
    for k, name in enumerate(best):
        var = symbols.params.get(name)
        dims = getattr(var, "dims", {}) if var is not None else {}
        if k == 0:
            layers.append(Layer(dims.get(0, "input"), old_shapes[name][0], shapes[name][0]))
        last = k == len(best) - 1
        layers.append(Layer(dims.get(1, "output" if last else f"{name} out"), old_shapes[name][1], shapes[name][1]))
    return layers


def _seen(events: list[Any], event: Any) -> set[str]:
    """Names of the non-dim events before `event` (so only the first one sets the old shape)."""
    out: set[str] = set()
    for e in events:
        if e is event:
            break
        if e.kind != "dim_resize":
            out.add(e.name)
    return out


def _longest_chain(matrices: list[str], shapes: dict[str, tuple], events: list[Any]) -> list[str]:
    """The longest run W_a, W_b, ... (declaration order) with cols(W_a) == rows(W_b)."""
    resized = {e.name for e in events}
    best: list[str] = []
    for start in range(len(matrices)):
        chain = [matrices[start]]
        for name in matrices[start + 1:]:
            if shapes[name][0] == shapes[chain[-1]][1]:
                chain.append(name)
        key = (len(chain), any(n in resized for n in chain))
        if key > (len(best), any(n in resized for n in best)):
            best = chain
    return best


def _shown(n: int) -> list[int]:
    """Unit indexes drawn for a layer of n units: all, or one circle per group of n/MAX_SHOWN."""
    if n <= MAX_SHOWN:
        return list(range(n))
    return [k * n // MAX_SHOWN for k in range(MAX_SHOWN)]


def network_png(layers: list[Layer], title: str = "") -> bytes:
    """Columns of circles, green for added units and red for removed ones, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    width = max(3.0, 1.3 * len(layers) + 0.6)
    fig = Figure(figsize=(width, 3.5), dpi=90)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_axis_off()
    columns: list[list[tuple[float, float, str]]] = []
    for x, layer in enumerate(layers):
        units = _shown(max(layer.old, layer.new))
        count = len(units)
        column = []
        for k, unit in enumerate(units):
            y = (count - 1) / 2.0 - k
            if unit >= layer.old:
                color = "#2ca02c"  # new
            elif unit >= layer.new:
                color = "#d62728"  # removed
            else:
                color = "#8fb3d9"
            column.append((float(x), y, color))
        columns.append(column)
        change = f"{layer.old}→{layer.new}" if layer.old != layer.new else f"{layer.new}"
        if max(layer.old, layer.new) > MAX_SHOWN:
            change += f"\n(1 circle ≈ {max(layer.old, layer.new) / MAX_SHOWN:.3g} units)"
        ax.text(x, -(MAX_SHOWN / 2.0) - 0.6, f"{layer.label}\n{change}", ha="center", va="top", fontsize=8)
    segments = [[(a[0], a[1]), (b[0], b[1])] for left, right in zip(columns, columns[1:])
                for a in left for b in right]
    if segments:
        ax.add_collection(LineCollection(segments, colors="#999999", linewidths=0.4, alpha=0.35, zorder=1))
    for column in columns:
        if column:
            xs, ys, colors = zip(*column)
            ax.scatter(xs, ys, s=90, c=list(colors), edgecolors="#333333", linewidths=0.6, zorder=2)
    ax.set_xlim(-0.6, max(len(layers) - 0.4, 0.6))
    ax.set_ylim(-(MAX_SHOWN / 2.0) - 2.4, MAX_SHOWN / 2.0 + 0.2)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def resize_title(events: list[Any]) -> str:
    """`hidden 2→16` for dim events, else `W1 [2, 2]→[2, 8]` (first few)."""
    parts = []
    for e in events:
        if e.kind == "dim_resize" and e.old_shape and e.new_shape:
            parts.append(f"{e.name} {e.old_shape[0]}→{e.new_shape[0]}")
    if not parts:
        parts = [f"{e.name} {list(e.old_shape)}→{list(e.new_shape)}" for e in events[:3]]
    return "realloc: " + ", ".join(dict.fromkeys(parts))


def diagram_for(session: Any, events: list[Any]) -> Optional[bytes]:
    """The PNG for a cell's resize events, or None when there is nothing to draw."""
    events = resize_events(events)
    if not events:
        return None
    layers = layers_from_session(session, events)
    if not layers:
        return None
    return network_png(layers, resize_title(events))
