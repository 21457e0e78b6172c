"""What the compiler knows about a program or session between cells.

Owns: the tables of globals, parameters, named dims and function definitions, with the stable
slot numbers that compiled code uses to reach runtime state; the record of freed names.
Input: updated by irgen as it compiles statements; committed by the session only when a cell
compiles (a failing cell changes nothing: irgen works on a copy).
Imports: noma.diagnostics, noma.compiler.front.ast.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from noma.compiler.front import ast
from noma.diagnostics import Span

#: Global slot 0 holds the value of a cell's last expression.
VALUE_SLOT = 0


def spec_base(spec: str, functions: "dict[str, ast.FnDef]") -> str:
    """The function a specialisation's IR name belongs to (`nn.dense.s.t2` → `nn.dense`): the
    longest dotted prefix that names a function. Unambiguous because a name is never both a
    module alias and a function (noma.compiler.front.modules)."""
    parts = spec.split(".")
    for k in range(len(parts), 0, -1):
        base = ".".join(parts[:k])
        if base in functions:
            return base
    return parts[0]


@dataclass
class GlobalVar:
    """A top-level variable: runtime global slot and its rank."""

    slot: int
    rank: int


@dataclass
class ParamVar:
    """A learnable parameter or alloc'd buffer: runtime parameter slot and rank."""

    slot: int
    rank: int
    #: axis -> dim name, for parameters whose shape used named dims.
    dims: dict[int, str] = field(default_factory=dict)


@dataclass
class SymbolTable:
    """Names visible at the top level of a session or program, with their runtime slots."""

    globals: dict[str, GlobalVar] = field(default_factory=dict)
    params: dict[str, ParamVar] = field(default_factory=dict)
    dims: dict[str, int] = field(default_factory=dict)
    functions: dict[str, ast.FnDef] = field(default_factory=dict)
    freed: dict[str, Span] = field(default_factory=dict)
    #: Values of top-level scalars known at compile time (for the optimizer magic names).
    known_constants: dict[str, float] = field(default_factory=dict)
    #: Globals bound by `load_safetensors m = ...` to a file of several tensors: m -> the file's
    #: tensor names in the file's order (`m` itself holds the first, as in the original NOMA).
    whole_models: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: Modules imported so far (noma.compiler.front.modules): "prefix|absolute path" -> (digest of
    #: the file's text, the texts of its `dim`/`learn` declarations run at its last import)
    modules: dict[str, tuple[str, frozenset[str]]] = field(default_factory=dict)
    next_global: int = 1
    next_param: int = 0
    next_dim: int = 0

    def clone(self) -> "SymbolTable":
        """A copy that compilation may change freely (AST nodes are shared: they are frozen)."""
        twin = copy.copy(self)
        twin.globals = {k: GlobalVar(v.slot, v.rank) for k, v in self.globals.items()}
        twin.params = {k: ParamVar(v.slot, v.rank, dict(v.dims)) for k, v in self.params.items()}
        twin.dims = dict(self.dims)
        twin.functions = dict(self.functions)
        twin.freed = dict(self.freed)
        twin.known_constants = dict(self.known_constants)
        twin.whole_models = dict(self.whole_models)
        twin.modules = dict(self.modules)
        return twin

    def global_slot(self, name: str, rank: int) -> GlobalVar:
        """The slot for top-level variable `name`; a new one if it is new or changes rank."""
        var = self.globals.get(name)
        if var is None or var.rank != rank:
            var = GlobalVar(self.new_global_slot(), rank)
            self.globals[name] = var
        return var

    def new_global_slot(self) -> int:
        slot = self.next_global
        self.next_global += 1
        return slot

    def param_slot(self, name: str, rank: int) -> ParamVar:
        var = self.params.get(name)
        if var is None:
            var = ParamVar(self.next_param, rank)
            self.next_param += 1
            self.params[name] = var
        else:
            var.rank = rank
            var.dims = {}
        self.freed.pop(name, None)
        return var

    def dim_id(self, name: str) -> int:
        if name not in self.dims:
            self.dims[name] = self.next_dim
            self.next_dim += 1
        return self.dims[name]
