"""Running one NOMA program three ways and comparing what each one leaves behind.

The three ways: the NumPy interpreter of the IR (noma/compiler/interp/interp.py, the oracle), the JIT (a
fresh `noma.Session`, as `noma run` runs a file) and a standalone executable (`noma build`).
Each run gives an Outcome: stdout lines, warnings, the error (kind, line, column) if any, and the
training state (parameters, optimizer state, loss log). An executable's state comes from a
checkpoint the program writes as its last statement (`with_final_checkpoint`), read back here.

`differences(a, b)` lists every disagreement (≤ 1e-12 relative to each array's scale in f64).
Used by tests/test_three_ways.py (the corpus) and tests/test_generated_programs.py (the generator).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from noma.diagnostics import NomaError, Source

FINAL_CHECKPOINT = "__final__.safetensors"
#: the runtime keeps the last HIST_WINDOW losses exactly (and a summary of the older ones)
HIST_WINDOW = int(re.search(r"#define NOMA_HIST_WINDOW (\d+)", (Path(__file__).resolve().parent.parent / "noma" / "rt"
                            / "native" / "noma_rt_internal.h").read_text()).group(1))  # type: ignore[union-attr]
RTOL = 1e-12
RUN_TIMEOUT_S = 60
_LOCATION = re.compile(r"-->\s*.*:(\d+):(\d+)\s*$", re.MULTILINE)
_KIND = re.compile(r"^error\[(\w+)\]", re.MULTILINE)
_WARNING = re.compile(r"^warning: (.*)$", re.MULTILINE)


@dataclass
class Outcome:
    """What a run left behind; `state` is False when the run could not report its training state."""

    output: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: Optional[tuple[str, int, int]] = None
    #: the error's notes in order: "FILE:LINE:COL" (file's base name) per call site, else the message
    calls: list[str] = field(default_factory=list)
    params: dict[str, np.ndarray] = field(default_factory=dict)
    opt: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    losses: np.ndarray = field(default_factory=lambda: np.zeros(0))
    state: bool = True
    #: top-level variables by name (interpreter and JIT only)
    globals: dict[str, Any] = field(default_factory=dict)


@contextmanager
def workdir(path: Path, data: Optional[Path] = None) -> Iterator[Path]:
    """chdir into path (created, with a copy of `data` as data/ and of the corpus's helper modules,
    modules/ beside it, as modules/: a program run from text imports relative to the working
    directory) for the duration."""
    path.mkdir(parents=True, exist_ok=True)
    if data is not None and data.is_dir() and not (path / "data").exists():
        shutil.copytree(data, path / "data")
    if data is not None and (data.parent / "modules").is_dir() and not (path / "modules").exists():
        shutil.copytree(data.parent / "modules", path / "modules")
    old = os.getcwd()
    os.chdir(path)
    try:
        yield path
    finally:
        os.chdir(old)


def with_final_checkpoint(text: str) -> str:
    """The program with a last statement saving its whole training state (not for programs that
    define `main`: a program of only functions runs main(), and a statement would change that)."""
    if re.search(r"\bfn\s+main\s*\(", text):
        return text
    return text.rstrip() + f'\nsave_checkpoint("{FINAL_CHECKPOINT}");\n'


def _location(diag: Any) -> tuple[str, int, int]:
    span = diag.span
    line, col = span.source.position(span.start) if span is not None else (0, 0)
    return diag.kind.value, line, col


def _calls(diag: Any) -> list[str]:
    """A diagnostic's notes as Outcome.calls lists them."""
    return [n.message if n.span is None else
            f"{os.path.basename(n.span.source.name)}:{n.span.line}:{n.span.column}" for n in diag.notes]


def exe_calls(stderr: str) -> list[str]:
    """An executable's error notes (on stderr) as Outcome.calls lists them."""
    from test_programs import call_notes

    out = []
    for where, message in call_notes(stderr):
        out.append(message if not where else os.path.basename(where.replace(os.sep, "/")))
    return out


# ----------------------------------------------------------------------------- interpreter


def global_slots(module: Any) -> dict[str, int]:
    """Names of the module's global slots, from the GLOBAL_STORE / GLOBAL_LOAD instructions."""
    from noma.compiler.middle.ir import Block, IfOp, Instr, Op, OptimizeOp, WhileOp

    out: dict[str, int] = {}
    stack: list[Any] = [fn.body for fn in module.functions.values()]
    while stack:
        node = stack.pop()
        if isinstance(node, Block):
            stack.extend(node.ops)
        elif isinstance(node, Instr):
            if node.op in (Op.GLOBAL_STORE, Op.GLOBAL_LOAD) and node.attr("name") not in (None, "_"):
                out[node.attr("name")] = node.attr("slot")
        elif isinstance(node, IfOp):
            stack += [node.then, node.else_]
        elif isinstance(node, WhileOp):
            stack += [node.cond, node.body]
        elif isinstance(node, OptimizeOp):
            stack += [b for b in (node.body, node.grad) if b is not None]
    return out


def run_interp(text: str, name: str, dtype: str = "f64", interpreter: Any = None,
               defines: Optional[list[str]] = None) -> Outcome:
    """The interpreter on the IR `noma run` compiles, before the IR passes (constant folding, CSE,
    DCE), so that their mistakes show; compile errors come from the shared front end.
    `interpreter` replaces the Interpreter class (e.g. one that perturbs parameters); `defines`
    are `NAME=VALUE` strings, as `noma run -D` takes them."""
    from noma.compiler.front.defines import make_defines, parse_with_defines
    from noma.compiler.interp.interp import InterpState, Interpreter
    from noma.compiler.front.symbols import VALUE_SLOT
    from noma.display import format_value
    from noma.emit import ENTRY, compile_ir

    interpreter = interpreter or Interpreter
    out = Outcome()
    state = InterpState()
    module = None
    try:
        source = Source(name, text)
        program = parse_with_defines(source, make_defines(defines)) if defines else None
        module, has_value = compile_ir(source, dtype, optimize=False, program=program)
        interpreter(module, state).call(ENTRY)
        if has_value and VALUE_SLOT in state.globals:
            state.output.append(format_value(state.globals[VALUE_SLOT]))
    except NomaError as exc:
        out.error = _location(exc.diagnostics[0])
        out.calls = _calls(exc.diagnostics[0])
    out.output = list(state.output)
    out.warnings = ([message for _, message, _ in module.warnings] if module is not None else []) + state.warnings
    for slot, value in state.params.items():
        pname = state.param_names[slot]
        out.params[pname] = np.asarray(value, dtype=np.float64)
        s = state.opt.get(slot)
        if s is not None:
            out.opt[pname] = {"m": s.m, "v": s.v, "step": s.step, "pow1": s.pow1, "pow2": s.pow2}
    out.losses = np.asarray(state.loss_log, dtype=np.float64)
    if module is not None:
        out.globals = {g: state.globals[slot] for g, slot in global_slots(module).items() if slot in state.globals}
    return out


# ----------------------------------------------------------------------------- JIT


def run_jit(text: str, name: str, dtype: str = "f64", defines: Optional[list[str]] = None) -> Outcome:
    """A fresh Session runs the program as `noma run` does (the value of `main` printed last)."""
    import noma
    from noma.display import format_value

    if defines:  # as `noma run`: a define naming nothing, or of the wrong kind, stops before the run
        from noma.compiler.front.defines import make_defines, parse_with_defines

        try:
            parse_with_defines(Source(name, text), make_defines(defines))
        except NomaError as exc:
            if any(d.span is not None and d.span.source.name == "-D" for d in exc.diagnostics):
                return Outcome(error=_location(exc.diagnostics[0]), state=False)
    session = noma.Session(dtype=dtype, defines=defines)
    result = session.execute(text, name=name, run_main=True)
    out = Outcome(output=result.output.splitlines())
    if result.value is not None and result.ok:
        out.output += format_value(result.value).splitlines()
    out.warnings = [d.message for d in result.warnings]
    errors = result.errors
    if errors:
        out.error = _location(errors[0])
        out.calls = _calls(errors[0])
    for pname, var in session.symbols.params.items():
        if session.rt.lib.noma_param_defined(var.slot):
            out.params[pname] = np.asarray(session.rt.read_param(var.slot), dtype=np.float64)
            st = session.optimizer_state(pname)
            if st:
                out.opt[pname] = st
    out.losses = np.asarray(session.history.losses, dtype=np.float64)
    out.globals = {g: v for g, v in session.globals().items() if g != "_"}
    return out


# ----------------------------------------------------------------------------- executables


def build(text: str, name: str, exe: Path, dtype: str = "f64",
          defines: Optional[list[str]] = None) -> Optional[tuple[str, int, int]]:
    """Build an executable; the compile error's location when the program does not compile."""
    from noma.build import build_executable

    try:
        build_executable(Source(name, text), exe, dtype=dtype, defines=defines)
    except NomaError as exc:
        return _location(exc.diagnostics[0])
    return None


def run_exe(exe: Path, cwd: Path) -> Outcome:
    """Run an executable in cwd; its state from the final checkpoint, when it wrote one."""
    (cwd / FINAL_CHECKPOINT).unlink(missing_ok=True)
    proc = subprocess.run([str(exe)], cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S, env={**os.environ, "NO_COLOR": "1"})
    out = Outcome(output=proc.stdout.splitlines(), warnings=_WARNING.findall(proc.stderr))
    assert "Traceback" not in proc.stderr and proc.returncode in (0, 1), (proc.returncode, proc.stderr)
    if proc.returncode == 1:
        kind, loc = _KIND.search(proc.stderr), _LOCATION.search(proc.stderr)
        assert kind is not None, proc.stderr
        out.error = (kind.group(1), int(loc.group(1)), int(loc.group(2))) if loc else (kind.group(1), 0, 0)
        out.calls = exe_calls(proc.stderr)
    checkpoint = cwd / FINAL_CHECKPOINT
    if checkpoint.exists():
        read_checkpoint(checkpoint, out)
    else:
        out.state = False
    return out


def read_checkpoint(path: Path, out: Outcome) -> None:
    """Parameters, optimizer state and loss log of a runtime checkpoint (docs/LANGUAGE.md's format)."""
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    kinds = {"F64": "<f8", "F32": "<f4", "I64": "<i8"}

    def tensor(key: str) -> np.ndarray:
        info = header[key]
        start, end = info["data_offsets"]
        return np.frombuffer(data[8 + n + start:8 + n + end], dtype=kinds[info["dtype"]]).reshape(info["shape"])

    for key in header:
        if key.startswith("param/"):
            out.params[key[6:]] = tensor(key).astype(np.float64)
        elif key.startswith("opt/"):
            _, pname, which = key.split("/")
            out.opt.setdefault(pname, {})[which] = tensor(key)
    out.losses = tensor("history/losses").astype(np.float64)


# ----------------------------------------------------------------------------- comparing


def close(a: np.ndarray, b: np.ndarray, rtol: float, scale_floor: float = 0.0) -> bool:
    """a and b within rtol of b's largest magnitude (or scale_floor, when larger); NaN and inf alike."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return False
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        return False
    fa, fb = a[~np.isnan(a)], b[~np.isnan(b)]
    if not np.array_equal(np.isinf(fa), np.isinf(fb)) or not np.array_equal(fa[np.isinf(fa)], fb[np.isinf(fb)]):
        return False
    fa, fb = fa[np.isfinite(fa)], fb[np.isfinite(fb)]
    scale = max(float(np.max(np.abs(fb), initial=0.0)), scale_floor, 1e-300)
    return bool(np.all(np.abs(fa - fb) <= rtol * scale))


def numbers_close(x: str, y: str, rtol: float = RTOL) -> bool:
    """Two printed lines agree: the same text, or the same words with numbers within rtol (the
    last printed digit of `%.6g` may differ when the values differ in their last bits)."""
    if x == y:
        return True
    wx, wy = re.split(r"([\s\[\],]+)", x), re.split(r"([\s\[\],]+)", y)
    if len(wx) != len(wy):
        return False
    for a, b in zip(wx, wy):
        if a == b:
            continue
        try:
            fa, fb = float(a), float(b)
        except ValueError:
            return False
        if abs(fa - fb) > 1e-5 * max(abs(fa), abs(fb)):
            return False
    return True


def differences(a: Outcome, b: Outcome, la: str, lb: str, rtol: float = RTOL, state: bool = True) -> list[str]:
    """Every way the outcomes a (labelled la) and b disagree."""
    diffs = []
    if len(a.output) != len(b.output) or not all(numbers_close(x, y, rtol) for x, y in zip(a.output, b.output)):
        diffs.append(f"stdout: {la} {a.output!r} vs {lb} {b.output!r}")
    if a.error != b.error:
        diffs.append(f"error: {la} {a.error} vs {lb} {b.error}")
    if a.calls != b.calls:
        diffs.append(f"the error's call notes: {la} {a.calls} vs {lb} {b.calls}")
    if sorted(a.warnings) != sorted(b.warnings):
        diffs.append(f"warnings: {la} {a.warnings} vs {lb} {b.warnings}")
    if not (state and a.state and b.state):
        return diffs
    if sorted(a.params) != sorted(b.params):
        diffs.append(f"parameters: {la} {sorted(a.params)} vs {lb} {sorted(b.params)}")
    for name in sorted(set(a.params) & set(b.params)):
        if not close(a.params[name], b.params[name], rtol):
            diffs.append(f"parameter {name}: {la} {a.params[name]!r} vs {lb} {b.params[name]!r}")
    for name in sorted(set(a.opt) | set(b.opt)):
        diffs += _opt_differences(name, a.opt.get(name, {}), b.opt.get(name, {}), la, lb, rtol)
    if not _losses_close(a.losses, b.losses, rtol):
        diffs.append(f"loss log: {la} {a.losses!r} vs {lb} {b.losses!r}")
    return diffs


def _losses_close(a: np.ndarray, b: np.ndarray, rtol: float) -> bool:
    """The loss logs agree; where one holds only the runtime's exact window (HIST_WINDOW losses)
    and the other the whole log (the oracle's), the window agrees with the log's tail."""
    if len(a) != len(b):
        n = min(len(a), len(b))
        if n != HIST_WINDOW:
            return False
        a, b = a[-n:], b[-n:]
    return close(a, b, rtol)


def _opt_differences(name: str, sa: dict[str, np.ndarray], sb: dict[str, np.ndarray], la: str, lb: str,
                     rtol: float) -> list[str]:
    """Optimizer state agrees where both keep it: the interpreter keeps every buffer, the runtime
    only those its optimizer uses; the running powers of entries still at step 0 are not read by
    the update (the runtime leaves them 0, the oracle 1). A first moment is compared on the scale
    of the gradients it averages (sqrt(v), when kept): near a minimum the gradient is a difference
    of much larger terms, so parameters that differ in their last bit (the runtime's Adam update is
    within a few ulp) give moments that differ by ulps of those terms, not of the moment itself."""
    diffs = []
    steps = sa.get("step", sb.get("step"))
    for key in ("step", "m", "v", "pow1", "pow2"):
        if key not in sa or key not in sb:
            continue
        x, y = np.asarray(sa[key], np.float64), np.asarray(sb[key], np.float64)
        if key.startswith("pow") and steps is not None and np.shape(steps) == x.shape == y.shape:
            used = np.asarray(steps) > 0
            x, y = x[used], y[used]
        floor = float(np.sqrt(np.max(np.abs(sb["v"]), initial=0.0))) if key == "m" and "v" in sb else 0.0
        if not close(x, y, rtol, floor):
            diffs.append(f"optimizer state {name}/{key}: {la} {sa[key]!r} vs {lb} {sb[key]!r}")
    return diffs

