"""PyTorch peers: eager (autograd + torch.optim.Adam, foreach; hand-written per-entry Adam for the
growing network) and torch.compile (one compiled functional step: torch.func.grad_and_value and
NOMA's Adam; every value that changes per step is a tensor, so nothing recompiles)."""

from __future__ import annotations

import os
import time

import numpy as np
import torch

from wl import B1, B2, EPS, GrowMlp, Mlp, XorGrow

# bench/bench.py sets OMP_NUM_THREADS to its thread count before importing this module
torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1") or 1)))
try:
    torch.set_num_interop_threads(1)
except RuntimeError:
    pass
# W3 compiles one graph per hidden size (dynamic=False): allow more than the default 8
for _name in ("recompile_limit", "cache_size_limit"):
    if hasattr(torch._dynamo.config, _name):
        setattr(torch._dynamo.config, _name, max(64, getattr(torch._dynamo.config, _name)))


def _t(a: np.ndarray, dtype=torch.float64) -> torch.Tensor:
    return torch.from_numpy(np.array(a, copy=True)).to(dtype)


# ----------------------------------------------------------------------------- W1


def _xor_loss(P, X, Y):
    h = torch.sigmoid(X @ P[0] + P[1])
    out = torch.sigmoid(h @ P[2] + P[3])
    return torch.mean((out - Y) ** 2)


def _grow_state(w: XorGrow, P, S):
    names = ("W1", "b1", "W2", "b2")
    newP, newS = [], []
    for k, p, st in zip(names, P, S):
        g = _t(w.grow[k])
        sl = tuple(slice(0, d) for d in p.shape)
        g[sl] = p.detach()
        newP.append(g)
        parts = []
        for s, fill in zip(st, (0.0, 0.0, 1.0, 1.0)):
            t = torch.full_like(g, fill)
            t[sl] = s
            parts.append(t)
        newS.append(parts)
    return newP, newS


def xor_grow_eager(w: XorGrow) -> tuple[float, float, int]:
    X, Y = _t(w.X), _t(w.Y)
    P = [_t(w.init[k]).requires_grad_() for k in ("W1", "b1", "W2", "b2")]
    S = [[torch.zeros_like(p), torch.zeros_like(p), torch.ones_like(p), torch.ones_like(p)] for p in P]
    steps = 0
    loss_v = float("nan")

    def update(lr):
        with torch.no_grad():
            for p, (m, v, q1, q2) in zip(P, S):
                g = p.grad
                m.mul_(B1).add_((1 - B1) * g)
                v.mul_(B2).add_((1 - B2) * g * g)
                q1.mul_(B1)
                q2.mul_(B2)
                denom = v.sqrt() / (1 - q2).sqrt() + EPS
                p.sub_((lr / (1 - q1)) * (m / denom))
                p.grad = None

    t0 = time.perf_counter()
    for _ in range(w.steps1):
        loss = _xor_loss(P, X, Y)
        loss.backward()
        update(w.lr1)
        steps += 1
    if not w.grows:
        return time.perf_counter() - t0, loss.item(), steps
    newP, S = _grow_state(w, P, S)
    P = [p.requires_grad_() for p in newP]
    for _ in range(w.max2):
        loss = _xor_loss(P, X, Y)
        steps += 1
        loss_v = loss.item()
        if loss_v < w.target:
            break
        loss.backward()
        update(w.lr2)
    return time.perf_counter() - t0, loss_v, steps


def _adam_functional(P, G, M, V, Q1, Q2, lr):
    outP, outM, outV, outQ1, outQ2 = [], [], [], [], []
    for p, g, m, v, q1, q2 in zip(P, G, M, V, Q1, Q2):
        m = B1 * m + (1 - B1) * g
        v = B2 * v + (1 - B2) * g * g
        q1 = q1 * B1
        q2 = q2 * B2
        denom = torch.sqrt(v) / torch.sqrt(1 - q2) + EPS
        outP.append(p - (lr / (1 - q1)) * (m / denom))
        outM.append(m), outV.append(v), outQ1.append(q1), outQ2.append(q2)
    return outP, outM, outV, outQ1, outQ2


def _xor_step(P, M, V, Q1, Q2, lr, X, Y):
    G, loss = torch.func.grad_and_value(_xor_loss)(P, X, Y)
    return (loss,) + tuple(_adam_functional(P, G, M, V, Q1, Q2, lr))


_COMPILED: dict = {}


def _compiled(name, fn):
    if name not in _COMPILED:
        _COMPILED[name] = torch.compile(fn, dynamic=False)
    return _COMPILED[name]


def xor_grow_compiled(w: XorGrow) -> tuple[float, float, int]:
    step = _compiled("xor", _xor_step)
    X, Y = _t(w.X), _t(w.Y)
    P = [_t(w.init[k]) for k in ("W1", "b1", "W2", "b2")]
    M = [torch.zeros_like(p) for p in P]
    V = [torch.zeros_like(p) for p in P]
    Q1 = [torch.ones_like(p) for p in P]
    Q2 = [torch.ones_like(p) for p in P]
    lr1, lr2 = torch.tensor(w.lr1, dtype=torch.float64), torch.tensor(w.lr2, dtype=torch.float64)
    steps = 0
    t0 = time.perf_counter()
    loss = None
    for _ in range(w.steps1):
        loss, P, M, V, Q1, Q2 = step(P, M, V, Q1, Q2, lr1, X, Y)
        steps += 1
    if not w.grows:
        return time.perf_counter() - t0, loss.item(), steps
    P, S = _grow_state(w, P, list(zip(M, V, Q1, Q2)))
    M, V, Q1, Q2 = (list(x) for x in zip(*S))
    loss_v = float("nan")
    for _ in range(w.max2):
        # the step's loss is computed before its update: stop when it is below the target
        loss, P2, M2, V2, Q12, Q22 = step(P, M, V, Q1, Q2, lr2, X, Y)
        steps += 1
        loss_v = loss.item()
        if loss_v < w.target:
            break
        P, M, V, Q1, Q2 = P2, M2, V2, Q12, Q22
    return time.perf_counter() - t0, loss_v, steps


# ----------------------------------------------------------------------------- MLP


def _mlp_loss(P, x, y):
    L = len(P) // 2
    h = x
    for i in range(L - 1):
        h = torch.tanh(h @ P[2 * i] + P[2 * i + 1])
    z = h @ P[2 * L - 2] + P[2 * L - 1]
    return -(y * torch.log_softmax(z, dim=1)).sum() / x.shape[0]


def _batches(w: Mlp, dtype):
    X, Y = _t(w.X, dtype), _t(w.Y, dtype)
    if w.batch == w.rows:
        return [(X, Y)]
    return [(X[a:a + w.batch], Y[a:a + w.batch]) for a in range(0, w.rows // w.batch * w.batch, w.batch)]


def _dtype(w: Mlp):
    return torch.float64 if w.dtype == "f64" else torch.float32


def mlp_eager(w: Mlp, steps: int) -> tuple[float, float, int]:
    dt = _dtype(w)
    batches = _batches(w, dt)
    P = []
    for i in range(w.layers):
        P += [_t(w.init[f"W{i + 1}"], dt).requires_grad_(), _t(w.init[f"b{i + 1}"], dt).requires_grad_()]
    opt = torch.optim.Adam(P, lr=w.lr, betas=(B1, B2), eps=EPS, foreach=True)
    loss = None
    t0 = time.perf_counter()
    for s in range(steps):
        x, y = batches[s % len(batches)]
        opt.zero_grad(set_to_none=True)
        loss = _mlp_loss(P, x, y)
        loss.backward()
        opt.step()
    lv = loss.item()
    return time.perf_counter() - t0, lv, steps


def _mlp_step(P, M, V, q1, q2, lr, x, y):
    G, loss = torch.func.grad_and_value(_mlp_loss)(P, x, y)
    q1 = q1 * B1
    q2 = q2 * B2
    c2 = torch.sqrt(1 - q2)
    step = lr / (1 - q1)
    outP, outM, outV = [], [], []
    for p, g, m, v in zip(P, G, M, V):
        m = B1 * m + (1 - B1) * g
        v = B2 * v + (1 - B2) * g * g
        outP.append(p - step * (m / (torch.sqrt(v) / c2 + EPS)))
        outM.append(m)
        outV.append(v)
    return loss, outP, outM, outV, q1, q2


def mlp_compiled(w: Mlp, steps: int) -> tuple[float, float, int]:
    dt = _dtype(w)
    step = _compiled(f"mlp{w.layers}", _mlp_step)
    batches = _batches(w, dt)
    P = []
    for i in range(w.layers):
        P += [_t(w.init[f"W{i + 1}"], dt), _t(w.init[f"b{i + 1}"], dt)]
    M = [torch.zeros_like(p) for p in P]
    V = [torch.zeros_like(p) for p in P]
    q1, q2 = torch.ones((), dtype=dt), torch.ones((), dtype=dt)
    lr = torch.tensor(w.lr, dtype=dt)
    loss = None
    t0 = time.perf_counter()
    for s in range(steps):
        x, y = batches[s % len(batches)]
        loss, P, M, V, q1, q2 = step(P, M, V, q1, q2, lr, x, y)
    lv = loss.item()
    return time.perf_counter() - t0, lv, steps


# ----------------------------------------------------------------------------- W3 (growing MLP)
# Adam with per-unit powers: W1 column j, b1[j] and W2 row j of hidden unit j share one step
# count (added by the same resize); b2 never grows. torch.optim.Adam keeps one step count per
# tensor, so both peers write the update by hand.


def _w3_setup(w: GrowMlp):
    dt = _dtype(w)
    P = [_t(w.init[k], dt) for k in ("W1", "b1", "W2", "b2")]
    M = [torch.zeros_like(p) for p in P]
    V = [torch.zeros_like(p) for p in P]
    Q = [torch.ones(w.h0, dtype=dt), torch.ones(w.h0, dtype=dt), torch.ones((), dtype=dt),
         torch.ones((), dtype=dt)]
    x, y = _t(w.X, dt), _t(w.Y, dt)
    batches = [(x[a:a + w.batch], y[a:a + w.batch]) for a in range(0, w.rows // w.batch * w.batch, w.batch)]
    return P, M, V, Q, batches


def _w3_grow(w: GrowMlp, growth: int, P, M, V, Q):
    dt, k = _dtype(w), w.h_step
    W1, c1, W2, c2 = (p.detach() for p in P)
    n_in, n_out = W1.shape[0], W2.shape[1]
    new_cols = torch.from_numpy(w.new_columns(W1.numpy(), growth))
    P = [torch.cat([W1, new_cols], 1), torch.cat([c1, torch.zeros(k, dtype=dt)]),
         torch.cat([W2, torch.zeros(k, n_out, dtype=dt)]), c2.clone()]

    def ext(S):
        return [torch.cat([S[0], torch.zeros(n_in, k, dtype=dt)], 1), torch.cat([S[1], torch.zeros(k, dtype=dt)]),
                torch.cat([S[2], torch.zeros(k, n_out, dtype=dt)]), S[3]]
    Q = [torch.cat([Q[0], torch.ones(k, dtype=dt)]), torch.cat([Q[1], torch.ones(k, dtype=dt)]), Q[2], Q[3]]
    return P, ext(M), ext(V), Q


def grow_mlp_eager(w: GrowMlp) -> tuple[float, float, int]:
    P, M, V, Q, batches = _w3_setup(w)
    loss = None
    t0 = time.perf_counter()
    for seg in range(len(w.sizes)):
        if seg:
            P, M, V, Q = _w3_grow(w, seg - 1, P, M, V, Q)
        P = [p.requires_grad_() for p in P]
        for s in range(w.steps_per_size):
            x, y = batches[s % len(batches)]
            loss = _mlp_loss(P, x, y)
            loss.backward()
            with torch.no_grad():
                for q, b in zip(Q, (B1, B2, B1, B2)):
                    q.mul_(b)
                sh, ch = w.lr / (1 - Q[0]), (1 - Q[1]).sqrt()
                so, co = w.lr / (1 - Q[2]), (1 - Q[3]).sqrt()
                for p, m, v, (st, c) in zip(P, M, V, ((sh, ch), (sh, ch), (sh[:, None], ch[:, None]), (so, co))):
                    g = p.grad
                    m.mul_(B1).add_((1 - B1) * g)
                    v.mul_(B2).add_((1 - B2) * g * g)
                    p.sub_(st * (m / (v.sqrt() / c + EPS)))
                    p.grad = None
    lv = loss.item()
    return time.perf_counter() - t0, lv, w.steps


def _w3_step(P, M, V, Q, lr, x, y):
    G, loss = torch.func.grad_and_value(_mlp_loss)(P, x, y)
    Q = [Q[0] * B1, Q[1] * B2, Q[2] * B1, Q[3] * B2]
    sh, ch = lr / (1 - Q[0]), torch.sqrt(1 - Q[1])
    so, co = lr / (1 - Q[2]), torch.sqrt(1 - Q[3])
    outP, outM, outV = [], [], []
    for p, g, m, v, (st, c) in zip(P, G, M, V, ((sh, ch), (sh, ch), (sh[:, None], ch[:, None]), (so, co))):
        m = B1 * m + (1 - B1) * g
        v = B2 * v + (1 - B2) * g * g
        outP.append(p - st * (m / (torch.sqrt(v) / c + EPS)))
        outM.append(m)
        outV.append(v)
    return loss, outP, outM, outV, Q


def grow_mlp_compiled(w: GrowMlp) -> tuple[float, float, int]:
    """One compiled graph per hidden size (dynamic=False; compiled in the warm-up run)."""
    step = _compiled("w3", _w3_step)
    P, M, V, Q, batches = _w3_setup(w)
    lr = torch.tensor(w.lr, dtype=_dtype(w))
    loss = None
    t0 = time.perf_counter()
    for seg in range(len(w.sizes)):
        if seg:
            P, M, V, Q = _w3_grow(w, seg - 1, P, M, V, Q)
        for s in range(w.steps_per_size):
            x, y = batches[s % len(batches)]
            loss, P, M, V, Q = step(P, M, V, Q, lr, x, y)
    lv = loss.item()
    return time.perf_counter() - t0, lv, w.steps
