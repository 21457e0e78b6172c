"""IR -> textual LLVM IR: the native backend's front half (jit.py compiles the text).

Owns: `lower_module` and the conventions every caller relies on:

* real = double (module.dtype "f64") or float ("f32"); a scalar is a real SSA value; a tensor
  is an SSA value of `%NomaTensor = type { ptr data, i64 rank, [4 x i64] dims }`, passed to the
  runtime through a scratch alloca of the entry block.
* IR function `f` becomes the external LLVM function `symbols[f]` taking reals / %NomaTensor by
  value and returning real / %NomaTensor / void; `__`-prefixed functions without params and
  result are `void ()` (entry points for noma_invoke).
* Every CALL is bracketed by noma_enter(call span) / noma_leave() (the recursion limit reports
  the call site).
* Every CALL loads the callee from the pointer global `@"noma.fp.<callee>"` (a `ptr`). For a
  callee in `own_pointers` this module defines the global, initialised to the callee's function;
  otherwise it declares it external (defined by an earlier module; the session may overwrite it
  with the address of a newer version).
* Control flow: IfOp -> branches + phis; WhileOp -> a loop with phis; OptimizeOp -> one native
  training loop (see training.lower_optimize).
* Tensor loads that could be overwritten while live (PARAM_LOAD / GLOBAL_LOAD in a scope that
  also writes params / globals or calls) are copied into the arena (analysis.loads_needing_copy).

The lowering is built by composition (docs/ARCHITECTURE.md): function.FunctionLowering lowers
one function through its collaborators (toolkit.Toolkit, inline_math, vector, kernels, linalg)
and the table function.LOWERINGS (Op -> handler in elementwise.py, ops.py, state.py);
training.py lowers training loops, analysis.py holds the IR analyses it reads, module.py the
module-level declarations; lower_llvm_chunks.py cuts long top-level code into chunk functions.
This module owns the driver: `lower_module`, `fn_pointer_name`.
Input: a verified ir.Module. Output: LLVM IR text. Imports: ir, analysis, basics, function,
module, llvmlite.ir (never llvmlite.binding, never noma.rt).
"""

from __future__ import annotations

import gc
from typing import Callable, Optional

from llvmlite import ir as ll

from noma.compiler.llvm.analysis import fusible, loads_needing_copy
from noma.compiler.llvm.basics import LoweringError
from noma.compiler.llvm.function import FunctionLowering
from noma.compiler.llvm.lower_llvm_chunks import plan_chunks
from noma.compiler.llvm.module import RUNTIME_SIGS, ModuleContext
from noma.compiler.middle import ir

__all__ = ["lower_module", "LoweringError", "fn_pointer_name"]


def fn_pointer_name(callee: str) -> str:
    """The symbol of the function-pointer global through which `callee` is called."""
    return f"noma.fp.{callee}"


def lower_module(module: ir.Module, *, symbols: dict[str, str], own_pointers: set[str],
                 name: str, shared: Optional[Callable[[str], bool]] = None) -> str:
    """Lower every function of `module` to LLVM IR text (see the module docstring). `shared(sym)`:
    whether an outlined loop kernel `sym` is defined by an earlier module (then it is declared).

    Python's cyclic garbage collector is paused while the llvmlite module is built and the
    module's objects (tens of thousands, in reference cycles) are collected as soon as the text
    exists, while they are still the young generation: left on, the collector promoted them into
    the old generation, where they waited for a full collection that then cost a later cell
    tens of milliseconds (the more so the more a session holds). The objects that were alive before
    (the IR module, the AST: as many again, all alive) are frozen meanwhile, so that collection
    walks only the lowering's own objects (walking the rest too cost a 1 MB source ~1 s), and
    then join the old generation, where objects that survive a compilation belong."""
    enabled = gc.isenabled()
    gc.disable()
    freeze = gc.get_freeze_count() == 0  # (not while an embedding application keeps objects frozen)
    if freeze:
        gc.freeze()
    try:
        text = _lower_module(module, symbols=symbols, own_pointers=own_pointers, name=name, shared=shared)
        gc.collect(0)
    finally:
        if freeze:
            gc.unfreeze()
        if enabled:
            gc.enable()
    return text


def _lower_module(module: ir.Module, *, symbols: dict[str, str], own_pointers: set[str],
                  name: str, shared: Optional[Callable[[str], bool]]) -> str:
    for fname, sym in symbols.items():
        if sym in RUNTIME_SIGS or sym.startswith("llvm."):
            raise LoweringError(f"symbol {sym!r} of function {fname!r} clashes with a runtime/LLVM name")
    mc = ModuleContext(name, module.dtype)
    mc.symbols = dict(symbols)
    mc.own_pointers = set(own_pointers)
    if shared is not None:
        mc.shared = shared
    for fname, sig in module.externs.items():
        mc.signatures[fname] = (tuple(sig[0]), sig[1])
    for fname, fn in module.functions.items():
        mc.signatures[fname] = (tuple(p.rank for p in fn.params), fn.result_rank)
    defined = {fname: mc.function(fname) for fname in sorted(module.functions)}
    for fname in sorted(own_pointers):
        mc.fn_pointer(fname)
    for fname in sorted(module.functions):
        _lower_function(mc, module.functions[fname], defined[fname])
    text = str(mc.module)
    _dismantle(mc.module)
    return text


def _dismantle(module: ll.Module) -> None:
    """Cut the reference cycles of a printed llvmlite module (an instruction and its block, a
    block and its function, a function and its module), so that reference counting frees its
    objects at once instead of the cyclic collector having to walk them."""
    for value in module.globals.values():
        for block in getattr(value, "blocks", ()):
            block.instructions.clear()
        if isinstance(value, ll.Function):
            value.blocks.clear()
    module.globals.clear()


def _lower_function(mc: ModuleContext, fn: ir.Function, llfn: ll.Function) -> None:
    llfn.attributes.add("nounwind")
    producers: dict[int, ir.Instr] = {}
    tensors = False  # any tensor-valued instruction (else nothing to copy or fuse: scalar code)
    for blk in ir.walk_blocks(fn.body):
        for ins in blk.ops:
            if isinstance(ins, ir.Instr) and ins.result is not None:
                producers[ins.result.id] = ins
                tensors = tensors or ins.result.rank > 0
    if tensors:
        fl = FunctionLowering(mc, llfn, loads_needing_copy(fn), fusible(fn), producers)
    else:
        fl = FunctionLowering(mc, llfn, set(), set(), producers)
    for p, arg in zip(fn.params, llfn.args):
        arg.name = f"p{p.id}"
        fl.vals[p.id] = arg
    chunks = plan_chunks(fn)
    for k, chunk in enumerate(chunks[:-1]):  # long straight-line code: see lower_llvm_chunks
        part = ll.Function(mc.module, ll.FunctionType(ll.VoidType(), []), f"{llfn.name}.part{k}")
        part.linkage = "internal"
        # straight-line scalar code (no loops to speed up) is not worth LLVM's optimisation
        for attr in ("nounwind", "noinline") + (("optnone",) if chunk.scalar else ()):
            part.attributes.add(attr)
        pl = FunctionLowering(mc, part, fl.copy_loads, fl.fused, fl.producers)
        pl.lower_ops(chunk.consts + fn.body.ops[chunk.start:chunk.end])
        pl.tk.b.ret_void()
        pl.tk.finish_entry()
        pl.vals.clear()  # (see _dismantle)
        fl.tk.b.call(part, [])
    last = chunks[-1]
    if len(chunks) > 1 and all(chunk.scalar for chunk in chunks):
        # only calls of the chunks and straight-line scalar code: nothing for LLVM to optimise,
        # and a module of such functions is compiled at -O0 (noma.compiler.llvm.jit)
        for attr in ("noinline", "optnone"):
            llfn.attributes.add(attr)
    fl.lower_ops(last.consts + fn.body.ops[last.start:last.end])
    ys = [fl.get(v) for v in fn.body.yields]
    if fn.result_rank is None:
        fl.tk.b.ret_void()
    else:
        if len(ys) != 1:
            raise LoweringError(f"{fn.name}: body yields {len(ys)} values for one result")
        fl.tk.b.ret(ys[0])
    fl.tk.finish_entry()
    fl.vals.clear()  # (see _dismantle)
