"""JAX peers (CPU, x64 enabled; one thread unless bench/bench.py's XLA_FLAGS say otherwise):
`jax.jit` of one training step called from a Python loop, and the whole loop inside one jitted
`lax.scan` (for the growing XOR: scan over the first phase, `lax.while_loop` for the phase that runs
until the loss target; for W3: one scan per hidden size). NOMA's Adam by hand."""

from __future__ import annotations

import os
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_platforms", "cpu")

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

from wl import B1, B2, EPS, GrowMlp, Mlp, XorGrow  # noqa: E402


def _adam(P, G, M, V, Q1, Q2, lr):
    M = [B1 * m + (1 - B1) * g for m, g in zip(M, G)]
    V = [B2 * v + (1 - B2) * g * g for v, g in zip(V, G)]
    Q1 = [q * B1 for q in Q1]
    Q2 = [q * B2 for q in Q2]
    P = [p - (lr / (1 - q1)) * (m / (jnp.sqrt(v) / jnp.sqrt(1 - q2) + EPS))
         for p, m, v, q1, q2 in zip(P, M, V, Q1, Q2)]
    return [P, M, V, Q1, Q2]


# ----------------------------------------------------------------------------- W1


def _xor_loss(P, X, Y):
    h = jax.nn.sigmoid(X @ P[0] + P[1])
    out = jax.nn.sigmoid(h @ P[2] + P[3])
    return jnp.mean((out - Y) ** 2)


def _xor_step(state, lr, X, Y):
    P, M, V, Q1, Q2 = state
    loss, G = jax.value_and_grad(_xor_loss)(P, X, Y)
    return loss, tuple(_adam(P, G, M, V, Q1, Q2, lr))


_xor_step_jit = jax.jit(_xor_step)


@jax.jit
def _xor_phase1(state, lr, X, Y, n_dummy):
    def body(st, _):
        loss, st = _xor_step(st, lr, X, Y)
        return st, loss
    state, losses = lax.scan(body, state, n_dummy)
    return state, losses[-1]


@jax.jit
def _xor_phase2(state, lr, X, Y, target, max2):
    # carry: (state, loss of the last evaluated step, steps, done)
    def cond(c):
        return jnp.logical_and(c[2] < max2, jnp.logical_not(c[3]))

    def body(c):
        st, _, n, _ = c
        loss, new = _xor_step(st, lr, X, Y)
        done = loss < target
        st = jax.tree_util.tree_map(lambda a, b: jnp.where(done, a, b), st, new)
        return st, loss, n + 1, done

    init = (state, jnp.array(jnp.nan), jnp.array(0), jnp.array(False))
    state, loss, n, _ = lax.while_loop(cond, body, init)
    return state, loss, n


def _xor_init(w: XorGrow):
    P = [jnp.asarray(w.init[k]) for k in ("W1", "b1", "W2", "b2")]
    z = [jnp.zeros_like(p) for p in P]
    o = [jnp.ones_like(p) for p in P]
    return (P, list(z), list(z), list(o), list(o))


def _xor_grow(w: XorGrow, state):
    P, M, V, Q1, Q2 = (list(s) for s in state)
    names = ("W1", "b1", "W2", "b2")
    out = [[], [], [], [], []]
    for i, k in enumerate(names):
        g = np.array(w.grow[k])
        sl = tuple(slice(0, d) for d in P[i].shape)
        g[sl] = np.asarray(P[i])
        out[0].append(jnp.asarray(g))
        for j, (S, fill) in enumerate(((M, 0.0), (V, 0.0), (Q1, 1.0), (Q2, 1.0))):
            t = np.full(g.shape, fill)
            t[sl] = np.asarray(S[i])
            out[j + 1].append(jnp.asarray(t))
    return tuple(out)


def xor_grow_jit(w: XorGrow) -> tuple[float, float, int]:
    X, Y = jnp.asarray(w.X), jnp.asarray(w.Y)
    lr1, lr2 = jnp.asarray(w.lr1), jnp.asarray(w.lr2)
    state = _xor_init(w)
    steps = 0
    t0 = time.perf_counter()
    loss = None
    for _ in range(w.steps1):
        loss, state = _xor_step_jit(state, lr1, X, Y)
        steps += 1
    if not w.grows:
        loss_v = float(loss)
        return time.perf_counter() - t0, loss_v, steps
    state = _xor_grow(w, state)
    loss_v = float("nan")
    for _ in range(w.max2):
        loss, new = _xor_step_jit(state, lr2, X, Y)
        steps += 1
        loss_v = float(loss)
        if loss_v < w.target:
            break
        state = new
    return time.perf_counter() - t0, loss_v, steps


def xor_grow_scan(w: XorGrow) -> tuple[float, float, int]:
    X, Y = jnp.asarray(w.X), jnp.asarray(w.Y)
    lr1, lr2 = jnp.asarray(w.lr1), jnp.asarray(w.lr2)
    state = _xor_init(w)
    dummy = jnp.zeros(w.steps1)
    t0 = time.perf_counter()
    state, loss1 = _xor_phase1(state, lr1, X, Y, dummy)
    if not w.grows:
        loss_v = float(loss1)
        return time.perf_counter() - t0, loss_v, w.steps1
    state = _xor_grow(w, state)
    state, loss, n = _xor_phase2(state, lr2, X, Y, jnp.asarray(w.target), jnp.asarray(w.max2))
    loss_v = float(loss)
    return time.perf_counter() - t0, loss_v, w.steps1 + int(n)


# ----------------------------------------------------------------------------- MLP


def _mlp_loss(P, x, y):
    L = len(P) // 2
    h = x
    for i in range(L - 1):
        h = jnp.tanh(h @ P[2 * i] + P[2 * i + 1])
    z = h @ P[2 * L - 2] + P[2 * L - 1]
    return -jnp.sum(y * jax.nn.log_softmax(z, axis=1)) / x.shape[0]


def _mlp_step(state, lr, x, y):
    P, M, V, q1, q2 = state
    loss, G = jax.value_and_grad(_mlp_loss)(P, x, y)
    q1 = q1 * B1
    q2 = q2 * B2
    c2 = jnp.sqrt(1 - q2)
    step = lr / (1 - q1)
    M = [B1 * m + (1 - B1) * g for m, g in zip(M, G)]
    V = [B2 * v + (1 - B2) * g * g for v, g in zip(V, G)]
    P = [p - step * (m / (jnp.sqrt(v) / c2 + EPS)) for p, m, v in zip(P, M, V)]
    return loss, (P, M, V, q1, q2)


_mlp_step_jit = jax.jit(_mlp_step)


@jax.jit
def _mlp_scan(state, lr, X, Y, starts, batch_dummy):
    batch = batch_dummy.shape[0]

    def body(st, a):
        x = lax.dynamic_slice_in_dim(X, a, batch)
        y = lax.dynamic_slice_in_dim(Y, a, batch)
        loss, st = _mlp_step(st, lr, x, y)
        return st, loss
    state, losses = lax.scan(body, state, starts)
    return state, losses[-1]


def _mlp_init(w: Mlp):
    dt = jnp.float64 if w.dtype == "f64" else jnp.float32
    P = []
    for i in range(w.layers):
        P += [jnp.asarray(w.init[f"W{i + 1}"], dt), jnp.asarray(w.init[f"b{i + 1}"], dt)]
    return (P, [jnp.zeros_like(p) for p in P], [jnp.zeros_like(p) for p in P],
            jnp.ones((), dt), jnp.ones((), dt)), jnp.asarray(w.lr, dt)


def mlp_jit(w: Mlp, steps: int) -> tuple[float, float, int]:
    state, lr = _mlp_init(w)
    X, Y = jnp.asarray(w.X), jnp.asarray(w.Y)
    if w.batch == w.rows:
        batches = [(X, Y)]
    else:
        batches = [(X[a:a + w.batch], Y[a:a + w.batch]) for a in range(0, w.rows // w.batch * w.batch, w.batch)]
    jax.block_until_ready(batches)
    loss = None
    t0 = time.perf_counter()
    for s in range(steps):
        x, y = batches[s % len(batches)]
        loss, state = _mlp_step_jit(state, lr, x, y)
    loss_v = float(loss)
    return time.perf_counter() - t0, loss_v, steps


def mlp_scan(w: Mlp, steps: int) -> tuple[float, float, int]:
    state, lr = _mlp_init(w)
    X, Y = jnp.asarray(w.X), jnp.asarray(w.Y)
    starts = jnp.asarray(w.batch_starts(steps))
    dummy = jnp.zeros(w.batch)
    jax.block_until_ready((X, Y, starts))
    t0 = time.perf_counter()
    state, loss = _mlp_scan(state, lr, X, Y, starts, dummy)
    loss_v = float(loss)
    return time.perf_counter() - t0, loss_v, steps


# ----------------------------------------------------------------------------- W3 (growing MLP)
# Adam with per-unit powers (W1 column j, b1[j], W2 row j share unit j's step count; b2 never
# grows). XLA compiles one program per hidden size (jit: the step; scan: the 20-epoch segment),
# in the warm-up run; the growth itself runs between segments (host NumPy for the new columns).


def _w3_step(state, lr, x, y):
    P, M, V, Q = state
    loss, G = jax.value_and_grad(_mlp_loss)(P, x, y)
    Q = (Q[0] * B1, Q[1] * B2, Q[2] * B1, Q[3] * B2)
    sh, ch = lr / (1 - Q[0]), jnp.sqrt(1 - Q[1])
    so, co = lr / (1 - Q[2]), jnp.sqrt(1 - Q[3])
    scale = ((sh, ch), (sh, ch), (sh[:, None], ch[:, None]), (so, co))
    M = [B1 * m + (1 - B1) * g for m, g in zip(M, G)]
    V = [B2 * v + (1 - B2) * g * g for v, g in zip(V, G)]
    P = [p - st * (m / (jnp.sqrt(v) / c + EPS)) for p, m, v, (st, c) in zip(P, M, V, scale)]
    return loss, (P, M, V, Q)


_w3_step_jit = jax.jit(_w3_step)


@jax.jit
def _w3_scan(state, lr, X, Y, starts, batch_dummy):
    batch = batch_dummy.shape[0]

    def body(st, a):
        x = lax.dynamic_slice_in_dim(X, a, batch)
        y = lax.dynamic_slice_in_dim(Y, a, batch)
        loss, st = _w3_step(st, lr, x, y)
        return st, loss
    state, losses = lax.scan(body, state, starts)
    return state, losses[-1]


def _w3_init(w: GrowMlp):
    dt = jnp.float64 if w.dtype == "f64" else jnp.float32
    P = [jnp.asarray(w.init[k], dt) for k in ("W1", "b1", "W2", "b2")]
    Q = (jnp.ones(w.h0, dt), jnp.ones(w.h0, dt), jnp.ones((), dt), jnp.ones((), dt))
    return (P, [jnp.zeros_like(p) for p in P], [jnp.zeros_like(p) for p in P], Q), jnp.asarray(w.lr, dt)


def _w3_grow(w: GrowMlp, growth: int, state):
    P, M, V, Q = state
    k, dt = w.h_step, w.np_dtype
    n_in, n_out = P[0].shape[0], P[2].shape[1]
    new_cols = w.new_columns(np.asarray(P[0]), growth)

    def ext(S, first):
        return [jnp.concatenate([S[0], first], 1), jnp.concatenate([S[1], jnp.zeros(k, dt)]),
                jnp.concatenate([S[2], jnp.zeros((k, n_out), dt)]), S[3]]
    zeros = jnp.zeros((n_in, k), dt)
    Q = (jnp.concatenate([Q[0], jnp.ones(k, dt)]), jnp.concatenate([Q[1], jnp.ones(k, dt)]), Q[2], Q[3])
    return ext(P, jnp.asarray(new_cols)), ext(M, zeros), ext(V, zeros), Q


def grow_mlp_jit(w: GrowMlp) -> tuple[float, float, int]:
    state, lr = _w3_init(w)
    X, Y = jnp.asarray(w.X), jnp.asarray(w.Y)
    batches = [(X[a:a + w.batch], Y[a:a + w.batch]) for a in range(0, w.rows // w.batch * w.batch, w.batch)]
    jax.block_until_ready(batches)
    loss = None
    t0 = time.perf_counter()
    for seg in range(len(w.sizes)):
        if seg:
            state = _w3_grow(w, seg - 1, state)
        for s in range(w.steps_per_size):
            x, y = batches[s % len(batches)]
            loss, state = _w3_step_jit(state, lr, x, y)
    loss_v = float(loss)
    return time.perf_counter() - t0, loss_v, w.steps


def grow_mlp_scan(w: GrowMlp) -> tuple[float, float, int]:
    state, lr = _w3_init(w)
    X, Y = jnp.asarray(w.X), jnp.asarray(w.Y)
    starts = jnp.asarray(w.batch_starts(w.steps_per_size))
    dummy = jnp.zeros(w.batch)
    jax.block_until_ready((X, Y, starts))
    loss = None
    t0 = time.perf_counter()
    for seg in range(len(w.sizes)):
        if seg:
            state = _w3_grow(w, seg - 1, state)
        state, loss = _w3_scan(state, lr, X, Y, starts, dummy)
    loss_v = float(loss)
    return time.perf_counter() - t0, loss_v, w.steps
