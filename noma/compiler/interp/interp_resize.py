"""The interpreter's resize semantics (`realloc w = [...]`, `realloc dim = n`), written from the
runtime's documented contract (noma_rt_params.c's header comments, docs/LANGUAGE.md) entry by
entry, where the runtime works row by row:

- values keep their (i, j, ...) index; entries outside the new shape are dropped; entries without
  a source are produced by the policy, in row-major order of the NEW shape (the order the
  generator is consumed); optimizer state keeps its index too, new entries start at step 0 with
  zero moments (and running powers 1);
- a dim resize changes every parameter bound to it, in increasing slot order; `preserve` (also the
  default) draws the incoming weights of new units (new only along a rank >= 2 parameter's last
  axis; for rank-4 conv filters [out, in, kh, kw], new only along axis 0) from normal(0, std of
  the parameter) and leaves outgoing weights and biases 0; `copy`
  (Net2Net) draws a source unit g(u) = floor(u53 * old) for each new unit, shared by all bound
  parameters, and divides values along bound non-last axes by the source's copy count.

Owns: resize_param, resize_dim, keep_param, keep_dim (they raise NomaError located at the statement).
Imports: the standard library, numpy, noma.compiler.interp.interp_optimizers, noma.diagnostics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from noma.compiler.interp.interp_optimizers import OptSlot
from noma.diagnostics import Kind, error

# runtime policy numbers (noma_rt.h)
DEFAULT, ZEROS, NORMAL, UNIFORM, XAVIER, HE, COPY, PRESERVE = range(8)
MAX_ELEMS = 1 << 40


@dataclass
class Fill:
    """How the entries without a source are produced (and the copy settings)."""

    kind: str = "zero"  # zero | normal | uniform | preserve
    a: float = 0.0
    b: float = 0.0
    noise: float = 0.0
    maps: list[Optional[list[int]]] = field(default_factory=lambda: [None] * 4)
    divs: list[Optional[list[float]]] = field(default_factory=lambda: [None] * 4)


def _std(x: np.ndarray) -> float:
    """The runtime's std of existing entries (population std; 0.1 when undefined)."""
    flat = [float(v) for v in np.asarray(x).ravel()]
    if len(flat) < 2:
        return 0.1
    mean = 0.0
    for v in flat:
        mean += v
    mean /= len(flat)
    ss = 0.0
    for v in flat:
        ss += (v - mean) * (v - mean)
    s = math.sqrt(ss / len(flat))
    return s if s > 0 and math.isfinite(s) else 0.1


def _nan_or(x: float, d: float) -> float:
    return d if math.isnan(x) else x


def simple_fill(policy: int, a: float, b: float, old: np.ndarray, new_dims: list[int]) -> Fill:
    fan_in = float(new_dims[0]) if new_dims else 1.0
    fan_out = float(new_dims[-1]) if new_dims else 1.0
    if policy == DEFAULT:
        return Fill("normal", 0.0, _std(old))
    if policy == ZEROS:
        return Fill("zero")
    if policy == NORMAL:
        return Fill("normal", _nan_or(a, 0.0), _nan_or(b, 1.0))
    if policy == UNIFORM:
        return Fill("uniform", _nan_or(a, 0.0), _nan_or(b, 1.0))
    if policy == XAVIER:
        lim = math.sqrt(6.0 / (fan_in + fan_out))
        return Fill("uniform", -lim, lim)
    if policy == HE:
        return Fill("normal", 0.0, math.sqrt(2.0 / fan_in))
    return Fill("preserve", 0.0, _std(old))


def _pad(dims: list[int]) -> list[int]:
    return [1] * (4 - len(dims)) + list(dims)


def remap(rng: Any, old: np.ndarray, new_dims: list[int], fill: Fill, dt: Any, span: Any, limit: int) -> np.ndarray:
    """The new values of a parameter (entry by entry, row-major over the new shape); a runtime
    error, before allocating, when they would not fit the memory limit (`limit` bytes)."""
    size = int(np.prod(new_dims, dtype=object)) * np.dtype(dt).itemsize
    if size > limit:
        raise error(Kind.RUNTIME, f"cannot allocate {size} bytes for a resize: over the memory limit", span)
    rank = old.ndim
    od, nd = _pad(list(old.shape)), _pad(new_dims)
    src = old.reshape(od)
    out = np.zeros(nd, dtype=np.float64)
    for idx in np.ndindex(*nd):
        js = [fill.maps[a][i] if fill.maps[a] is not None else (i if i < od[a] else -1)  # type: ignore[index]
              for a, i in enumerate(idx)]
        new_other = any(idx[a] >= od[a] for a in range(3))
        new_last = idx[3] >= od[3]
        if all(j >= 0 for j in js):
            x = float(src[tuple(js)])
            dv = 1.0
            for a in range(3):
                if fill.divs[a] is not None:
                    dv = dv * fill.divs[a][idx[a]]  # type: ignore[index]
            if dv != 1.0:
                x = x / dv
            if fill.noise > 0 and new_last and not new_other and rank >= 2:
                x = x + fill.noise * rng.randn()
            out[idx] = x
        elif fill.kind == "normal":
            out[idx] = fill.a + fill.b * rng.randn()
        elif fill.kind == "uniform":
            out[idx] = fill.a + (fill.b - fill.a) * rng.u53()
        elif fill.kind == "preserve" and 2 <= rank < 4 and new_last and not new_other:
            out[idx] = fill.b * rng.randn()
        elif fill.kind == "preserve" and rank == 4 and idx[0] >= od[0] and all(idx[a] < od[a] for a in (1, 2, 3)):
            out[idx] = fill.b * rng.randn()  # conv filters [out, in, kh, kw]: those of new output channels
    return out.astype(dt).reshape(new_dims)


def _keep(x: np.ndarray, new_dims: list[int], fresh: Callable[[tuple[int, ...]], np.ndarray]) -> np.ndarray:
    """x's entries at their index inside new_dims; new entries from fresh(shape)."""
    out = fresh(tuple(new_dims))
    common = tuple(slice(0, min(a, b)) for a, b in zip(x.shape, new_dims))
    out[common] = x[common]
    return out


def remap_state(s: OptSlot, new_dims: list[int]) -> None:
    s.m = _keep(s.m, new_dims, lambda sh: np.zeros(sh, s.m.dtype))
    s.v = _keep(s.v, new_dims, lambda sh: np.zeros(sh, s.v.dtype))
    s.pow1 = _keep(s.pow1, new_dims, lambda sh: np.ones(sh, s.pow1.dtype))
    s.pow2 = _keep(s.pow2, new_dims, lambda sh: np.ones(sh, s.pow2.dtype))
    s.step = _keep(s.step, new_dims, lambda sh: np.zeros(sh, np.int64))


def _copy_choice(rng: Any, old: int, new: int) -> list[int]:
    return [i if i < old else min(int(rng.u53() * old), old - 1) for i in range(new)]


def _commit(state: Any, slot: int, values: np.ndarray) -> None:
    state.params[slot] = values
    s = state.opt.get(slot)
    if s is not None:
        remap_state(s, list(values.shape))


def resize_param(state: Any, slot: int, name: str, dims: list[int], policy: int, a: float, b: float,
                 span: Any, dt: Any) -> None:
    p = state.params[slot]
    if len(dims) != p.ndim:
        raise error(Kind.SHAPE, f"cannot resize {name} from rank {p.ndim} to rank {len(dims)}", span)
    n = 1
    for i, d in enumerate(dims):
        if d < 0 or d > MAX_ELEMS or (d != 0 and n > MAX_ELEMS // d):
            raise error(Kind.SHAPE, f"cannot resize {name} to size {d} along axis {i}", span)
        n *= d
        if (slot, i) in state.bindings and d != p.shape[i]:
            raise error(Kind.SHAPE, f"cannot resize axis {i} of {name} alone: it is sized by a dim "
                        "(resize the dim)", span)
    if list(p.shape) == list(dims):
        return
    if policy == COPY:
        for i, d in enumerate(dims):
            if d > p.shape[i] == 0:
                raise error(Kind.SHAPE, f"cannot grow axis {i} of {name} by copying: it has no entries to copy", span)
        od, nd = _pad(list(p.shape)), _pad(dims)
        fill = Fill("zero", noise=b if math.isfinite(b) and b > 0 else 0.0)
        fill.maps = [_copy_choice(state.rng, od[ax], nd[ax]) if nd[ax] > od[ax] else None for ax in range(4)]
    else:
        fill = simple_fill(policy, a, b, p, dims)
    _commit(state, slot, remap(state.rng, p, dims, fill, dt, span, state.memory_limit))


def resize_dim(state: Any, dim: int, size: int, policy: int, a: float, b: float, span: Any, dt: Any) -> None:
    if size < 0 or size > MAX_ELEMS:
        raise error(Kind.SHAPE, f"cannot resize a dim to {size}", span)
    old = state.dims.get(dim, -1)
    if old < 0:
        state.dims[dim] = size
        return
    if old == size:
        return
    pol = PRESERVE if policy == DEFAULT else policy
    if pol == COPY and old == 0 and size > 0:
        raise error(Kind.SHAPE, "cannot grow a dim of size 0 by copying: it has no units to copy", span)
    bound = sorted(s for s in state.params if any(state.bindings.get((s, ax)) == dim
                                                   for ax in range(state.params[s].ndim)))
    gmap: Optional[list[int]] = None
    cdiv: Optional[list[float]] = None
    if pol == COPY and size > old:
        gmap = _copy_choice(state.rng, old, size)
        cnt = [1.0] * old + [0.0] * (size - old)
        for u in range(old, size):
            cnt[gmap[u]] += 1.0
        for u in range(size - 1, old - 1, -1):
            cnt[u] = cnt[gmap[u]]
        cdiv = cnt
    noise = b if math.isfinite(b) and b > 0 else 0.0
    new_values = []
    for s in bound:
        p = state.params[s]
        axes = [ax for ax in range(p.ndim) if state.bindings.get((s, ax)) == dim]
        ndims = [size if ax in axes else d for ax, d in enumerate(p.shape)]
        if pol == COPY:
            fill = Fill("zero", noise=noise)
            if gmap is not None:
                for ax in axes:
                    pa = 4 - p.ndim + ax
                    fill.maps[pa] = gmap
                    if p.ndim >= 2 and ax != p.ndim - 1:
                        fill.divs[pa] = cdiv
        elif pol == PRESERVE:
            fill = Fill("preserve", 0.0, _std(p) if size > old else 0.0)
        else:
            fill = simple_fill(pol, a, b, p, ndims)
        new_values.append((s, remap(state.rng, p, ndims, fill, dt, span, state.memory_limit)))
    for s, values in new_values:
        _commit(state, s, values)
    state.dims[dim] = size


# ----------------------------------------------------------------------------- keep (pruning)


def keep_indices(idx: np.ndarray, size: int, what: str, span: Any) -> list[int]:
    """The unit indices of `realloc NAME keep idx`: whole numbers in [0, size), each once."""
    out: list[int] = []
    seen: set[int] = set()
    for i, v in enumerate(float(x) for x in np.asarray(idx).ravel()):
        bad = None
        if not (0 <= v < size) or math.floor(v) != v:
            bad = "is not a unit of"
        elif int(v) in seen:
            bad = "is kept twice in"
        if bad:
            raise error(Kind.RUNTIME, f"keep: index {v:g} (entry {i}) {bad} {what} (size {size})", span)
        seen.add(int(v))
        out.append(int(v))
    return out


def _gather(state: Any, slot: int, axes: list[int], keep: list[int]) -> None:
    """Parameter `slot` and its optimizer state with unit i = old unit keep[i] along `axes`."""
    def take(x: np.ndarray) -> np.ndarray:
        for ax in axes:
            x = np.take(x, np.asarray(keep, dtype=np.int64), axis=ax)
        return np.ascontiguousarray(x)
    state.params[slot] = take(state.params[slot])
    s = state.opt.get(slot)
    if s is not None:
        s.m, s.v, s.pow1, s.pow2, s.step = (take(a) for a in (s.m, s.v, s.pow1, s.pow2, s.step))


def keep_param(state: Any, slot: int, name: str, axis: int, keep: list[int], span: Any) -> None:
    p = state.params[slot]
    if (slot, axis) in state.bindings:
        raise error(Kind.SHAPE, f"cannot keep units along axis {axis} of {name} alone: it is sized by a dim "
                    "(keep along the dim)", span)
    for k in keep:
        if k >= p.shape[axis]:
            raise error(Kind.RUNTIME, f"keep: index {k} is not a unit of {name} (size {p.shape[axis]})", span)
    _gather(state, slot, [axis], keep)


def keep_dim(state: Any, dim: int, name: str, keep: list[int], span: Any) -> None:
    old = state.dims.get(dim, -1)
    if old < 0:
        raise error(Kind.NAME, f"keep: {name} has no size yet", span)
    for k in keep:
        if k >= old:
            raise error(Kind.RUNTIME, f"keep: index {k} is not a unit of {name} (size {old})", span)
    for s in sorted(state.params):
        axes = [ax for ax in range(state.params[s].ndim) if state.bindings.get((s, ax)) == dim]
        if axes:
            _gather(state, s, axes, keep)
    state.dims[dim] = len(keep)
