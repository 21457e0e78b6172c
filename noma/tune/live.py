"""One trial of noma.tune without Ray: a NOMA program training in a live Session, advanced a
number of steps at a time.

`LiveTrial(program, config)` runs the program's setup with the configuration's values as defines
(noma.compiler.front.defines), then `advance(n)` runs the training cell until the global step has grown
by n: the runtime stops the native loop at that step boundary (Runtime.set_stop_at, checked where
the loop checks the interrupt flag), and the next `advance` reruns the same compiled cell from the
session's cell cache (no recompilation), resuming from the globals the loop left. `save`/`load`
write and read NOMA session checkpoints (PATH + PATH.json); loading one whose dims differ from the
running network resizes it to the checkpoint's sizes with the checkpoint's values and optimizer
state (the runtime's checkpoint loader), and restores its scalar globals and named metrics.
`apply_config` then makes the network follow a mutated configuration: a changed dim is a
`realloc` of the live network (policy `preserve`), a changed number a plain assignment.
The Ray Trainable (noma.tune.trainable) wraps this class; it imports no Ray.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from noma.diagnostics import Source
from noma.tune.program import TunedProgram, split_program

CHECKPOINT_FILE = "noma.safetensors"


class TrialError(RuntimeError):
    """A NOMA program failed in a trial (its rendered diagnostics are the message)."""


@dataclass
class TrialEvent:
    """Something that changed a trial's network: kind `exploit` (a checkpoint loaded; dims from
    → to) or `resize` (a dim mutated by a realloc)."""

    step: int
    kind: str
    detail: str


def program_values(config: Mapping[str, Any], program: TunedProgram) -> dict[str, Any]:
    """The configuration entries that name a top-level let or dim of the program."""
    return {k: v for k, v in config.items() if k in program.dims or k in program.lets}


class LiveTrial:
    """A NOMA program training in a live session, stepped from outside."""

    def __init__(self, text: str, name: str, config: Mapping[str, Any], dtype: str = "f64"):
        from noma.session.core import Session

        self.program = split_program(Source(name, text))
        self.config = dict(config)
        self.session = Session(dtype=dtype, capture=True)
        self.session.measure_output_change = False
        self.events: list[TrialEvent] = []
        self.finished = False
        self.start()

    # ------------------------------------------------------------------ running

    def _run(self, text: str, what: str) -> Any:
        result = self.session.execute(text, name=self.program.source.name)
        if result.status == "error":
            raise TrialError(f"{what} failed:\n" + "\n".join(d.render() for d in result.errors))
        return result

    def start(self) -> None:
        """(Re)start from the program's setup with this trial's configuration (history from 0)."""
        from noma.compiler.front.defines import make_defines, parse_with_defines

        values = program_values(self.config, self.program)
        parse_with_defines(self.program.source, make_defines(values))  # located errors before running
        self.session.defines = values
        self.session.rt.lib.noma_history_reset(self.session.rt.ctx, 0)
        self.session.rt.restore_metrics({})
        self.events.clear()
        self.finished = False
        self._run(self.program.setup, "the program's setup")

    def advance(self, steps: int) -> dict[str, Any]:
        """Train `steps` more steps (fewer when the loop ends by its own `until`); the metrics,
        with `steps`: the steps computed by this call."""
        rt = self.session.rt
        before = rt.global_step()
        if not self.finished:
            rt.set_stop_at(before + steps)
            try:
                result = self._run(self.program.train, "training")
            finally:
                rt.set_stop_at(-1)
            if result.status == "ok":  # the loop ended by its own condition
                self.finished = True
                self._run(self.program.after, "the statements after the training loop")
        out = self.metrics()
        out["steps"] = out["global_step"] - before
        return out

    def metrics(self) -> dict[str, Any]:
        """Loss, every named metric's last value, global step and dims (flat, for Tune)."""
        loss = self.session.rt.last_loss()
        out: dict[str, Any] = {"loss": math.nan if loss is None else loss,
                               "global_step": self.session.rt.global_step(),
                               "compilations": self.session.compilations}
        for name, m in self.session.metrics.items():
            out[name] = m.last
        for name, size in self.session.dims.items():
            out[f"dim_{name}"] = size
        return out

    # ------------------------------------------------------------------ checkpoints

    def save(self, directory: str, owner: str = "") -> str:
        """A checkpoint in `directory` (`owner`: the trial's id, to tell an exploit from a restore)."""
        path = os.path.join(directory, CHECKPOINT_FILE)
        self.session.save_checkpoint(path)
        with open(os.path.join(directory, "noma_trial.json"), "w") as f:
            json.dump({"finished": self.finished, "owner": owner}, f)
        return path

    def load(self, directory: str, owner: str = "") -> None:
        """Continue from a checkpoint of any trial of the same program (its sizes, values and
        optimizer state; its scalar globals, history position and metrics). A checkpoint of
        another owner than `owner` is an exploit (a TrialEvent naming the dims that changed)."""
        from noma.session import state as session_state

        path = os.path.join(directory, CHECKPOINT_FILE)
        before = dict(self.session.dims)
        session_state.load_checkpoint_values(self.session, path)
        with open(os.path.join(directory, "noma_trial.json")) as f:
            info = json.load(f)
        self.finished = bool(info["finished"])
        if info.get("owner") == owner and owner:
            return  # this trial's own checkpoint (Ray paused and resumed it)
        after = self.session.dims
        detail = ", ".join(f"{n} {before.get(n)}→{after[n]}" for n in after if before.get(n) != after[n])
        self.events.append(TrialEvent(self.session.rt.global_step(), "exploit", detail or "same sizes"))

    def apply_config(self, config: Mapping[str, Any]) -> None:
        """Follow a (mutated) configuration: dims by `realloc` (preserve), numbers by assignment."""
        self.config = dict(config)
        dims = self.session.dims
        for name, value in program_values(config, self.program).items():
            if name in self.program.dims:
                if int(value) != dims.get(name):
                    old = dims.get(name)
                    self._run(f"realloc {name} = {int(value)} init preserve;", f"resizing {name}")
                    self.events.append(TrialEvent(self.session.rt.global_step(), "resize",
                                                  f"{name} {old}→{int(value)}"))
            elif not _same(self.session.globals().get(name), value):
                self._run(f"{name} = {float(value)!r};", f"setting {name}")


def _same(current: Optional[Any], value: Any) -> bool:
    try:
        return current is not None and float(current) == float(value)
    except (TypeError, ValueError):
        return False


def check_program(text: str, name: str, config: Mapping[str, Any]) -> None:
    """Located errors for a program noma tune cannot run with `config`: no training loop, a
    configuration entry naming no top-level let or dim, a value of the wrong kind."""
    from noma.compiler.front.defines import make_defines, parse_with_defines

    parse_with_defines(split_program(Source(name, text)).source, make_defines(dict(config)))
