"""Refuses a training step whose gradient would have to cross a kept call through a global.

Owns: check_kept_calls(). globals_ssa turns the globals of a training step into SSA values, so
their gradient flows wherever calls are inlined, and passes the globals a kept call (a recursive
function) only reads as extra arguments. What is left is memory autodiff cannot follow: a global
such a call writes. Rather than leave a gradient silently out, the step is a located type error
when
* a kept call (or a function it calls) reads a global whose value at the call depends on the
  listed parameters (left only when the called functions also write that global); or
* it writes to a global a value that depends on the parameters, and the step reads that global
  again (after the call, or inside the called functions).
Dependence is a conservative forward analysis over the body and every function the kept calls
reach: a value depends on the parameters when it is computed from a listed PARAM_LOAD, from an
argument that depends on them, from the result of a call given such an argument or reaching
such a load, or from a global such a value was written to. Counters and other values computed
from constants pass.
Input: an optimize body after globals_ssa, its listed parameter slots, and the kept calls with
what globals_ssa knew at each. Imports: noma.compiler.middle.ir, noma.compiler.middle.rewrite, noma.diagnostics.
"""

from __future__ import annotations

from typing import Optional

from noma.compiler.middle import ir, rewrite
from noma.compiler.middle.ir import Block, Instr, Op, Value
from noma.diagnostics import Kind, error

#: A kept CALL and the values globals_ssa knew in each global slot just before it.
Site = tuple[Instr, dict[int, Value]]


def reachable(module: ir.Module, name: str) -> set[str]:
    """`name` and every function a call of it may run (callees missing from the module included)."""
    return {name} | rewrite.reachable_functions(module, name)


class _Dependence:
    """The fixpoint: values, function parameters and global slots that depend on the parameters."""

    def __init__(self, module: ir.Module, params: set[int]):
        self.module = module
        self.params = params
        self.values: set[int] = set()
        self.fn_params: dict[str, set[int]] = {}
        self.written: set[int] = set()  # slots a function wrote a dependent value to
        self.changed = True

    def _add(self, v: Optional[Value]) -> None:
        if v is not None and v.id not in self.values:
            self.values.add(v.id)
            self.changed = True

    def _reaches_params(self, callee: str) -> bool:
        return any(isinstance(op, Instr) and op.op is Op.PARAM_LOAD and op.attr("slot") in self.params
                   for n in reachable(self.module, callee) if n in self.module.functions
                   for b in ir.walk_blocks(self.module.functions[n].body) for op in b.ops)

    def block(self, block: Block, in_function: bool) -> None:
        for op in block.ops:
            if isinstance(op, Instr):
                self._instr(op, in_function)
            elif isinstance(op, ir.WhileOp):
                for k, v in enumerate(op.inits):  # run() repeats until the carried values settle
                    if v.id in self.values or op.body.yields[k].id in self.values:
                        for x in (op.cond.params[k], op.body.params[k], op.results[k]):
                            self._add(x)
                for child in (op.cond, op.body):
                    self.block(child, in_function)
            else:
                for child in ir.child_blocks(op):
                    self.block(child, in_function)
                if isinstance(op, ir.IfOp):
                    for r, a, b in zip(op.results, op.then.yields, op.else_.yields):
                        if a.id in self.values or b.id in self.values:
                            self._add(r)

    def _instr(self, ins: Instr, in_function: bool) -> None:
        dep_args = [i for i, a in enumerate(ins.args) if a.id in self.values]
        if ins.op is Op.PARAM_LOAD:
            if ins.attr("slot") in self.params:
                self._add(ins.result)
        elif ins.op is Op.GLOBAL_LOAD:
            if int(ins.attr("slot")) in self.written:
                self._add(ins.result)
        elif ins.op is Op.GLOBAL_STORE:
            if in_function and dep_args and int(ins.attr("slot")) not in self.written:
                self.written.add(int(ins.attr("slot")))
                self.changed = True
        elif ins.op is Op.CALL:
            callee = str(ins.attr("callee"))
            marked = self.fn_params.setdefault(callee, set())
            if not set(dep_args) <= marked:
                marked.update(dep_args)
                self.changed = True
            if dep_args or self._reaches_params(callee) or self._reads_written(callee):
                self._add(ins.result)
        elif dep_args:
            self._add(ins.result)

    def _reads_written(self, callee: str) -> bool:
        return bool(_slots(self.module, reachable(self.module, callee), Op.GLOBAL_LOAD) & self.written)

    def run(self, body: Block) -> None:
        while self.changed:
            self.changed = False
            self.block(body, in_function=False)
            for name, marked in list(self.fn_params.items()):
                fn = self.module.functions.get(name)
                if fn is None:
                    continue
                for i in marked:
                    self._add(fn.params[i])
                self.block(fn.body, in_function=True)


def _slots(module: ir.Module, names: set[str], kind: Op) -> set[int]:
    return {int(op.attr("slot")) for n in names if n in module.functions
            for b in ir.walk_blocks(module.functions[n].body) for op in b.ops
            if isinstance(op, Instr) and op.op is kind}


def _name(module: ir.Module, slot: int) -> str:
    for fn in module.functions.values():
        for b in ir.walk_blocks(fn.body):
            for op in b.ops:
                if isinstance(op, Instr) and op.op in (Op.GLOBAL_LOAD, Op.GLOBAL_STORE) and op.attr("slot") == slot:
                    return str(op.attr("name"))
    return f"#{slot}"


def check_kept_calls(module: ir.Module, body: Block, params: set[int], sites: list[Site]) -> None:
    """Raise a located type error where a gradient would cross a kept call through a global."""
    if not sites:
        return
    dep = _Dependence(module, params)
    dep.run(body)
    body_loads = {int(op.attr("slot")) for b in ir.walk_blocks(body) for op in b.ops
                  if isinstance(op, Instr) and op.op is Op.GLOBAL_LOAD}
    for call, known in sites:
        callee = str(call.attr("callee"))
        reached = reachable(module, callee)
        reads = _slots(module, reached, Op.GLOBAL_LOAD)
        shown = callee.split(".", 1)[0]
        where = module.spans[call.span] if 0 <= call.span < len(module.spans) else None
        for slot in sorted(reads):
            name = _name(module, slot)
            if slot in dep.written:
                raise error(Kind.TYPE, f"the recursive function `{shown}` assigns the global `{name}` a value that "
                            "depends on the parameters and reads it back: the gradient cannot flow through a "
                            "global that a recursive function assigns", where,
                            f"pass the value to `{shown}` as an argument and return the new value")
            if slot in known and known[slot].id in dep.values:
                raise error(Kind.TYPE, f"the recursive function `{shown}` reads and assigns the global `{name}`, "
                            "which this training step computes from the parameters: the gradient cannot flow "
                            "through a global that a recursive function assigns", where,
                            f"pass `{name}` to `{shown}` as an argument and return the new value")
        for slot in sorted(_slots(module, reached, Op.GLOBAL_STORE) & dep.written & body_loads):
            name = _name(module, slot)
            raise error(Kind.TYPE, f"the recursive function `{shown}` assigns the global `{name}` a value that "
                        "depends on the parameters, and this training step reads it: the gradient cannot flow "
                        "out of a recursive function through a global", where,
                        f"return the value from `{shown}` instead")
