"""The live session: one JIT, one runtime context, the symbol tables, and the history.

Owns: compiling cells incrementally into the session's JIT (a new module per cell, versioned
symbols, function-pointer globals so earlier code calls the newest version of a redefined
function), running them through the native runtime, and read access to parameters, optimizer
state, dims and the training history. `noma run`, the REPL and the kernel all use it.
Input: NOMA source text. Output: ExecResult (printed text, value, diagnostics, status).
Imports: compiler stages, noma.rt, noma.diagnostics.
"""

from __future__ import annotations

import ctypes
import re
import signal
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Union

import numpy as np

from noma.compiler.front.budget import gc_paused
from noma.compiler.front.modules import ModuleLoader
from noma.compiler.front.symbols import VALUE_SLOT, SymbolTable, spec_base
from noma.diagnostics import (RUNTIME_KIND_ORDER, Diagnostic, Kind, NomaError, Source, Span, located_warnings,
                              with_call_notes)
from noma.diagnostics import rebind as rebind_span
from noma.session.cell_cache import CellCache, RecordingTable, Replay, record
from noma.session.history import Event, History, LossSummary  # noqa: F401  (part of the session's API)
from noma.session.output import ExecResult, LiveOutput, cancelled, cell_label
from noma.session.specs import CompiledSpec, called_functions, declared_global_slots, plan_symbols, spec_valid

if TYPE_CHECKING:
    from noma.compiler.pipeline import Artifacts, Linkage, Linker, Stage

__all__ = ["Event", "ExecResult", "History", "LossSummary", "Session"]

#: a cell that may import modules (then it bypasses the cell cache)
_IMPORT = re.compile(r"\bimport\b")


class Session:
    """A live NOMA session. `execute(source)` compiles and runs one cell."""

    def __init__(self, dtype: str = "f64", opt_level: int = 2, capture: bool = True,
                 defines: Optional[Any] = None, memory_limit: Optional[Union[int, str]] = None):
        """`defines`: values that replace top-level `let`/`dim` declarations of the same name
        (`noma run -D`). `memory_limit`: bytes (or "512M", "8G": NOMA_MEMORY_LIMIT's syntax) that
        every allocation of the session's runtime together may use; default NOMA_MEMORY_LIMIT,
        else 8 GiB. Change it later with `session.rt.memory_limit = ...`."""
        from noma.compiler.llvm.jit import JIT
        from noma.rt import runtime

        self.dtype = dtype
        self.rt = runtime.Runtime(dtype, capture=capture, memory_limit=memory_limit)
        self.jit = JIT(opt_level=opt_level, dtype=dtype)
        self.symbols = SymbolTable()
        #: cells committed (compiled or replayed; a failed compile does not count): versions symbols
        self.cell_count = 0
        #: cells executed without a name, failed or not: `<cell N>` is the Nth, so a name a
        #: diagnostic showed is never given to another cell (undo and :load do not reset it)
        self.cells_named = 0
        self.compiled: dict[str, CompiledSpec] = {}
        self.pointer_globals: set[str] = set()
        #: what the pipeline produced for the last cell compiled (or replayed): its AST, IR before
        #: autodiff, final IR module, the LLVM IR the JIT compiled (`:ir`, `:grad`, `:llvm` show them)
        self.last_artifacts: Optional["Artifacts"] = None
        #: the span table every cell's module extends: span ids are unique in the session, so a run-time
        #: error inside code an earlier cell compiled (a reused function) is located by its own span
        self.spans: list[Any] = []
        self.last_module: Any = None
        self.last_source: Optional[Source] = None
        self.progress: Optional[Callable[["Session"], None]] = None
        self.progress_interval = 0.2
        #: where printed text goes while a cell runs: sink("stdout", text) with whole lines (the
        #: rest at the end), sink("warning", Diagnostic) (the compiler's before the code runs), in
        #: program order, every stream_interval seconds; None: ExecResult.output and its warnings only
        self.output_sink: Optional[Callable[[str, Any], None]] = None
        self.stream_interval = 0.05
        #: True while the progress hook is called for native code still running (False for its
        #: last call, after the code finished)
        self.running = False
        #: execute() forgets an earlier interrupt request (a front end that clears it itself when
        #: a request starts, like the kernel, turns this off)
        self.clear_interrupt_on_execute = True
        #: ranges [start, end) of runtime events hidden by undo/load; events restored from a checkpoint
        self.hidden_events: list[tuple[int, int]] = []
        self.restored_events: list[dict] = []
        self.undo_stack: list[Any] = []
        self.undo_labels: list[str] = []  # which cell each undo_stack entry was taken before
        self.undo_depth = 20
        #: compiled cells by text (see noma.session.cell_cache); compilations done / cells replayed from it
        self.cell_cache = CellCache()
        self.compilations = 0
        self.cache_hits = 0
        self._measure_output_change = True
        #: values from outside (noma.compiler.front.defines): replace top-level let/dim values of every cell
        self.defines = defines
        #: the define names some cell replaced
        self.defines_used: set[str] = set()
        #: module files read and parsed by this session (noma.compiler.front.modules)
        self.module_loader = ModuleLoader()

    # ------------------------------------------------------------------ compile

    def compile(self, source: Source, run_main: bool = False) -> tuple[Any, str, bool, SymbolTable]:
        """Source → (IR module after autodiff and passes, cell symbol, has_value, new symbols).

        Raises NomaError for user mistakes. Changes nothing in the session.
        """
        from noma.rt.safetensors_header import read_ranks

        symbols = self.symbols.clone()
        art = self._pipeline(source, run_main, symbols, read_ranks, stop="grad")
        return art.module, art.cell, art.has_value, symbols

    @property
    def defines(self) -> dict[str, Any]:
        """Defines by name (noma.compiler.front.defines.Define)."""
        return self._defines

    @defines.setter
    def defines(self, defines: Optional[Any]) -> None:
        """Set from {name: value} or `NAME=VALUE` strings (NomaError when one is malformed). Cells
        run later use them; compiled cells stay cached per set of defines."""
        from noma.compiler.front.defines import make_defines

        self._defines = make_defines(defines)

    def _defines_key(self, text: str) -> str:
        """What the cell cache keys a cell's text with: the defines it may use (those named by a
        `let NAME` or `dim NAME` in it; a cell with none, like a training loop, is the same code
        under every set of defines)."""
        if not self._defines:
            return ""
        used = sorted(n for n in self._defines if re.search(rf"\b(?:let|dim)\s+{re.escape(n)}\b", text))
        return "".join(f"\n//-D {n}={self._defines[n].value}" for n in used)

    def _pipeline(self, source: Source, run_main: bool, symbols: SymbolTable, read_header: Callable[[str], Any],
                  stop: "Stage", link: Optional["Linker"] = None) -> "Artifacts":
        """The compile pipeline (noma.compiler.pipeline) on one cell against `symbols`, up to `stop`."""
        from noma.compiler import pipeline

        return pipeline.compile(source, symbols, dtype=self.dtype, read_header=read_header, run_main=run_main,
                                cell=f"__cell{self.cell_count}", defines=self._defines, used=self.defines_used,
                                stop=stop, keep_ir=stop == "native", link=link or pipeline.whole_program,
                                loader=self.module_loader, spans=self.spans,
                                jit=self.jit if stop == "native" else None)

    def _spec_valid(self, done: CompiledSpec, symbols: SymbolTable) -> bool:
        """Whether a compiled specialisation still matches the definitions in `symbols`."""
        return spec_valid(done, symbols)

    # ------------------------------------------------------------------ execute

    def execute(self, text: str, name: Optional[str] = None, run_main: bool = False) -> ExecResult:
        """Compile and run one cell. A cell that fails to compile changes nothing (but its name is
        taken: a cell without `name` is `<cell N>`, the Nth such execute, failed or not). A cell whose
        text was compiled before against the same symbol-table context is not compiled again:
        its native code is rerun (noma.session.cell_cache; `ExecResult.cache_hit`)."""
        from noma.rt.safetensors_header import read_ranks

        if name is None:
            self.cells_named += 1
            name = f"<cell {self.cells_named}>"
        source = Source(name, text)
        if self.clear_interrupt_on_execute:  # a request from now on (even while compiling) stops this cell
            self.rt.clear_interrupt()
        started = time.perf_counter()
        key = text + self._defines_key(text)  # the same text with other defines is other code
        # a cell that imports depends on the imported files' texts: it is compiled every time (an
        # unchanged module adds nothing then, see noma.compiler.front.modules)
        imports = _IMPORT.search(text) is not None
        hit = None if imports else self.cell_cache.lookup(key, run_main, self.symbols, self.compiled,
                                                          read_ranks, self._spec_valid)
        if hit is not None:
            return self._replay(hit, source, started)
        try:
            table = RecordingTable.of(self.symbols)
            planned: list[Any] = []  # (symbols after the cell, patch list), filled by the linker
            pipeline_started = time.perf_counter()
            art = self._pipeline(source, run_main, table, table.header_reader(read_ranks), "native",
                                 lambda module: self._link(module, table, planned))
        except NomaError as exc:
            return ExecResult(diagnostics=exc.diagnostics, status="error",
                              compile_seconds=time.perf_counter() - started)
        except RecursionError:  # the last resort (parse.MAX_NESTING and run_stage catch what they can)
            from noma.compiler.front.budget import too_deep

            first_line = Span(source, 0, len(text.split("\n", 1)[0]))
            return ExecResult(diagnostics=too_deep(first_line).diagnostics, status="error",
                              compile_seconds=time.perf_counter() - started)
        compile_seconds = time.perf_counter() - started
        art.phases["front_end"] += pipeline_started - started  # the cache lookup
        assert art.module is not None and art.linkage is not None
        module, names, own = art.module, art.linkage.symbols, art.linkage.own_pointers
        symbols, patch = planned[0]
        if self.rt.interrupt_pending():  # cancelled: nothing changes, but the JIT keeps what it defined
            self.cell_count += 1  # (the cell's symbol names and pointer globals are taken)
            self.pointer_globals |= own
            return cancelled(compile_seconds)
        self.compilations += 1
        self._push_undo(cell_label(source))
        before = self.symbols
        with gc_paused():  # (the cache entry of a large cell is many objects: see budget.gc_paused)
            self._commit(art, symbols, patch)
            specs = {n: self.compiled[n] for n in module.functions if not n.startswith("__cell")}
            pointers = [(self.jit.global_address(f"noma.fp.{n}"), self.jit.function_address(done.symbol))
                        for n, done in specs.items()]
            externs = {n: getattr(self.compiled.get(n), "symbol", None) for n in module.externs}
            entry = self.jit.function_address(names[art.cell])
            if not imports:
                self.cell_cache.add(key, run_main, record(table, module, entry, art.has_value, source,
                                                          externs, specs, pointers, artifacts=art))
        result = self._run_declaring(before, module, entry, art.has_value,
                                     warnings=located_warnings(module.spans, module.warnings))
        result.compile_seconds = compile_seconds
        result.compile_phases = dict(art.phases)
        return result

    def _link(self, module: Any, table: RecordingTable, planned: list[Any]) -> "Linkage":
        """The pipeline's linker for a cell: versioned symbols, reused specialisations as externs."""
        from noma.compiler.pipeline import Linkage

        symbols = table.plain()
        names, own, patch = plan_symbols(module, symbols, self.compiled, self.pointer_globals, self.cell_count)
        planned.append((symbols, patch))
        return Linkage(names, own, self.jit.defines)

    def _replay(self, hit: Replay, source: Source, started: float) -> ExecResult:
        """Run a cached cell: its effects on the symbol table and specialisations, then its code."""
        cell = hit.cell
        compile_seconds = time.perf_counter() - started
        if self.rt.interrupt_pending():
            return cancelled(compile_seconds)
        self.cache_hits += 1
        self._push_undo(cell_label(source))
        self.compiled.update(cell.specs)
        for pointer, address in cell.pointers:  # the specialisations it compiled are current again
            ctypes.c_void_p.from_address(pointer).value = address
        self.pointer_globals |= set(cell.specs)
        before = self.symbols
        self.symbols = hit.symbols
        self.cell_count += 1
        self.last_artifacts = cell.artifacts
        self.last_module = cell.module
        self.last_source = source
        result = self._run_declaring(before, cell.module, cell.entry, cell.has_value, (cell.source, source),
                                     located_warnings(cell.module.spans, cell.module.warnings, (cell.source, source)))
        result.compile_seconds = compile_seconds
        result.cache_hit = True
        return result

    def _commit(self, art: "Artifacts", symbols: SymbolTable, patch: list[str]) -> None:
        assert art.module is not None and art.linkage is not None
        names = art.linkage.symbols
        for name, fn in art.module.functions.items():
            if name.startswith("__cell"):
                continue
            definition = symbols.functions[spec_base(name, symbols.functions)]
            self.compiled[name] = CompiledSpec(definition, names[name], fn.result_rank,
                                               called_functions(definition, symbols.functions), art)
        for name in patch:
            address = self.jit.function_address(names[name])
            pointer = self.jit.global_address(f"noma.fp.{name}")
            ctypes.c_void_p.from_address(pointer).value = address
        self.pointer_globals |= art.linkage.own_pointers
        self.symbols = symbols
        self.cell_count += 1
        self.last_artifacts = art
        self.last_module = art.module
        self.last_source = art.source

    def _run_declaring(self, before: SymbolTable, module: Any, address: int, has_value: bool,
                       rebind: Optional[tuple[Source, Source]] = None,
                       warnings: Optional[list[Diagnostic]] = None) -> ExecResult:
        """Run a committed cell whose symbol table was `before`; when it fails (or is interrupted),
        the declarations it did not reach are taken back: a failed cell keeps what it completed."""
        self.rt.activate()
        for slot in declared_global_slots(before, self.symbols):
            self.rt.lib.noma_global_forget(slot)
        result = self._run(module, address, has_value, rebind, warnings)
        if not result.ok:
            from noma.session.state import keep_reached_declarations

            self.symbols = keep_reached_declarations(self, before, self.symbols)
        return result

    def _run(self, module: Any, address: int, has_value: bool,
             rebind: Optional[tuple[Source, Source]] = None,
             warnings: Optional[list[Diagnostic]] = None) -> ExecResult:
        """Run a cell's native function; `rebind` (cached source, this run's source) names the
        cell as this run does in the location of a runtime error; `warnings` (the compiler's)
        come first in the result, and to the output sink before the code runs."""
        steps_before = self.rt.global_step()
        started = time.perf_counter()
        def located(record: str) -> Diagnostic:  # a runtime warning, at its span in this cell
            from noma.rt.runtime import parse_warning

            span_id, message = parse_warning(record)
            return Diagnostic(Kind.WARNING, message, self._cell_span(module, span_id, rebind))

        live = LiveOutput(self.output_sink, located) if self.output_sink is not None else None
        if live is not None:
            for diag in warnings or []:
                live.emit_warning(diag)
            self.rt.set_live(True)
        try:
            status = self._invoke_with_progress(address, live)
        finally:
            if live is not None:
                self.rt.set_live(False)
        result = ExecResult(output=self.rt.take_output(), run_seconds=time.perf_counter() - started)
        result.steps = self.rt.global_step() - steps_before
        result.diagnostics.extend(warnings or [])
        runtime_warnings = [Diagnostic(Kind.WARNING, message, self._cell_span(module, span_id, rebind))
                            for span_id, message in self.rt.take_warnings()]
        if live is not None:
            live.drain(self.rt, final=True)
            result.output, result.streamed = live.text + result.output, True
            runtime_warnings = live.warnings + runtime_warnings
        result.diagnostics.extend(runtime_warnings)
        if status == 0:
            if has_value:
                result.value = self.rt.read_global(VALUE_SLOT)
        elif status == 2:
            result.status = "interrupted"
            result.diagnostics.append(Diagnostic(
                Kind.RUNTIME, f"interrupted at step {self.rt.global_step()}; parameters and optimizer "
                "state are as after that step"))
        else:
            result.status = "error"
            kind, span_id, message = self.rt.error()

            def span_of(i: int) -> Optional[Span]:  # a span id of the session's table, as this run names it
                return self._cell_span(module, i, rebind)

            note = None
            if result.steps:
                note = (f"stopped after {result.steps} completed training step(s) of this cell (global step "
                        f"{self.rt.global_step()}); parameters and optimizer state are as after that step")
            diag = Diagnostic(RUNTIME_KIND_ORDER[kind], message, span_of(span_id), note)
            result.diagnostics.append(with_call_notes(diag, [span_of(i) for i in self.rt.error_calls()]))
        self.rt.release_arena()
        return result

    @staticmethod
    def _cell_span(module: Any, span_id: int, rebind: Optional[tuple[Source, Source]]) -> Optional[Span]:
        """The Span of a runtime error's or warning's span id in `module` (None: -1 or unknown);
        a span in the cached source `rebind[0]` (or inlined at one) is named as this run's source
        `rebind[1]`."""
        span = module.spans[span_id] if 0 <= span_id < len(module.spans) else None
        return rebind_span(span, *rebind) if rebind is not None else span

    def _invoke_with_progress(self, address: int, live: Optional[LiveOutput] = None) -> int:
        """Run native code. With a progress hook or an output sink, it runs in a worker thread
        (ctypes releases the GIL) while this thread streams printed output every stream_interval
        seconds and calls the hook every progress_interval seconds, and once more when the code
        has finished (even when it finishes before the first interval)."""
        if self.progress is None and live is None:
            return self.rt.invoke(address)
        outcome: list[int] = []
        worker = threading.Thread(target=lambda: outcome.append(self.rt.invoke(address)), daemon=True)
        worker.start()
        tick = self.progress_interval if live is None else min(self.progress_interval, self.stream_interval)
        next_progress = time.monotonic() + self.progress_interval
        while True:  # at least one hook call, and the last one after the worker has finished
            worker.join(tick)
            finished = not worker.is_alive()
            if live is not None:
                live.drain(self.rt, final=False)
            if self.progress is not None and (finished or time.monotonic() >= next_progress):
                next_progress = time.monotonic() + self.progress_interval
                self.running = not finished
                self.progress(self)
                self.running = False
            if finished:
                return outcome[0]

    # ------------------------------------------------------------------ read access

    @property
    def params(self) -> dict[str, np.ndarray]:
        """Parameters by name, as NumPy copies."""
        return {name: self.rt.read_param(var.slot) for name, var in self.symbols.params.items()}

    @property
    def dims(self) -> dict[str, int]:
        return {name: self.rt.dim(dim) for name, dim in self.symbols.dims.items()}

    @property
    def metrics(self) -> dict[str, Any]:
        """Named metrics (`report("name", value);`) by name: noma.rt.metrics.Metric records (held
        (global step, value) samples and a summary of every value reported)."""
        return self.rt.metrics()

    def optimizer_state(self, name: str) -> dict[str, np.ndarray]:
        """Moment buffers and per-entry step counts of a parameter."""
        return self.rt.optimizer_state(self.symbols.params[name].slot)

    @property
    def measure_output_change(self) -> bool:
        """Whether resizes record their output change (SPEC §4; on by default). Measuring costs two
        forward passes of the last training step per resizing cell or step; off, a resize costs
        only its own work (what bench/bench_realloc.py reports as the bare resize)."""
        return self._measure_output_change

    @measure_output_change.setter
    def measure_output_change(self, on: bool) -> None:
        self._measure_output_change = bool(on)
        self.rt.lib.noma_probe_enable(self.rt.ctx, int(bool(on)))

    @property
    def history(self) -> History:
        """The training history in bounded memory: the exact losses of the last steps (every step
        while the session trained at most `history_window` steps), a min/max/mean summary of
        every step, the events. Cheap: its size does not depend on the steps trained."""
        return self.read_history()

    def read_history(self, recent: bool = True) -> History:
        """`history`; without `recent` the exact window is left out (`losses` is empty), what a
        plot needs (it draws from the summary)."""
        data = self.rt.history(recent)
        summary = LossSummary.from_levels(data.start, data.counts, data.bmin, data.bmax, data.bsum)
        return History(data.recent, self.events(), summary, data.step - len(data.recent) + 1, data.step,
                       int(self.rt.lib.noma_history_window(self.rt.ctx)), self.metrics)

    def events(self) -> list[Event]:
        """Resizes, frees, optimizer changes, resets and re-initialisations, oldest first (exact)."""
        names = {var.slot: n for n, var in self.symbols.params.items()}
        dims = {d: n for n, d in self.symbols.dims.items()}
        live = self.rt.events(names, dims)
        shown = [e for i, e in enumerate(live) if not any(a <= i < b for a, b in self.hidden_events)]
        return [Event(**e) for e in self.restored_events] + shown

    @property
    def history_window(self) -> int:
        """How many of the last losses `history.losses` holds exactly (65536 by default)."""
        return int(self.rt.lib.noma_history_window(self.rt.ctx))

    @history_window.setter
    def history_window(self, n: int) -> None:
        ok = int(self.rt.lib.noma_history_set_window(self.rt.ctx, int(n)))
        if ok == -1:  # over the memory limit (or out of memory): the runtime's message
            raise NomaError(Diagnostic(Kind.RUNTIME, self.rt.error()[2]))
        if not ok:
            limit = int(self.rt.lib.noma_history_limit(3))
            raise ValueError(f"history_window must be between 1 and {limit}")

    # ------------------------------------------------------------------ undo, reset, checkpoints

    def _push_undo(self, label: str) -> None:
        from noma.session import state as session_state

        self.undo_stack.append(session_state.capture(self))
        self.undo_labels.append(label)
        del self.undo_stack[:-self.undo_depth], self.undo_labels[:-self.undo_depth]

    def undo(self) -> Optional[str]:
        """Restore parameters, optimizer state, dims, globals, definitions and history to before
        the last cell. Which cell that was (`<cell 3> `realloc h = 4;``), or None when there is
        nothing to undo."""
        from noma.session import state as session_state

        if not self.undo_stack:
            return None
        label = self.undo_labels.pop() if len(self.undo_labels) == len(self.undo_stack) else "the last cell"
        counters = (self.symbols.next_global, self.symbols.next_param, self.symbols.next_dim)
        pointers = set(self.pointer_globals)
        session_state.restore(self, self.undo_stack.pop())
        # Compiled code is not undone: its pointer globals stay defined in the JIT, and the slots it
        # uses are not handed out again (cached cells may run that code again; see noma.session.cell_cache).
        self.pointer_globals |= pointers
        table = self.symbols
        table.next_global, table.next_param, table.next_dim = (
            max(a, b) for a, b in zip((table.next_global, table.next_param, table.next_dim), counters))
        return label

    def reset(self) -> None:
        """Forget everything: a fresh runtime context and symbol tables (compiled code is kept)."""
        from noma.rt import runtime

        window = self.history_window
        self.rt = runtime.Runtime(self.dtype, capture=self.rt.capture)
        self.rt.lib.noma_probe_enable(self.rt.ctx, int(self._measure_output_change))
        self.history_window = window
        self.symbols = SymbolTable()
        self.compiled = {}
        self.cell_cache.clear()
        self.hidden_events, self.restored_events, self.undo_stack, self.undo_labels = [], [], [], []

    def save_checkpoint(self, path: str) -> str:
        """Parameters, optimizer state, dims, globals, definitions and history to PATH (+ PATH.json)."""
        from noma.session import state as session_state

        return session_state.save_checkpoint(self, path)

    def load_checkpoint(self, path: str) -> None:
        """Replace this session's state by a checkpoint's (PATH + PATH.json); without PATH.json (a file
        an executable wrote) load PATH into the declared parameters and dims, as the
        `load_checkpoint` statement does. Raises NomaError on a bad file, changing nothing."""
        from noma.session import state as session_state

        self._push_undo(f"`:load {path}`")
        try:
            session_state.load_checkpoint(self, path)
        except NomaError:
            self.undo_stack.pop()  # nothing changed
            self.undo_labels.pop()
            raise

    def globals(self) -> dict[str, Any]:
        return {n: self.rt.read_global(v.slot) for n, v in self.symbols.globals.items()}

    @property
    def controls(self) -> Any:
        """The live controls (noma.session.controls.Controls): grow/shrink a dim, set the learning
        rate, pause or stop the running training loop at its next step boundary, from any thread."""
        from noma.session.controls import Controls

        return Controls(self)

    def interrupt(self) -> None:
        """Ask the running cell's training loop to stop at its next step boundary."""
        self.rt.request_interrupt()

    @contextmanager
    def sigint_stops_training(self) -> Iterator[None]:
        """While a cell runs on the main thread, SIGINT (Ctrl-C, a kernel interrupt) asks its
        training loop to stop at the next step boundary instead of raising KeyboardInterrupt.
        (During native code the runtime's own C handler does the same.)"""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, lambda signum, frame: self.interrupt())
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
