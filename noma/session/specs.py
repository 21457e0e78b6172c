"""The function specialisations a session compiled, and how a new cell links against them.

Owns: `CompiledSpec` (a specialisation's definition, LLVM symbol, result rank, the definitions it
was compiled against and the pipeline artifacts of the cell that compiled it), the validity check
after redefinitions, and `plan_symbols`: which functions of a new cell's IR module to compile
(versioned symbols `noma_f_v3`), which to reuse (turned into externs of the module) and which
function-pointer globals to patch so earlier code calls the new version.
Imports: noma.compiler.front (ast, symbols), noma.diagnostics.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from noma.compiler.front import ast
from noma.compiler.front.symbols import SymbolTable
from noma.diagnostics import Source, Span


@dataclass
class CompiledSpec:
    """One compiled specialisation (`f.t2`) of a user function."""

    definition: ast.FnDef
    symbol: str
    result_rank: Optional[int]
    #: user functions it calls (transitively), with the definitions it was compiled against;
    #: calls inside optimize bodies are inlined, so a redefinition of any of them recompiles it
    deps: dict[str, Any] = field(default_factory=dict)
    #: the pipeline artifacts (noma.compiler.pipeline.Artifacts) of the cell that compiled it
    artifacts: Any = None


def called_functions(definition: Any, functions: dict[str, Any]) -> dict[str, Any]:
    """User functions a definition calls, directly or through other user functions."""
    found: dict[str, Any] = {}
    stack: list[Any] = [definition]
    while stack:
        node = stack.pop()
        if isinstance(node, (tuple, list)):
            stack.extend(node)
            continue
        if not dataclasses.is_dataclass(node) or isinstance(node, (Span, Source)):
            continue
        if isinstance(node, ast.Call) and node.func in functions and node.func not in found:
            found[node.func] = functions[node.func]
            stack.append(functions[node.func])
        for f in dataclasses.fields(node):
            stack.append(getattr(node, f.name))
    return found


def spec_valid(done: CompiledSpec, symbols: SymbolTable) -> bool:
    """Whether a compiled specialisation still matches the definitions in `symbols`."""
    return (done.definition is symbols.functions.get(done.definition.name)
            and all(symbols.functions.get(n) is d for n, d in done.deps.items()))


def plan_symbols(module: Any, symbols: SymbolTable, compiled: dict[str, CompiledSpec], pointer_globals: set[str],
                 version: int) -> tuple[dict[str, str], set[str], list[str]]:
    """Which functions of the module to (re)compile → (their LLVM symbols, the functions whose
    pointer global the module defines, the pointer globals to patch after linking). Functions
    whose compiled version is still valid are removed from the module and become externs."""
    names: dict[str, str] = {}
    own: set[str] = set()
    patch: list[str] = []
    for name, fn in list(module.functions.items()):
        if name.startswith("__cell"):
            names[name] = f"noma_{name}"
            continue
        done = compiled.get(name)
        if done is not None and done.result_rank == fn.result_rank and spec_valid(done, symbols):
            module.externs[name] = (tuple(p.rank for p in fn.params), fn.result_rank)
            del module.functions[name]
            continue
        names[name] = f"noma_{name}_v{version}"
        if name in pointer_globals:
            patch.append(name)
        else:
            own.add(name)
    return names, own, patch


def declared_global_slots(before: SymbolTable, after: SymbolTable) -> list[int]:
    """Global slots a cell (re)declares: names that are new or got another slot."""
    return [var.slot for name, var in after.globals.items()
            if name not in before.globals or before.globals[name].slot != var.slot]
