"""The `:controls` panel of the Jupyter kernel: widgets that act on the training loop as it runs.

Owns: the ipywidgets panel (per named dim: its size, a step, an init policy, grow and shrink
buttons; the learning rate of the running loop on a log slider; pause/resume; stop; a status
line naming the last action and, once applied, its step) and turning its clicks into requests of
the session's live controls (noma.session.controls). While a cell runs, a request waits for the
running loop's next step boundary, where the loop applies it itself (the deferred-resize path; no
recompilation); when no cell runs, it is applied at once. The kernel serves the widgets' comm
messages while a cell trains (NomaKernel._in_cell_thread) and calls `refresh()` from its progress
ticks and after each cell, so sizes and the status follow what the loop did.
Imports: ipywidgets (a dependency; imported when the panel is first shown), noma.session.controls,
noma.meta.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Optional

from noma.session.controls import POLICY_ARGS

#: The learning-rate slider's range (powers of ten) and its starting value.
LR_RANGE = (-5.0, 0.0)
LR_START = 0.01


class ControlPanel:
    """The widgets of `:controls`, bound to a kernel (its session and whether a cell runs)."""

    def __init__(self, session: Callable[[], Any], busy: Callable[[], bool]):
        import ipywidgets as w

        self._session = session
        self._busy = busy
        self._lock = threading.Lock()  # refresh() runs on the cell thread and the event loop's
        self._rows: dict[str, Any] = {}
        self._sizes: dict[str, Any] = {}
        self._steps: dict[str, Any] = {}
        self._policies: dict[str, Any] = {}
        self._waiting: Optional[tuple[int, str]] = None  # (applied count to pass, action text)
        self._events_seen = len(self.session.events())
        self.dims_box = w.VBox()
        self.lr = w.FloatLogSlider(value=LR_START, base=10, min=LR_RANGE[0], max=LR_RANGE[1], step=0.1,
                                   description="learning rate", readout_format=".1e", continuous_update=False)
        self.lr.add_class("noma-lr")
        self.lr.observe(self._on_lr, names="value")
        self.pause = w.ToggleButton(value=False, description="pause", icon="pause")
        self.pause.add_class("noma-pause")
        self.pause.observe(self._on_pause, names="value")
        self.stop = w.Button(description="stop", icon="stop", button_style="danger")
        self.stop.add_class("noma-stop")
        self.stop.on_click(self._on_stop)
        self.status = w.HTML("<i>ready</i>")
        self.status.add_class("noma-controls-status")
        title = w.HTML("<b>NOMA live controls</b> &mdash; act on the running training loop at its next step")
        self.box = w.VBox([title, self.dims_box, self.lr, w.HBox([self.pause, self.stop]), self.status])
        self.box.add_class("noma-controls")
        self.refresh()

    @property
    def session(self) -> Any:
        return self._session()

    def mimebundle(self) -> dict[str, Any]:
        """The display_data of the panel (a widget view, with a plain-text fallback)."""
        return {"application/vnd.jupyter.widget-view+json": {"model_id": self.box.model_id, "version_major": 2,
                                                               "version_minor": 0},
                "text/plain": "NOMA live controls (needs a Jupyter front end with ipywidgets)"}

    # ------------------------------------------------------------------ dims

    def _dim_row(self, name: str) -> Any:
        import ipywidgets as w

        size = w.HTML()
        size.add_class(f"noma-size-{name}")
        step = w.BoundedIntText(value=2, min=1, max=1 << 20, description="by", layout=w.Layout(width="130px"))
        policy = w.Dropdown(options=list(POLICY_ARGS), value="preserve", description="init",
                            layout=w.Layout(width="190px"))
        grow = w.Button(description="grow", icon="plus", button_style="success", layout=w.Layout(width="90px"))
        shrink = w.Button(description="shrink", icon="minus", layout=w.Layout(width="90px"))
        grow.add_class(f"noma-grow-{name}")
        shrink.add_class(f"noma-shrink-{name}")
        grow.on_click(lambda _b: self._resize(name, +1))
        shrink.on_click(lambda _b: self._resize(name, -1))
        self._sizes[name], self._steps[name], self._policies[name] = size, step, policy
        label = w.HTML(f"<b>{name}</b>", layout=w.Layout(width="90px"))
        return w.HBox([label, size, step, policy, grow, shrink])

    def _resize(self, name: str, sign: int) -> None:
        by = int(self._steps[name].value)
        policy = str(self._policies[name].value)
        verb = "grow" if sign > 0 else "shrink"
        self._act(f"{verb} {name} by {by} (init {policy})",
                  lambda c: (c.grow if sign > 0 else c.shrink)(name, by, policy))

    # ------------------------------------------------------------------ actions

    def _act(self, text: str, request: Callable[[Any], None]) -> None:
        """Send one request; applied at the next step boundary (a cell runs) or now."""
        from noma.diagnostics import NomaError

        controls = self.session.controls
        applied = controls.applied
        try:
            request(controls)
            if not self._busy():
                controls.apply_pending()
        except NomaError as exc:
            self._say(f"<b>{text}</b>: {exc.diagnostics[0].message}")
            return
        self._waiting = (applied, text)
        self.refresh()

    def _on_lr(self, change: dict) -> None:
        if self._busy():
            self._act(f"learning rate {change['new']:.2g}", lambda c: c.set_lr(float(change["new"])))
        else:
            self._say(f"learning rate {change['new']:.2g}: applies to a running loop (none runs)")

    def _on_pause(self, change: dict) -> None:
        self.session.controls.pause(bool(change["new"]))
        self.pause.description = "resume" if change["new"] else "pause"
        self.pause.icon = "play" if change["new"] else "pause"
        self._say("paused at the next step boundary" if change["new"] else "resumed")

    def _on_stop(self, _button: Any) -> None:
        if not self._busy():
            self._say("stop: no loop runs")
            return
        self.session.controls.stop()
        if self.pause.value:
            self.pause.value = False
        self._say("stop: the loop ends at its next step, the cell goes on")

    def _say(self, html: str) -> None:
        self.status.value = html

    # ------------------------------------------------------------------ refresh

    def refresh(self) -> None:
        """Sizes of the dims (rows for new dims), and the status of the last action once the
        loop applied it (its step, from the history). Never raises."""
        try:
            with self._lock:
                self._refresh()
        except Exception:
            pass

    def _refresh(self) -> None:
        session = self.session
        dims = dict(session.dims)
        if list(dims) != list(self._rows):
            self._rows = {name: self._rows.get(name) or self._dim_row(name) for name in dims}
            self.dims_box.children = tuple(self._rows.values())
        for name, size in dims.items():
            text = f"size <b>{size}</b>"
            if self._sizes[name].value != text:
                self._sizes[name].value = text
        if self._waiting is not None and session.controls.applied > self._waiting[0]:
            self._waiting = None
            self._report_events(session)
        elif self._waiting is not None:
            self._say(f"<b>{self._waiting[1]}</b>: waiting for the next step boundary")

    def _report_events(self, session: Any) -> None:
        events = session.events()
        mine = [e for e in events[self._events_seen:] if getattr(e, "origin", "") == "controls"]
        self._events_seen = len(events)
        if mine:
            self._say("; ".join(_action_text(e) for e in mine))
        else:
            self._say("applied")


def _action_text(event: Any) -> str:
    """`grow hidden 2 → 4 at step 3,740 (from the controls)`."""
    from noma.meta import event_text

    if event.kind != "dim_resize" or not event.old_shape or not event.new_shape:
        return event_text(event).strip()
    old, new = event.old_shape[0], event.new_shape[0]
    verb = "grow" if new > old else "shrink"
    return f"<b>{verb} {event.name} {old} → {new}</b> at step {event.step:,} (from the controls, init {event.policy})"
