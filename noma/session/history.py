"""The training history as the front ends see it: losses in bounded memory, events, run segments.

Owns: `History` (what `Session.history` returns), `LossSummary` (the runtime's multi-resolution
summary of every logged loss: min, max and mean per bucket), `Event` (noma.rt.events), and the split of a history
into run segments at `learn` re-initialisations. The runtime keeps the data
(noma/rt/native/noma_rt_history.c: an exact window of the last losses plus levels of buckets that
merge pairwise); this module only gives it names and steps. Steps are numbered from 1: the loss of
step k is the k-th loss the session logged, and an event at step s happened after step s.
Imports: numpy, noma.rt.events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from noma.rt.events import Event  # noqa: F401  (part of the history's API)


@dataclass
class LossSummary:
    """Every logged loss in at most a few thousand buckets, oldest first. A bucket holds `count`
    consecutive losses (a power of two; the most recent buckets hold one loss each) starting at
    step `first`; `min`/`max` ignore NaN (NaN only when all are), `mean` does not."""

    first: np.ndarray  # int64 step of each bucket's first loss
    count: np.ndarray  # int64 losses per bucket
    min: np.ndarray
    max: np.ndarray
    mean: np.ndarray

    def __len__(self) -> int:
        return len(self.first)

    @property
    def last(self) -> np.ndarray:
        """The step of each bucket's last loss."""
        return self.first + self.count - 1

    @classmethod
    def exact(cls, losses: np.ndarray, first_step: int = 1) -> "LossSummary":
        """One bucket per loss (a history known exactly)."""
        x = np.asarray(losses, dtype=np.float64)
        n = len(x)
        return cls(np.arange(first_step, first_step + n, dtype=np.int64), np.ones(n, np.int64),
                   x.copy(), x.copy(), x.copy())

    @classmethod
    def from_levels(cls, start: int, counts: np.ndarray, bmin: np.ndarray, bmax: np.ndarray,
                    bsum: np.ndarray) -> "LossSummary":
        """The runtime's levels (counts[l] buckets of 2^l losses; buckets oldest first, i.e. the
        highest level first) after `start` steps that are not summarised."""
        widths = np.concatenate([np.full(int(c), 1 << level, np.int64)
                                 for level, c in reversed(list(enumerate(counts)))] or [np.zeros(0, np.int64)])
        first = start + 1 + np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(np.int64) if len(widths) \
            else np.zeros(0, np.int64)
        return cls(first, widths, np.asarray(bmin, np.float64), np.asarray(bmax, np.float64),
                   np.asarray(bsum, np.float64) / widths)


@dataclass
class Segment:
    """Steps first..last (inclusive) trained between two re-initialisations (`learn` of
    parameters that already existed); `reinit` names the parameters re-initialised at its start."""

    index: int
    first: int
    last: int
    reinit: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        if not self.reinit:
            return f"run {self.index}"
        names = ", ".join(self.reinit[:3]) + (", ..." if len(self.reinit) > 3 else "")
        return f"run {self.index} (learn {names})"


@dataclass
class History:
    """Loss per global step across all cells, in bounded memory, and the events (always exact).

    `losses`: the exact losses of the most recent steps, oldest first: all of them when the
    session trained at most `window` steps (65536 by default), otherwise the last `window`.
    `losses[i]` is the loss of step `first_step + i`. `summary` covers every step the session
    logged (min/max/mean per bucket); `total_steps` is the global step."""

    losses: np.ndarray
    events: list[Event]
    summary: Optional[LossSummary] = None
    first_step: int = 1
    total_steps: Optional[int] = None
    window: Optional[int] = None
    #: named metrics (`report`): noma.rt.metrics.Metric by name
    metrics: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.losses = np.asarray(self.losses, dtype=np.float64)
        if self.total_steps is None:
            self.total_steps = self.first_step - 1 + len(self.losses)
        if self.summary is None:
            self.summary = LossSummary.exact(self.losses, self.first_step)

    @property
    def _summary(self) -> LossSummary:
        assert self.summary is not None  # set by __post_init__
        return self.summary

    @property
    def _total(self) -> int:
        assert self.total_steps is not None  # set by __post_init__
        return self.total_steps

    @property
    def loss_steps(self) -> np.ndarray:
        """The step of each exact loss."""
        return np.arange(self.first_step, self.first_step + len(self.losses), dtype=np.int64)

    @property
    def complete(self) -> bool:
        """Whether `losses` holds every step's loss (the run fits in the exact window)."""
        return self.first_step == 1 and len(self.losses) == self.total_steps

    @property
    def last_loss(self) -> Optional[float]:
        if len(self.losses):
            return float(self.losses[-1])
        return float(self._summary.mean[-1]) if len(self._summary) else None

    def best_loss(self) -> Optional[float]:
        """The smallest loss logged (NaN ignored); None when nothing was logged or all are NaN."""
        summary = self._summary
        values = summary.min[np.isfinite(summary.min)] if len(summary) else []
        return float(np.min(values)) if len(values) else None

    def segments(self) -> list[Segment]:
        """Run segments: a `learn` that re-initialises defined parameters after steps were trained
        starts a new one (re-initialisations before any new step join the same boundary). Every
        step from the first summarised one to `total_steps` is in exactly one segment; a segment
        begun by the last re-initialisation may hold no steps yet (first > last)."""
        start = int(self._summary.first[0]) if len(self._summary) else self._total + 1
        cuts: list[tuple[int, list[str]]] = []  # steps s: steps up to s before, after s after
        for e in self.events:
            if e.kind != "init" or e.step < start:  # before any summarised step: nothing to split
                continue
            if cuts and cuts[-1][0] == e.step:
                if e.name not in cuts[-1][1]:
                    cuts[-1][1].append(e.name)
            elif not cuts or e.step > cuts[-1][0]:
                cuts.append((e.step, [e.name]))
        segments: list[Segment] = []
        first, names = start, tuple[str, ...]()
        for step, reinit in cuts:
            segments.append(Segment(len(segments) + 1, first, step, tuple(names)))
            first, names = step + 1, tuple(reinit)
        segments.append(Segment(len(segments) + 1, first, self._total, tuple(names)))
        return segments


def segment_of(steps: np.ndarray, segments: list[Segment]) -> np.ndarray:
    """For each step, the index (0-based) of the segment holding it."""
    lasts = np.array([s.last for s in segments], dtype=np.int64)
    return np.minimum(np.searchsorted(lasts, steps, side="left"), len(segments) - 1)


