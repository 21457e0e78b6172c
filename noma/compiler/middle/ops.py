"""The IR's vocabulary: every operation (the Op enum) with its operand/attribute contract, the op
groups, each op's result rank, and the builtin table (each builtin function's name, arity, doc and,
for the elementwise primitives, its Op).

Owns: Op, the op groups (ELEMENTWISE, EFFECTFUL, ...), CHECK rules and cast ranges, result_rank,
resize-policy and optimizer numbering (the latter from noma.optimizers), and BUILTINS.
Read by: ir (which re-exports all of it), irgen (builtin calls: arity and expansion), the lexer,
the REPL/kernel/LSP completions and hover docs; tests tie autodiff, the interpreter and the
lowering to Op (tests/compiler/test_op_tables.py). docs/CONTRIBUTING.md walks through adding an op.
Imports: the standard library and noma.optimizers (stdlib-only): the lexer imports this module,
so it must stay cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any, Optional

from noma import optimizers


class Op(Enum):
    """Every IR operation. Operand order and attributes are documented per group."""

    # Members are singletons compared by identity: hash them by identity too (Enum's own
    # __hash__ hashes the name in Python code, and the compiler looks ops up in sets and dicts
    # several times per instruction: a tenth of the front end's time on a long program).
    __hash__ = object.__hash__

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
# Optimizer kinds (the runtime's numbering) and the hyperparameter vector layout: noma.optimizers.
OPTIMIZERS = optimizers.KINDS
HYPER_NAMES = optimizers.HYPER_NAMES
HYPER_LEN = optimizers.HYPER_LEN


class RankError(Exception):
    """An op used with operand ranks it does not accept (a compiler bug or a type error)."""


#: ops found to have no result (each test below depends on the op alone, so once an op falls
#: through them all it always will: the statements' global stores, prints, ... skip the chain)
_NO_RESULT: set[Op] = set()


# result_rank's groups of ops, built once: `Op.X` is a slow lookup on an Enum class in Python 3.11
# (~0.1 us: EnumType has a __getattr__), and result_rank runs for every instruction built or verified
_RANK_0 = frozenset({Op.CONST, Op.RAND_SCALAR, Op.DIM, Op.DIM_LOAD})
_RANK_OF_SHAPE = frozenset({Op.PACK, Op.CONST_TENSOR})
_REDUCTIONS = frozenset({Op.SUM, Op.MAX_R, Op.MIN_R})
_RANK_OF_SECOND = frozenset({Op.SUM_TO, Op.BROADCAST_TO, Op.RESHAPE_LIKE, Op.SLICE_GRAD, Op.INDEX_GRAD})
_MATRIX = frozenset({Op.MATMUL, Op.TRANSPOSE})
_RANK_OF_FIRST = frozenset({Op.CONCAT, Op.SLICE, Op.ZEROS_LIKE, Op.CHECK})
#: convolution and pooling ops → their leading tensor operands
_CONV = {Op.CONV2D: 2, Op.CONV2D_GRAD_X: 3, Op.CONV2D_GRAD_W: 3, Op.POOL2D: 1, Op.POOL2D_GRAD: 2}
_RANKING = frozenset({Op.ARGSORT, Op.TOPK})
_RANK_ATTR = frozenset({Op.PARAM_LOAD, Op.GLOBAL_LOAD, Op.LOAD_ST, Op.TAPE_POP})
_FILL, _RANDOM, _ARGMAX, _RESHAPE, _INDEX = Op.FILL, Op.RANDOM, Op.ARGMAX, Op.RESHAPE, Op.INDEX
_ONE_HOT, _SHAPE, _LOAD_CSV, _CALL = Op.ONE_HOT, Op.SHAPE, Op.LOAD_CSV, Op.CALL


def result_rank(op: Op, ranks: tuple[int, ...], attrs: dict[str, Any]) -> Optional[int]:
    """The rank of op's result for operand ranks `ranks` (None: the op has no result)."""
    if op in _NO_RESULT:
        return None
    if op in ELEMENTWISE:
        return max(ranks) if ranks else 0
    if op in _RANK_0:
        return 0
    if op in _RANK_OF_SHAPE:
        return len(attrs["shape"])
    if op is _FILL:
        return len(ranks) - 1
    if op is _RANDOM:
        return len(ranks) - 2
    if op in _REDUCTIONS:
        axis = attrs.get("axis")
        if axis is None:
            return 0
        return ranks[0] if attrs.get("keepdims") else ranks[0] - 1
    if op is _ARGMAX:
        return max(ranks[0] - 1, 0)
    if op in _RANK_OF_SECOND:
        return ranks[1]
    if op in _MATRIX:
        if any(r != 2 for r in ranks):
            raise RankError(f"{op.value} needs matrices, got ranks {ranks}")
        return 2
    if op is _RESHAPE:
        return len(ranks) - 1
    if op in _RANK_OF_FIRST:
        return ranks[0]
    if op is _INDEX:
        if ranks[0] == 0:
            raise RankError("cannot index a scalar")
        return ranks[0] - 1
    if op is _ONE_HOT:
        return ranks[0] + 1
    if op is _SHAPE:
        return 1
    if op in _CONV:
        n4 = _CONV[op]
        if any(r != 4 for r in ranks[:n4]) or any(r != 0 for r in ranks[n4:]):
            raise RankError(f"{op.value} needs rank-4 tensors and scalars, got ranks {ranks}")
        return 4
    if op in _RANKING:
        if ranks[0] != 1:
            raise RankError(f"{op.value} needs a rank-1 tensor, got rank {ranks[0]}")
        return 1
    if op in _RANK_ATTR:
        return int(attrs["rank"])
    if op is _LOAD_CSV:
        return 2
    if op is _CALL:
        r = attrs.get("result_rank")
        return None if r is None else int(r)
    _NO_RESULT.add(op)
    return None


# ----------------------------------------------------------------------------- builtins

#: `max args` of a builtin taking any number of arguments (print).
MANY = 99


@dataclass(frozen=True)
class Builtin:
    """A builtin function `name(args)`: irgen expands it (irgen_builtins, method `b_<name>`, or
    the elementwise primitive `op`), the lexer highlights it, completions show `doc`."""

    name: str
    low: int  # fewest arguments
    high: int  # most arguments (MANY: no limit)
    doc: str  # one line: `name(args): what it does`
    op: Optional[Op] = None  # the elementwise unary primitive it is (expanded as `unary`)

    @property
    def method(self) -> str:
        """The irgen_builtins expansion: `b_unary` for primitives, else `b_<name>`."""
        return "unary" if self.op is not None else self.name


def _unary(name: str, doc: str) -> Builtin:
    """An elementwise unary primitive exposed as a builtin of the same name as its Op."""
    return Builtin(name, 1, 1, doc, Op(name))


_BUILTINS = (
    _unary('sigmoid', 'sigmoid(x): 1 / (1 + exp(-x)), elementwise'),
    _unary('relu', 'relu(x): max(x, 0), elementwise'),
    _unary('tanh', 'tanh(x): hyperbolic tangent, elementwise'),
    _unary('exp', 'exp(x): e^x, elementwise'),
    _unary('log', 'log(x): natural logarithm, elementwise'),
    _unary('sqrt', 'sqrt(x): square root, elementwise'),
    _unary('abs', 'abs(x): absolute value, elementwise'),
    _unary('sin', 'sin(x), elementwise'),
    _unary('cos', 'cos(x), elementwise'),
    _unary('tan', 'tan(x), elementwise'),
    _unary('floor', 'floor(x), elementwise (zero gradient)'),
    _unary('ceil', 'ceil(x), elementwise (zero gradient)'),
    Builtin('pow', 2, 2, 'pow(a, b): a ^ b, broadcasting'),
    Builtin('min', 1, 2, 'min(x): smallest element (scalar); min(a, b): elementwise minimum'),
    Builtin('max', 1, 2, 'max(x): largest element (scalar); max(a, b): elementwise maximum'),
    Builtin('clip', 3, 3, 'clip(x, lo, hi): x limited to [lo, hi], elementwise'),
    Builtin('sum', 1, 2, 'sum(x): sum of all elements; sum(x, axis): sum along an axis'),
    Builtin('mean', 1, 2, 'mean(x): mean of all elements; mean(x, axis): mean along an axis'),
    Builtin('dot', 2, 2, 'dot(a, b): inner product of two vectors'),
    Builtin('matmul', 2, 2, 'matmul(a, b): matrix product (vectors like NumPy)'),
    Builtin('transpose', 1, 1, 'transpose(m): the transposed matrix'),
    Builtin('shape', 1, 1, 'shape(x): the shape as a rank-1 tensor'),
    Builtin('rows', 1, 1, 'rows(x): number of rows (first axis)'),
    Builtin('cols', 1, 1, 'cols(x): number of columns (last axis)'),
    Builtin('reshape', 2, 2, 'reshape(x, [d1, d2]): the same elements with another shape'),
    Builtin('concat', 2, 2, "concat(a, b): a's rows followed by b's rows"),
    Builtin('slice', 3, 3, 'slice(x, start, end): rows start..end-1'),
    Builtin('softmax', 1, 1, 'softmax(x): softmax along the last axis'),
    Builtin('log_softmax', 1, 1, 'log_softmax(x): log of softmax along the last axis'),
    Builtin('cross_entropy', 2, 2, 'cross_entropy(logits, targets): mean cross-entropy over rows (one-hot '
                                   'or class indices)'),
    Builtin('argmax', 1, 1, 'argmax(x): index of the largest entry along the last axis'),
    Builtin('accuracy', 2, 2, 'accuracy(logits, targets): fraction of rows whose argmax matches the targets'),
    Builtin('print', 0, MANY, 'print(a, b, ...): print space-separated on one line; returns its last '
                              'argument'),
    Builtin('report', 2, 2, 'report("name", x): record the scalar x as the named metric at the current '
                            'global step (plots, :history, noma tune)'),
    Builtin('seed', 1, 1, "seed(n): reseed the session's random generator"),
    Builtin('reset_optimizer', 0, 0, 'reset_optimizer(): clear all optimizer state (moments and step '
                                     'counts)'),
    Builtin('save_checkpoint', 1, 1, 'save_checkpoint("ck.safetensors"): write parameters, optimizer '
                                     'state, dims, loss log and generator state'),
    Builtin('load_checkpoint', 1, 1, 'load_checkpoint("ck.safetensors"): restore them into the declared '
                                     'parameters'),
    Builtin('rand', 0, 0, 'rand(): a uniform draw in [0, 1)'),
    Builtin('rand_uniform', 2, 2, 'rand_uniform(lo, hi): a uniform draw'),
    Builtin('rand_normal', 2, 2, 'rand_normal(mean, std): a normal draw'),
    Builtin('rand_tensor', 1, 4, 'rand_tensor(d1, d2, ...): uniform [0, 1) tensor'),
    Builtin('rand_normal_tensor', 3, 6, 'rand_normal_tensor(mean, std, d1, ...): normal tensor'),
    Builtin('xavier_init', 3, 6, 'xavier_init(fan_in, fan_out, d1, ...): Xavier-uniform tensor'),
    Builtin('he_init', 2, 5, 'he_init(fan_in, d1, ...): He-normal tensor'),
    Builtin('zeros', 1, 1, 'zeros([d1, ...]): a tensor of zeros'),
    Builtin('ones', 1, 1, 'ones([d1, ...]): a tensor of ones'),
    Builtin('full', 2, 2, 'full([d1, ...], v): a tensor filled with v'),
    Builtin('normal', 3, 3, 'normal([d1, ...], mean, std): normal draws'),
    Builtin('uniform', 3, 3, 'uniform([d1, ...], lo, hi): uniform draws'),
    Builtin('xavier', 1, 1, 'xavier([fan_in, fan_out]): Xavier/Glorot-uniform initialiser'),
    Builtin('he', 1, 1, 'he([fan_in, fan_out]): He/Kaiming-normal initialiser'),
    Builtin('conv2d', 4, 4, 'conv2d(x, W, stride, padding): 2-D convolution, x [N, C, H, W], W [out, C, kh, kw]'),
    Builtin('max_pool2d', 3, 3, 'max_pool2d(x, k, stride): largest entry of each k x k window (NCHW)'),
    Builtin('avg_pool2d', 3, 3, 'avg_pool2d(x, k, stride): mean of each k x k window (NCHW)'),
    Builtin('argsort', 1, 1, 'argsort(x): the indices that sort a vector ascending (stable)'),
    Builtin('topk', 2, 2, 'topk(scores, k): indices of the k largest entries, largest first'),
    Builtin('norm', 1, 2, 'norm(x): L2 norm of all entries; norm(x, axis): one L2 norm per index of that axis'),
)
#: name -> Builtin, in the order the docs list them.
BUILTINS: dict[str, Builtin] = {b.name: b for b in _BUILTINS}
