"""The vector-Jacobian products of NOMA's differentiable IR ops.

Owns: RULES (Op -> rule) and differentiable_args(). A rule receives the reverse emitter `e`, the
forward instruction and the adjoint `g` of its result, emits IR computing the adjoints of its
operands and returns them in operand order (None: no gradient flows to that operand). Rules may
use the forward operands and result directly; autodiff.py makes them available (tape) where needed.

The emitter provides: e.op(Op, *args, **attrs) -> Value, e.const(x) -> Value, e.wants(v) -> bool
(whether v needs an adjoint at all) and e.unbroadcast(grad, operand, result) -> Value (SUM_TO
grad down to the operand's shape, unless the shapes are provably equal).
Every other op is listed in ZERO_GRADIENT with why no gradient flows through it, or in
DIFFERENTIATED_ELSEWHERE (CALL and PARAM_LOAD, which autodiff.py handles); an op in none of the
three tables makes differentiable_args raise, and tests/compiler/test_op_tables.py checks that the
tables cover the Op enum.
Imports: noma.compiler.middle.ir.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from noma.compiler.middle.ir import Instr, Op, Value

Grads = list[Optional[Value]]
Rule = Callable[[Any, Instr, Value], Grads]
RULES: dict[Op, Rule] = {}


def _rule(*ops: Op) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        for op in ops:
            RULES[op] = fn
        return fn
    return register


_PIECEWISE_CONSTANT = "piecewise constant: its derivative is 0 wherever it exists"
_EFFECT = "an effect on the session or the outside world: no result to differentiate"
_REVERSE = "emitted by the reverse sweep itself (no second-order derivatives)"
#: Ops through which no gradient flows, each with why.
ZERO_GRADIENT: dict[Op, str] = {
    Op.CONST: "a constant", Op.CONST_TENSOR: "a constant",
    Op.RANDOM: "a random draw: the language gives draws no gradient (no reparameterisation)",
    Op.RAND_SCALAR: "a random draw: the language gives draws no gradient (no reparameterisation)",
    Op.SIGN: _PIECEWISE_CONSTANT, Op.FLOOR: _PIECEWISE_CONSTANT, Op.CEIL: _PIECEWISE_CONSTANT,
    Op.NOT: _PIECEWISE_CONSTANT, Op.LT: _PIECEWISE_CONSTANT, Op.LE: _PIECEWISE_CONSTANT,
    Op.GT: _PIECEWISE_CONSTANT, Op.GE: _PIECEWISE_CONSTANT, Op.EQ: _PIECEWISE_CONSTANT,
    Op.NE: _PIECEWISE_CONSTANT, Op.AND: _PIECEWISE_CONSTANT, Op.OR: _PIECEWISE_CONSTANT,
    Op.ARGMAX: "an index (integer valued)", Op.ONE_HOT: "built from indices (integer valued)",
    Op.STOP_GRAD: "the identity whose derivative is defined to be 0",
    Op.DIM: "a size, not a value", Op.SHAPE: "sizes, not values", Op.DIM_LOAD: "a size, not a value",
    Op.ZEROS_LIKE: "zeros: depends on its operand's shape only",
    Op.CHECK: "its operand is a size or count (batch size, mean's element count), never learned",
    Op.GLOBAL_LOAD: "a constant of the differentiated body (globals_ssa turns assigned globals into "
                    "SSA values first)",
    Op.LOAD_CSV: "data read from a file: a constant", Op.LOAD_ST: "data read from a file: a constant",
    Op.SLICE_GRAD: _REVERSE, Op.INDEX_GRAD: _REVERSE, Op.TAPE_PUSH: _REVERSE, Op.TAPE_POP: _REVERSE,
    Op.CONV2D_GRAD_X: _REVERSE, Op.CONV2D_GRAD_W: _REVERSE, Op.POOL2D_GRAD: _REVERSE,
    Op.ARGSORT: "indices (integer valued)", Op.TOPK: "indices (integer valued)",
    **{op: _EFFECT for op in (Op.PARAM_SET, Op.PARAM_FREE, Op.PARAM_BIND_DIM, Op.PARAM_RESIZE,
                              Op.DIM_SET, Op.DIM_RESIZE, Op.GLOBAL_STORE, Op.SEED, Op.PRINT,
                              Op.REPORT, Op.SAVE_CSV, Op.LOAD_ST_GLOBALS, Op.SAVE_ST, Op.OPT_RESET,
                              Op.SAVE_CKPT, Op.LOAD_CKPT, Op.PARAM_KEEP, Op.DIM_KEEP)},
}
#: Ops the sweep differentiates without a rule of this table.
DIFFERENTIATED_ELSEWHERE: dict[Op, str] = {
    Op.CALL: "autodiff_calls: the call of the callee's reverse function",
    Op.PARAM_LOAD: "autodiff.py: a leaf; the adjoint it accumulates is the parameter's gradient",
}


def differentiable_args(ins: Instr) -> list[int]:
    """Operand positions through which a gradient can flow."""
    if ins.op not in RULES:
        if ins.op in ZERO_GRADIENT:
            return []
        raise NotImplementedError(f"autodiff has no rule for op `{ins.op.value}` (add one to RULES, or "
                                  "list it in ZERO_GRADIENT with why: docs/CONTRIBUTING.md)")
    if ins.op is Op.CAST and ins.attr("to") not in ("f32", "f64"):
        return []
    if ins.op is Op.SELECT:
        return [1, 2]
    if ins.op in (Op.SUM_TO, Op.BROADCAST_TO, Op.RESHAPE_LIKE, Op.SLICE, Op.INDEX, Op.RESHAPE, Op.FILL):
        return [0]
    if ins.op is Op.CONV2D:
        return [0, 1]
    if ins.op is Op.POOL2D:
        return [0]
    return list(range(len(ins.args)))


# ----------------------------------------------------------------------------- unary


@_rule(Op.NEG)
def _neg(e: Any, ins: Instr, g: Value) -> Grads:  # d(-x) = -1
    return [e.op(Op.NEG, g)]


@_rule(Op.EXP)
def _exp(e: Any, ins: Instr, g: Value) -> Grads:  # d e^x = e^x = y
    return [e.op(Op.MUL, g, ins.result)]


@_rule(Op.LOG)
def _log(e: Any, ins: Instr, g: Value) -> Grads:  # d log x = 1/x
    return [e.op(Op.DIV, g, ins.args[0])]


@_rule(Op.SQRT)
def _sqrt(e: Any, ins: Instr, g: Value) -> Grads:  # d sqrt x = 1/(2 y)
    return [e.op(Op.DIV, g, e.op(Op.MUL, e.const(2.0), ins.result))]


@_rule(Op.SIN)
def _sin(e: Any, ins: Instr, g: Value) -> Grads:  # d sin x = cos x
    return [e.op(Op.MUL, g, e.op(Op.COS, ins.args[0]))]


@_rule(Op.COS)
def _cos(e: Any, ins: Instr, g: Value) -> Grads:  # d cos x = -sin x
    return [e.op(Op.NEG, e.op(Op.MUL, g, e.op(Op.SIN, ins.args[0])))]


@_rule(Op.TAN)
def _tan(e: Any, ins: Instr, g: Value) -> Grads:  # d tan x = 1 + y²
    y = ins.result
    return [e.op(Op.MUL, g, e.op(Op.ADD, e.const(1.0), e.op(Op.MUL, y, y)))]


@_rule(Op.TANH)
def _tanh(e: Any, ins: Instr, g: Value) -> Grads:  # d tanh x = 1 - y²
    y = ins.result
    return [e.op(Op.MUL, g, e.op(Op.SUB, e.const(1.0), e.op(Op.MUL, y, y)))]


@_rule(Op.SIGMOID)
def _sigmoid(e: Any, ins: Instr, g: Value) -> Grads:  # d σ(x) = y (1 - y)
    y = ins.result
    return [e.op(Op.MUL, g, e.op(Op.MUL, y, e.op(Op.SUB, e.const(1.0), y)))]


@_rule(Op.RELU)
def _relu(e: Any, ins: Instr, g: Value) -> Grads:  # d relu x = [x > 0]
    zero = e.const(0.0)
    return [e.op(Op.SELECT, e.op(Op.GT, ins.args[0], zero), g, zero)]


@_rule(Op.ABS)
def _abs(e: Any, ins: Instr, g: Value) -> Grads:  # d |x| = sign x
    return [e.op(Op.MUL, g, e.op(Op.SIGN, ins.args[0]))]


@_rule(Op.CAST)
def _cast(e: Any, ins: Instr, g: Value) -> Grads:  # to a float type: identity; to an integer: 0
    return [g] if ins.attr("to") in ("f32", "f64") else [None]


# ----------------------------------------------------------------------------- binary (broadcasting)


def _pair(e: Any, ins: Instr, ga: Callable[[], Value], gb: Callable[[], Value]) -> Grads:
    """Adjoints of both operands of a binary op, each summed back over its broadcast axes."""
    a, b = ins.args
    return [e.unbroadcast(ga(), a, ins.result) if e.wants(a) else None,
            e.unbroadcast(gb(), b, ins.result) if e.wants(b) else None]


@_rule(Op.ADD)
def _add(e: Any, ins: Instr, g: Value) -> Grads:  # d(a + b) = (1, 1)
    return _pair(e, ins, lambda: g, lambda: g)


@_rule(Op.SUB)
def _sub(e: Any, ins: Instr, g: Value) -> Grads:  # d(a - b) = (1, -1)
    return _pair(e, ins, lambda: g, lambda: e.op(Op.NEG, g))


@_rule(Op.MUL)
def _mul(e: Any, ins: Instr, g: Value) -> Grads:  # d(a b) = (b, a)
    a, b = ins.args
    return _pair(e, ins, lambda: e.op(Op.MUL, g, b), lambda: e.op(Op.MUL, g, a))


@_rule(Op.DIV)
def _div(e: Any, ins: Instr, g: Value) -> Grads:  # d(a / b) = (1/b, -a/b²)
    a, b = ins.args
    return _pair(e, ins, lambda: e.op(Op.DIV, g, b),
                 lambda: e.op(Op.NEG, e.op(Op.DIV, e.op(Op.MUL, g, a), e.op(Op.MUL, b, b))))


@_rule(Op.POW)
def _pow(e: Any, ins: Instr, g: Value) -> Grads:  # d a^b = (b a^(b-1), a^b log a where a > 0 else 0)
    a, b, y = ins.args[0], ins.args[1], ins.result

    def da() -> Value:
        return e.op(Op.MUL, g, e.op(Op.MUL, b, e.op(Op.POW, a, e.op(Op.SUB, b, e.const(1.0)))))

    def db() -> Value:
        zero = e.const(0.0)
        ylog = e.op(Op.MUL, y, e.op(Op.LOG, a))
        return e.op(Op.MUL, g, e.op(Op.SELECT, e.op(Op.GT, a, zero), ylog, zero))
    return _pair(e, ins, da, db)


@_rule(Op.MOD)
def _mod(e: Any, ins: Instr, g: Value) -> Grads:  # d fmod(a, b) = (1, -trunc(a / b)), as PyTorch's fmod
    # fmod(a, b) = a - trunc(a / b) b, with trunc(q) = sign(q) floor(|q|) held constant
    a, b = ins.args

    def db() -> Value:
        q = e.op(Op.DIV, a, b)
        trunc = e.op(Op.MUL, e.op(Op.SIGN, q), e.op(Op.FLOOR, e.op(Op.ABS, q)))
        return e.op(Op.NEG, e.op(Op.MUL, g, trunc))
    return _pair(e, ins, lambda: g, db)


def _minmax(e: Any, ins: Instr, g: Value, cmp: Op) -> Grads:
    """The gradient goes to the selected operand; ties go to the first (so `clip(x, lo, hi)`,
    which is min(max(x, lo), hi), passes the gradient to x at its bounds, like PyTorch's clamp)."""
    first = e.op(cmp, ins.args[0], ins.args[1])
    zero = e.const(0.0)
    return _pair(e, ins, lambda: e.op(Op.SELECT, first, g, zero), lambda: e.op(Op.SELECT, first, zero, g))


@_rule(Op.MAX)
def _max(e: Any, ins: Instr, g: Value) -> Grads:  # d max(a, b) = ([a >= b], [a < b])
    return _minmax(e, ins, g, Op.GE)


@_rule(Op.MIN)
def _min(e: Any, ins: Instr, g: Value) -> Grads:  # d min(a, b) = ([a <= b], [a > b])
    return _minmax(e, ins, g, Op.LE)


@_rule(Op.SELECT)
def _select(e: Any, ins: Instr, g: Value) -> Grads:  # d where(c, a, b) = (none, [c], [!c])
    c, a, b = ins.args
    zero = e.const(0.0)
    return [None,
            e.unbroadcast(e.op(Op.SELECT, c, g, zero), a, ins.result) if e.wants(a) else None,
            e.unbroadcast(e.op(Op.SELECT, c, zero, g), b, ins.result) if e.wants(b) else None]


# ----------------------------------------------------------------------------- reductions


def expand(e: Any, g: Value, x: Value, axis: Optional[int], keepdims: bool) -> Value:
    """g (x reduced over axis) broadcast back to x's shape."""
    if axis is not None and not keepdims:
        axis %= x.rank
        dims = [e.const(1.0) if i == axis else e.op(Op.DIM, x, axis=i) for i in range(x.rank)]
        g = e.op(Op.RESHAPE, g, *dims)
    return e.op(Op.BROADCAST_TO, g, x)


@_rule(Op.SUM)
def _sum(e: Any, ins: Instr, g: Value) -> Grads:  # d sum x = 1 (broadcast back)
    return [expand(e, g, ins.args[0], ins.attr("axis"), bool(ins.attr("keepdims")))]


@_rule(Op.MAX_R, Op.MIN_R)
def _extreme(e: Any, ins: Instr, g: Value) -> Grads:  # d max x = [x == max] / (count of ties)
    x, axis, keep = ins.args[0], ins.attr("axis"), bool(ins.attr("keepdims"))
    assert ins.result is not None  # a reduction has a result
    mask = e.op(Op.EQ, x, expand(e, ins.result, x, axis, keep))
    count = e.op(Op.SUM, mask, axis=axis, keepdims=keep)
    return [e.op(Op.MUL, mask, expand(e, e.op(Op.DIV, g, count), x, axis, keep))]


@_rule(Op.SUM_TO)
def _sum_to(e: Any, ins: Instr, g: Value) -> Grads:  # d sum_to(x) = broadcast back
    return [e.op(Op.BROADCAST_TO, g, ins.args[0]), None]


@_rule(Op.BROADCAST_TO)
def _broadcast_to(e: Any, ins: Instr, g: Value) -> Grads:  # d broadcast(x) = sum over broadcast axes
    return [e.op(Op.SUM_TO, g, ins.args[0]), None]


@_rule(Op.FILL)
def _fill(e: Any, ins: Instr, g: Value) -> Grads:  # d fill(v) / dv = sum of all entries
    return [e.op(Op.SUM, g, axis=None, keepdims=False)]


# ----------------------------------------------------------------------------- linear algebra and shape


@_rule(Op.MATMUL)
def _matmul(e: Any, ins: Instr, g: Value) -> Grads:  # C = op(A) op(B): dop(A) = G op(B)ᵀ, dop(B) = op(A)ᵀ G
    a, b = ins.args
    ta, tb = bool(ins.attr("ta")), bool(ins.attr("tb"))
    # dA: G op(B)ᵀ when A is stored plain; (G op(B)ᵀ)ᵀ = op(B) Gᵀ when stored transposed.
    da = (g, b, False, not tb) if not ta else (b, g, tb, True)
    # dB: op(A)ᵀ G when B is stored plain; (op(A)ᵀ G)ᵀ = Gᵀ op(A) when stored transposed.
    db = (a, g, not ta, False) if not tb else (g, a, True, ta)
    return [e.op(Op.MATMUL, da[0], da[1], ta=da[2], tb=da[3]) if e.wants(a) else None,
            e.op(Op.MATMUL, db[0], db[1], ta=db[2], tb=db[3]) if e.wants(b) else None]


@_rule(Op.TRANSPOSE)
def _transpose(e: Any, ins: Instr, g: Value) -> Grads:  # d xᵀ = gᵀ
    return [e.op(Op.TRANSPOSE, g)]


@_rule(Op.RESHAPE, Op.RESHAPE_LIKE)
def _reshape(e: Any, ins: Instr, g: Value) -> Grads:  # d reshape(x) = reshape back
    return [e.op(Op.RESHAPE_LIKE, g, ins.args[0])]


@_rule(Op.CONCAT)
def _concat(e: Any, ins: Instr, g: Value) -> Grads:  # d concat(a, b) = (g[:na], g[na:])
    a, b = ins.args
    na = e.op(Op.DIM, a, axis=0)
    return [e.op(Op.SLICE, g, e.const(0.0), na) if e.wants(a) else None,
            e.op(Op.SLICE, g, na, e.op(Op.DIM, g, axis=0)) if e.wants(b) else None]


@_rule(Op.SLICE)
def _slice(e: Any, ins: Instr, g: Value) -> Grads:  # d x[s:t] = zeros with rows s.. = g
    x, start = ins.args[0], ins.args[1]
    return [e.op(Op.SLICE_GRAD, g, x, start), None, None]


@_rule(Op.INDEX)
def _index(e: Any, ins: Instr, g: Value) -> Grads:  # d x[i] = zeros with [i] = g
    return [e.op(Op.INDEX_GRAD, g, ins.args[0], ins.args[1]), None]


@_rule(Op.PACK)
def _pack(e: Any, ins: Instr, g: Value) -> Grads:  # d pack(s..)[k] = g at k's position
    shape = tuple(ins.attr("shape"))
    rows: dict[tuple[int, ...], Value] = {(): g}

    def at(pos: tuple[int, ...]) -> Value:
        if pos not in rows:
            rows[pos] = e.op(Op.INDEX, at(pos[:-1]), e.const(float(pos[-1])))
        return rows[pos]

    out: Grads = []
    for k, arg in enumerate(ins.args):
        pos, rest = [], k
        for size in reversed(shape):
            pos.append(rest % size)
            rest //= size
        out.append(at(tuple(reversed(pos))) if e.wants(arg) else None)
    return out


# ----------------------------------------------------------------------------- convolution and pooling


@_rule(Op.CONV2D)
def _conv2d(e: Any, ins: Instr, g: Value) -> Grads:
    # y[n,o,i,j] = sum_{c,u,v} x[n,c,i*s-p+u, j*s-p+v] w[o,c,u,v]:
    # dx = col2im(G . w) (scatter of each output's gradient back through its window), dw = G^T . im2col(x)
    x, w, stride, pad = ins.args
    return [e.op(Op.CONV2D_GRAD_X, g, x, w, stride, pad) if e.wants(x) else None,
            e.op(Op.CONV2D_GRAD_W, g, x, w, stride, pad) if e.wants(w) else None, None, None]


@_rule(Op.POOL2D)
def _pool2d(e: Any, ins: Instr, g: Value) -> Grads:
    # max: g to the first largest entry of each window; avg: g / k² to every entry of it
    x, k, stride = ins.args
    return [e.op(Op.POOL2D_GRAD, g, x, k, stride, kind=ins.attr("kind")), None, None]
