"""The compiler's front end as one call: source text to a checked, differentiated IR module.

Owns: the sequence parse → irgen → autodiff → passes → verify that `noma check`, the session
and the language server (`noma lsp`) all run, so every one of them reports the same
diagnostics (same messages, same spans). Nothing here executes a program; the only file access
is the `read_header` callback that irgen calls for `load_safetensors` (callers choose it).
Imports: noma.compiler (parse, irgen, autodiff, passes, ir), noma.diagnostics.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

from noma.compiler.front.symbols import SymbolTable
from noma.diagnostics import Source

HeaderReader = Callable[[str], Any]


def check(source: Source, symbols: SymbolTable, dtype: str, read_header: Optional[HeaderReader],
          run_main: bool, cell: str, defines: Optional[Mapping[str, Any]] = None,
          used: Optional[set[str]] = None, base_dir: Optional[str] = None,
          loader: Optional[Any] = None) -> tuple[Any, bool]:
    """Parse and compile `source` against `symbols` (changed in place) → (IR module, has_value).
    `defines` (noma.compiler.front.defines) replace top-level let/dim values; the names replaced are
    added to `used`. Imports are relative to `base_dir` (None: the file's directory when the
    source is a file, else the working directory), read through `loader` (a
    noma.compiler.front.modules.ModuleLoader; None: a fresh one).

    Raises NomaError for user mistakes (the first one found).
    """
    from noma.compiler.front.defines import apply_defines
    from noma.compiler.front.parse import parse

    program, replaced = apply_defines(parse(source), defines or {})
    if used is not None:
        used |= replaced
    return check_program(program, symbols, dtype, read_header, run_main, cell, base_dir, loader)


def check_program(program: Any, symbols: SymbolTable, dtype: str, read_header: Optional[HeaderReader],
                  run_main: bool, cell: str, base_dir: Optional[str] = None,
                  loader: Optional[Any] = None) -> tuple[Any, bool]:
    """The stages after parsing, for a caller that keeps the AST (the language server)."""
    from noma.compiler.middle import autodiff, ir, irgen, passes
    from noma.compiler.front.budget import run_stage
    from noma.compiler.front.modules import expand, source_dir

    def stages() -> tuple[Any, bool]:
        where = base_dir if base_dir is not None else source_dir(program.span.source)
        expanded = expand(program, symbols, where, loader)
        module, has_value = irgen.generate(expanded, symbols, dtype, read_header, run_main, cell)
        autodiff.differentiate(module)
        passes.optimize_module(module)
        ir.verify(module)
        return module, has_value

    # deep (but accepted) nesting: room to recurse; a RecursionError left over is located
    return run_stage(program.span.source, stages)
