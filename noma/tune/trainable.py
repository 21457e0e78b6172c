"""The Ray Tune Trainable that runs a NOMA program (noma.tune.live.LiveTrial) inside its actor.

`make_trainable(text, name, steps_per_report)` returns a Trainable class bound to a program:
  - setup(config): compile and run the program's setup with the trial's values as defines;
  - step(): train `steps_per_report` more steps (the native loop stops at that step boundary and
    resumes from the same compiled code next time) and report loss, every `report`ed metric, the
    global step, the dims, and the trial's exploit/resize events since the last report;
  - save_checkpoint(dir) / load_checkpoint(dir): NOMA session checkpoints in Ray's trial
    checkpoint directory; loading one with other dims resizes the live network to them;
  - reset_config(config) (reuse_actors, and PBT's exploit): a new trial reruns the setup in the
    same session (compiled functions and cells stay cached); before a checkpoint restore (PBT) the
    mutated configuration is applied after the restore: dims as `realloc`, numbers assigned.
Imports Ray (the `ray` extra); nothing else in NOMA imports this module eagerly.
"""
from __future__ import annotations

import os
from typing import Any, Optional

from ray import tune

from noma.tune.live import LiveTrial


class NomaTrainable(tune.Trainable):
    """A NOMA program training in a live Session in a Ray actor (class attributes: the program)."""

    program_text: str = ""
    program_name: str = "<program>"
    steps_per_report: int = 100
    dtype: str = "f64"
    workdir: str = ""  # relative file paths of the program (load_csv) resolve here, on every node

    def _enter_workdir(self) -> None:
        """Ray moves an actor into each trial's directory (also when it reuses the actor)."""
        if self.workdir and os.path.isdir(self.workdir):
            os.chdir(self.workdir)

    def setup(self, config: dict[str, Any]) -> None:
        self._enter_workdir()
        self.trial = LiveTrial(self.program_text, self.program_name, config, dtype=self.dtype)
        self._pending: Optional[dict[str, Any]] = None
        self._reported_events = 0

    def step(self) -> dict[str, Any]:
        self._enter_workdir()
        if self._pending is not None:  # reset_config for a new trial, with no checkpoint after it
            self.trial.config = self._pending
            self._pending = None
            self.trial.start()
            self._reported_events = 0
        result = self.trial.advance(self.steps_per_report)
        new = self.trial.events[self._reported_events:]
        self._reported_events = len(self.trial.events)
        result["exploits"] = sum(e.kind == "exploit" for e in new)
        result["resizes"] = sum(e.kind == "resize" for e in new)
        result["events"] = "; ".join(f"{e.kind} at {e.step}: {e.detail}" for e in new)
        result["done"] = self.trial.finished
        return result

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        self.trial.save(os.path.abspath(checkpoint_dir), self.trial_id)

    def load_checkpoint(self, checkpoint: Any) -> None:
        directory = os.path.abspath(checkpoint if isinstance(checkpoint, str) else checkpoint["checkpoint_dir"])
        self._enter_workdir()
        self.trial.load(directory, self.trial_id)
        if self._pending is not None:
            self.trial.apply_config(self._pending)
            self._pending = None
        else:
            self.trial.apply_config(self.config)

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        self._pending = dict(new_config)
        return True


def make_trainable(text: str, name: str, steps_per_report: int, dtype: str = "f64",
                   workdir: str = "") -> type:
    """A NomaTrainable subclass bound to one program (Ray ships the class to every node)."""
    return type("NomaProgram", (NomaTrainable,), {
        "program_text": text, "program_name": name, "steps_per_report": int(steps_per_report), "dtype": dtype,
        "workdir": workdir, "__module__": __name__,
    })
