"""`noma emit`: any compiler stage of a program as text; the whole-program compile `noma build` uses.

Owns: `compile_ir` / `compile_program` (a whole program as one module: the same parse → irgen →
autodiff → passes pipeline `noma run` uses, lowered with plain `noma_<fn>` symbols and every
function-pointer global defined in the module) and printing the AST, IR, gradient IR, LLVM IR,
assembly of a program, or its object file as bytes.
Imports: compiler stages, noma.rt.safetensors_header (compile-time header reading).
"""

from __future__ import annotations

import pprint
from dataclasses import dataclass
from typing import Any, Optional

from noma.diagnostics import Source

#: Name of the whole program's entry function; its LLVM symbol is `noma___main`.
ENTRY = "__main"


@dataclass
class CompiledProgram:
    """A whole program lowered to one LLVM module."""

    module: Any  # ir.Module after autodiff and passes
    llvm_text: str
    has_value: bool  # the last top-level statement leaves a value in global slot 0
    entry_symbol: str  # `void entry(void)` running the program


def compile_ir(source: Source, dtype: str = "f64", *, differentiate: bool = True,
               program: Any = None, optimize: bool = True) -> tuple[Any, bool]:
    """Source → (verified IR module, has_value), exactly as a fresh session compiles a cell with
    run_main=True. `differentiate=False` stops before autodiff and the passes; `optimize=False`
    skips the passes (constant folding, CSE, DCE: the test oracle runs the IR without them, so
    their mistakes show as disagreements with native code). Raises NomaError."""
    from noma.compiler.middle import autodiff, ir, irgen, passes
    from noma.compiler.front.budget import run_stage
    from noma.compiler.front.modules import expand, source_dir
    from noma.compiler.front.parse import parse
    from noma.compiler.front.symbols import SymbolTable
    from noma.rt.safetensors_header import read_ranks

    def front_end(program: Any) -> tuple[Any, bool]:
        if program is None:
            program = parse(source)
        symbols = SymbolTable()
        program = expand(program, symbols, source_dir(source))  # imported code is compiled in
        module, has_value = irgen.generate(program, symbols, dtype, read_ranks, run_main=True,
                                           cell_name=ENTRY)
        if differentiate:
            autodiff.differentiate(module)
            if optimize:
                passes.optimize_module(module)
        ir.verify(module)
        return module, has_value

    return run_stage(source, front_end, program)


def compile_program(source: Source, dtype: str = "f64", *, program: Any = None) -> CompiledProgram:
    """Source → one self-contained LLVM module (symbols `noma_<fn>`, entry `noma___main`)."""
    from noma.compiler.llvm import lower_llvm
    from noma.compiler.front.budget import run_stage

    module, has_value = compile_ir(source, dtype, program=program)
    names = {n: f"noma_{n}" for n in module.functions}
    text = run_stage(source, lower_llvm.lower_module, module, symbols=names, own_pointers=set(module.functions),
                     name=ENTRY)
    return CompiledProgram(module, text, has_value, names[ENTRY])


def emit_stage(source: Source, stage: str, dtype: str = "f64", function: Optional[str] = None) -> str:
    from noma.compiler.middle import ir
    from noma.compiler.front.parse import parse

    program = parse(source)
    if stage == "ast":
        from noma.compiler.front.budget import run_stage

        return run_stage(source, pprint.pformat, program, width=110) + "\n"
    if stage in ("ir", "grad"):
        module, _ = compile_ir(source, dtype, differentiate=stage == "grad", program=program)
        if function is not None:
            return ir.print_function(module, function)
        return ir.print_module(module)
    from noma.compiler.llvm import jit

    text = compile_program(source, dtype, program=program).llvm_text
    if stage == "llvm":
        return text
    if stage == "asm":
        return jit.emit_assembly(text, opt_level=2)
    raise ValueError(f"stage {stage!r} is binary or unknown: use emit_object for `obj`")


def emit_object(source: Source, dtype: str = "f64") -> bytes:
    """The program's native object file (entry `noma___main`; link it with the C runtime as
    `noma build` does)."""
    from noma.compiler.llvm import jit

    return jit.emit_object(compile_program(source, dtype).llvm_text, opt_level=2)
