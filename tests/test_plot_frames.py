"""Tests for noma.plot_frames: a training plot is drawn again only when it would look different."""

from __future__ import annotations

import io

import numpy as np
import pytest

import noma
from noma.session.history import Event, History

pytest.importorskip("matplotlib")

TRAIN = """optimize(w) with sgd(lr = 0.001) until loss < 0 max {steps} {{
    let loss = (w - 3.0) ^ 2 + 0.01;
    minimize loss;
}}
"""


def image(png: bytes) -> np.ndarray:
    import matplotlib.image as mpimg

    return mpimg.imread(io.BytesIO(png))


def test_a_short_cell_after_a_long_history_reuses_the_frame():
    """Ten-step cells after 10^6 steps move nothing by a visible amount: the frame is not drawn
    again, and the one reused looks like a fresh drawing (antialiasing aside)."""
    from noma import plots
    from noma.plot_frames import FrameCache

    s = noma.Session()
    assert s.execute("learn w = 0.0;").ok
    assert s.execute(TRAIN.format(steps=1_000_000)).ok
    frames = FrameCache()
    first = frames.png_of(s.read_history(recent=False), {})
    for _ in range(5):
        assert s.execute(TRAIN.format(steps=10)).ok
        assert frames.png_of(s.read_history(recent=False), {}) is first
    assert (frames.draws, frames.hits) == (1, 5)
    drawn = image(plots.history_png(s.read_history(recent=False), {}))
    assert np.abs(image(first) - drawn).max() <= 0.25
    assert s.execute(TRAIN.format(steps=500_000)).ok  # half as many steps again: a new picture
    assert frames.png_of(s.read_history(recent=False), {}) is not first
    assert frames.draws == 2


def test_visible_changes_are_drawn():
    from noma.plot_frames import FrameCache, frame_signature
    from noma.plots import figure_of

    log = np.geomspace(1.0, 1e-3, 3000)
    base = History(log, [])
    frames = FrameCache()
    png = frames.png_of(base, {})
    assert frames.png_of(History(log.copy(), []), {}) is png  # the same history: the same frame
    assert frame_signature(figure_of(base)).matches(frame_signature(figure_of(History(log.copy(), []))))
    changed = {
        "ten more steps of a short run": History(np.concatenate([log, np.full(10, 1e-3)]), []),
        "a resize": History(log, [Event("dim_resize", 2000, "hidden", (4,), (8,), "preserve")]),
        "layer sizes": base,
        "a loss going up at the end": History(np.concatenate([log[:-1], [0.5]]), []),
    }
    for name, history in changed.items():
        dims = {"hidden": 4} if name == "layer sizes" else {}
        assert frames.png_of(history, dims) is not png, name
        png = frames.png_of(base, {})  # back to the base picture (drawn again)
    assert frames.hits == 1 and frames.draws == 1 + 2 * len(changed)


def test_gaps_and_lines_that_turn_back_have_a_shape():
    from matplotlib.transforms import IdentityTransform

    from noma.plot_frames import _points

    xy = np.array([[0.0, 0.0], [10.0, 5.0], [np.nan, np.nan], [3.0, 1.0], [1.0, 2.0], [4.0, 4.0]])
    shape = _points(xy, IdentityTransform())
    assert len(shape) == (1 + 11) + (1 + 3) + (1 + 4)  # pieces 0→10, 3→1 (reversed), 1→4: a header + their columns
    moved = _points(xy + [0.01, 0.0], IdentityTransform())
    assert shape.shape == moved.shape and np.abs(shape - moved).max() <= 1
