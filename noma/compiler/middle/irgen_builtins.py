"""IR generation for builtin calls (part of irgen).

Owns: the expansion of every builtin of the table (ops.BUILTINS: name, arity, doc) into IR ops.
Composite functions (mean, softmax, log_softmax, cross_entropy, accuracy, clip, dot,
vector matmul, initialisers) expand into primitive ops, so autodiff needs rules only for
primitives and every path (interpreter, JIT, executables) shares the same expansion.
Imports: ast, ir, diagnostics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

from noma.compiler.front import ast

from noma.compiler.middle import ir, ops
from noma.diagnostics import Kind, error

if TYPE_CHECKING:
    from noma.compiler.middle.irgen import IRGen

Op = ir.Op
MANY = ops.MANY
#: name -> (min args, max args, method): read from the builtin table (ops.BUILTINS).
BUILTINS: dict[str, tuple[int, int, str]] = {b.name: (b.low, b.high, b.method) for b in ops.BUILTINS.values()}
UNARY = {b.name: b.op for b in ops.BUILTINS.values() if b.op is not None}
INITIALISERS = frozenset({"zeros", "ones", "full", "normal", "uniform", "xavier", "he"})


class BuiltinContext:
    """Expands builtin calls for one IRGen."""

    def __init__(self, g: "IRGen"):
        self.g = g
        self.call_node: Optional[ast.Call] = None
        self.sid = -1

    # -------------------------------------------------------------- helpers

    def call(self, e: ast.Call) -> Optional[ir.Value]:
        """The IR of builtin call e; its ops are located at e (the caller's call node and span are
        put back afterwards: arguments that are builtin calls themselves must not move them)."""
        saved = self.call_node, self.sid
        self.call_node, self.sid = e, self.g.span(e.span)
        method: Callable = getattr(self, "b_" + BUILTINS[e.func][2])
        try:
            return method(e)
        finally:
            self.call_node, self.sid = saved

    def op(self, op: Op, *args: ir.Value, **attrs) -> ir.Value:
        return self.g.b.value(op, *args, span=self.sid, **attrs)

    def c(self, x: float) -> ir.Value:
        return self.g.const(x)

    def arg(self, e: ast.Call, i: int) -> ir.Value:
        return self.g.gen_expr(e.args[i])

    def scalar_arg(self, e: ast.Call, i: int, what: str) -> ir.Value:
        return self.g.scalar(e.args[i], what)

    def tensor_arg(self, e: ast.Call, i: int, min_rank: int = 1) -> ir.Value:
        v = self.arg(e, i)
        if v.rank < min_rank:
            kind = "a matrix" if min_rank == 2 else "a tensor"
            raise error(Kind.TYPE, f"`{e.func}` needs {kind}, got "
                        + ("a scalar" if v.rank == 0 else f"a rank-{v.rank} tensor"), e.args[i].span)
        return v

    def const_axis(self, e: ast.Call, i: int, rank: int) -> int:
        node = e.args[i]
        if isinstance(node, ast.Num):
            value = node.value
        elif isinstance(node, ast.Unary) and node.op == "-" and isinstance(node.operand, ast.Num):
            value = -node.operand.value
        else:
            raise error(Kind.TYPE, "an axis must be a number written in the call", node.span)
        if value != int(value):
            raise error(Kind.TYPE, f"an axis must be an integer, got {value:g}", node.span)
        axis = int(value)
        if not -rank <= axis < rank:
            raise error(Kind.SHAPE, f"axis {axis} is out of range for a rank-{rank} tensor", node.span)
        return axis % rank

    def shape_list(self, e: ast.Call) -> list[ir.Value]:
        node = e.args[0]
        assert isinstance(node, ast.ListLit)
        if not 1 <= len(node.items) <= 4:
            raise error(Kind.TYPE, "a shape has 1 to 4 dimensions", node.span)
        return [self.g.scalar(d, "a dimension") for d in node.items]

    def dims_args(self, e: ast.Call, start: int) -> list[ir.Value]:
        return [self.scalar_arg(e, i, "a dimension") for i in range(start, len(e.args))]

    def count(self, x: ir.Value, axis: Optional[int]) -> ir.Value:
        if axis is not None:
            return self.op(Op.DIM, x, axis=axis)
        n = self.c(1.0)
        for a in range(x.rank):
            n = self.op(Op.MUL, n, self.op(Op.DIM, x, axis=a))
        return n

    def last(self, x: ir.Value) -> int:
        return x.rank - 1

    # -------------------------------------------------------------- elementwise

    def b_unary(self, e: ast.Call) -> ir.Value:
        return self.op(UNARY[e.func], self.arg(e, 0))

    def b_pow(self, e: ast.Call) -> ir.Value:
        return self.op(Op.POW, self.arg(e, 0), self.arg(e, 1))

    def _minmax(self, e: ast.Call, binary: Op, reduce: Op) -> ir.Value:
        if len(e.args) == 2:
            return self.op(binary, self.arg(e, 0), self.arg(e, 1))
        x = self.arg(e, 0)
        return x if x.rank == 0 else self.op(reduce, x, axis=None, keepdims=False)

    def b_min(self, e: ast.Call) -> ir.Value:
        return self._minmax(e, Op.MIN, Op.MIN_R)

    def b_max(self, e: ast.Call) -> ir.Value:
        return self._minmax(e, Op.MAX, Op.MAX_R)

    def b_clip(self, e: ast.Call) -> ir.Value:
        x, lo, hi = self.arg(e, 0), self.arg(e, 1), self.arg(e, 2)
        return self.op(Op.MIN, self.op(Op.MAX, x, lo), hi)

    # -------------------------------------------------------------- reductions

    def _reduce(self, e: ast.Call) -> tuple[ir.Value, Optional[int]]:
        x = self.arg(e, 0)
        if len(e.args) == 1:
            return x, None
        if x.rank == 0:
            raise error(Kind.TYPE, "a scalar has no axes", e.args[1].span)
        axis = self.const_axis(e, 1, x.rank)
        # reducing the only axis of a vector is reducing all of it (to a scalar)
        return x, None if x.rank == 1 else axis

    def b_sum(self, e: ast.Call) -> ir.Value:
        x, axis = self._reduce(e)
        return x if x.rank == 0 else self.op(Op.SUM, x, axis=axis, keepdims=False)

    def b_mean(self, e: ast.Call) -> ir.Value:
        x, axis = self._reduce(e)
        if x.rank == 0:
            return x
        count = self.op(Op.CHECK, self.count(x, axis), rule="mean_count")  # warns when 0 (NumPy)
        return self.op(Op.DIV, self.op(Op.SUM, x, axis=axis, keepdims=False), count)

    # -------------------------------------------------------------- linear algebra and shape

    def b_dot(self, e: ast.Call) -> ir.Value:
        a, b = self.arg(e, 0), self.arg(e, 1)
        if a.rank == 1 and b.rank == 1:
            return self.op(Op.SUM, self.op(Op.MUL, a, b), axis=None, keepdims=False)
        return self.matmul(a, b, e)

    def b_matmul(self, e: ast.Call) -> ir.Value:
        return self.matmul(self.arg(e, 0), self.arg(e, 1), e)

    def matmul(self, a: ir.Value, b: ir.Value, e: ast.Call) -> ir.Value:
        """NumPy's matmul for ranks 1 and 2: vectors become [1,k] / [k,1] and back."""
        for v, node in ((a, e.args[0]), (b, e.args[1])):
            if v.rank not in (1, 2):
                raise error(Kind.TYPE, "matmul takes vectors or matrices, got "
                            + ("a scalar" if v.rank == 0 else f"a rank-{v.rank} tensor"), node.span)
        one = self.c(1.0)
        a2 = a if a.rank == 2 else self.op(Op.RESHAPE, a, one, self.op(Op.DIM, a, axis=0))
        b2 = b if b.rank == 2 else self.op(Op.RESHAPE, b, self.op(Op.DIM, b, axis=0), one)
        out = self.op(Op.MATMUL, a2, b2, ta=False, tb=False)
        if a.rank == 2 and b.rank == 2:
            return out
        if a.rank == 1 and b.rank == 1:
            return self.op(Op.RESHAPE, out)
        keep = self.op(Op.DIM, out, axis=1 if a.rank == 1 else 0)
        return self.op(Op.RESHAPE, out, keep)

    def b_transpose(self, e: ast.Call) -> ir.Value:
        x = self.tensor_arg(e, 0, 2)
        if x.rank != 2:
            raise error(Kind.TYPE, f"transpose takes a matrix, got a rank-{x.rank} tensor", e.args[0].span)
        return self.op(Op.TRANSPOSE, x)

    def b_shape(self, e: ast.Call) -> ir.Value:
        return self.op(Op.SHAPE, self.tensor_arg(e, 0))

    def b_rows(self, e: ast.Call) -> ir.Value:
        return self.op(Op.DIM, self.tensor_arg(e, 0), axis=0)

    def b_cols(self, e: ast.Call) -> ir.Value:
        return self.op(Op.DIM, self.tensor_arg(e, 0, 2), axis=1)

    def b_reshape(self, e: ast.Call) -> ir.Value:
        x = self.arg(e, 0)
        node = e.args[1]
        if not isinstance(node, ast.ListLit):
            raise error(Kind.TYPE, "reshape takes the new shape as a list: `reshape(x, [2, 3])`", node.span)
        dims = [self.g.scalar(d, "a dimension") for d in node.items]
        return self.op(Op.RESHAPE, x, *dims)

    def b_concat(self, e: ast.Call) -> ir.Value:
        a, b = self.tensor_arg(e, 0), self.tensor_arg(e, 1)
        if a.rank != b.rank:
            raise error(Kind.SHAPE, f"concat needs tensors of the same rank, got ranks {a.rank} and {b.rank}",
                        e.span)
        return self.op(Op.CONCAT, a, b)

    def b_slice(self, e: ast.Call) -> ir.Value:
        x = self.tensor_arg(e, 0)
        return self.op(Op.SLICE, x, self.scalar_arg(e, 1, "a start row"), self.scalar_arg(e, 2, "an end row"))

    # -------------------------------------------------------------- convolution, pooling, ranking

    def rank4_arg(self, e: ast.Call, i: int, what: str) -> ir.Value:
        v = self.arg(e, i)
        if v.rank != 4:
            raise error(Kind.TYPE, f"`{e.func}` needs {what} as a rank-4 tensor, got "
                        + ("a scalar" if v.rank == 0 else f"a rank-{v.rank} tensor"), e.args[i].span)
        return v

    def b_conv2d(self, e: ast.Call) -> ir.Value:
        """conv2d(x [N,C,H,W], W [O,C,KH,KW], stride, padding) -> [N,O,OH,OW]."""
        x = self.rank4_arg(e, 0, "the input [batch, channels, height, width]")
        w = self.rank4_arg(e, 1, "the filters [out, in, kh, kw]")
        stride, pad = self.scalar_arg(e, 2, "a stride"), self.scalar_arg(e, 3, "a padding")
        return self.op(Op.CONV2D, x, w, stride, pad)

    def _pool(self, e: ast.Call, kind: str) -> ir.Value:
        x = self.rank4_arg(e, 0, "the input [batch, channels, height, width]")
        k, stride = self.scalar_arg(e, 1, "a window size"), self.scalar_arg(e, 2, "a stride")
        return self.op(Op.POOL2D, x, k, stride, kind=kind)

    def b_max_pool2d(self, e: ast.Call) -> ir.Value:
        return self._pool(e, "max")

    def b_avg_pool2d(self, e: ast.Call) -> ir.Value:
        return self._pool(e, "avg")

    def _vector_arg(self, e: ast.Call) -> ir.Value:
        v = self.arg(e, 0)
        if v.rank != 1:
            raise error(Kind.TYPE, f"`{e.func}` needs a rank-1 tensor, got "
                        + ("a scalar" if v.rank == 0 else f"a rank-{v.rank} tensor"), e.args[0].span)
        return v

    def b_argsort(self, e: ast.Call) -> ir.Value:
        return self.op(Op.ARGSORT, self._vector_arg(e))

    def b_topk(self, e: ast.Call) -> ir.Value:
        x = self._vector_arg(e)
        return self.op(Op.TOPK, x, self.scalar_arg(e, 1, "a count"))

    def b_norm(self, e: ast.Call) -> ir.Value:
        """norm(x): the L2 norm of all entries; norm(x, axis): one L2 norm per index along axis
        (over all the other axes: the norms of the units of that axis), a rank-1 tensor."""
        x = self.arg(e, 0)
        sq = self.op(Op.MUL, x, x)
        if len(e.args) == 1 or x.rank <= 1:
            if len(e.args) == 2 and x.rank == 0:
                raise error(Kind.TYPE, "a scalar has no axes", e.args[1].span)
            if len(e.args) == 2:
                self.const_axis(e, 1, x.rank)
                return self.op(Op.SQRT, sq)  # a vector's units are its entries
            return self.op(Op.SQRT, sq if x.rank == 0 else self.op(Op.SUM, sq, axis=None, keepdims=False))
        keep = self.const_axis(e, 1, x.rank)
        for axis in reversed(range(x.rank)):
            if axis != keep:
                sq = self.op(Op.SUM, sq, axis=axis, keepdims=False)
        return self.op(Op.SQRT, sq)

    # -------------------------------------------------------------- classification

    def _shifted(self, x: ir.Value) -> ir.Value:
        m = self.op(Op.STOP_GRAD, self.op(Op.MAX_R, x, axis=self.last(x), keepdims=True))
        return self.op(Op.SUB, x, m)

    def b_softmax(self, e: ast.Call) -> ir.Value:
        x = self.tensor_arg(e, 0)
        ex = self.op(Op.EXP, self._shifted(x))
        return self.op(Op.DIV, ex, self.op(Op.SUM, ex, axis=self.last(x), keepdims=True))

    def log_softmax(self, x: ir.Value) -> ir.Value:
        z = self._shifted(x)
        lse = self.op(Op.LOG, self.op(Op.SUM, self.op(Op.EXP, z), axis=self.last(x), keepdims=True))
        return self.op(Op.SUB, z, lse)

    def b_log_softmax(self, e: ast.Call) -> ir.Value:
        return self.log_softmax(self.tensor_arg(e, 0))

    def targets_one_hot(self, logits: ir.Value, targets: ir.Value, e: ast.Call) -> ir.Value:
        if targets.rank == logits.rank:
            return targets
        if targets.rank == logits.rank - 1:
            n = self.op(Op.DIM, logits, axis=self.last(logits))
            return self.op(Op.ONE_HOT, targets, n)
        raise error(Kind.SHAPE, f"targets must be one-hot (rank {logits.rank}) or class indices "
                    f"(rank {logits.rank - 1}), got rank {targets.rank}", e.args[1].span)

    def b_cross_entropy(self, e: ast.Call) -> ir.Value:
        logits, targets = self.tensor_arg(e, 0), self.arg(e, 1)
        onehot = self.targets_one_hot(logits, targets, e)
        total = self.op(Op.SUM, self.op(Op.MUL, onehot, self.log_softmax(logits)), axis=None, keepdims=False)
        rows = self.op(Op.DIM, logits, axis=0) if logits.rank == 2 else self.c(1.0)
        rows = self.op(Op.CHECK, rows, rule="mean_count")  # a mean over no rows: nan, warned
        return self.op(Op.NEG, self.op(Op.DIV, total, rows))

    def b_argmax(self, e: ast.Call) -> ir.Value:
        return self.op(Op.ARGMAX, self.tensor_arg(e, 0))

    def b_accuracy(self, e: ast.Call) -> ir.Value:
        logits, targets = self.tensor_arg(e, 0), self.arg(e, 1)
        pred = self.op(Op.ARGMAX, logits)
        labels = self.op(Op.ARGMAX, targets) if targets.rank == logits.rank else targets
        if labels.rank != pred.rank:
            raise error(Kind.SHAPE, "accuracy needs one-hot targets or class indices", e.args[1].span)
        hits = self.op(Op.EQ, pred, labels)
        if hits.rank == 0:
            return hits
        count = self.op(Op.CHECK, self.count(hits, None), rule="mean_count")
        return self.op(Op.DIV, self.op(Op.SUM, hits, axis=None, keepdims=False), count)

    # -------------------------------------------------------------- effects

    def b_print(self, e: ast.Call) -> Optional[ir.Value]:
        parts: list[Optional[str]] = []
        values: list[ir.Value] = []
        for node in e.args:
            if isinstance(node, ast.Str):
                parts.append(node.value)
            else:
                parts.append(None)
                values.append(self.g.gen_expr(node))
        self.g.b.emit(Op.PRINT, tuple(values), self.sid, parts=tuple(parts))
        return values[-1] if values else None

    def b_report(self, e: ast.Call) -> None:
        """`report("accuracy", acc);`: a named scalar metric at the current global step."""
        name = e.args[0]
        if not isinstance(name, ast.Str) or not name.value or len(name.value.encode("utf-8")) > 63:
            raise error(Kind.TYPE, '`report` takes a metric name (a string of 1 to 63 bytes) and a scalar: '
                        'report("accuracy", acc)', name.span)
        self.g.b.emit(Op.REPORT, (self.scalar_arg(e, 1, "a metric value"),), self.sid, name=name.value)
        return None

    def b_seed(self, e: ast.Call) -> None:
        self.g.b.emit(Op.SEED, (self.scalar_arg(e, 0, "a seed"),), self.sid)
        return None

    def b_reset_optimizer(self, e: ast.Call) -> None:
        self.g.b.emit(Op.OPT_RESET, (), self.sid)
        return None

    def _checkpoint_path(self, e: ast.Call) -> str:
        node = e.args[0]
        if not isinstance(node, ast.Str):
            raise error(Kind.TYPE, f'`{e.func}` takes a file path string: {e.func}("model.safetensors")',
                        node.span)
        return node.value

    def b_save_checkpoint(self, e: ast.Call) -> None:
        self.g.b.emit(Op.SAVE_CKPT, (), self.sid, path=self._checkpoint_path(e))
        return None

    def b_load_checkpoint(self, e: ast.Call) -> None:
        self.g.b.emit(Op.LOAD_CKPT, (), self.sid, path=self._checkpoint_path(e))
        return None

    # -------------------------------------------------------------- random and initialisers

    def random(self, kind: str, a: ir.Value, b: ir.Value, dims: list[ir.Value]) -> ir.Value:
        if not 1 <= len(dims) <= 4:
            raise error(Kind.TYPE, "a tensor has 1 to 4 dimensions", self.call_node.span if self.call_node else None)
        return self.op(Op.RANDOM, a, b, *dims, kind=kind)

    def b_rand(self, e: ast.Call) -> ir.Value:
        return self.op(Op.RAND_SCALAR, self.c(0.0), self.c(1.0), kind="uniform")

    def b_rand_uniform(self, e: ast.Call) -> ir.Value:
        return self.op(Op.RAND_SCALAR, self.scalar_arg(e, 0, "lo"), self.scalar_arg(e, 1, "hi"), kind="uniform")

    def b_rand_normal(self, e: ast.Call) -> ir.Value:
        return self.op(Op.RAND_SCALAR, self.scalar_arg(e, 0, "mean"), self.scalar_arg(e, 1, "std"), kind="normal")

    def b_rand_tensor(self, e: ast.Call) -> ir.Value:
        return self.random("uniform", self.c(0.0), self.c(1.0), self.dims_args(e, 0))

    def b_rand_normal_tensor(self, e: ast.Call) -> ir.Value:
        mean, std = self.scalar_arg(e, 0, "mean"), self.scalar_arg(e, 1, "std")
        return self.random("normal", mean, std, self.dims_args(e, 2))

    def xavier_bound(self, fan_in: ir.Value, fan_out: ir.Value) -> ir.Value:
        return self.op(Op.SQRT, self.op(Op.DIV, self.c(6.0), self.op(Op.ADD, fan_in, fan_out)))

    def he_std(self, fan_in: ir.Value) -> ir.Value:
        return self.op(Op.SQRT, self.op(Op.DIV, self.c(2.0), fan_in))

    def b_xavier_init(self, e: ast.Call) -> ir.Value:
        bound = self.xavier_bound(self.scalar_arg(e, 0, "fan_in"), self.scalar_arg(e, 1, "fan_out"))
        return self.random("uniform", self.op(Op.NEG, bound), bound, self.dims_args(e, 2))

    def b_he_init(self, e: ast.Call) -> ir.Value:
        return self.random("normal", self.c(0.0), self.he_std(self.scalar_arg(e, 0, "fan_in")), self.dims_args(e, 1))

    def b_zeros(self, e: ast.Call) -> ir.Value:
        return self.op(Op.FILL, self.c(0.0), *self.shape_list(e))

    def b_ones(self, e: ast.Call) -> ir.Value:
        return self.op(Op.FILL, self.c(1.0), *self.shape_list(e))

    def b_full(self, e: ast.Call) -> ir.Value:
        dims = self.shape_list(e)
        return self.op(Op.FILL, self.scalar_arg(e, 1, "the fill value"), *dims)

    def b_normal(self, e: ast.Call) -> ir.Value:
        dims = self.shape_list(e)
        return self.random("normal", self.scalar_arg(e, 1, "mean"), self.scalar_arg(e, 2, "std"), dims)

    def b_uniform(self, e: ast.Call) -> ir.Value:
        dims = self.shape_list(e)
        return self.random("uniform", self.scalar_arg(e, 1, "lo"), self.scalar_arg(e, 2, "hi"), dims)

    def b_xavier(self, e: ast.Call) -> ir.Value:
        dims = self.shape_list(e)
        bound = self.xavier_bound(dims[0], dims[-1])
        return self.random("uniform", self.op(Op.NEG, bound), bound, dims)

    def b_he(self, e: ast.Call) -> ir.Value:
        dims = self.shape_list(e)
        return self.random("normal", self.c(0.0), self.he_std(dims[0]), dims)

