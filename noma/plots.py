"""Training plots: the loss curve with growth events marked, and layer sizes over steps.

Owns: turning a session History (+ current dims and parameter sizes) into a matplotlib figure
and PNG bytes/files. Used by `noma run --plot`, the REPL's :plot and the kernel's live display.
Imports: numpy, matplotlib (Agg backend only, imported lazily).
"""

from __future__ import annotations

import io
from typing import Any, Optional

import numpy as np


def _figure(history: Any, sizes_over_steps: Optional[dict[str, list[tuple[int, int]]]] = None) -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.4), dpi=100)
    ax_loss, ax_size = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    losses = np.asarray(history.losses, dtype=float)
    steps = np.arange(1, len(losses) + 1)
    if len(losses):
        positive = losses[np.isfinite(losses)]
        ax_loss.plot(steps, losses, color="#1f77b4", lw=1.4)
        if len(positive) and positive.min() > 0:
            ax_loss.set_yscale("log")
    dim_steps = {e.step for e in history.events if e.kind == "dim_resize"}
    for event in history.events:
        # a dim resize also resizes its parameters: label the dim once, not every parameter
        if event.kind == "dim_resize" or (event.kind == "resize" and event.step not in dim_steps):
            grow = int(np.prod(event.new_shape or (0,))) >= int(np.prod(event.old_shape or (0,)))
            ax_loss.axvline(event.step, color="#2ca02c" if grow else "#d62728", ls="--", lw=1)
            label = f"{event.name} {_shape(event.old_shape)}→{_shape(event.new_shape)}"
            ax_loss.annotate(label, (event.step, 1), xycoords=("data", "axes fraction"), rotation=90,
                             va="top", ha="right", fontsize=7, color="#444")
    ax_loss.set_xlabel("global step")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("loss")
    ax_loss.grid(alpha=0.3)
    sizes = sizes_over_steps or layer_sizes(history, {})
    for name, points in sizes.items():
        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        ax_size.step(xs, ys, where="post", label=name)
    ax_size.set_xlabel("global step")
    ax_size.set_title("layer sizes")
    if sizes:
        ax_size.legend(fontsize=8, loc="best")
    ax_size.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def layer_sizes(history: Any, current_dims: dict[str, int]) -> dict[str, list[tuple[int, int]]]:
    """Named dims over global steps, reconstructed from the dim-resize events."""
    end = max(len(history.losses), 1)
    series: dict[str, list[tuple[int, int]]] = {}
    for event in history.events:
        if event.kind != "dim_resize":
            continue
        points = series.setdefault(event.name, [(0, event.old_shape[0] if event.old_shape else 0)])
        points.append((event.step, event.new_shape[0] if event.new_shape else 0))
    for name, size in current_dims.items():
        points = series.setdefault(name, [(0, size)])
        points.append((end, points[-1][1]))
    return series


def history_png(history: Any, current_dims: Optional[dict[str, int]] = None) -> bytes:
    """The loss and layer-size plot as PNG bytes."""
    fig = _figure(history, layer_sizes(history, current_dims or {}))
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def save_history_png(path: str, history: Any, current_dims: Optional[dict[str, int]] = None) -> str:
    with open(path, "wb") as f:
        f.write(history_png(history, current_dims))
    return path
