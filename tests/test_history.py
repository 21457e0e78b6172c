"""The loss history in bounded memory (issue 15): the runtime's summary against an exact log, the
exact window, checkpoints of the new format and of the previous one, no memory per step, run
segments and the plots drawn from the summary.

The oracle for the summary is a plain Python model of the specification (levels of K buckets,
bucket l holding 2^l consecutive losses, the two oldest of a full level merging into the next),
checked bucket by bucket (first step, count, min, max, mean) against NumPy on the exact log.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import noma
from noma.diagnostics import NomaError
from noma.session.history import History, LossSummary
from noma.rt import native_lib

ROOT = Path(__file__).resolve().parent
OLD = ROOT / "data" / "checkpoint_v2"


@pytest.fixture(scope="module")
def lib():
    return native_lib.load_runtime("f64")


@pytest.fixture
def ctx(lib):
    c = lib.noma_ctx_new()
    lib.noma_ctx_activate(c)
    yield c
    lib.noma_ctx_free(c)


def read(lib, ctx) -> tuple[LossSummary, np.ndarray, int]:
    """The runtime's summary, exact window and global step, through the ABI."""
    levels, per_level = int(lib.noma_history_limit(0)), int(lib.noma_history_limit(1))
    info = np.zeros(5, np.int64)
    counts = np.zeros(levels, np.int64)
    b = np.zeros((3, levels * per_level))
    window = np.zeros(int(lib.noma_history_window(ctx)))
    assert lib.noma_history_get(ctx, info.ctypes.data, counts.ctypes.data, b[0].ctypes.data, b[1].ctypes.data,
                                b[2].ctypes.data, window.ctypes.data, len(window)) == 1
    step, start, nlevels, nb, nrecent = (int(v) for v in info)
    summary = LossSummary.from_levels(start, counts[:nlevels], b[0, :nb], b[1, :nb], b[2, :nb])
    return summary, window[:nrecent], step


def model_widths(n: int, k: int) -> list[int]:
    """Bucket widths, oldest first, after n losses (the specification, written out plainly)."""
    levels: list[list[int]] = []
    for _ in range(n):
        level, width = 0, 1
        while True:
            if len(levels) == level:
                levels.append([])
            if len(levels[level]) == k:
                del levels[level][:2]
                levels[level].append(width)
                level, width = level + 1, width * 2
                continue
            levels[level].append(width)
            break
    return [w for level in reversed(levels) for w in level]


def check_against_exact(summary: LossSummary, log: np.ndarray, first_step: int = 1) -> None:
    """Every bucket's steps, min, max and mean are those of the exact log's slice."""
    assert len(summary) > 0 and int(summary.count.sum()) == len(log)
    assert summary.first[0] == first_step
    assert np.array_equal(summary.first[1:], summary.first[:-1] + summary.count[:-1])  # contiguous
    for first, count, lo, hi, mean in zip(summary.first, summary.count, summary.min, summary.max, summary.mean):
        part = log[first - first_step:first - first_step + count]
        assert len(part) == count
        finite = part[~np.isnan(part)]
        if len(finite):
            assert lo == finite.min() and hi == finite.max(), (first, count)
        else:
            assert np.isnan(lo) and np.isnan(hi)
        if np.isnan(part).any():
            assert np.isnan(mean)
        else:
            assert mean == pytest.approx(part.mean(), rel=1e-12, abs=1e-300), (first, count)


# ----------------------------------------------------------------------------- the summary


@pytest.mark.parametrize("n", [1, 2, 127, 128, 129, 130, 255, 256, 257, 383, 384, 385, 1000, 4096, 33_333])
def test_summary_matches_the_exact_log(lib, ctx, n):
    """Lengths on both sides of the level boundaries (K = 128 buckets per level)."""
    k = int(lib.noma_history_limit(1))
    rng = np.random.default_rng(n)
    log = np.exp(rng.normal(size=n)) + np.linspace(3, 0, n)
    for x in log:
        lib.noma_log_loss(float(x))
    summary, window, step = read(lib, ctx)
    assert step == n and lib.noma_global_step() == n
    assert list(summary.count) == model_widths(n, k)
    assert np.all(summary.count & (summary.count - 1) == 0)  # powers of two
    assert np.all(np.diff(summary.count) <= 0)  # coarse (old) to fine (recent)
    check_against_exact(summary, log)
    assert np.array_equal(window, log[-len(window):]) and len(window) == min(n, lib.noma_history_window(ctx))


def test_summary_with_nan_and_a_small_window(lib, ctx):
    """NaN: min/max ignore it, the mean does not. A small window keeps exactly the last losses."""
    assert lib.noma_history_set_window(ctx, 50) == 1 and lib.noma_history_window(ctx) == 50
    log = np.cos(np.arange(2000) * 0.01) + 2
    log[[5, 6, 700, 1999]] = np.nan
    for x in log:
        lib.noma_log_loss(float(x))
    summary, window, step = read(lib, ctx)
    check_against_exact(summary, log)
    assert step == 2000 and np.array_equal(window, log[-50:], equal_nan=True)
    assert lib.noma_history_set_window(ctx, 10) == 1  # shrinking keeps the newest
    assert np.array_equal(read(lib, ctx)[1], log[-10:], equal_nan=True)
    assert lib.noma_history_set_window(ctx, 0) == 0


def test_history_set_round_trips_and_rejects_bad_levels():
    from noma.rt.runtime import Runtime

    src, dst = Runtime(), Runtime()
    src.activate()
    for x in np.linspace(5, 1, 700):
        src.lib.noma_log_loss(float(x))
    data = src.history()
    dst.set_history(data)
    again = dst.history()
    assert again.step == 700 and again.start == 0 and np.array_equal(again.recent, data.recent)
    for a, b in zip((again.counts, again.bmin, again.bmax, again.bsum), (data.counts, data.bmin, data.bmax, data.bsum)):
        assert np.array_equal(a, b)
    bad = np.zeros(3, np.int64)
    bad[0] = int(dst.lib.noma_history_limit(1)) + 1  # more buckets than a level holds
    assert dst.lib.noma_history_set(dst.ctx, 10**6, 3, bad.ctypes.data, None, None, None, 0, None) == 0
    data.step = 5  # fewer steps than the summary covers
    with pytest.raises(ValueError):
        dst.set_history(data)
    assert dst.history().step == 700  # a rejected history changes nothing


# ----------------------------------------------------------------------------- memory


def test_no_memory_per_step_once_the_window_is_full():
    """The runtime's history buffers, the arena and an undo snapshot do not grow with steps."""
    s = noma.Session()
    s.history_window = 1000
    s.execute("learn w = 5.0;")
    cell = "optimize(w) with sgd(lr = 0.001) max 20000 { let loss = (w - 3) ^ 2 + 1; minimize loss; }"
    sizes = []
    for _ in range(6):
        assert s.execute(cell).status in ("ok",)
        snapshot = s.undo_stack[-1].history
        sizes.append((s.rt.history_bytes(), int(s.rt.lib.noma_arena_reserved(s.rt.ctx)), snapshot.nbytes
                      if len(snapshot.recent) == 1000 else None))
    assert s.rt.global_step() == 120_000
    steady = sizes[1:]
    assert all(b == steady[0][0] for b, _, _ in steady) and steady[0][0] > 0
    assert all(a == steady[0][1] for _, a, _ in steady)
    # an undo snapshot holds the window and the summary: at most K buckets per level in use
    limit = 1000 * 8 + 64 * 8 + 3 * 8 * int(s.rt.lib.noma_history_limit(1)) * 18
    assert all(n is not None and n <= limit for _, _, n in steady)
    h = s.history
    assert len(h.losses) == 1000 and h.first_step == 119_001 and h.total_steps == 120_000
    assert len(h.summary) <= 128 * 17 and int(h.summary.count.sum()) == 120_000


def test_the_history_is_charged_to_the_memory_limit():
    """The history's blocks count against the context's memory limit (and are given back); a
    history or window over the limit is a runtime error naming the limit, not a crash."""
    from noma.rt.runtime import Runtime

    rt = Runtime()
    rt.activate()
    before = rt.memory_used
    rt.lib.noma_log_loss(1.0)
    assert rt.history_bytes() > 0 and rt.memory_used - before == rt.history_bytes()
    assert rt.lib.noma_history_set_window(rt.ctx, 1000) == 1  # the old ring is given back
    assert rt.memory_used - before == rt.history_bytes()
    rt.memory_limit = rt.memory_used + 1000
    assert rt.lib.noma_history_set_window(rt.ctx, 10**6) == -1 and rt.lib.noma_history_window(rt.ctx) == 1000
    kind, _, message = rt.error()
    assert native_lib.ERROR_KINDS[kind] == "runtime" and "loss history window" in message
    assert "over the memory limit" in message

    s = noma.Session(memory_limit=200_000)  # room for w, not for the history
    r = s.execute("learn w = 5.0;\noptimize(w) with sgd(lr = 0.1) max 3 { let loss = (w - 3) ^ 2; minimize loss; }")
    assert r.status == "error" and r.diagnostics[0].kind.name == "RUNTIME"
    assert "for the loss history: over the memory limit" in r.diagnostics[0].message
    with pytest.raises(NomaError, match="over the memory limit"):
        s.history_window = 100
    s.rt.memory_limit = 8 << 20
    s.history_window = 100
    assert s.execute("print(w);").ok


def test_session_history_is_exact_for_short_runs():
    s = noma.Session()
    r = s.execute("learn w = 5.0;\noptimize(w) with sgd(lr = 0.1) max 300 { let loss = (w - 3) ^ 2; minimize loss; }")
    assert r.ok
    h = s.history
    assert h.complete and len(h.losses) == 300 and h.first_step == 1 and h.total_steps == 300
    assert np.array_equal(h.loss_steps, np.arange(1, 301))
    w, expect = 5.0, []
    for _ in range(300):
        expect.append((w - 3) ** 2)
        w -= 0.1 * 2 * (w - 3)
    np.testing.assert_allclose(h.losses, expect, rtol=1e-12)
    check_against_exact(h.summary, h.losses)


# ----------------------------------------------------------------------------- checkpoints


def _train(s: noma.Session, steps: int) -> None:
    r = s.execute(f"optimize(w) with adam(lr = 0.01) max {steps} {{ let loss = (w - 3) ^ 2 + 0.5; minimize loss; }}")
    assert r.ok


def test_checkpoint_round_trips_the_bounded_history(tmp_path):
    s = noma.Session()
    s.history_window = 100
    s.execute("learn w = 5.0;")
    _train(s, 3000)
    path = str(tmp_path / "ck.safetensors")
    s.save_checkpoint(path)
    header = json.loads(Path(path).read_bytes()[8:8 + int.from_bytes(Path(path).read_bytes()[:8], "little")])
    assert header["__metadata__"]["format"] == "noma-checkpoint-3"
    assert header["history/losses"]["shape"] == [100]
    assert header["history/summary"]["shape"] == [len(s.history.summary), 3]
    for how in ("session", "statement"):
        t = noma.Session()
        if how == "session":
            t.load_checkpoint(path)
        else:
            t.execute("learn w = 0.0;")
            assert t.execute(f'load_checkpoint("{path}");').ok
        a, b = s.history, t.history
        assert b.total_steps == 3000 and t.rt.global_step() == 3000
        assert np.array_equal(a.losses, b.losses)  # the window: 100 saved, the default window holds them
        for f in ("first", "count", "min", "max", "mean"):
            assert np.array_equal(getattr(a.summary, f), getattr(b.summary, f)), (how, f)
        _train(t, 10)
        _train(s, 10)
        assert np.array_equal(s.history.losses[-10:], t.history.losses[-10:])
        assert s.history.total_steps == t.history.total_steps == 3010
        s.undo()


def test_checkpoint_of_the_previous_format_loads(tmp_path):
    """Files written by the code before the bounded history (tests/data/checkpoint_v2)."""
    for name in ("exe.safetensors", "session.safetensors", "session.safetensors.json"):
        shutil.copy(OLD / name, tmp_path / name)
    losses = np.load(OLD / "losses.npy")
    params = np.load(OLD / "params.npz")
    expected = json.loads((OLD / "expected.json").read_text())
    source = (OLD / "make.noma").read_text()
    declarations = source.split("let k = 0;")[0]

    fresh = noma.Session()  # with its definitions (PATH.json, format 2)
    fresh.load_checkpoint(str(tmp_path / "session.safetensors"))
    into = noma.Session()  # an executable's file into the declared parameters
    assert into.execute(declarations).ok
    assert into.execute(f'load_checkpoint("{tmp_path / "exe.safetensors"}");').ok
    for s in (fresh, into):
        h = s.history
        assert h.total_steps == expected["step"] == 40 and s.rt.global_step() == 40
        assert np.array_equal(h.losses, losses) and h.complete
        check_against_exact(h.summary, losses)
        assert s.dims == expected["dims"]
        for name, value in params.items():
            np.testing.assert_array_equal(s.params[name], value)
    assert [e.kind for e in fresh.history.events] == [e["kind"] for e in expected["events"]]


def test_malformed_history_in_a_checkpoint_is_an_io_error(tmp_path):
    s = noma.Session()
    s.execute("learn w = 5.0;")
    _train(s, 500)
    path = tmp_path / "ck.safetensors"
    s.save_checkpoint(str(path))
    data = bytearray(path.read_bytes())
    n = int.from_bytes(data[:8], "little")
    header = data[8:8 + n].decode()
    levels = json.loads(header)["__metadata__"]["history/levels"]
    bad = header.replace(f'"history/levels":"{levels}"', f'"history/levels":"9{levels[1:]}"')  # 9xx > K
    assert len(bad) == len(header) and bad != header
    path.write_bytes(bytes(data[:8]) + bad.encode() + bytes(data[8 + n:]))
    t = noma.Session()
    t.execute("learn w = 1.0;")
    r = t.execute(f'load_checkpoint("{path}");')
    assert r.status == "error" and r.errors[0].kind.value == "io" and "loss history" in r.errors[0].message
    assert t.rt.global_step() == 0 and t.params["w"] == 1.0


# ----------------------------------------------------------------------------- segments and plots


def test_learn_starts_a_labelled_run_segment():
    s = noma.Session()
    s.execute("learn w = 5.0;\nlearn v = 1.0;")
    _train(s, 50)
    assert s.execute("learn w = 4.0;\nlearn v = 2.0;").ok  # re-initialised: a new run
    assert [(e.kind, e.step, e.name) for e in s.history.events] == [("init", 50, "w"), ("init", 50, "v")]
    _train(s, 30)
    assert s.execute("learn w = 4.0;").ok
    segments = s.history.segments()
    assert [(g.first, g.last, g.reinit) for g in segments] == [(1, 50, ()), (51, 80, ("w", "v")), (81, 80, ("w",))]
    assert segments[1].label == "run 2 (learn w, v)"
    assert s.execute("learn u = 1.0;").ok  # a new parameter is not a re-initialisation
    assert len(s.history.segments()) == 3


def test_plot_draws_segments_apart_and_few_points():
    import matplotlib

    matplotlib.use("Agg")
    from noma import plots

    log = np.concatenate([np.linspace(2, 1, 5000), np.linspace(3, 0.5, 5000)])
    events = [noma.session.history.Event("init", 5000, "w", (), (), "default")]
    for step in (100, 110, 120, 4000):
        events.append(noma.session.history.Event("dim_resize", step, "hidden", (step // 10,), (step // 10 + 1,),
                                                 "preserve"))
    h = History(log, events)
    assert len(plots.loss_buckets(h, 20000)) == 10000  # exact when it fits
    assert len(plots.loss_buckets(h)) <= plots.MAX_POINTS  # else thinned
    fig = plots._figure(h, plots.layer_sizes(h, {"hidden": 402}))
    ax_loss, ax_size = fig.axes
    lines = [line for line in ax_loss.get_lines() if len(line.get_xdata()) > 2]
    assert len(lines) == 2  # one curve per run segment, not joined
    assert max(lines[0].get_xdata()) <= 5000 < min(lines[1].get_xdata())
    assert sum(len(line.get_xdata()) for line in lines) <= plots.MAX_POINTS
    assert [t.get_text() for t in ax_loss.get_legend().get_texts()] == ["run 1", "run 2 (learn w)"]
    labels = [t.get_text() for t in ax_loss.texts]
    assert labels == ["hidden 10→…→13 (3 resizes)", "hidden 400→401"]  # close resizes share a label
    assert all(float(t).is_integer() for t in ax_size.get_yticks())
    no_dims = plots._figure(History(log[:100], []), plots.layer_sizes(History(log[:100], []), {}))
    assert len(no_dims.axes) == 1  # no empty layer-size panel
    for sizes in ([(0, 8)], [(0, 0), (50, 1)], [(0, 3), (10, 300)]):  # a size that never changes, from 0, wide
        ax = plots._figure(History(log[:100], []), {"hidden": sizes}).axes[1]
        low, high = ax.get_ylim()
        ticks = [t for t in ax.get_yticks() if low <= t <= high]
        assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), (sizes, ticks)


def test_the_loss_axis_is_labelled_whatever_the_range():
    """A few labelled ticks inside the drawn range: a short run whose loss barely moves (linear),
    one spanning about a decade (log, 1-2-5 labels) and one spanning many decades (log, powers
    of ten); the min-max band of a summary is drawn with gaps where a bucket is NaN."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from noma import plots

    cases = {"narrow": np.linspace(0.2487, 0.2483, 10), "decade": np.geomspace(0.5, 0.04, 200),
             "wide": np.geomspace(1.0, 1e-11, 3000)}
    for name, log in cases.items():
        fig = plots._figure(History(log, []), {})
        ax = fig.axes[0]
        FigureCanvasAgg(fig).draw()  # tick labels get their text when drawn
        low, high = ax.get_ylim()
        shown = [(tick, label.get_text()) for tick, label in zip(ax.get_yticks(), ax.get_yticklabels())
                 if low <= tick <= high]
        assert len(shown) >= 2 and all(text for _, text in shown), (name, shown)
        assert ax.get_yscale() == ("linear" if name == "narrow" else "log"), name
    mean = np.array([1.0, 0.5, np.nan, 0.2, 0.1])
    summary = LossSummary(np.arange(1, 41, 8), np.full(5, 8), mean * 0.9, mean * 1.1, mean)
    fig = plots._figure(History(np.zeros(0), [], summary, 41, 40), {})
    (band,) = fig.axes[0].collections
    assert [len(path.vertices) for path in band.get_paths()] == [5, 5]  # two runs of 2 buckets (closed)


def test_plot_of_a_long_summary_has_bounded_points():
    from noma import plots

    n = 10**6
    counts = np.array([128] * 12 + [60])  # a summary as the runtime keeps it
    widths = np.concatenate([np.full(c, 1 << level) for level, c in reversed(list(enumerate(counts)))])
    total = int(widths.sum())
    mean = np.linspace(1, 0.1, len(widths))
    summary = LossSummary.from_levels(0, counts, mean * 0.9, mean * 1.1, mean * widths)
    h = History(np.zeros(0), [], summary, total + 1, total)
    assert len(plots.loss_buckets(h)) == len(widths) <= plots.MAX_POINTS and total > n // 10
    assert plots.history_png(h, {})[:4] == b"\x89PNG"


def test_reading_while_training_sees_consistent_histories():
    """Copies taken from another thread while native code trains (what live plots do) are whole:
    the buckets cover exactly the steps up to the copy's global step, and the exact window agrees
    with the one-loss buckets it overlaps."""
    s = noma.Session()
    s.execute("learn w = 5.0;")
    seen: list[int] = []

    def hook(session: noma.Session) -> None:
        h = session.read_history()
        summary = h.summary
        before_summary = int(summary.first[0]) - 1 if len(summary) else h.total_steps
        assert int(summary.count.sum()) == h.total_steps - before_summary
        assert np.array_equal(summary.first[1:], summary.first[:-1] + summary.count[:-1])
        if len(summary):
            assert summary.last[-1] == h.total_steps
        ones = summary.count == 1
        steps = summary.first[ones]
        inside = steps >= h.first_step
        np.testing.assert_array_equal(summary.mean[ones][inside], h.losses[steps[inside] - h.first_step])
        seen.append(h.total_steps)

    s.progress = hook
    s.progress_interval = 0.005
    r = s.execute("optimize(w) with sgd(lr = 0.0000001) max 1000000 { let loss = (w - 3) ^ 2 + 1; minimize loss; }")
    assert r.ok and seen[-1] == 1_000_000 and len(seen) > 2 and seen == sorted(seen)


def test_f32_history_and_checkpoint(tmp_path):
    s = noma.Session(dtype="f32")
    s.execute("learn w = 5.0;")
    r = s.execute("optimize(w) with sgd(lr = 0.001) max 1000 { let loss = (w - 3) ^ 2 + 1; minimize loss; }")
    assert r.ok
    h = s.history
    assert h.complete and h.losses.dtype == np.float64 and len(h.losses) == 1000
    check_against_exact(h.summary, h.losses)
    path = str(tmp_path / "ck32.safetensors")
    s.save_checkpoint(path)
    t = noma.Session(dtype="f32")
    t.load_checkpoint(path)
    assert np.array_equal(t.history.losses, h.losses) and t.history.total_steps == 1000
    np.testing.assert_allclose(t.history.summary.mean, h.summary.mean, rtol=1e-6)
