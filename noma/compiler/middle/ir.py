"""NOMA's intermediate representation: structured SSA over immutable scalars and tensors.

Owns: the Op enum with each op's operand/attribute contract and result rank, values,
instructions, structured regions (If, While, Optimize), functions and modules; the builder;
verify(); the deterministic printer.
Input: built by irgen, rewritten by autodiff and passes. Output: read by interp and lower_llvm.
Imports: only the standard library.

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
import math
import struct
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Iterator, Optional, Union


class Op(Enum):
    """Every IR operation. Operand order and attributes are documented per group."""

    # --- creation
    CONST = "const"            # () attrs value:float -> scalar
    PACK = "pack"              # (*scalars) attrs shape:tuple[int] -> tensor of that literal shape
    CONST_TENSOR = "const_tensor"  # () attrs shape:tuple[int], data:bytes (f64 LE, row-major) -> tensor
    FILL = "fill"              # (value, *dims) -> tensor rank len(dims) filled with value
    RANDOM = "random"          # (a, b, *dims) attrs kind:"uniform"|"normal" -> tensor (seeded RNG)
    RAND_SCALAR = "rand_scalar"  # (a, b) attrs kind -> scalar
    # --- elementwise unary (rank preserved)
    NEG = "neg"
    EXP = "exp"
    LOG = "log"
    SQRT = "sqrt"
    SIN = "sin"
    COS = "cos"
    TAN = "tan"
    TANH = "tanh"
    SIGMOID = "sigmoid"
    RELU = "relu"
    ABS = "abs"
    SIGN = "sign"              # -1, 0, 1
    FLOOR = "floor"
    CEIL = "ceil"
    NOT = "not"                # x == 0 ? 1 : 0
    CAST = "cast"              # attrs to:"f64"|"f32"|"i32"|"i64" (value stays real: rounding/truncation)
    STOP_GRAD = "stop_grad"    # identity whose derivative is zero
    # --- elementwise binary (NumPy broadcasting)
    ADD = "add"
    SUB = "sub"
    MUL = "mul"
    DIV = "div"
    POW = "pow"
    MOD = "mod"                # C fmod
    MIN = "min"
    MAX = "max"
    LT = "lt"
    LE = "le"
    GT = "gt"
    GE = "ge"
    EQ = "eq"
    NE = "ne"
    AND = "and"
    OR = "or"
    # --- elementwise ternary
    SELECT = "select"          # (c, a, b) -> where(c != 0, a, b), broadcast over all three
    # --- reductions
    SUM = "sum"                # (x) attrs axis:Optional[int] (None = all -> scalar), keepdims:bool
    MAX_R = "max_r"            # same attrs as SUM
    MIN_R = "min_r"            # same attrs as SUM
    ARGMAX = "argmax"          # (x) along the last axis; rank r -> r-1
    SUM_TO = "sum_to"          # (x, like) sum x over broadcast axes down to like's shape -> rank(like)
    BROADCAST_TO = "broadcast_to"  # (x, like) expand x to like's shape -> rank(like)
    # --- linear algebra and shape
    MATMUL = "matmul"          # (a, b) rank 2 x rank 2 attrs ta:bool, tb:bool -> rank 2
    TRANSPOSE = "transpose"    # (x) rank 2 -> rank 2
    RESHAPE = "reshape"        # (x, *dims) -> rank len(dims); element counts must match
    RESHAPE_LIKE = "reshape_like"  # (x, like) -> like's shape (same element count)
    CONCAT = "concat"          # (a, b) along axis 0, same rank >= 1
    SLICE = "slice"            # (x, start, end) rows [start, end) of axis 0 -> rank(x)
    SLICE_GRAD = "slice_grad"  # (g, like, start) zeros like `like` with rows start.. = g
    INDEX = "index"            # (x, i) x[i] along axis 0 -> rank(x) - 1; bounds-checked
    INDEX_GRAD = "index_grad"  # (g, like, i) zeros like `like` with [i] = g
    ONE_HOT = "one_hot"        # (idx, n) idx rank 0 or 1 -> rank(idx) + 1
    DIM = "dim"                # (x) attrs axis:int -> scalar size of that axis
    SHAPE = "shape"            # (x) -> rank-1 tensor of x's dims
    ZEROS_LIKE = "zeros_like"  # (x) -> zeros of x's shape
    CHECK = "check"            # (x) attrs rule:str -> x unchanged; a runtime error at its span
    #                            unless scalar x obeys the rule (CHECK_RULES)
    # --- convolution and pooling (NCHW; stride, padding and window are scalars: whole numbers)
    CONV2D = "conv2d"          # (x [N,C,H,W], w [O,C,KH,KW], stride, pad) -> [N,O,OH,OW]
    CONV2D_GRAD_X = "conv2d_grad_x"  # (g, x, w, stride, pad) -> like x: the VJP of CONV2D for x
    CONV2D_GRAD_W = "conv2d_grad_w"  # (g, x, w, stride, pad) -> like w: the VJP of CONV2D for w
    POOL2D = "pool2d"          # (x, k, stride) attrs kind:"max"|"avg" -> [N,C,OH,OW] (no padding)
    POOL2D_GRAD = "pool2d_grad"  # (g, x, k, stride) attrs kind -> like x
    ARGSORT = "argsort"        # (x) rank 1 -> rank 1: indices that sort x ascending (stable)
    TOPK = "topk"              # (x, k) rank 1 -> rank 1: indices of the k largest, largest first
    # --- session / program state (side effects; never differentiated)
    PARAM_LOAD = "param_load"  # () attrs slot:int, name:str -> rank of the parameter
    PARAM_SET = "param_set"    # (v) attrs slot, name  (learn / alloc; clears optimizer state)
    PARAM_FREE = "param_free"  # () attrs slot, name
    PARAM_BIND_DIM = "param_bind_dim"  # () attrs slot, axis:int, dim:int
    PARAM_RESIZE = "param_resize"  # (a, b, *dims) attrs slot, name, policy:int
    DIM_LOAD = "dim_load"      # () attrs dim:int, name:str -> scalar
    DIM_SET = "dim_set"        # (v) attrs dim, name
    DIM_RESIZE = "dim_resize"  # (size, a, b) attrs dim, name, policy:int
    PARAM_KEEP = "param_keep"  # (idx) attrs slot, name, axis:int: keep units idx along one axis
    DIM_KEEP = "dim_keep"      # (idx) attrs dim, name: keep units idx along every axis bound to the dim
    GLOBAL_LOAD = "global_load"    # () attrs slot:int, name:str -> rank recorded at compile time
    GLOBAL_STORE = "global_store"  # (v) attrs slot, name
    SEED = "seed"              # (v)
    PRINT = "print"            # (*vals) attrs parts:tuple[Optional[str]] (None = next operand)
    REPORT = "report"          # (v) attrs name:str (a named metric at the current global step)
    LOAD_CSV = "load_csv"      # () attrs path:str -> rank 2
    SAVE_CSV = "save_csv"      # (v) attrs path
    LOAD_ST = "load_st"        # () attrs path, name, rank -> tensor
    LOAD_ST_GLOBALS = "load_st_globals"  # () attrs path, names, ranks, slots: every tensor to its global slot
    SAVE_ST = "save_st"        # (*vals) attrs path, names:tuple[str]
    OPT_RESET = "opt_reset"    # ()
    SAVE_CKPT = "save_checkpoint"  # () attrs path: the whole training state (runtime checkpoint)
    LOAD_CKPT = "load_checkpoint"  # () attrs path: replaces params, optimizer state, dims, log, RNG
    CALL = "call"              # (*args) attrs callee:str -> result rank of the callee (or none)
    # --- reverse-mode support (emitted by autodiff)
    TAPE_PUSH = "tape_push"    # (v)
    TAPE_POP = "tape_pop"      # () attrs rank -> value (LIFO)


UNARY_ELEMENTWISE = frozenset({
    Op.NEG, Op.EXP, Op.LOG, Op.SQRT, Op.SIN, Op.COS, Op.TAN, Op.TANH, Op.SIGMOID, Op.RELU,
    Op.ABS, Op.SIGN, Op.FLOOR, Op.CEIL, Op.NOT, Op.CAST, Op.STOP_GRAD,
})
BINARY_ELEMENTWISE = frozenset({
    Op.ADD, Op.SUB, Op.MUL, Op.DIV, Op.POW, Op.MOD, Op.MIN, Op.MAX, Op.LT, Op.LE, Op.GT,
    Op.GE, Op.EQ, Op.NE, Op.AND, Op.OR,
})
ELEMENTWISE = UNARY_ELEMENTWISE | BINARY_ELEMENTWISE | {Op.SELECT}
#: Ops with effects on the session/program state or the outside world: never removed or reordered.
EFFECTFUL = frozenset({
    Op.PARAM_SET, Op.PARAM_FREE, Op.PARAM_BIND_DIM, Op.PARAM_RESIZE, Op.DIM_SET, Op.DIM_RESIZE,
    Op.PARAM_KEEP, Op.DIM_KEEP,
    Op.GLOBAL_STORE, Op.SEED, Op.PRINT, Op.REPORT, Op.SAVE_CSV, Op.SAVE_ST, Op.OPT_RESET, Op.CALL,
    Op.LOAD_ST_GLOBALS,
    Op.SAVE_CKPT, Op.LOAD_CKPT,
    Op.TAPE_PUSH, Op.TAPE_POP, Op.RANDOM, Op.RAND_SCALAR, Op.LOAD_CSV, Op.LOAD_ST,
})
#: CHECK rules: the condition a scalar must meet, and the message when it does not.
CHECK_RULES = {
    "batch_size": "a batch size must be a positive whole number",
    "mean_count": "mean of an empty tensor: the result is nan",
}
#: CHECK rules that warn (once per op: the runtime remembers the span) instead of failing.
CHECK_WARNS = frozenset({"mean_count"})
#: The range of each integer cast type: x converts when lo <= trunc(x) < hi (exact in doubles).
INT_RANGES = {"i32": (-2.0 ** 31, 2.0 ** 31), "i64": (-2.0 ** 63, 2.0 ** 63)}


def cast_fits(x: float, to: str) -> bool:
    """Whether `x as to` (i32 / i64: truncation toward zero) is defined: not NaN, in range."""
    lo, hi = INT_RANGES[to]
    if math.isnan(x) or math.isinf(x):
        return False
    t = math.trunc(x)
    return lo <= t < hi


def check_passes(rule: str, x: float) -> bool:
    """Whether scalar x obeys CHECK rule `rule`."""
    if rule == "batch_size":
        return x >= 1 and math.floor(x) == x and not math.isinf(x)
    if rule == "mean_count":
        return x != 0
    raise ValueError(f"unknown check rule {rule!r}")


#: Ops that read state that effectful ops may change (not CSE'd across effects).
READS_STATE = frozenset({Op.PARAM_LOAD, Op.DIM_LOAD, Op.GLOBAL_LOAD})

# Resize policies (same numbering as the native runtime).
POLICIES = {"default": 0, "zeros": 1, "normal": 2, "uniform": 3, "xavier": 4, "he": 5,
            "copy": 6, "preserve": 7}
# Optimizer kinds (same numbering as the native runtime) and the hyperparameter vector layout.
OPTIMIZERS = {"sgd": 1, "adam": 2, "rmsprop": 3, "adamw": 4}
HYPER_NAMES = ("lr", "beta1", "beta2", "eps", "weight_decay", "momentum", "alpha", "dampening",
               "nesterov")
HYPER_LEN = 16


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
    return tuple(sorted(attrs.items()))


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


class RankError(Exception):
    """An op used with operand ranks it does not accept (a compiler bug or a type error)."""


def result_rank(op: Op, ranks: tuple[int, ...], attrs: dict[str, Any]) -> Optional[int]:
    """The rank of op's result for operand ranks `ranks` (None: the op has no result)."""
    if op in ELEMENTWISE:
        return max(ranks) if ranks else 0
    if op in (Op.CONST, Op.RAND_SCALAR, Op.DIM, Op.DIM_LOAD):
        return 0
    if op in (Op.PACK, Op.CONST_TENSOR):
        return len(attrs["shape"])
    if op is Op.FILL:
        return len(ranks) - 1
    if op is Op.RANDOM:
        return len(ranks) - 2
    if op in (Op.SUM, Op.MAX_R, Op.MIN_R):
        axis = attrs.get("axis")
        if axis is None:
            return 0
        return ranks[0] if attrs.get("keepdims") else ranks[0] - 1
    if op is Op.ARGMAX:
        return max(ranks[0] - 1, 0)
    if op in (Op.SUM_TO, Op.BROADCAST_TO, Op.RESHAPE_LIKE, Op.SLICE_GRAD, Op.INDEX_GRAD):
        return ranks[1]
    if op in (Op.MATMUL, Op.TRANSPOSE):
        if any(r != 2 for r in ranks):
            raise RankError(f"{op.value} needs matrices, got ranks {ranks}")
        return 2
    if op is Op.RESHAPE:
        return len(ranks) - 1
    if op in (Op.CONCAT, Op.SLICE, Op.ZEROS_LIKE, Op.CHECK):
        return ranks[0]
    if op is Op.INDEX:
        if ranks[0] == 0:
            raise RankError("cannot index a scalar")
        return ranks[0] - 1
    if op is Op.ONE_HOT:
        return ranks[0] + 1
    if op is Op.SHAPE:
        return 1
    if op in (Op.ARGSORT, Op.TOPK):
        if ranks[0] != 1:
            raise RankError(f"{op.value} needs a rank-1 tensor, got rank {ranks[0]}")
        return 1
    if op in (Op.CONV2D, Op.CONV2D_GRAD_X, Op.CONV2D_GRAD_W, Op.POOL2D, Op.POOL2D_GRAD):
        n4 = {Op.CONV2D: 2, Op.POOL2D: 1}.get(op, 3 if op is not Op.POOL2D_GRAD else 2)
        if any(r != 4 for r in ranks[:n4]) or any(r != 0 for r in ranks[n4:]):
            raise RankError(f"{op.value} needs rank-4 tensors and scalars, got ranks {ranks}")
        return 4
    if op in (Op.PARAM_LOAD, Op.GLOBAL_LOAD, Op.LOAD_ST, Op.TAPE_POP):
        return int(attrs["rank"])
    if op is Op.LOAD_CSV:
        return 2
    if op is Op.CALL:
        r = attrs.get("result_rank")
        return None if r is None else int(r)
    return None


# ----------------------------------------------------------------------------- builder


class Builder:
    """Appends operations to a current block of a module."""

    def __init__(self, module: Module, block: Block):
        self.module = module
        self.block = block

    def emit(self, op: Op, args: tuple[Value, ...] = (), span: int = -1, **attrs: Any) -> Optional[Value]:
        rank = result_rank(op, tuple(a.rank for a in args), attrs)
        result = None if rank is None else self.module.new_value(rank)
        self.block.ops.append(Instr(op, tuple(args), result, _freeze(attrs), span))
        return result

    def const(self, value: float, span: int = -1) -> Value:
        v = self.emit(Op.CONST, (), span, value=float(value))
        assert v is not None
        return v

    def value(self, op: Op, *args: Value, span: int = -1, **attrs: Any) -> Value:
        """Emit an op that has a result and return it."""
        v = self.emit(op, tuple(args), span, **attrs)
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
        inner = [b for op in current.ops for b in child_blocks(op)]
        stack.extend(reversed(inner))


def child_blocks(op: Operation) -> list[Block]:
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


def _verify_block(block: Block, outer: set[int], module: Module, where: str) -> None:
    defined = set(outer)
    for p in block.params:
        _define(p, defined, where)
    for op in block.ops:
        for v in operands(op):
            if v.id not in defined:
                raise VerifyError(f"{where}: {v} used before definition in {op}")
        _verify_op(op, defined, module, where)
        for r in results(op):
            _define(r, defined, where)
    for v in block.yields:
        if v.id not in defined:
            raise VerifyError(f"{where}: yield of undefined {v}")


def _define(v: Value, defined: set[int], where: str) -> None:
    if v.id in defined:
        raise VerifyError(f"{where}: {v} defined twice")
    defined.add(v.id)


def _verify_op(op: Operation, defined: set[int], module: Module, where: str) -> None:
    if isinstance(op, Instr):
        expected = result_rank(op.op, tuple(a.rank for a in op.args), dict(op.attrs))
        got = None if op.result is None else op.result.rank
        if expected != got:
            raise VerifyError(f"{where}: {op.op.value} result rank {got}, expected {expected}")
        return
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
    ranks = [v.rank for v in op.inits]
    if [p.rank for p in op.body.params] != ranks:
        raise VerifyError(f"{where}: optimize body params do not match inits")
    _verify_block(op.body, defined, module, where)
    if [v.rank for v in op.body.yields[2:]] != ranks or len(op.body.yields) != 2 + len(ranks):
        raise VerifyError(f"{where}: optimize body yields malformed")
    if op.grad is not None:
        inner = set(defined) | _all_defined(op.body)
        _verify_block(op.grad, inner, module, where)
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


def print_function(module: Module, name: str) -> str:
    printer = _Printer(module)
    printer.function(module.functions[name])
    return "\n".join(printer.lines) + "\n"
