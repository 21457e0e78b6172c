"""NumPy with hand-written gradients and NOMA's Adam (see wl.py)."""

from __future__ import annotations

import time

import numpy as np

from wl import B1, B2, EPS, GrowMlp, Mlp, XorGrow


def _sig(z):
    return 1 / (1 + np.exp(-z))


def xor_grow(w: XorGrow) -> tuple[float, float, int]:
    X, Y = w.X, w.Y
    P = {k: v.copy() for k, v in w.init.items()}
    M = {k: np.zeros_like(v) for k, v in P.items()}
    V = {k: np.zeros_like(v) for k, v in P.items()}
    Q1 = {k: np.ones_like(v) for k, v in P.items()}
    Q2 = {k: np.ones_like(v) for k, v in P.items()}
    names = ("W1", "b1", "W2", "b2")
    steps = 0
    loss = float("nan")
    start = time.perf_counter()

    def step(lr):
        nonlocal loss
        h = _sig(X @ P["W1"] + P["b1"])
        out = _sig(h @ P["W2"] + P["b2"])
        diff = out - Y
        loss = float(np.mean(diff ** 2))
        return h, out, diff

    def update(lr, h, out, diff):
        dz2 = 2 * diff / diff.size * out * (1 - out)
        G = {"W2": h.T @ dz2, "b2": dz2.sum(0)}
        dz1 = (dz2 @ P["W2"].T) * h * (1 - h)
        G["W1"] = X.T @ dz1
        G["b1"] = dz1.sum(0)
        for k in names:
            g = G[k]
            M[k] = B1 * M[k] + (1 - B1) * g
            V[k] = B2 * V[k] + (1 - B2) * g * g
            Q1[k] = Q1[k] * B1
            Q2[k] = Q2[k] * B2
            denom = np.sqrt(V[k]) / np.sqrt(1 - Q2[k]) + EPS
            P[k] -= (lr / (1 - Q1[k])) * (M[k] / denom)

    for _ in range(w.steps1):
        update(w.lr1, *step(w.lr1))
        steps += 1
    if not w.grows:
        return time.perf_counter() - start, loss, steps
    # grow: old entries keep their index, values and state; new ones from NOMA's draws
    for k in names:
        new = w.grow[k].copy()
        sl = tuple(slice(0, d) for d in P[k].shape)
        new[sl] = P[k]
        P[k] = new
        for S, fill in ((M, 0.0), (V, 0.0), (Q1, 1.0), (Q2, 1.0)):
            t = np.full_like(new, fill)
            t[sl] = S[k]
            S[k] = t
    for _ in range(w.max2):
        h, out, diff = step(w.lr2)
        steps += 1
        if loss < w.target:
            break
        update(w.lr2, h, out, diff)
    return time.perf_counter() - start, loss, steps


def mlp(w: Mlp, steps: int) -> tuple[float, float, int]:
    dt = w.np_dtype
    L = w.layers
    P = {k: v.copy() for k, v in w.init.items()}
    M = {k: np.zeros_like(v) for k, v in P.items()}
    V = {k: np.zeros_like(v) for k, v in P.items()}
    b1, b2, eps, lr = dt(B1), dt(B2), dt(EPS), dt(w.lr)
    q1, q2 = dt(1), dt(1)
    starts = w.batch_starts(steps)
    full = w.batch == w.rows
    loss = float("nan")
    t0 = time.perf_counter()
    for s in range(steps):
        if full:
            x, y = w.X, w.Y
        else:
            a = starts[s]
            x, y = w.X[a:a + w.batch], w.Y[a:a + w.batch]
        hs = [x]
        for i in range(1, L):
            hs.append(np.tanh(hs[-1] @ P[f"W{i}"] + P[f"b{i}"]))
        z = hs[-1] @ P[f"W{L}"] + P[f"b{L}"]
        m = z.max(axis=1, keepdims=True)
        e = np.exp(z - m)
        se = e.sum(axis=1, keepdims=True)
        logp = z - m - np.log(se)
        n = dt(x.shape[0])
        loss = float(-np.sum(y * logp) / n)
        dz = (e / se - y) / n
        G = {}
        for i in range(L, 0, -1):
            G[f"W{i}"] = hs[i - 1].T @ dz
            G[f"b{i}"] = dz.sum(0)
            if i > 1:
                h = hs[i - 1]
                dz = (dz @ P[f"W{i}"].T) * (1 - h * h)
        q1 = q1 * b1
        q2 = q2 * b2
        c2 = np.sqrt(1 - q2)
        step = lr / (1 - q1)
        for k, g in G.items():
            Mk = M[k]
            Mk *= b1
            Mk += (1 - b1) * g
            Vk = V[k]
            Vk *= b2
            Vk += (1 - b2) * g * g
            denom = np.sqrt(Vk) / c2 + eps
            P[k] -= step * (Mk / denom)
    return time.perf_counter() - t0, loss, steps


def grow_mlp(w: GrowMlp) -> tuple[float, float, int]:
    """W3: 64-H-10 with H growing; Adam with per-unit powers (every entry of hidden unit j, i.e. W1
    column j, b1[j] and W2 row j, was added by the same resize, so they share one step count)."""
    dt = w.np_dtype
    b1, b2, eps, lr, one = dt(B1), dt(B2), dt(EPS), dt(w.lr), dt(1)
    W1, c1, W2, c2 = (w.init[k].copy() for k in ("W1", "b1", "W2", "b2"))
    P = [W1, c1, W2, c2]
    M = [np.zeros_like(p) for p in P]
    V = [np.zeros_like(p) for p in P]
    qh1, qh2 = np.ones(w.h0, dt), np.ones(w.h0, dt)   # per hidden unit
    qo1, qo2 = one, one                                 # b2 (never grows)
    starts = w.batch_starts(w.steps_per_size)
    n = dt(w.batch)
    loss = float("nan")
    t0 = time.perf_counter()
    for seg, H in enumerate(w.sizes):
        if seg:
            W1, c1, W2, c2 = P
            k = w.h_step
            P = [np.concatenate([W1, w.new_columns(W1, seg - 1)], axis=1),
                 np.concatenate([c1, np.zeros(k, dt)]),
                 np.concatenate([W2, np.zeros((k, W2.shape[1]), dt)]), c2]
            M = [np.concatenate([M[0], np.zeros((W1.shape[0], k), dt)], axis=1),
                 np.concatenate([M[1], np.zeros(k, dt)]),
                 np.concatenate([M[2], np.zeros((k, W2.shape[1]), dt)]), M[3]]
            V = [np.concatenate([V[0], np.zeros((W1.shape[0], k), dt)], axis=1),
                 np.concatenate([V[1], np.zeros(k, dt)]),
                 np.concatenate([V[2], np.zeros((k, W2.shape[1]), dt)]), V[3]]
            qh1 = np.concatenate([qh1, np.ones(k, dt)])
            qh2 = np.concatenate([qh2, np.ones(k, dt)])
        W1, c1, W2, c2 = P
        for a in starts:
            x, y = w.X[a:a + w.batch], w.Y[a:a + w.batch]
            h = np.tanh(x @ W1 + c1)
            z = h @ W2 + c2
            m = z.max(axis=1, keepdims=True)
            e = np.exp(z - m)
            se = e.sum(axis=1, keepdims=True)
            loss = float(-np.sum(y * (z - m - np.log(se))) / n)
            dz = (e / se - y) / n
            G = [None, None, h.T @ dz, dz.sum(0)]
            dz = (dz @ W2.T) * (1 - h * h)
            G[0] = x.T @ dz
            G[1] = dz.sum(0)
            qh1 = qh1 * b1
            qh2 = qh2 * b2
            qo1 = qo1 * b1
            qo2 = qo2 * b2
            sh, ch = lr / (1 - qh1), np.sqrt(1 - qh2)
            so, co = lr / (1 - qo1), np.sqrt(1 - qo2)
            # W1 [in, H]: per column; b1 [H]; W2 [H, out]: per row; b2: scalar
            for i, (step, c2_) in enumerate(((sh, ch), (sh, ch), (sh[:, None], ch[:, None]), (so, co))):
                g, Mk, Vk = G[i], M[i], V[i]
                Mk *= b1
                Mk += (1 - b1) * g
                Vk *= b2
                Vk += (1 - b2) * g * g
                P[i] -= step * (Mk / (np.sqrt(Vk) / c2_ + eps))
    return time.perf_counter() - t0, loss, w.steps
