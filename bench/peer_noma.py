"""NOMA in the benchmark: one session per run; the setup cell (data, parameters) is not timed; the
training cell's run time (native code only: `ExecResult.run_seconds`, compile time apart) is."""

from __future__ import annotations

import noma

from wl import GrowMlp, Mlp, XorGrow


def _exec(s: noma.Session, src: str):
    r = s.execute(src)
    if not r.ok:
        raise RuntimeError("NOMA cell failed:\n" + "\n".join(d.render() for d in r.diagnostics))
    return r


def xor_grow(w: XorGrow) -> tuple[float, float, int]:
    """(seconds, final loss, steps)."""
    s = noma.Session(dtype=w.dtype)
    _exec(s, w.setup_source())
    r = _exec(s, w.train_source())
    return r.run_seconds, float(r.value), r.steps


def mlp(w: Mlp, steps: int) -> tuple[float, float, int]:
    s = noma.Session(dtype=w.dtype)
    _exec(s, w.setup_source())
    r = _exec(s, w.train_source(steps))
    return r.run_seconds, float(r.value), r.steps


def compile_seconds(w, steps: int = 10) -> float:
    """Compile time of the training cell (fresh session, so nothing is cached in its JIT)."""
    s = noma.Session(dtype=w.dtype)
    _exec(s, w.setup_source())
    src = w.train_source() if isinstance(w, (XorGrow, GrowMlp)) else w.train_source(steps)
    return _exec(s, src).compile_seconds


def grow_mlp(w: GrowMlp) -> tuple[float, float, int]:
    s = noma.Session(dtype=w.dtype)
    _exec(s, w.setup_source())
    r = _exec(s, w.train_source())
    return r.run_seconds, float(r.value), r.steps
