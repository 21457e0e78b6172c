"""The test oracle's optimizer formulas: PyTorch's SGD, Adam, AdamW and RMSprop with per-entry step
counts (so entries added by a resize start at step 0), written plainly in NumPy.

Owns: OptSlot (one parameter's optimizer state), the defaults for NaN hyperparameters, one update.
Used by the interpreter (interp.py) only; the product's updates are in the native runtime, and
tests compare the two.
Imports: the standard library, numpy, noma.compiler.middle.ir (optimizer and hyperparameter numbering).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from noma.compiler.middle import ir


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
    adam = kind in (ir.OPTIMIZERS["adam"], ir.OPTIMIZERS["adamw"])
    defaults = {"lr": 0.001 if adam else 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                "weight_decay": 0.01 if kind == ir.OPTIMIZERS["adamw"] else 0.0, "momentum": 0.0,
                "alpha": 0.99, "dampening": 0.0, "nesterov": 0.0}
    out = {}
    for i, name in enumerate(ir.HYPER_NAMES):
        x = float(hyper[i]) if i < len(hyper) else math.nan
        out[name] = defaults[name] if math.isnan(x) else x
    return out


def new_slot(kind: int, like: np.ndarray) -> OptSlot:
    z = np.zeros_like(like)
    return OptSlot(kind, np.zeros(like.shape, np.int64), np.ones_like(like), np.ones_like(like), z, z.copy())


def optimizer_step(s: OptSlot, h: dict[str, float], p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """One update of parameter p with gradient g (PyTorch's formulas); returns the new p."""
    lr, wd, mom = h["lr"], h["weight_decay"], h["momentum"]
    if s.kind == ir.OPTIMIZERS["adamw"]:
        p = p * (1 - lr * wd)
    elif wd != 0:
        g = g + wd * p
    if s.kind in (ir.OPTIMIZERS["adam"], ir.OPTIMIZERS["adamw"]):
        b1, b2 = h["beta1"], h["beta2"]
        s.pow1, s.pow2 = s.pow1 * b1, s.pow2 * b2
        s.m = b1 * s.m + (1 - b1) * g
        s.v = b2 * s.v + (1 - b2) * g * g
        denom = np.sqrt(s.v) / np.sqrt(1 - s.pow2) + h["eps"]
        p = p - (lr / (1 - s.pow1)) * s.m / denom
    elif s.kind == ir.OPTIMIZERS["rmsprop"]:
        alpha = h["alpha"]
        s.v = alpha * s.v + (1 - alpha) * g * g
        avg = np.sqrt(s.v) + h["eps"]
        if mom > 0:
            s.m = mom * s.m + g / avg
            p = p - lr * s.m
        else:
            p = p - lr * g / avg
    else:  # SGD
        if mom != 0:
            s.m = np.where(s.step == 0, g, mom * s.m + (1 - h["dampening"]) * g)
            g = g + mom * s.m if h["nesterov"] != 0 else s.m
        p = p - lr * g
    s.step = s.step + 1
    return p
