"""Compiled cells of a session, reused when the same cell runs again: a re-run compiles nothing.

Owns: recording what one compilation of a cell read from the symbol table (`RecordingTable`, a
SymbolTable whose dicts log the first access to every entry), the entry kept for a compiled cell
(IR module, native entry point, the function specialisations it compiled, its effects on the
symbol table) and `CellCache.lookup`: does the session's current state compile this cell text to
the same code? If so the session replays the entry (symbol-table effects, specialisations,
pointer globals) and runs its native code instead of parsing, lowering and LLVM-compiling.
Input: the session's SymbolTable before a compilation and the recording table after it.
Output: CachedCell / Replay objects for noma.session.core.
Imports: noma.compiler.front.symbols, noma.diagnostics (no llvmlite, no runtime).

When a recompilation would give the same code (the check is exact and errs towards compiling):
- every entry the compilation read before it wrote it is unchanged ("exact" observation):
  globals by slot and rank, parameters by slot, rank and dim bindings, dims by id, functions and
  freed spans by identity, known constants by value; a table listed as a whole (the "did you
  mean" suggestions) is unchanged as a whole;
- an entry first touched by `global_slot` / `param_slot` / `dim_id` ("slot" observation) either
  holds what it held then, or already holds the slot that call produced (the state after this
  cell's own earlier run): the call then returns that slot, so the code is the same. A global
  slot the compilation allocated is reused as is: the session's slot counters never go back, so
  no other code was given it. Parameter slots and dim ids are reused only while the name still
  holds them (a freed one may still be bound in the runtime);
- safetensors headers read while compiling still give the same ranks (same path, same cwd);
- every function specialisation the cell calls without having compiled it is still the same
  compiled version (same symbol), and still valid for the definitions after the replay.
Replaying writes the entries the compilation wrote (or changed in place), as it left them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

from noma.compiler.front.symbols import GlobalVar, ParamVar, SymbolTable

TABLES = ("globals", "params", "dims", "functions", "freed", "known_constants", "whole_models")
ABSENT: Any = type("Absent", (), {"__repr__": lambda self: "ABSENT"})()
MAX_TEXTS = 64  # distinct cell texts remembered per session (least recently used dropped)
MAX_VARIANTS = 4  # compilations remembered per text (different symbol-table contexts)


def _copy(table: str, value: Any) -> Any:
    """A snapshot of a table entry that later changes to the live table cannot alter."""
    if isinstance(value, GlobalVar):
        return GlobalVar(value.slot, value.rank)
    if isinstance(value, ParamVar):
        return ParamVar(value.slot, value.rank, dict(value.dims))
    return value


def _same(table: str, a: Any, b: Any) -> bool:
    if a is ABSENT or b is ABSENT:
        return a is b
    if table in ("functions", "freed"):
        return a is b
    if table == "globals":
        return a.slot == b.slot and a.rank == b.rank
    if table == "params":
        return a.slot == b.slot and a.rank == b.rank and a.dims == b.dims
    return bool(a == b)  # dim ids, known constants


def _holds_result(table: str, current: Any, result: Any) -> bool:
    """Whether a slot call finding `current` returns `result` (code identical to the recording)."""
    if current is ABSENT or result is None:
        return False
    if table == "globals":
        return current.slot == result.slot and current.rank == result.rank
    if table == "params":
        return current.slot == result.slot  # param_slot resets rank and dims itself
    return bool(current == result)  # dims


class _Recorder:
    """The first access to every (table, key) of one compilation, against the table before it."""

    def __init__(self, before: SymbolTable):
        self.before = before
        self.seen: set[tuple[str, Any]] = set()
        #: (table, key) -> [kind, value before, value a slot call produced]
        self.observed: dict[tuple[str, Any], list] = {}
        self.written: dict[tuple[str, Any], bool] = {}  # (table, key) -> deleted at some point
        self.whole: dict[str, dict] = {}
        self.headers: list[tuple[str, Any]] = []

    def _before(self, table: str, key: Any) -> Any:
        return _copy(table, getattr(self.before, table).get(key, ABSENT))

    def read(self, table: str, key: Any) -> None:
        k = (table, key)
        if k not in self.seen:
            self.seen.add(k)
            self.observed[k] = ["exact", self._before(table, key), None]

    def write(self, table: str, key: Any, delete: bool = False) -> None:
        k = (table, key)
        self.seen.add(k)
        self.written[k] = self.written.get(k, False) or delete

    def slot(self, table: str, key: Any) -> Optional[list]:
        """Before a slot call: its observation, to complete with the result (None: not first)."""
        k = (table, key)
        first = k not in self.seen
        self.write(table, key)
        if not first:
            return None
        obs = ["slot", self._before(table, key), None]
        self.observed[k] = obs
        return obs

    def listed(self, table: str) -> None:
        if table not in self.whole:
            self.whole[table] = {k: _copy(table, v) for k, v in getattr(self.before, table).items()}


class _Logged(MutableMapping):
    """One dict of the table being compiled; every access is reported to the recorder."""

    def __init__(self, table: str, data: dict, rec: _Recorder):
        self.table, self.data, self.rec = table, data, rec

    def __getitem__(self, key: Any) -> Any:
        self.rec.read(self.table, key)
        return self.data[key]

    def __contains__(self, key: Any) -> bool:
        self.rec.read(self.table, key)
        return key in self.data

    def get(self, key: Any, default: Any = None) -> Any:
        self.rec.read(self.table, key)
        return self.data.get(key, default)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.rec.write(self.table, key)
        self.data[key] = value

    def __delitem__(self, key: Any) -> None:
        self.rec.read(self.table, key)
        self.rec.write(self.table, key, delete=True)
        del self.data[key]

    def pop(self, key: Any, *default: Any) -> Any:
        """`pop(key)` reads the entry; `pop(key, default)` is a blind deletion: the compiler
        uses it only to forget an entry whether or not it was there (its result is unused)."""
        if not default:
            self.rec.read(self.table, key)
        self.rec.write(self.table, key, delete=True)
        return self.data.pop(key, *default)

    def __iter__(self) -> Iterator[Any]:
        self.rec.listed(self.table)
        return iter(list(self.data))

    def __len__(self) -> int:
        self.rec.listed(self.table)
        return len(self.data)


class RecordingTable(SymbolTable):
    """A copy of the session's table for one compilation that records what it reads and writes."""

    _rec: _Recorder

    @classmethod
    def of(cls, before: SymbolTable) -> "RecordingTable":
        twin = before.clone()
        rec = _Recorder(before)
        table = cls(**{t: _Logged(t, getattr(twin, t), rec) for t in TABLES},  # type: ignore[arg-type]
                    next_global=twin.next_global, next_param=twin.next_param, next_dim=twin.next_dim,
                    modules=twin.modules)
        table._rec = rec
        return table

    def _slot_call(self, table: str, name: str, call: Callable[[], Any]) -> Any:
        obs = self._rec.slot(table, name)
        result = call()
        if obs is not None:
            obs[2] = _copy(table, result)
        return result

    def global_slot(self, name: str, rank: int) -> GlobalVar:
        return self._slot_call("globals", name, lambda: SymbolTable.global_slot(self, name, rank))

    def param_slot(self, name: str, rank: int) -> ParamVar:
        return self._slot_call("params", name, lambda: SymbolTable.param_slot(self, name, rank))

    def dim_id(self, name: str) -> int:
        return self._slot_call("dims", name, lambda: SymbolTable.dim_id(self, name))

    def header_reader(self, read: Callable[[str], Any]) -> Callable[[str], Any]:
        """`read` (safetensors header ranks), with its answers recorded."""
        def reader(path: str) -> Any:
            result = read(path)
            self._rec.headers.append((path, dict(result)))
            return result
        return reader

    def plain(self) -> SymbolTable:
        """The table as the compilation left it, with ordinary dicts (what the session commits)."""
        return SymbolTable(**{t: dict(getattr(self, t).data) for t in TABLES},
                           next_global=self.next_global, next_param=self.next_param, next_dim=self.next_dim,
                           modules=dict(self.modules))


@dataclass
class CachedCell:
    """One compilation of a cell text: what it depends on, what it does to the session."""

    observed: list  # (table, key, kind, value before, slot call result)
    whole: dict  # table -> its entries, for tables the compilation listed as a whole
    headers: list  # (path, ranks)
    effects: list  # (table, key, value after or ABSENT, deleted at some point)
    counters: tuple[int, int, int]
    externs: dict  # spec -> LLVM symbol of the compiled version the cell's code calls
    specs: dict  # spec -> the session's record of a specialisation this cell compiled
    pointers: list  # (pointer global address, function address) per spec compiled here
    module: Any  # IR module (spans for runtime errors, `:ir`)
    entry: int  # address of the cell's native function
    has_value: bool
    source: Any  # the Source it was compiled from (spans point into it)
    artifacts: Any = None  # noma.compiler.pipeline.Artifacts of the compilation (`:ir`, `:grad`, `:llvm`)

    def matches(self, symbols: SymbolTable, compiled: dict, read_header: Callable[[str], Any]) -> bool:
        """Whether compiling the same text against `symbols` would give this code."""
        for table, key, kind, before, result in self.observed:
            current = getattr(symbols, table).get(key, ABSENT)
            if _same(table, current, before):
                if kind == "slot" and before is ABSENT and table != "globals":
                    return False  # a fresh parameter slot / dim id: the recorded one may be stale
                continue
            if not (kind == "slot" and _holds_result(table, current, result)):
                return False
        for table, entries in self.whole.items():
            live = getattr(symbols, table)
            if list(live) != list(entries) or not all(_same(table, live[k], v) for k, v in entries.items()):
                return False
        for path, ranks in self.headers:
            try:
                if list(dict(read_header(path)).items()) != list(ranks.items()):  # order: the first tensor
                    return False
            except Exception:  # noqa: BLE001 - unreadable now: compiling would report it
                return False
        for spec, symbol in self.externs.items():
            done = compiled.get(spec)
            if done is None or done.symbol != symbol:
                return False
        return True

    def apply(self, symbols: SymbolTable) -> SymbolTable:
        """The table after replaying this cell on `symbols` (which is not changed)."""
        out = symbols.clone()
        for table, key, value, deleted in self.effects:
            entries = getattr(out, table)
            if deleted or value is ABSENT:
                entries.pop(key, None)
            if value is not ABSENT:
                entries[key] = _copy(table, value)
        out.next_global = max(out.next_global, self.counters[0])
        out.next_param = max(out.next_param, self.counters[1])
        out.next_dim = max(out.next_dim, self.counters[2])
        return out


def record(table: RecordingTable, module: Any, entry: int, has_value: bool, source: Any,
           externs: dict, specs: dict, pointers: list, artifacts: Any = None) -> CachedCell:
    """The cache entry of a compilation that recorded into `table` (after the session committed it)."""
    rec = table._rec
    observed = [(t, k, kind, before, result) for (t, k), (kind, before, result) in rec.observed.items()]
    effects = []
    for t in TABLES:
        after = getattr(table, t).data
        for (table_name, key), deleted in rec.written.items():
            if table_name == t:
                effects.append((t, key, _copy(t, after.get(key, ABSENT)), deleted))
        for (table_name, key), (kind, before, _) in rec.observed.items():
            # entries changed in place without being written (none today; kept exact)
            if table_name == t and (t, key) not in rec.written and not _same(t, before, after.get(key, ABSENT)):
                effects.append((t, key, _copy(t, after.get(key, ABSENT)), False))
    return CachedCell(observed, dict(rec.whole), list(rec.headers), effects,
                      (table.next_global, table.next_param, table.next_dim), dict(externs), dict(specs),
                      list(pointers), module, entry, has_value, source, artifacts)


@dataclass
class Replay:
    """A cache hit: the entry and the symbol table after replaying it."""

    cell: CachedCell
    symbols: SymbolTable


class CellCache:
    """Compiled cells by (text, run_main), least recently used dropped first."""

    def __init__(self) -> None:
        self._entries: OrderedDict[tuple[str, bool], list[CachedCell]] = OrderedDict()

    def __len__(self) -> int:
        return sum(len(v) for v in self._entries.values())

    def clear(self) -> None:
        self._entries.clear()

    def add(self, text: str, run_main: bool, cell: CachedCell) -> None:
        key = (text, run_main)
        variants = self._entries.pop(key, [])
        self._entries[key] = ([cell] + variants)[:MAX_VARIANTS]
        while len(self._entries) > MAX_TEXTS:
            self._entries.popitem(last=False)

    def lookup(self, text: str, run_main: bool, symbols: SymbolTable, compiled: dict,
               read_header: Callable[[str], Any], spec_valid: Callable[[Any, SymbolTable], bool]) -> Optional[Replay]:
        """The newest entry for this text that the current state would compile to, replayed."""
        key = (text, run_main)
        for cell in self._entries.get(key, ()):
            if not cell.matches(symbols, compiled, read_header):
                continue
            after = cell.apply(symbols)
            if all(spec_valid(compiled[spec], after) for spec in cell.externs):
                self._entries.move_to_end(key)
                return Replay(cell, after)
        return None
