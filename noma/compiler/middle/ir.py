"""NOMA's intermediate representation: structured SSA over immutable scalars and tensors.

Owns: values (the op vocabulary, Op and result_rank, is in ops.py and re-exported here),
instructions, structured regions (If, While, Optimize), functions and modules; the builder;
verify(); the deterministic printer.
Input: built by irgen, rewritten by autodiff and passes. Output: read by interp and lower_llvm.
Imports: the standard library, ops (the op vocabulary, re-exported here) and ir_ranks (the result
ranks verify expects).

Model
-----
* A Value has a static rank (0 = scalar, 1..4 = dense row-major tensor); dimensions are known
  only at run time. All values are immutable; every op produces a fresh value (lowering may
  alias for RESHAPE, SLICE and INDEX since nothing is ever written in place).
* Elementwise ops broadcast like NumPy (rank-0 operands are scalars); the result rank is the
  largest operand rank. Shape mismatches are run-time shape errors at the op's span.
* Control flow is structured: IfOp, WhileOp and OptimizeOp hold Blocks. A Block has parameters
  (for loop-carried values), a list of operations and the values it yields. A block may use any
  value defined before it in an enclosing block (lexical dominance).
* Scalars are the module's dtype (f64 or f32); booleans are 1.0/0.0; integers (indices, dims)
  are reals converted by truncation toward zero where used.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Optional, Union

#: The op vocabulary lives in ops.py; ir re-exports it (`ir.Op`, `ir.ELEMENTWISE`, ...).
from noma.compiler.middle.ops import (  # noqa: F401  (re-exported)
    BINARY_ELEMENTWISE,
    CHECK_RULES,
    CHECK_WARNS,
    EFFECTFUL,
    ELEMENTWISE,
    HYPER_LEN,
    HYPER_NAMES,
    INT_RANGES,
    OPTIMIZERS,
    POLICIES,
    READS_STATE,
    UNARY_ELEMENTWISE,
    Op,
    RankError,
    cast_fits,
    check_passes,
    result_rank,
)
from noma.compiler.middle.ir_ranks import expected_rank


@dataclass(frozen=True, eq=False)
class Value:
    """An SSA value: `%id` of a rank (0 scalar, 1..4 tensor)."""

    id: int
    rank: int

    def __repr__(self) -> str:
        return f"%{self.id}"

    def __hash__(self) -> int:
        return self.id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Value) and other.id == self.id


def _freeze(attrs: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    if not attrs:
        return ()
    return tuple(sorted(attrs.items())) if len(attrs) > 1 else tuple(attrs.items())


@dataclass(frozen=True, eq=False)
class Instr:
    """`%r = op %a, %b {attrs}` — one operation with at most one result."""

    op: Op
    args: tuple[Value, ...]
    result: Optional[Value]
    attrs: tuple[tuple[str, Any], ...] = ()
    span: int = -1

    def attr(self, name: str, default: Any = None) -> Any:
        for key, value in self.attrs:
            if key == name:
                return value
        return default


@dataclass(eq=False)
class Block:
    """`^(%params) { ops; yield %values }`"""

    params: list[Value] = field(default_factory=list)
    ops: list["Operation"] = field(default_factory=list)
    yields: list[Value] = field(default_factory=list)


@dataclass(eq=False)
class IfOp:
    """`%results = if %cond { then } else { else_ }` — both blocks yield values of the results' ranks."""

    cond: Value
    then: Block
    else_: Block
    results: list[Value]
    span: int = -1


@dataclass(eq=False)
class WhileOp:
    """`%results = while(%inits) cond { ^(%c..) yield %flag } body { ^(%c..) yield %next.. }`"""

    inits: list[Value]
    cond: Block
    body: Block
    results: list[Value]
    span: int = -1
    #: As OptimizeOp.carry_slots: when given (one entry per init), a loop outside any training
    #: loop releases the arena after every iteration, keeping carried tensors in these slots.
    carry_slots: list[Optional[tuple[int, int]]] = field(default_factory=list)


@dataclass(frozen=True)
class ParamRef:
    """A parameter listed in `optimize(...)`: store slot, name and rank."""

    slot: int
    name: str
    rank: int


@dataclass(eq=False)
class OptimizeOp:
    """A whole training loop, lowered to one native loop.

    Each step k: run `body` (params = carried values; yields loss, stop, *next carried); log the
    loss (advancing the global step); if stop != 0 or the interrupt flag is set, leave; else run
    `grad` (after autodiff: may use body's values; yields one gradient per parameter, each of its
    parameter's rank) and apply the optimizer step to every parameter, then apply deferred resizes.
    After `max_iter` steps the loop ends with a warning. Results: the last loss, then the final
    carried values. `hyper` holds HYPER_LEN scalars (NaN = the optimizer's default).
    """

    params: list[ParamRef]
    optimizer: int
    hyper: list[Value]
    max_iter: Value
    inits: list[Value]
    body: Block
    results: list[Value]
    grad: Optional[Block] = None
    until_text: str = ""
    span: int = -1
    #: For each carried value (same order as inits): None for scalars; for tensors, two global
    #: slots used alternately (even/odd steps) to keep the value alive across the per-step arena
    #: release (lowering stores the step's value with noma_global_store and reloads it).
    carry_slots: list[Optional[tuple[int, int]]] = field(default_factory=list)
    #: The global slot the loss is bound to after the loop (a top-level `minimize loss` of a cell),
    #: else -1: the runtime stores the last computed loss there when the loop is interrupted or fails.
    result_slot: int = -1


Operation = Union[Instr, IfOp, WhileOp, OptimizeOp]


@dataclass(eq=False)
class Function:
    """`fn name(%params) -> rank { body }`; body yields [result] or []."""

    name: str
    params: list[Value]
    body: Block
    result_rank: Optional[int]
    span: int = -1


@dataclass(eq=False)
class Module:
    """A compilation unit: functions, the span table for diagnostics, and the dtype."""

    functions: dict[str, Function] = field(default_factory=dict)
    spans: list[Any] = field(default_factory=list)  # noma.diagnostics.Span per span id
    dtype: str = "f64"
    entry: Optional[str] = None
    #: callee name -> (param ranks, result rank) of functions defined in other modules.
    externs: dict[str, tuple[tuple[int, ...], Optional[int]]] = field(default_factory=dict)
    #: compile-time warnings: (span id, message, note); front ends show them, executables print them
    warnings: list[tuple[int, str, Optional[str]]] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count())

    def new_value(self, rank: int) -> Value:
        return Value(next(self._ids), rank)

    def add_span(self, span: Any) -> int:
        self.spans.append(span)
        return len(self.spans) - 1


# ----------------------------------------------------------------------------- result ranks


# ----------------------------------------------------------------------------- builder


_CONST = Op.CONST  # `Op.CONST` is a slow lookup (~0.1 us: EnumType.__getattr__, Python 3.11)


class Builder:
    """Appends operations to a current block of a module."""

    def __init__(self, module: Module, block: Block):
        self.module = module
        self.block = block

    def emit(self, op: Op, args: tuple[Value, ...] = (), span: int = -1, **attrs: Any) -> Optional[Value]:
        args = tuple(args)
        rank = result_rank(op, tuple([a.rank for a in args]), attrs)
        result = None if rank is None else self.module.new_value(rank)
        self.block.ops.append(Instr(op, args, result, _freeze(attrs), span))
        return result

    def const(self, value: float, span: int = -1) -> Value:
        # what emit(Op.CONST, (), span, value=float(value)) makes, without its generic steps
        v = self.module.new_value(0)
        self.block.ops.append(Instr(_CONST, (), v, (("value", float(value)),), span))
        return v

    def value(self, op: Op, *args: Value, span: int = -1, **attrs: Any) -> Value:
        """Emit an op that has a result and return it."""
        rank = result_rank(op, tuple([a.rank for a in args]), attrs)
        v = None if rank is None else self.module.new_value(rank)
        self.block.ops.append(Instr(op, args, v, _freeze(attrs), span))
        assert v is not None, op
        return v


# ----------------------------------------------------------------------------- traversal


def walk_blocks(block: Block) -> Iterator[Block]:
    """block and every block nested in it, outermost first (pre-order, blocks in program order).
    An explicit stack, not nested generators: those cost each block its depth in frames, which
    made deeply nested IR (a function of many early returns) quadratic to walk."""
    stack = [block]
    while stack:
        current = stack.pop()
        yield current
        inner = [b for op in current.ops if op.__class__ is not Instr for b in child_blocks(op)]
        stack.extend(reversed(inner))


def walk_regions(block: Block) -> Iterator[Operation]:
    """The region operations (if, while, optimize) of block and of every block nested in it:
    blocks in walk_blocks' order, each block's regions in program order. One look at each
    operation (finding the OptimizeOps of a module walked every instruction twice)."""
    stack = [block]
    while stack:
        regions = [op for op in stack.pop().ops if op.__class__ is not Instr]
        yield from regions
        stack.extend(reversed([b for op in regions for b in child_blocks(op)]))


def child_blocks(op: Operation) -> list[Block]:
    if op.__class__ is Instr:  # most operations (the passes ask for every one)
        return []
    if isinstance(op, IfOp):
        return [op.then, op.else_]
    if isinstance(op, WhileOp):
        return [op.cond, op.body]
    if isinstance(op, OptimizeOp):
        return [op.body] + ([op.grad] if op.grad is not None else [])
    return []


def operands(op: Operation) -> list[Value]:
    """Values an operation reads directly (not those read inside its blocks)."""
    if isinstance(op, Instr):
        return list(op.args)
    if isinstance(op, IfOp):
        return [op.cond]
    if isinstance(op, WhileOp):
        return list(op.inits)
    return list(op.hyper) + [op.max_iter] + list(op.inits)


def results(op: Operation) -> list[Value]:
    if isinstance(op, Instr):
        return [op.result] if op.result is not None else []
    return list(op.results)


# ----------------------------------------------------------------------------- verifier


class VerifyError(Exception):
    """The IR breaks an invariant (always a compiler bug, never a user error)."""


def verify(module: Module) -> None:
    """Check SSA form, lexical dominance, block arities and op rank rules."""
    for fn in module.functions.values():
        defined: set[int] = {p.id for p in fn.params}
        _verify_block(fn.body, defined, module, fn.name)
        if fn.result_rank is None and fn.body.yields:
            raise VerifyError(f"{fn.name}: yields a value but has no result")


def _verify_block(block: Block, defined: set[int], module: Module, where: str) -> None:
    """Check block with `defined` (the values that dominate it) grown in place while it is walked
    and restored when it is done: a scope, not a copy per nested block (copies made IR with many
    nested blocks quadratic to verify)."""
    mark = len(defined)
    added: list[int] = []
    try:
        for p in block.params:
            _define(p, defined, where)
            added.append(p.id)
        for op in block.ops:
            if isinstance(op, Instr):  # most operations: checked here, without a call per check
                args = op.args
                for v in args:
                    if v.id not in defined:
                        raise VerifyError(f"{where}: {v} used before definition in {op}")
                code, result = op.op, op.result
                ranks = tuple([a.rank for a in args]) if args else ()
                expected = expected_rank(code, ranks, op.attrs)
                got = None if result is None else result.rank
                if expected != got:
                    raise VerifyError(f"{where}: {code.value} result rank {got}, expected {expected}")
                if result is not None:
                    if (rid := result.id) in defined:
                        raise VerifyError(f"{where}: {result} defined twice")
                    defined.add(rid)
                    added.append(rid)
                continue
            for v in operands(op):
                if v.id not in defined:
                    raise VerifyError(f"{where}: {v} used before definition in {op}")
            _verify_op(op, defined, module, where)
            for r in results(op):
                _define(r, defined, where)
                added.append(r.id)
        for v in block.yields:
            if v.id not in defined:
                raise VerifyError(f"{where}: yield of undefined {v}")
    finally:
        defined.difference_update(added)
    assert len(defined) == mark


def _define(v: Value, defined: set[int], where: str) -> None:
    if v.id in defined:
        raise VerifyError(f"{where}: {v} defined twice")
    defined.add(v.id)


def _verify_op(op: Operation, defined: set[int], module: Module, where: str) -> None:
    """Check a region operation (its blocks, with `defined` the values that dominate it)."""
    if isinstance(op, IfOp):
        for b in (op.then, op.else_):
            _verify_block(b, defined, module, where)
            if [v.rank for v in b.yields] != [v.rank for v in op.results]:
                raise VerifyError(f"{where}: if-branch yields do not match results")
        return
    if isinstance(op, WhileOp):
        ranks = [v.rank for v in op.inits]
        for b in (op.cond, op.body):
            if [p.rank for p in b.params] != ranks:
                raise VerifyError(f"{where}: while block params do not match inits")
            _verify_block(b, defined, module, where)
        if len(op.cond.yields) != 1 or [v.rank for v in op.body.yields] != ranks:
            raise VerifyError(f"{where}: while yields malformed")
        return
    assert isinstance(op, OptimizeOp)
    ranks = [v.rank for v in op.inits]
    if [p.rank for p in op.body.params] != ranks:
        raise VerifyError(f"{where}: optimize body params do not match inits")
    _verify_block(op.body, defined, module, where)
    if [v.rank for v in op.body.yields[2:]] != ranks or len(op.body.yields) != 2 + len(ranks):
        raise VerifyError(f"{where}: optimize body yields malformed")
    if op.grad is not None:
        body = _all_defined(op.body) - defined  # the gradient also sees the body's top level
        defined |= body
        try:
            _verify_block(op.grad, defined, module, where)
        finally:
            defined -= body
        if [v.rank for v in op.grad.yields] != [p.rank for p in op.params]:
            raise VerifyError(f"{where}: gradient ranks do not match parameters")


def _all_defined(block: Block) -> set[int]:
    """Ids defined at the top level of block (params and op results)."""
    out = {p.id for p in block.params}
    for op in block.ops:
        out.update(r.id for r in results(op))
    return out


# ----------------------------------------------------------------------------- printer


def _rank_name(rank: Optional[int]) -> str:
    return "s" if rank == 0 else f"t{rank}"


def _fmt_attr(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bytes):  # CONST_TENSOR data: its first values and how many there are
        count = len(value) // 8
        shown = struct.unpack(f"<{min(count, 8)}d", value[:64])
        return "f64[" + ", ".join(repr(v) for v in shown) + (", ..." if count > 8 else "") + f"] ({count})"
    if isinstance(value, tuple):
        return "[" + ", ".join(_fmt_attr(v) for v in value) + "]"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return repr(value)


class _Printer:
    def __init__(self, module: Module):
        self.module = module
        self.lines: list[str] = []

    def loc(self, span: int) -> str:
        if 0 <= span < len(self.module.spans):
            s = self.module.spans[span]
            return f"  @{s.line}:{s.column}"
        return ""

    def vals(self, values: list[Value]) -> str:
        return ", ".join(f"{v}" for v in values)

    def typed(self, values: list[Value]) -> str:
        return ", ".join(f"{v}: {_rank_name(v.rank)}" for v in values)

    def block(self, block: Block, indent: int) -> None:
        pad = "  " * indent
        for op in block.ops:
            self.op(op, indent)
        self.lines.append(f"{pad}yield {self.vals(block.yields)}".rstrip())

    def op(self, op: Operation, indent: int) -> None:
        pad = "  " * indent
        if isinstance(op, Instr):
            lhs = f"{op.result}: {_rank_name(op.result.rank)} = " if op.result is not None else ""
            attrs = " ".join(f"{k}={_fmt_attr(v)}" for k, v in op.attrs if k != "result_rank")
            args = self.vals(list(op.args))
            text = " ".join(x for x in (op.op.value, args, "{" + attrs + "}" if attrs else "") if x)
            self.lines.append(f"{pad}{lhs}{text}{self.loc(op.span)}")
            return
        res = self.typed(op.results)
        lhs = f"{res} = " if res else ""
        if isinstance(op, IfOp):
            self.lines.append(f"{pad}{lhs}if {op.cond} {{{self.loc(op.span)}")
            self.block(op.then, indent + 1)
            self.lines.append(f"{pad}}} else {{")
            self.block(op.else_, indent + 1)
            self.lines.append(f"{pad}}}")
        elif isinstance(op, WhileOp):
            head = f"{pad}{lhs}while ({self.vals(op.inits)}) cond ^({self.typed(op.cond.params)})"
            self.lines.append(f"{head} {{{self.loc(op.span)}")
            self.block(op.cond, indent + 1)
            self.lines.append(f"{pad}}} body ^({self.typed(op.body.params)}) {{")
            self.block(op.body, indent + 1)
            self.lines.append(f"{pad}}}")
        else:
            params = ", ".join(f"{p.name}#{p.slot}" for p in op.params)
            kind = {v: k for k, v in OPTIMIZERS.items()}.get(op.optimizer, "?")
            hyper = self.vals(op.hyper)
            self.lines.append(
                f"{pad}{lhs}optimize({params}) with {kind}({hyper}) max {op.max_iter} "
                f"carry ({self.vals(op.inits)}) body ^({self.typed(op.body.params)}) {{{self.loc(op.span)}"
            )
            self.block(op.body, indent + 1)
            if op.grad is not None:
                self.lines.append(f"{pad}}} grad {{")
                self.block(op.grad, indent + 1)
            self.lines.append(f"{pad}}}")

    def function(self, fn: Function) -> None:
        ret = "" if fn.result_rank is None else f" -> {_rank_name(fn.result_rank)}"
        self.lines.append(f"fn {fn.name}({self.typed(fn.params)}){ret} {{")
        self.block(fn.body, 1)
        self.lines.append("}")


def print_module(module: Module) -> str:
    """Deterministic text of every function, in name order."""
    printer = _Printer(module)
    for name in sorted(module.functions):
        printer.function(module.functions[name])
        printer.lines.append("")
    return "\n".join(printer.lines).rstrip() + "\n"


def snapshot(module: Module) -> Module:
    """A copy of the module's structure that later stages' in-place rewrites leave unchanged:
    new functions, blocks, region operations and lists; the instructions (which no stage changes
    in place: they are replaced), the values and the span table are shared. What `print_function`
    of the copy prints is the module as it was (a walk, far cheaper than printing it now)."""
    def block(b: Block) -> Block:
        return Block(list(b.params), [op if isinstance(op, Instr) else region(op) for op in b.ops], list(b.yields))

    def region(op: Operation) -> Operation:
        if isinstance(op, IfOp):
            return replace(op, then=block(op.then), else_=block(op.else_), results=list(op.results))
        if isinstance(op, WhileOp):
            return replace(op, inits=list(op.inits), cond=block(op.cond), body=block(op.body),
                           results=list(op.results), carry_slots=list(op.carry_slots))
        assert isinstance(op, OptimizeOp)
        return replace(op, params=list(op.params), hyper=list(op.hyper), inits=list(op.inits), body=block(op.body),
                       results=list(op.results), grad=None if op.grad is None else block(op.grad),
                       carry_slots=list(op.carry_slots))

    functions = {name: replace(fn, params=list(fn.params), body=block(fn.body))
                 for name, fn in module.functions.items()}
    return replace(module, functions=functions)


def print_function(module: Module, name: str) -> str:
    printer = _Printer(module)
    printer.function(module.functions[name])
    return "\n".join(printer.lines) + "\n"
