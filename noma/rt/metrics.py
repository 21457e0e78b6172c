"""Named metrics of a runtime context (the `report("name", value);` statement), read and restored.

The C runtime (noma_rt_metrics.c) keeps, per name, the count, min, max and sum of every value
reported and the last NOMA_METRIC_WINDOW (global step, value) samples. This module copies them
into `Metric` records (Session.metrics, checkpoints, noma.tune) and puts them back. Imports only
NumPy and ctypes.
"""
from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Metric:
    """One named metric: its held samples (global steps, values; oldest first) and a summary of
    every value ever reported (count, min, max, sum)."""

    name: str
    steps: np.ndarray
    values: np.ndarray
    count: int
    min: float
    max: float
    sum: float

    @property
    def last(self) -> float:
        return float(self.values[-1]) if len(self.values) else math.nan

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else math.nan

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "min": self.min, "max": self.max, "sum": self.sum,
                "steps": [int(s) for s in self.steps], "values": [float(v) for v in self.values]}

    @classmethod
    def from_json(cls, name: str, data: dict[str, Any]) -> "Metric":
        return cls(name, np.asarray(data["steps"], dtype=np.int64), np.asarray(data["values"], dtype=np.float64),
                   int(data["count"]), float(data["min"]), float(data["max"]), float(data["sum"]))


def read_metrics(lib: Any, ctx: Any) -> dict[str, Metric]:
    """Every metric of the context, by name, in the order first reported."""
    window = int(lib.noma_metric_limit(1))
    name = ctypes.create_string_buffer(int(lib.noma_metric_limit(2)))
    summary = np.zeros(4)
    out: dict[str, Metric] = {}
    for i in range(int(lib.noma_metric_count(ctx))):
        steps = np.zeros(window, dtype=np.int64)
        values = np.zeros(window)
        n = int(lib.noma_metric_get(ctx, i, name, summary.ctypes.data, steps.ctypes.data, values.ctypes.data, window))
        if n < 0:
            continue
        key = name.value.decode("utf-8", "replace")
        out[key] = Metric(key, steps[:n].copy(), values[:n].copy(), int(summary[0]), float(summary[1]),
                          float(summary[2]), float(summary[3]))
    return out


def restore_metrics(lib: Any, ctx: Any, metrics: dict[str, Metric]) -> None:
    """Replace the context's metrics by `metrics` (ValueError on a record the runtime refuses)."""
    lib.noma_metrics_clear(ctx)
    for name, m in metrics.items():
        summary = np.array([m.count, m.min, m.max, m.sum], dtype=np.float64)
        steps = np.ascontiguousarray(m.steps, dtype=np.int64)
        values = np.ascontiguousarray(m.values, dtype=np.float64)
        if len(steps) != len(values) or not lib.noma_metric_set(
                ctx, name.encode("utf-8"), summary.ctypes.data, len(steps), steps.ctypes.data, values.ctypes.data):
            raise ValueError(f"metric {name!r}: malformed record")
