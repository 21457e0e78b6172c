"""`noma emit`: any compiler stage of a program as text; the whole-program compile `noma build` uses.

Owns: `compile_ir` / `compile_program` (a whole program as one module: noma.compiler.pipeline with
run_main=True, as a fresh session compiles it, lowered with plain `noma_<fn>` symbols and every
function-pointer global defined in the module) and printing the AST, IR, gradient IR, LLVM IR,
assembly of a program, or its object file as bytes.
Imports: noma.compiler.pipeline, noma.compiler.llvm.jit (assembly and object code),
noma.rt.safetensors_header (compile-time header reading).
"""

from __future__ import annotations

import pprint
from typing import Any, Optional

from noma.compiler import pipeline
from noma.diagnostics import Diagnostic, Kind, NomaError, Source

#: Name of the whole program's entry function; its LLVM symbol is `noma___main`.
ENTRY = "__main"


def compile_ir(source: Source, dtype: str = "f64", *, differentiate: bool = True,
               program: Any = None, optimize: bool = True) -> tuple[Any, bool]:
    """Source → (verified IR module, has_value), exactly as a fresh session compiles a cell with
    run_main=True. `differentiate=False` stops before autodiff and the passes; `optimize=False`
    skips the passes (constant folding, CSE, DCE: the test oracle runs the IR without them, so
    their mistakes show as disagreements with native code). Raises NomaError."""
    art = compile_program(source, dtype, program=program, stop="grad" if differentiate else "ir",
                          optimize=optimize)
    return art.module, art.has_value


def compile_program(source: Source, dtype: str = "f64", *, program: Any = None, stop: pipeline.Stage = "llvm",
                    optimize: bool = True, keep_ir: bool = False) -> pipeline.Artifacts:
    """Source (or its AST) → the pipeline's artifacts of the whole program up to `stop`: one
    self-contained LLVM module (symbols `noma_<fn>`, entry `noma___main`: `linkage.symbols[ENTRY]`)."""
    from noma.compiler.front.symbols import SymbolTable
    from noma.rt.safetensors_header import read_ranks

    return pipeline.compile(source, SymbolTable(), dtype=dtype, read_header=read_ranks, run_main=True,
                            cell=ENTRY, program=program, stop=stop, optimize=optimize, keep_ir=keep_ir)


def emit_stage(source: Source, stage: str, dtype: str = "f64", function: Optional[str] = None) -> str:
    from noma.compiler.middle import ir

    if stage == "ast":
        from noma.compiler.front.budget import run_stage

        program = compile_program(source, dtype, stop="ast").program
        return run_stage(source, pprint.pformat, program, width=110) + "\n"
    if stage in ("ir", "grad"):
        art = compile_program(source, dtype, stop="grad" if stage == "grad" else "ir")
        assert art.module is not None
        if function is None:
            return ir.print_module(art.module)
        chosen = art.functions("grad", function)  # `f`: its specialisations (`f.s`, `f.t2`, ...)
        if not chosen:
            known = ", ".join(n for n in art.functions("grad") if n != ENTRY) or "none"
            raise NomaError(Diagnostic(Kind.NAME, f"--function {function}: the program has no compiled function "
                                       f"of that name (its functions: {known}; a function is compiled "
                                       "for the argument ranks it is called with)"))
        return "\n".join(ir.print_function(art.module, n) for n in chosen)
    if stage not in ("llvm", "asm"):
        raise ValueError(f"stage {stage!r} is binary or unknown: use emit_object for `obj`")
    text = compile_program(source, dtype).llvm_text
    assert text is not None
    if stage == "llvm":
        return text
    from noma.compiler.llvm import jit

    return jit.emit_assembly(text, opt_level=2)


def emit_object(source: Source, dtype: str = "f64") -> bytes:
    """The program's native object file (entry `noma___main`; link it with the C runtime as
    `noma build` does)."""
    from noma.compiler.llvm import jit

    text = compile_program(source, dtype).llvm_text
    assert text is not None
    return jit.emit_object(text, opt_level=2)
