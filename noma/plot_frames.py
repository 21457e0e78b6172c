"""Training-plot frames that are drawn only when they would look different.

Owns: FrameCache, which turns history snapshots into PNG bytes through noma.plots and reuses the
last PNG when the new figure shows the same thing at its pixel resolution, and
`frame_signature`, which says what a built (not yet drawn) figure shows: its layout, axis scales,
tick positions (in pixels) and labels, texts, legends, and every line and filled area as
display coordinates rounded to a quarter of a pixel, per pixel column (see _points). After a long
history a short cell moves nothing by a visible amount (ten steps of 10^7 are a millionth of the
axis), so its final frame is the one already drawn; drawing (Agg and PNG encoding: three
quarters of a frame's time, more with many tick labels) is skipped. Building the figure to take
its signature costs what building it did before.
Imports: numpy, hashlib, noma.plots; matplotlib through noma.plots (Agg only).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

#: Display coordinates are compared to 1/QUANTUM of a pixel.
QUANTUM = 4.0
#: A NaN or infinite coordinate (a gap in a line).
GAP = np.iinfo(np.int32).min


def _points(xy: Any, transform: Any) -> np.ndarray:
    """What a line through these vertices covers, in quarter pixels, independent of how many
    vertices make it: the vertices in display coordinates are split into pieces that run one way
    along x (a gap at NaN); each piece becomes, per pixel column it crosses, its lowest and
    highest row there (vertices in the column and the line's height at the column's edges), after
    the piece's first column. More or fewer buckets, a zigzag within a column or a shift by a
    fraction of a pixel leave this (nearly) unchanged; a visible change does not."""
    pts = np.asarray(transform.transform(np.asarray(xy, dtype=float).reshape(-1, 2)), dtype=float)
    finite = np.all(np.isfinite(pts), axis=1)
    rows: list[np.ndarray] = []
    for piece in _monotone_pieces(pts, finite):
        x, y = piece[:, 0], piece[:, 1]
        if x[-1] < x[0]:
            x, y = x[::-1], y[::-1]
        first = int(np.floor(x[0]))
        columns = int(np.floor(x[-1])) - first + 1
        edges = np.clip(first + np.arange(columns + 1, dtype=float), x[0], x[-1])
        at_edges = np.interp(edges, x, y)
        low = np.minimum(at_edges[:-1], at_edges[1:])
        high = np.maximum(at_edges[:-1], at_edges[1:])
        column = np.minimum(np.floor(x).astype(np.int64) - first, columns - 1)
        np.minimum.at(low, column, y)
        np.maximum.at(high, column, y)
        rows.append(np.array([[GAP, first]]))
        rows.append(np.rint(np.column_stack([low, high]) * QUANTUM).astype(np.int64))
    return np.concatenate(rows) if rows else np.zeros((0, 2), np.int64)


def _monotone_pieces(pts: np.ndarray, finite: np.ndarray) -> list[np.ndarray]:
    """Runs of finite points along which x never turns back (consecutive runs share a point)."""
    pieces = []
    for start, stop in _runs(finite):
        run = pts[start:stop]
        step = np.sign(np.diff(run[:, 0]))
        begin, direction = 0, 0.0
        for i, d in enumerate(step):
            if d == 0:
                continue
            if direction == 0:
                direction = d
            elif d != direction:
                pieces.append(run[begin:i + 1])
                begin, direction = i, d
        pieces.append(run[begin:])
    return pieces


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def _style(artist: Any) -> tuple:
    """What styles an artist: colours, widths, line style, alpha, visibility, z order."""
    get = lambda name: getattr(artist, name, lambda: None)()  # noqa: E731
    values = [get(n) for n in ("get_visible", "get_alpha", "get_zorder", "get_linestyle", "get_linewidth",
                               "get_color", "get_facecolor", "get_edgecolor", "get_fontsize", "get_rotation",
                               "get_marker", "get_drawstyle")]
    return tuple(repr(np.asarray(v).round(6).tolist()) if isinstance(v, np.ndarray) else repr(v) for v in values)


@dataclass
class Signature:
    """What a figure shows: `key` digests everything but positions (texts, styles, scales, how
    many of each thing); `shapes` are the positions, in quarter pixels (see _points)."""

    key: bytes
    shapes: list[np.ndarray]

    def matches(self, other: Optional["Signature"]) -> bool:
        """Whether the two figures look the same: equal keys, every position within one quarter
        pixel (a point on a rounding boundary may land on either side of it)."""
        if other is None or self.key != other.key or len(self.shapes) != len(other.shapes):
            return False
        for a, b in zip(self.shapes, other.shapes):
            if a.shape != b.shape:
                return False
            if a.size and int(np.max(np.abs(a - b))) > 1:
                return False
        return True


def frame_signature(fig: Any) -> Signature:
    """What a built figure shows at its resolution (see the module docstring)."""
    from matplotlib.collections import Collection
    from matplotlib.legend import Legend
    from matplotlib.lines import Line2D
    from matplotlib.text import Annotation, Text

    digest = hashlib.blake2b(digest_size=20)
    shapes: list[np.ndarray] = []

    def add(*parts: Any) -> None:
        for part in parts:
            if isinstance(part, np.ndarray):
                shapes.append(part)
                digest.update(repr(part.shape).encode())
            else:
                digest.update(repr(part).encode())

    add(tuple(np.asarray(fig.get_size_inches()).tolist()), fig.dpi)
    for ax in fig.axes:
        add("axes", tuple(np.round(ax.get_position().bounds, 6)))
        for axis, vertical in ((ax.xaxis, False), (ax.yaxis, True)):
            locs = np.asarray(axis.get_majorticklocs(), dtype=float)
            view = axis.get_view_interval()
            shown = locs[(locs >= min(view)) & (locs <= max(view))]
            minor = np.asarray(axis.get_minorticklocs(), dtype=float)
            along = ax.get_yaxis_transform() if vertical else ax.get_xaxis_transform()  # data one way, axes the other
            where = lambda v: np.rint(along.transform(  # noqa: E731
                np.column_stack([np.zeros_like(v), v] if vertical else [v, np.zeros_like(v)])) * QUANTUM
            ).astype(np.int64)
            add("axis", axis.get_scale(), tuple(axis.major.formatter.format_ticks(list(shown))),
                axis.label.get_text(), where(shown), where(minor))
        add(ax.get_title(), ax.get_title("left"), ax.get_title("right"))
        for artist in ax.get_children():
            if isinstance(artist, Line2D):
                add("line", _style(artist), _points(artist.get_xydata(), artist.get_transform()))
            elif isinstance(artist, Collection):
                add("collection", _style(artist))
                for path in artist.get_paths():
                    add(_points(path.vertices, artist.get_transform()))
            elif isinstance(artist, Annotation):
                x = ax.transData.transform((float(artist.xy[0]), 0.0))[0]
                add("annotation", artist.get_text(), _style(artist), np.array([round(float(x) * QUANTUM)]),
                    artist.xy[1], artist.xycoords, artist.xyann)
            elif isinstance(artist, Legend):
                add("legend", tuple(t.get_text() for t in artist.get_texts()), getattr(artist, "_loc", None),
                    tuple(_style(h) for h in getattr(artist, "legend_handles", ())))
            elif isinstance(artist, Text) and artist.get_text():
                add("text", artist.get_text(), _style(artist), tuple(artist.get_position()))
    return Signature(digest.digest(), shapes)


class FrameCache:
    """The last frame drawn, reused while new snapshots would look the same."""

    def __init__(self) -> None:
        self.signature: Optional[Signature] = None
        self.png: Optional[bytes] = None
        self.hits = 0
        self.draws = 0

    def png_of(self, history: Any, dims: Optional[dict[str, int]] = None) -> bytes:
        """The plot of `history` as PNG bytes: the last one again when nothing visible changed
        (compared with the frame drawn, not the last one asked for: changes cannot add up)."""
        from noma.plots import figure_of, render_png

        fig = figure_of(history, dims)
        signature = frame_signature(fig)
        if self.png is not None and signature.matches(self.signature):
            self.hits += 1
            return self.png
        png = render_png(fig)
        self.signature, self.png = signature, png
        self.draws += 1
        return png
