"""The interpreter's optimize loop and optimizers against an independent NumPy re-implementation of
PyTorch's update formulas (500 steps, ≤ 1e-10), plus the loop's stop/max/state rules and the print
format.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pytest

from noma.compiler.middle import ir
from noma.compiler.interp.interp import Interpreter, InterpState, format_value
from noma.compiler.middle.ir import Block, Builder, Op

T = np.array([[1.0, -2.0, 0.5], [3.0, 0.25, -1.0]])
S = np.array([[1.0, 0.5, 2.0], [0.1, 3.0, 1.5]])
W0 = np.array([[0.3, 0.1, -0.2], [0.0, 1.0, 2.0]])
B0 = 0.7


def build(runs: list[tuple[str, dict[str, float], int]], until: Optional[float] = None) -> ir.Module:
    """main() runs one optimize op per entry of `runs` (optimizer, hyperparameters, max) over
    W (slot 0, a matrix) and b (slot 1, a scalar):
    loss = sum(S (W - T)² / 2) + (b - 1)² / 2, with the gradient block written by hand."""
    m = ir.Module()
    outer = Block()
    m.functions["main"] = ir.Function("main", [], outer, None)
    ob = Builder(m, outer)
    for kind, hyper, steps in runs:
        body = Block()
        b = Builder(m, body)
        w = b.value(Op.PARAM_LOAD, slot=0, name="W", rank=2)
        s = b.value(Op.PARAM_LOAD, slot=1, name="b", rank=0)
        diff = b.value(Op.SUB, w, b.value(Op.GLOBAL_LOAD, slot=0, name="T", rank=2))
        dw = b.value(Op.MUL, diff, b.value(Op.GLOBAL_LOAD, slot=1, name="S", rank=2))
        ds = b.value(Op.SUB, s, b.const(1.0))
        total = b.value(Op.ADD, b.value(Op.SUM, b.value(Op.MUL, dw, diff), axis=None, keepdims=False),
                        b.value(Op.MUL, ds, ds))
        loss = b.value(Op.MUL, b.const(0.5), total)
        stop = b.value(Op.LT, loss, b.const(until)) if until is not None else b.const(0.0)
        body.yields = [loss, stop]
        grad = Block()
        grad.yields = [dw, ds]
        hv = [ob.const(hyper.get(name, math.nan)) for name in ir.HYPER_NAMES]
        hv += [ob.const(math.nan) for _ in range(ir.HYPER_LEN - len(hv))]
        refs = [ir.ParamRef(0, "W", 2), ir.ParamRef(1, "b", 0)]
        outer.ops.append(ir.OptimizeOp(refs, ir.OPTIMIZERS[kind], hv, ob.const(steps), [], body,
                                       [m.new_value(0)], grad))
    ir.verify(m)
    return m


def run(m: ir.Module, state: Optional[InterpState] = None) -> Interpreter:
    it = Interpreter(m, state or InterpState())
    it.state.globals.update({0: T, 1: S})
    it.state.params.setdefault(0, W0.copy())
    it.state.params.setdefault(1, np.array(B0))
    it.call("main")
    return it


class Reference:
    """PyTorch's optimizer formulas (torch.optim.SGD/Adam/AdamW/RMSprop, non-amsgrad, non-centered)."""

    DEFAULTS = {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0,
                "momentum": 0.0, "alpha": 0.99, "dampening": 0.0, "nesterov": 0.0}

    def __init__(self, kind: str, hyper: dict[str, float]):
        self.kind = kind
        self.h = dict(self.DEFAULTS)
        if kind in ("adam", "adamw"):
            self.h["lr"] = 0.001
        if kind == "adamw":
            self.h["weight_decay"] = 0.01
        self.h.update(hyper)
        self.t = 0
        self.state: dict[int, dict[str, np.ndarray]] = {}

    def step(self, i: int, p: np.ndarray, g: np.ndarray) -> np.ndarray:
        h, st = self.h, self.state.setdefault(i, {})
        lr, wd, mom = h["lr"], h["weight_decay"], h["momentum"]
        t = st["t"] = st.get("t", 0) + 1
        if self.kind == "sgd":
            g = g + wd * p if wd else g
            if mom:
                st["buf"] = g.copy() if t == 1 else mom * st["buf"] + (1 - h["dampening"]) * g
                g = g + mom * st["buf"] if h["nesterov"] else st["buf"]
            return p - lr * g
        if self.kind == "rmsprop":
            g = g + wd * p if wd else g
            st["sq"] = h["alpha"] * st.get("sq", 0.0) + (1 - h["alpha"]) * g * g
            avg = np.sqrt(st["sq"]) + h["eps"]
            if mom > 0:
                st["buf"] = mom * st.get("buf", 0.0) + g / avg
                return p - lr * st["buf"]
            return p - lr * g / avg
        if self.kind == "adamw":
            p = p * (1 - lr * wd)
        elif wd:
            g = g + wd * p
        b1, b2 = h["beta1"], h["beta2"]
        st["m"] = b1 * st.get("m", 0.0) + (1 - b1) * g
        st["v"] = b2 * st.get("v", 0.0) + (1 - b2) * g * g
        denom = np.sqrt(st["v"]) / math.sqrt(1 - b2 ** t) + h["eps"]
        return p - lr / (1 - b1 ** t) * st["m"] / denom


def reference_run(kind: str, hyper: dict[str, float], steps: int) -> tuple[np.ndarray, float, list[float]]:
    ref = Reference(kind, hyper)
    w, b, losses = W0.copy(), np.array(B0), []
    for _ in range(steps):
        losses.append(float(0.5 * np.sum(S * (w - T) ** 2) + 0.5 * (b - 1) ** 2))
        gw, gb = S * (w - T), b - 1.0
        w, b = ref.step(0, w, gw), ref.step(1, b, gb)
    return w, float(b), losses


CONFIGS = [
    ("sgd", {}), ("sgd", {"lr": 0.05, "momentum": 0.9}), ("sgd", {"lr": 0.02, "momentum": 0.8, "dampening": 0.3}),
    ("sgd", {"lr": 0.02, "momentum": 0.9, "nesterov": 1.0}), ("sgd", {"lr": 0.05, "weight_decay": 0.1}),
    ("adam", {}), ("adam", {"lr": 0.02, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "weight_decay": 0.05}),
    ("adamw", {}), ("adamw", {"lr": 0.03, "weight_decay": 0.2}),
    ("rmsprop", {}), ("rmsprop", {"lr": 0.003, "alpha": 0.9, "momentum": 0.5, "weight_decay": 0.01}),
]


@pytest.mark.parametrize("kind,hyper", CONFIGS, ids=[f"{k}-{i}" for i, (k, _) in enumerate(CONFIGS)])
def test_matches_reference_over_500_steps(kind: str, hyper: dict[str, float]) -> None:
    it = run(build([(kind, hyper, 500)]))
    w, b, losses = reference_run(kind, hyper, 500)
    assert np.max(np.abs(it.state.params[0] - w)) <= 1e-10
    assert abs(float(it.state.params[1]) - b) <= 1e-10
    assert np.max(np.abs(np.array(it.state.loss_log) - losses)) <= 1e-10
    assert it.state.opt[0].step.tolist() == [[500] * 3] * 2


@pytest.mark.parametrize("kind", ["sgd", "adam", "rmsprop"])
def test_state_persists_across_optimize_statements(kind: str) -> None:
    hyper = {"lr": 0.01, "momentum": 0.9} if kind != "adam" else {"lr": 0.01}
    split = run(build([(kind, hyper, 200), (kind, hyper, 300)]))
    whole = run(build([(kind, hyper, 500)]))
    assert np.array_equal(split.state.params[0], whole.state.params[0])


def test_switching_optimizer_starts_fresh_state() -> None:
    it = run(build([("adam", {"lr": 0.01}, 10), ("sgd", {"lr": 0.1, "momentum": 0.5}, 10)]))
    assert it.state.opt[0].kind == ir.OPTIMIZERS["sgd"]
    assert it.state.opt[0].step.max() == 10


def test_until_stops_before_updating_and_max_warns() -> None:
    it = run(build([("sgd", {"lr": 0.1}, 1000)], until=0.5))
    w, b, losses = reference_run("sgd", {"lr": 0.1}, len(it.state.loss_log) - 1)
    assert it.state.loss_log[-1] < 0.5 <= it.state.loss_log[-2]
    assert np.max(np.abs(it.state.params[0] - w)) <= 1e-12
    assert not it.state.warnings
    capped = run(build([("sgd", {"lr": 0.1}, 3)], until=1e-9))
    assert len(capped.state.loss_log) == 3 and "iteration bound" in capped.state.warnings[0]


@pytest.mark.parametrize("effect", [Op.OPT_RESET, Op.PARAM_SET])
def test_param_set_and_reset_clear_optimizer_state(effect: Op) -> None:
    m = build([("adam", {}, 5)])
    ob = Builder(m, m.functions["main"].body)
    if effect is Op.OPT_RESET:
        ob.emit(Op.OPT_RESET, ())
    else:
        ob.emit(Op.PARAM_SET, (ob.value(Op.PARAM_LOAD, slot=0, name="W", rank=2),), slot=0, name="W")
    it = run(m)
    assert 0 not in it.state.opt and len(it.state.loss_log) == 5


def test_f32_module_runs_in_single_precision() -> None:
    m = build([("adam", {"lr": 0.01}, 50)])
    m.dtype = "f32"
    state = InterpState()
    state.params.update({0: W0.astype(np.float32), 1: np.array(B0, dtype=np.float32)})
    it = run(m, state)
    assert it.state.params[0].dtype == np.float32
    w, _, _ = reference_run("adam", {"lr": 0.01}, 50)
    assert np.max(np.abs(it.state.params[0] - w)) < 1e-4


@pytest.mark.parametrize("value,text", [
    (1 / 3, "0.333333"), (720.0, "720"), (1e-5, "1e-05"), (math.nan, "nan"), (math.inf, "inf"),
    (-math.inf, "-inf"), (-0.0, "0"), (123456789.0, "123456789"), (123456789.5, "1.23457e+08"),
    (np.array([[1.0, 2.0], [3.0, 4.5]]), "[[1, 2], [3, 4.5]]"),
    (np.arange(14.0), "[" + ", ".join(str(i) for i in range(14)) + "]"),
    (np.arange(1001.0), "[0, 1, 2, ..., 998, 999, 1000]"), (np.zeros((0,)), "[]"),
])
def test_print_format(value: object, text: str) -> None:
    assert format_value(value) == text
