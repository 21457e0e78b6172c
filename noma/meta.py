"""Meta-commands (`:help`, `:params`, `:plot`, ...) shared by the REPL and the Jupyter kernel.

Owns: parsing a `:command args` line, running it against a live Session and returning a
MetaResult (plain text, optional HTML / PNG, the path of a file written, success), the one
text rendering of an ExecResult used by the front ends (`render_result`), and `meta_names()`
for completion. It never prints and never raises for a user mistake.
Imports: noma.display; noma.diagnostics, noma.plots, noma.source_file lazily (compiler stages only as the
session's artifacts: noma.compiler.pipeline.Artifacts).

API (stable):
    run_meta(session, line, *, color=False) -> MetaResult
    meta_names() -> list[str]            # ":help", ":params", ...
    is_meta(line) -> bool
    render_result(result, color=False) -> str
`:reset` on a Session without `reset()` returns a fresh Session in MetaResult.session: a front
end must then use that object from now on (it always should adopt MetaResult.session when set).
"""

from __future__ import annotations

import html as _html
import math
import os
import shlex
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from noma.display import format_scalar, format_value


@dataclass
class MetaResult:
    """What a meta-command produced. `text` is always set (plain, no colour unless asked)."""

    text: str = ""
    html: Optional[str] = None
    png: Optional[bytes] = None
    path: Optional[str] = None
    ok: bool = True
    #: A replacement session (only `:reset` when the Session has no reset()).
    session: Any = None
    #: The ExecResult of `:time` / `:run` (its rendering is already part of `text`).
    result: Any = None


#: name -> (argument synopsis, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "help": ("", "this list"),
    "params": ("", "parameters: shape, dtype, size, optimizer and its state (step counts)"),
    "dims": ("", "named dims, their sizes and the parameters that use them"),
    "who": ("", "top-level variables with their shapes, parameters and functions"),
    "history": ("", "training history: steps, last loss, growth/free/optimizer events"),
    "ir": ("[NAME|cell]", "IR of a function of the last cell, as irgen made it (before autodiff)"),
    "grad": ("[NAME|cell]", "IR with the gradient code, after autodiff and optimisation"),
    "llvm": ("[NAME|cell]", "LLVM IR of a function of the last cell, as the JIT compiled it"),
    "plot": ("[FILE.png]", "save the loss and layer-size plot (default noma_plot.png)"),
    "save": ("FILE", "write a checkpoint of the session (parameters, optimizer state, dims)"),
    "load": ("FILE", "restore a checkpoint (an executable's loads into the declared parameters)"),
    "undo": ("", "undo the last cell's changes to the session state"),
    "reset": ("", "start over with an empty session"),
    "time": ("STATEMENT", "run a statement and report compile and run time"),
    "run": ("FILE", "run a NOMA file in this session"),
    "controls": ("", "Jupyter: widgets to grow/shrink dims, set the learning rate, pause or stop "
                     "the running training loop"),
}
#: Short spellings accepted too.
ALIASES = {"h": "help", "?": "help", "p": "params", "t": "time", "r": "run"}


def meta_names() -> list[str]:
    """Every meta-command as typed (`:help`, ...), for completion."""
    return [":" + name for name in COMMANDS]


def is_meta(line: str) -> bool:
    return line.lstrip().startswith(":")


def help_text() -> str:
    width = max(len(f":{n} {a}".rstrip()) for n, (a, _) in COMMANDS.items())
    lines = ["meta-commands:"]
    for name, (args, text) in COMMANDS.items():
        lines.append(f"  {f':{name} {args}'.rstrip():<{width}}  {text}")
    lines.append("anything else is NOMA code; Ctrl-C stops training at a step boundary, Ctrl-D exits")
    return "\n".join(lines)


def run_meta(session: Any, line: str, *, color: bool = False) -> MetaResult:
    """Run one `:command args` line against `session`. Never raises for a user mistake."""
    text = line.strip()
    if text.startswith(":"):
        text = text[1:]
    name, _, arg = text.partition(" ")
    name = ALIASES.get(name.strip(), name.strip())
    arg = arg.strip()
    handler: Optional[Callable[..., MetaResult]] = _HANDLERS.get(name)
    if handler is None:
        what = f"unknown command `:{name}`" if name else "empty command"
        return MetaResult(f"{what}; commands: " + " ".join(meta_names()), ok=False)
    try:
        return handler(session, arg, color)
    except Exception as exc:  # an internal problem: one line, never a traceback
        from noma.diagnostics import NomaError

        if isinstance(exc, NomaError):
            return MetaResult("\n".join(d.render(color=color) for d in exc.diagnostics), ok=False)
        return MetaResult(f"internal error in :{name} ({type(exc).__name__}: {exc})", ok=False)


# ----------------------------------------------------------------------------- rendering


def render_result(result: Any, color: bool = False) -> str:
    """Printed output, then the value (if any), then diagnostics, as one string (no final newline)."""
    parts: list[str] = []
    if result.output:
        parts.append(result.output.rstrip("\n"))
    if result.value is not None and result.status == "ok":
        parts.append(format_value(result.value))
    for diag in result.diagnostics:
        parts.append(diag.render(color=color))
    return "\n".join(parts)


def shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _table_html(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _table_text(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- state commands


OPTIMIZER_NAMES = {0: "none", 1: "sgd", 2: "adam", 3: "rmsprop", 4: "adamw"}


def optimizer_kind(session: Any, name: str) -> str:
    """The optimizer whose state the parameter holds ("none" before its first optimize)."""
    getter = getattr(session, "optimizer_kind", None)
    if callable(getter):
        return str(getter(name))
    rt = session.rt
    rt.activate()
    kind = int(rt.lib.noma_param_opt_kind(session.symbols.params[name].slot))
    return OPTIMIZER_NAMES.get(kind, f"kind {kind}")


def _state_summary(state: dict[str, np.ndarray]) -> str:
    steps = state.get("step")
    parts = []
    if steps is not None and np.size(steps):
        lo, hi = int(np.min(steps)), int(np.max(steps))
        parts.append(f"step {hi}" if lo == hi else f"steps {lo}..{hi}")
    buffers = [k for k in ("m", "v") if k in state and np.size(state[k])]
    for key in buffers:
        parts.append(f"|{key}| {format_scalar(float(np.sqrt(np.sum(np.square(state[key])))))}")
    return ", ".join(parts) or "-"


def cmd_params(session: Any, arg: str, color: bool) -> MetaResult:
    params = session.params
    if not params:
        return MetaResult("no parameters (declare one with `learn w = ...;`)")
    dtype = getattr(session, "dtype", "f64")
    header = ["name", "shape", "dtype", "elements", "optimizer", "state"]
    rows = []
    for name, value in params.items():
        if value is None:
            continue
        arr = np.asarray(value)
        try:
            kind = optimizer_kind(session, name)
            state = _state_summary(session.optimizer_state(name)) if kind != "none" else "-"
        except Exception:
            kind, state = "?", "-"
        rows.append([name, shape_text(arr.shape), dtype, str(arr.size), kind, state])
    return MetaResult(_table_text(header, rows), html=_table_html(header, rows))


def _dim_users(session: Any) -> dict[str, list[str]]:
    users: dict[str, list[str]] = {}
    for pname, var in session.symbols.params.items():
        for axis, dname in sorted(getattr(var, "dims", {}).items()):
            users.setdefault(dname, []).append(f"{pname}[axis {axis}]")
    return users


def cmd_dims(session: Any, arg: str, color: bool) -> MetaResult:
    dims = session.dims
    if not dims:
        return MetaResult("no named dims (declare one with `dim hidden = 16;`)")
    users = _dim_users(session)
    header = ["dim", "size", "used by"]
    rows = [[n, str(v), ", ".join(users.get(n, [])) or "-"] for n, v in dims.items()]
    return MetaResult(_table_text(header, rows), html=_table_html(header, rows))


def _describe(value: Any) -> tuple[str, str]:
    """(shape, short value) of a global."""
    if isinstance(value, (int, float, np.floating)):
        return "scalar", format_scalar(float(value))
    arr = np.asarray(value)
    if arr.size <= 6:
        flat = ", ".join(format_scalar(float(x)) for x in arr.ravel())
        return shape_text(arr.shape), f"[{flat}]"
    return shape_text(arr.shape), f"{arr.size} elements"


def cmd_who(session: Any, arg: str, color: bool) -> MetaResult:
    header = ["name", "kind", "shape", "value"]
    rows = []
    for name, value in session.globals().items():
        if value is None:
            continue
        shape, short = _describe(value)
        rows.append([name, "let", shape, short])
    for name, value in session.params.items():
        if value is not None:
            shape, short = _describe(value)
            rows.append([name, "learn", shape, short])
    for name, size in session.dims.items():
        rows.append([name, "dim", "scalar", str(size)])
    for name, fn in session.symbols.functions.items():
        rows.append([name, "fn", "-", f"fn {name}({', '.join(fn.params)})"])
    if not rows:
        return MetaResult("nothing defined yet")
    return MetaResult(_table_text(header, rows), html=_table_html(header, rows))


def event_text(event: Any) -> str:
    """One history event as a line: `step 120  resize W1 [2, 2] -> [2, 8] (normal)`; a dim resize
    also shows its output change when it was measured (`dim hidden 2 -> 8 (preserve), output
    change 0`); a keep shows the units kept (`dim channels 16 -> 8 (keep [3, 0, ...])`)."""
    kind = event.kind
    if kind in ("resize", "param_resize", "dim_resize"):
        what = "dim" if kind == "dim_resize" else "resize"
        old = event.old_shape[0] if kind == "dim_resize" and event.old_shape else shape_text(event.old_shape)
        new = event.new_shape[0] if kind == "dim_resize" and event.new_shape else shape_text(event.new_shape)
        kept = getattr(event, "kept", None)
        policy = event.policy if kept is None else f"keep {list(kept)}"  # the units kept, in order
        body = f"{what} {event.name} {old} -> {new} ({policy})"
        if kind == "dim_resize" and getattr(event, "output_change", None) is not None:
            body += f", output change {event.output_change:.3g}"
        if getattr(event, "origin", "program") == "controls":
            body += " from the controls"
    elif kind in ("free", "param_free"):
        body = f"free {event.name} {shape_text(event.old_shape)}"
    elif kind in ("optimizer", "opt_change"):
        body = f"optimizer {event.name}: new state"
    elif kind in ("reset", "opt_reset"):
        body = "reset_optimizer()"
    elif kind in ("init", "param_init"):
        body = f"learn {event.name} {shape_text(event.new_shape)} (re-initialised: a new run starts)"
    elif kind == "control":
        value = getattr(event, "value", None)
        actions = {"lr": "learning rate", "pause": "paused", "resume": "resumed", "stop": "stopped"}
        what = actions.get(event.name, event.name)
        body = f"{what}{'' if value is None else f' {value:.4g}'} from the controls"
    else:
        body = f"{kind} {event.name}"
    return f"step {event.step:>7}  {body}"


def cmd_history(session: Any, arg: str, color: bool) -> MetaResult:
    history = session.history
    total = int(history.total_steps)
    lines = [f"{total} training steps"]
    last = history.last_loss
    if last is not None:
        best = history.best_loss()
        lines[0] += f", last loss {format_scalar(last)}, best {format_scalar(best) if best is not None else 'nan'}"
    if total and not history.complete:
        lines.append(f"exact losses of the last {len(history.losses)} steps; every step in a min/max/mean "
                     f"summary of {len(history.summary)} buckets")
    segments = [s for s in history.segments() if s.last >= s.first]
    if len(segments) > 1:
        lines.append("runs: " + "; ".join(f"{s.label}: steps {s.first}-{s.last}" for s in segments))
    for name, m in getattr(history, "metrics", {}).items():
        # min and max skip NaN reports: of NaN reports only, they are nan (the runtime holds inf, -inf)
        low, high = (m.min, m.max) if m.min <= m.max else (math.nan, math.nan)
        lines.append(f"metric {name}: last {format_scalar(m.last)} at step {int(m.steps[-1]) if len(m.steps) else 0}, "
                     f"{m.count} reports, min {format_scalar(low)}, max {format_scalar(high)}, "
                     f"mean {format_scalar(m.mean)}")
    if history.events:
        lines.append("events:")
        lines.extend("  " + event_text(e) for e in history.events)
    else:
        lines.append("no events (resizes, frees, optimizer changes)")
    return MetaResult("\n".join(lines))


def cmd_plot(session: Any, arg: str, color: bool) -> MetaResult:
    from noma.plots import MAX_POINTS, history_png

    path = _one_arg(arg) or "noma_plot.png"
    if not path.lower().endswith(".png"):
        path += ".png"
    history = session.read_history(recent=session.rt.global_step() <= MAX_POINTS)
    data = history_png(history, session.dims)
    from noma.source_file import open_regular

    try:
        with open_regular(path, "wb") as f:  # a FIFO would block, a device is no place for it
            f.write(data)
    except OSError as exc:
        return MetaResult(f"cannot write {path}: {exc.strerror}", png=data, ok=False)
    steps = int(history.total_steps)
    return MetaResult(f"plot written to {os.path.abspath(path)} ({steps} steps)", png=data, path=path)


# ----------------------------------------------------------------------------- session lifecycle


def _one_arg(arg: str) -> str:
    try:
        parts = shlex.split(arg)
    except ValueError:
        parts = [arg]
    return parts[0] if parts else ""


def _checkpoint(session: Any, arg: str, verb: str) -> MetaResult:
    from noma.diagnostics import NomaError

    path = _one_arg(arg)
    if not path:
        return MetaResult(f"usage: :{verb} FILE", ok=False)
    try:
        if verb == "save":
            meta_path = session.save_checkpoint(path)
            return MetaResult(f"checkpoint written to {path} and {meta_path}", path=path)
        session.load_checkpoint(path)
    except NomaError as exc:
        return MetaResult("\n".join(d.render() for d in exc.diagnostics), ok=False)
    except OSError as exc:
        return MetaResult(f"cannot {verb} {path}: {exc.strerror or exc}", ok=False)
    return MetaResult(f"checkpoint loaded from {path}", path=path)


def cmd_save(session: Any, arg: str, color: bool) -> MetaResult:
    return _checkpoint(session, arg, "save")


def cmd_load(session: Any, arg: str, color: bool) -> MetaResult:
    return _checkpoint(session, arg, "load")


def cmd_undo(session: Any, arg: str, color: bool) -> MetaResult:
    undone = session.undo()
    if undone is None:
        return MetaResult("nothing to undo", ok=False)
    return MetaResult(f"undone {undone}: the session is as before it")


def cmd_reset(session: Any, arg: str, color: bool) -> MetaResult:
    session.reset()
    return MetaResult("session reset: no variables, parameters, dims or history")


def cmd_time(session: Any, arg: str, color: bool) -> MetaResult:
    if not arg:
        return MetaResult("usage: :time STATEMENT", ok=False)
    started = time.perf_counter()
    result = session.execute(arg)
    total = time.perf_counter() - started
    text = render_result(result, color)
    timing = (f"compile {_ms(result.compile_seconds)}, run {_ms(result.run_seconds)}, "
              f"total {_ms(total)}")
    if result.steps:
        rate = result.steps / result.run_seconds if result.run_seconds > 0 else float("inf")
        timing += f"; {result.steps} steps ({rate:,.0f} steps/s)"
    return MetaResult((text + "\n" if text else "") + timing, ok=result.status == "ok", result=result)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.2f} s"


def cmd_run(session: Any, arg: str, color: bool) -> MetaResult:
    path = _one_arg(arg)
    if not path:
        return MetaResult("usage: :run FILE", ok=False)
    from noma import source_file
    from noma.diagnostics import NomaError

    try:
        text = source_file.read(path).text
    except NomaError as exc:
        return MetaResult("\n".join(d.render(color) for d in exc.diagnostics), ok=False)
    result = session.execute(text, name=path, run_main=True)
    return MetaResult(render_result(result, color), ok=result.status == "ok", result=result)


# ----------------------------------------------------------------------------- compiler stages


def _compiled_by(session: Any, stage: str, target: str) -> tuple[Any, list[str]]:
    """The artifacts of the cell that compiled a specialisation of `target` the last cell reused."""
    for name, spec in sorted(getattr(session, "compiled", {}).items()):
        earlier = getattr(spec, "artifacts", None)
        if earlier is not None:  # functions() selects the target's specialisations
            chosen = earlier.functions(stage, target)
            if chosen:
                return earlier, chosen
    return None, []


def stage_text(session: Any, stage: str, target: str) -> MetaResult:
    """`:ir`, `:grad`, `:llvm` for the whole last cell, its top level (`cell`) or one function:
    the artifacts the session kept of what it compiled (noma.compiler.pipeline.Artifacts), never a
    compilation again. A specialisation the last cell reused is shown from the cell that compiled it."""
    art = getattr(session, "last_artifacts", None)
    if art is None or art.module is None:
        undone = getattr(session, "cell_count", 0) > 0
        return MetaResult("no cell is left: the cells compiled were undone" if undone
                          else "no cell has been compiled yet", ok=False)
    note = ""
    chosen = art.functions(stage, target)
    if not chosen and target and target != "cell":
        earlier, chosen = _compiled_by(session, stage, target)
        if earlier is not None:
            art, note = earlier, f"; compiled by an earlier cell ({earlier.source.name}); the last cell reused it\n"
    if not chosen:
        known = ", ".join(art.functions(stage)) or "none"
        if target in session.symbols.functions:
            msg = (f"`{target}` has no compiled version in the last cell (a function is compiled for "
                   "the argument ranks it is called with: call it in a cell first)")
        else:
            msg = f"no function `{target}` in the last cell; its functions: {known} (or `cell`)"
        return MetaResult(msg, ok=False)
    return MetaResult(note + art.text(stage, chosen if target else None).rstrip("\n"))


def cmd_ir(session: Any, arg: str, color: bool) -> MetaResult:
    return stage_text(session, "ir", _one_arg(arg))


def cmd_grad(session: Any, arg: str, color: bool) -> MetaResult:
    return stage_text(session, "grad", _one_arg(arg))


def cmd_llvm(session: Any, arg: str, color: bool) -> MetaResult:
    return stage_text(session, "llvm", _one_arg(arg))


def cmd_help(session: Any, arg: str, color: bool) -> MetaResult:
    return MetaResult(help_text())


def cmd_controls(session: Any, arg: str, color: bool) -> MetaResult:
    """The Jupyter kernel shows a widget panel (noma.kernel.controls); elsewhere: what to use."""
    return MetaResult(":controls shows a widget panel in the Jupyter kernel; from Python, use "
                      "Session.controls (grow, shrink, set_lr, pause, stop) from another thread", ok=False)


_HANDLERS: dict[str, Callable[[Any, str, bool], MetaResult]] = {
    "help": cmd_help, "params": cmd_params, "dims": cmd_dims, "who": cmd_who,
    "history": cmd_history, "ir": cmd_ir, "grad": cmd_grad, "llvm": cmd_llvm, "plot": cmd_plot,
    "save": cmd_save, "load": cmd_load, "undo": cmd_undo, "reset": cmd_reset, "time": cmd_time,
    "run": cmd_run, "controls": cmd_controls,
}
