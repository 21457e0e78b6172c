"""The test oracle's optimizer formulas: PyTorch's SGD, Adam, AdamW and RMSprop with per-entry step
counts (so entries added by a resize start at step 0), written plainly in NumPy.

Owns: OptSlot (one parameter's optimizer state), one update per optimizer (UPDATES, keyed by the
names of the registry noma.optimizers, which holds the defaults for NaN hyperparameters).
Used by the interpreter (interp.py) only; the product's updates are in the native runtime, and
tests compare the two.
Imports: the standard library, numpy, noma.optimizers (kinds, hyperparameters, defaults).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from noma import optimizers


@dataclass
class OptSlot:
    """One parameter's optimizer state; every buffer has the parameter's shape."""

    kind: int
    step: np.ndarray  # per-entry step counts (int64)
    pow1: np.ndarray  # beta1^step, kept as a running product
    pow2: np.ndarray
    m: np.ndarray     # Adam first moment / SGD and RMSprop momentum buffer
    v: np.ndarray     # Adam second moment / RMSprop square average


def hyperparameters(kind: int, hyper: list[float]) -> dict[str, float]:
    """The hyperparameter vector with NaN entries replaced by the optimizer's defaults."""
    defaults = optimizers.BY_KIND[kind].defaults()
    out = {}
    for i, name in enumerate(optimizers.HYPER_NAMES):
        x = float(hyper[i]) if i < len(hyper) else math.nan
        out[name] = defaults[name] if math.isnan(x) else x
    return out


def new_slot(kind: int, like: np.ndarray) -> OptSlot:
    z = np.zeros_like(like)
    return OptSlot(kind, np.zeros(like.shape, np.int64), np.ones_like(like), np.ones_like(like), z, z.copy())


def _decay(p: np.ndarray, g: np.ndarray, h: dict[str, float]) -> np.ndarray:
    """L2 weight decay folded into the gradient (every optimizer but AdamW)."""
    return g + h["weight_decay"] * p if h["weight_decay"] != 0 else g


def _sgd(s: OptSlot, h: dict[str, float], p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """g += wd p; with momentum mu: buf = g at step 0, else mu buf + (1 - dampening) g;
    g = nesterov ? g + mu buf : buf; p -= lr g."""
    g = _decay(p, g, h)
    mom = h["momentum"]
    if mom != 0:
        s.m = np.where(s.step == 0, g, mom * s.m + (1 - h["dampening"]) * g)
        g = g + mom * s.m if h["nesterov"] != 0 else s.m
    return p - h["lr"] * g


def _adam_moments(s: OptSlot, h: dict[str, float], p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr / (1-b1^t) m / (sqrt(v / (1-b2^t)) + eps)."""
    b1, b2 = h["beta1"], h["beta2"]
    s.pow1, s.pow2 = s.pow1 * b1, s.pow2 * b2
    s.m = b1 * s.m + (1 - b1) * g
    s.v = b2 * s.v + (1 - b2) * g * g
    denom = np.sqrt(s.v) / np.sqrt(1 - s.pow2) + h["eps"]
    return p - (h["lr"] / (1 - s.pow1)) * s.m / denom


def _adam(s: OptSlot, h: dict[str, float], p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Adam: L2 decay in the gradient, then the moment update."""
    return _adam_moments(s, h, p, _decay(p, g, h))


def _adamw(s: OptSlot, h: dict[str, float], p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """AdamW: p *= 1 - lr wd (decoupled decay), then Adam without the decay term."""
    return _adam_moments(s, h, p * (1 - h["lr"] * h["weight_decay"]), g)


def _rmsprop(s: OptSlot, h: dict[str, float], p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """g += wd p; v = a v + (1-a) g^2; avg = sqrt(v) + eps;
    mu ? (buf = mu buf + g / avg; p -= lr buf) : p -= lr g / avg."""
    g = _decay(p, g, h)
    alpha, mom, lr = h["alpha"], h["momentum"], h["lr"]
    s.v = alpha * s.v + (1 - alpha) * g * g
    avg = np.sqrt(s.v) + h["eps"]
    if mom > 0:
        s.m = mom * s.m + g / avg
        return p - lr * s.m
    return p - lr * g / avg


Update = Callable[[OptSlot, dict[str, float], np.ndarray, np.ndarray], np.ndarray]
#: The update of each optimizer of the registry (noma.optimizers), by name; a test checks that
#: every registered optimizer has one.
UPDATES: dict[str, Update] = {"sgd": _sgd, "adam": _adam, "adamw": _adamw, "rmsprop": _rmsprop}


def optimizer_step(s: OptSlot, h: dict[str, float], p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """One update of parameter p with gradient g (PyTorch's formulas); returns the new p."""
    p = UPDATES[optimizers.BY_KIND[s.kind].name](s, h, p, g)
    s.step = s.step + 1
    return p
