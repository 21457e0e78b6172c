"""`noma emit`: any compiler stage of a program as text.

Owns: printing the AST, IR, gradient IR, LLVM IR, assembly or object code of a program.
Imports: compiler stages, noma.session (for the symbol planning the JIT uses).
"""

from __future__ import annotations

import pprint
from typing import Optional

from noma.diagnostics import Source


def emit_stage(source: Source, stage: str, dtype: str = "f64", function: Optional[str] = None) -> str:
    from noma.compiler import autodiff, ir, irgen, passes
    from noma.compiler.parse import parse
    from noma.compiler.symbols import SymbolTable
    from noma.rt.safetensors_header import read_ranks

    program = parse(source)
    if stage == "ast":
        return pprint.pformat(program, width=110) + "\n"
    module, _ = irgen.generate(program, SymbolTable(), dtype, read_ranks, run_main=True, cell_name="__main")
    if stage != "ir":
        autodiff.differentiate(module)
        passes.optimize_module(module)
    ir.verify(module)
    if stage in ("ir", "grad"):
        if function is not None:
            return ir.print_function(module, function)
        return ir.print_module(module)
    from noma.compiler import jit, lower_llvm

    names = {n: f"noma_{n}" for n in module.functions}
    text = lower_llvm.lower_module(module, symbols=names, own_pointers=set(module.functions), name="__main")
    if stage == "llvm":
        return text
    if stage == "asm":
        return jit.emit_assembly(text, opt_level=2)
    data = jit.emit_object(text, opt_level=2)
    return f"; object file: {len(data)} bytes (use `noma build` to link an executable)\n"
