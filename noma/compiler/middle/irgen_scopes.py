"""The scopes of local names while IR is generated, and undoing what a block wrote to them.

Owns: `Scope` (one scope: name -> IR value, a dict that reports its writes), `Journal` (the
writes of the blocks being generated, in order, and where each name is defined: `find`) and
`Changes` (what a block left in the scopes around it). IRGen.in_block generates a block against
the live scopes and then undoes its writes: the values a branch assigns to outer names become the
results of its IfOp (IRGen.gen_if), never the outer names' values themselves. Undoing costs what
the block wrote; copying every scope for every block (what in_block did before) cost the scopes'
total size per block, quadratic in the nesting that early returns make (a function of 6,000
`if ... { return ...; }` took 22 s and 2.8 GB to compile). Looking a name up walked the scopes
from the innermost one, as quadratic; `Journal.find` keeps, per name, the scopes that define it.
Input: IR values. Output: scopes and the changes of a block. Imports: ir only.
"""

from __future__ import annotations

from bisect import insort
from typing import Any, Optional

from noma.compiler.middle import ir

#: An entry that was not there before a write (undone by deleting it).
ABSENT: Any = object()


class Journal:
    """The writes made while at least one block is open: (scope, name, value before or ABSENT)."""

    def __init__(self) -> None:
        self.entries: list[tuple["Scope", str, Any]] = []
        self.open = 0  # blocks being generated (no block open: nothing to undo, nothing kept)
        #: name -> the scopes that defined it, outermost first; entries of scopes closed since, or
        #: that lost the name to an undo, are dropped when find() meets them
        self.defined: dict[str, list["Scope"]] = {}

    def find(self, name: str, scopes: list[dict[str, ir.Value]]) -> Optional["Scope"]:
        """The innermost of the open `scopes` that defines `name` (None: none does)."""
        stack = self.defined.get(name)
        while stack:
            scope = stack[-1]
            if scope.level < len(scopes) and scopes[scope.level] is scope and dict.__contains__(scope, name):
                return scope
            stack.pop()
        return None

    def mark(self) -> int:
        self.open += 1
        return len(self.entries)

    def undo(self, mark: int) -> None:
        """Restore every scope written since `mark`, latest write first."""
        entries = self.entries
        for scope, name, old in reversed(entries[mark:]):
            if old is ABSENT:
                dict.pop(scope, name, None)
            else:
                dict.__setitem__(scope, name, old)
        del entries[mark:]
        self.open -= 1


class Scope(dict):
    """One scope of local names (name -> ir.Value) at `level` of its function's scope stack; its
    writes are journaled while a block is open."""

    __slots__ = ("journal", "level")

    def __init__(self, journal: Journal, level: int, entries: Optional[dict[str, ir.Value]] = None):
        super().__init__()
        self.journal = journal
        self.level = level
        for name, value in (entries or {}).items():
            self[name] = value

    def __setitem__(self, name: str, value: ir.Value) -> None:
        journal = self.journal
        old = dict.get(self, name, ABSENT)
        if journal.open:
            journal.entries.append((self, name, old))
        if old is ABSENT:
            insort(journal.defined.setdefault(name, []), self, key=_level)
        dict.__setitem__(self, name, value)


def _level(scope: Scope) -> int:
    return scope.level


class Changes:
    """What a block left in the scopes that were open around it: for each (level, name) it wrote,
    the value before the block (or ABSENT) and the value at its end."""

    def __init__(self, journal: Journal, mark: int, scopes: list[dict[str, ir.Value]], depth: int):
        self.before: dict[tuple[int, str], Any] = {}
        self.after: dict[tuple[int, str], ir.Value] = {}
        for scope, name, old in journal.entries[mark:]:
            level = scope.level
            if level < depth and scopes[level] is scope:
                key = (level, name)
                if key not in self.before:
                    self.before[key] = old
                    self.after[key] = dict.__getitem__(scope, name)

    def value(self, level: int, name: str, before: Optional[ir.Value]) -> Optional[ir.Value]:
        """The value of `name` at `level` when the block ended (`before`: its value before)."""
        return self.after.get((level, name), before)
