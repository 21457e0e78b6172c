"""Training plots: the loss curve with growth events marked, and layer sizes over steps.

Owns: turning a session History (+ current dims) into a matplotlib figure and PNG bytes/files,
used by `noma run --plot`, the REPL's :plot and the kernel's live display. The loss curve is
drawn from the history's bounded summary (noma.session.history.LossSummary: at most MAX_POINTS buckets,
each drawn as its mean with a min-max band), so a frame costs the same after ten steps or a
hundred million; a run short enough to be held exactly is drawn exactly. Each run segment (a
`learn` re-initialising parameters starts one) is its own labelled curve; resize labels that
would overlap are merged; the layer-size panel (integer ticks) appears only when there are dims.
Imports: numpy, noma.session.history, noma.source_file, matplotlib (Agg backend only, imported lazily).
"""

from __future__ import annotations

import io
from typing import Any, Optional

import numpy as np

from noma.session.history import LossSummary, segment_of

#: Most buckets a loss curve draws (adjacent buckets merge beyond it).
MAX_POINTS = 4096
#: Resize labels closer than this fraction of the step axis are merged into one.
LABEL_GAP = 0.035
#: Most event lines drawn (a history with more resizes draws one line per label group).
MAX_EVENT_LINES = 200
COLORS = ("#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
RESIZE_KINDS = ("resize", "dim_resize")
#: Losses spanning at least this many decades get one label per decade (or every few decades).
LOG_DECADES = 2.0


def loss_buckets(history: Any, max_points: int = MAX_POINTS) -> LossSummary:
    """What the loss curve draws: the exact losses when the whole run is held and fits, else the
    summary, with adjacent buckets merged until at most max_points remain."""
    if getattr(history, "complete", False) and 0 < len(history.losses) <= max_points:
        return LossSummary.exact(history.losses, history.first_step)
    s = history.summary
    first, count, lo, hi, mean = s.first, s.count, s.min, s.max, s.mean
    while len(first) > max_points:
        n = len(first) // 2 * 2
        c2 = count[:n].reshape(-1, 2)
        merged_count = c2.sum(axis=1)
        with np.errstate(invalid="ignore"):
            merged_mean = (mean[:n].reshape(-1, 2) * c2).sum(axis=1) / merged_count
        first = np.concatenate([first[:n:2], first[n:]])
        count = np.concatenate([merged_count, count[n:]])
        lo = np.concatenate([np.fmin(lo[:n:2], lo[1:n:2]), lo[n:]])
        hi = np.concatenate([np.fmax(hi[:n:2], hi[1:n:2]), hi[n:]])
        mean = np.concatenate([merged_mean, mean[n:]])
    return LossSummary(first, count, lo, hi, mean)


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _power_text(value: float, _pos: Any = None) -> str:
    if value <= 0 or not np.isfinite(value):
        return ""
    exponent = int(np.round(np.log10(value)))
    if abs(value / 10.0 ** exponent - 1) > 1e-6:
        return f"{value:.2g}".replace("e-0", "e-").replace("e+0", "e")
    return {0: "1", 1: "10", 2: "100", -1: "0.1", -2: "0.01"}.get(exponent, f"1e{exponent}")


def _loss_axis(axis: Any, buckets: LossSummary) -> None:
    """The loss axis, labelled whatever the range: logarithmic with a label per decade (or every
    few decades) when the losses span at least LOG_DECADES decades, logarithmic with 1-2-5 labels
    over a narrower positive range, linear when the range is too narrow for those (or a loss is
    not positive). Labels are plain text ("1e-4", "0.02"): mathtext labels cost most of a frame."""
    from matplotlib.ticker import (FuncFormatter, LogLocator, MaxNLocator, NullFormatter, NullLocator,
                                   ScalarFormatter)

    finite_min = buckets.min[np.isfinite(buckets.min)]
    finite_max = buckets.max[np.isfinite(buckets.max)]
    if not len(finite_min) or not len(finite_max):
        return
    low, high = float(finite_min.min()), float(finite_max.max())
    decades = np.log10(high / low) if low > 0 else 0.0
    if low > 0 and decades >= LOG_DECADES:
        axis.axes.set_yscale("log")
        axis.set_major_locator(LogLocator(numticks=7))
        # unlabelled ticks at 2 and 5 over a few decades, at the unlabelled decades over many
        # (matplotlib's default, 2..9 in every decade, made most of a frame's cost)
        axis.set_minor_locator(LogLocator(subs=(2.0, 5.0) if decades <= 5 else (1.0,), numticks=30))
    elif low > 0 and high / low >= 2.5:  # at least one 1-2-5 step inside the range
        axis.axes.set_yscale("log")
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0), numticks=7))
        axis.set_minor_locator(NullLocator())
    else:
        axis.set_major_locator(MaxNLocator(nbins=5))
        axis.set_major_formatter(ScalarFormatter(useOffset=False))
        return
    axis.set_major_formatter(FuncFormatter(_power_text))
    axis.set_minor_formatter(NullFormatter())


def _resize_text(event: Any) -> str:
    if event.kind == "control":  # lr 0.01, pause, resume, stop
        value = getattr(event, "value", None)
        return f"{event.name}{'' if value is None else f' {value:.3g}'} (controls)"
    if event.kind == "dim_resize":
        old = event.old_shape[0] if event.old_shape else "?"
        new = event.new_shape[0] if event.new_shape else "?"
        by = " (controls)" if getattr(event, "origin", "program") == "controls" else ""
        return f"{event.name} {old}→{new}{by}"
    return f"{event.name} {_shape(event.old_shape)}→{_shape(event.new_shape)}"


def resize_groups(history: Any, span: tuple[float, float]) -> list[tuple[list[int], str, bool]]:
    """Resize events and actions of the live controls as label groups: (their steps, one label,
    grew) with groups at least LABEL_GAP of the step axis apart, so no two labels overlap. A dim
    resize stands for the parameter resizes it caused (one label per layer, not per tensor)."""
    dim_steps = {e.step for e in history.events if e.kind == "dim_resize"}
    shown = [e for e in history.events
             if e.kind in ("dim_resize", "control") or (e.kind == "resize" and e.step not in dim_steps)]
    gap = max(span[1] - span[0], 1) * LABEL_GAP
    groups: list[list[Any]] = []
    for event in sorted(shown, key=lambda e: e.step):
        if groups and event.step - groups[-1][0].step < gap:
            groups[-1].append(event)
        else:
            groups.append([event])
    out = []
    for group in groups:
        grew = [int(np.prod(e.new_shape or (0,))) >= int(np.prod(e.old_shape or (0,))) for e in group]
        if len(group) == 1:
            label = _resize_text(group[0])
        elif len({e.name for e in group}) == 1 and group[0].kind == "dim_resize":
            first, last = group[0], group[-1]
            label = (f"{first.name} {first.old_shape[0] if first.old_shape else '?'}→…→"
                     f"{last.new_shape[0] if last.new_shape else '?'} ({len(group)} resizes)")
        else:
            names = sorted({e.name for e in group})
            label = ", ".join(names[:3]) + (", …" if len(names) > 3 else "") + f" ({len(group)} resizes)"
        out.append((sorted({e.step for e in group}), label, all(grew)))
    return out


def layer_sizes(history: Any, current_dims: dict[str, int]) -> dict[str, list[tuple[int, int]]]:
    """Named dims over global steps, reconstructed from the dim-resize events."""
    end = max(int(getattr(history, "total_steps", 0) or len(history.losses)), 1)
    series: dict[str, list[tuple[int, int]]] = {}
    for event in history.events:
        if event.kind != "dim_resize":
            continue
        points = series.setdefault(event.name, [(0, event.old_shape[0] if event.old_shape else 0)])
        points.append((event.step, event.new_shape[0] if event.new_shape else 0))
    for name, size in current_dims.items():
        points = series.setdefault(name, [(0, size)])
        points.append((max(end, points[-1][0]), points[-1][1]))
    return series


def _band(ax: Any, x: np.ndarray, low: np.ndarray, high: np.ndarray, color: str) -> None:
    """The min-max band: one polygon per run of buckets with finite bounds (a gap where a bucket
    is NaN or infinite), as a single collection (fill_between's bookkeeping cost a tenth of a frame)."""
    from matplotlib.collections import PolyCollection

    finite = np.isfinite(low) & np.isfinite(high)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], finite.view(np.int8), [0]])))
    polygons = []
    for start, stop in zip(edges[::2], edges[1::2]):
        xs = x[start:stop]
        polygons.append(np.column_stack([np.concatenate([xs, xs[::-1]]),
                                         np.concatenate([low[start:stop], high[start:stop][::-1]])]))
    if polygons:
        ax.add_collection(PolyCollection(polygons, facecolors=color, alpha=0.2, linewidths=0), autolim=True)
        ax.autoscale_view()


def _draw_losses(ax: Any, history: Any) -> None:
    buckets = loss_buckets(history)
    segments = history.segments()
    if len(buckets):
        x = buckets.first + (buckets.count - 1) / 2.0
        which = segment_of(x, segments)
        banded = bool(np.any(buckets.count > 1))
        for index, segment in enumerate(segments):
            sel = which == index
            if not np.any(sel):
                continue
            color = COLORS[index % len(COLORS)]
            label = segment.label if len(segments) > 1 else None
            ax.plot(x[sel], buckets.mean[sel], color=color, lw=1.4, label=label)
            if banded:
                _band(ax, x[sel], buckets.min[sel], buckets.max[sel], color)
        _loss_axis(ax.yaxis, buckets)
    for segment in segments[1:]:  # where a re-initialisation started a new run
        ax.axvline(segment.first - 0.5, color="#555", ls=":", lw=1.2)
    if len(segments) > 1:
        ax.legend(fontsize=8, loc="best")
    span = (float(buckets.first[0]) if len(buckets) else 0.0, float(max(history.total_steps, 1)))
    groups = resize_groups(history, span)
    drawn = 0
    for steps, label, grew in groups:
        color = "#2ca02c" if grew else "#d62728"
        lines = steps if drawn + len(steps) <= MAX_EVENT_LINES else steps[:1]
        drawn += len(lines)
        for step in lines:
            ax.axvline(step, color=color, ls="--", lw=1)
        ax.annotate(label, (steps[0], 1), xycoords=("data", "axes fraction"), xytext=(-2, -3),
                    textcoords="offset points", rotation=90, va="top", ha="right", fontsize=8,
                    color="#333")
    ax.set_xlabel("global step")
    ax.set_ylabel("loss")
    title = "loss"
    if len(buckets) and int(buckets.count.max()) > 1:
        title += " (mean, min–max band)"
    ax.set_title(title, y=1.0)  # placed, not measured: fitting it to the tick labels cost a sixth of a frame
    ax.grid(alpha=0.3)


def step_text(step: float, _pos: Any = None) -> str:
    """A step axis tick: 950, 25k, 1.5M, 2G (readable from the back of a room)."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(step) >= scale * (10 if suffix == "k" else 1):
            return f"{step / scale:.3g}{suffix}"
    return f"{step:.0f}"


def _step_axis(axis: Any) -> None:
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    axis.set_major_locator(MaxNLocator(nbins=5, integer=True))
    axis.set_major_formatter(FuncFormatter(step_text))


def _draw_metrics(ax_loss: Any, metrics: dict) -> None:
    """Named metrics (`report`) as dashed lines against a right-hand axis of the loss panel."""
    if not metrics:
        return
    ax = ax_loss.twinx()
    for k, (name, m) in enumerate(metrics.items()):
        ax.plot(m.steps, m.values, ls="--", lw=1.2, marker="." if len(m.steps) < 50 else None,
                color=COLORS[(k + 3) % len(COLORS)], label=name)
    ax.set_ylabel(", ".join(metrics), fontsize=8)
    ax.legend(fontsize=8, loc="upper right")


def _figure(history: Any, sizes: dict[str, list[tuple[int, int]]]) -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    # fixed margins, not tight_layout: measuring every label's extent doubled a frame's time
    if sizes:
        fig = Figure(figsize=(10, 3.8), dpi=100)
        ax_loss, ax_size = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
        fig.subplots_adjust(left=0.07, right=0.98, bottom=0.14, top=0.91, wspace=0.18)
    else:
        fig = Figure(figsize=(7, 3.8), dpi=100)
        ax_loss, ax_size = fig.subplots(1, 1), None
        fig.subplots_adjust(left=0.12, right=0.97, bottom=0.14, top=0.91)
    _draw_losses(ax_loss, history)
    _draw_metrics(ax_loss, getattr(history, "metrics", {}))
    _step_axis(ax_loss.xaxis)
    if ax_size is not None:
        for name, points in sizes.items():
            ax_size.step([p[0] for p in points], [p[1] for p in points], where="post", label=name, lw=1.6)
        ax_size.set_xlabel("global step")
        ax_size.set_title("layer sizes", y=1.0)
        ax_size.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax_size.set_ylim(*_size_limits([p[1] for points in sizes.values() for p in points]))
        _step_axis(ax_size.xaxis)
        ax_size.legend(fontsize=8, loc="best")
        ax_size.grid(alpha=0.3)
    return fig


def _size_limits(values: list[int]) -> tuple[float, float]:
    """The layer-size axis' range: at least one unit beyond the sizes on each side (0.5 below a
    size 0), so that the integer locator always finds integers to tick (a size that never changed
    had matplotlib's margins of ±0.4 around it and fractional ticks)."""
    lo, hi = min(values), max(values)
    pad = max(1.0, 0.05 * (hi - lo))
    return (lo - pad if lo >= pad else lo - 0.5), hi + pad


def figure_of(history: Any, current_dims: Optional[dict[str, int]] = None) -> Any:
    """The loss and layer-size plot as a matplotlib Figure (built, not drawn yet)."""
    return _figure(history, layer_sizes(history, current_dims or {}))


def render_png(fig: Any) -> bytes:
    """Draw a figure into PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def history_png(history: Any, current_dims: Optional[dict[str, int]] = None) -> bytes:
    """The loss and layer-size plot as PNG bytes."""
    return render_png(figure_of(history, current_dims))


def save_history_png(path: str, history: Any, current_dims: Optional[dict[str, int]] = None) -> str:
    """Write the plot to path (a regular file, or a new one); OSError when it cannot."""
    from noma.source_file import open_regular

    with open_regular(path, "wb") as f:
        f.write(history_png(history, current_dims))
    return path
