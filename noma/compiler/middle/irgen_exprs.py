"""IR generation for expressions (part of irgen).

Owns: literals, names, operators, indexing, fields, casts and the dispatch of calls to user
functions or builtins.
Imports: ast, ir, irgen_builtins, diagnostics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

from noma.compiler.front import ast

from noma.compiler.middle import ir
from noma.compiler.middle.irgen_builtins import BUILTINS, INITIALISERS
from noma.diagnostics import Kind, error

if TYPE_CHECKING:
    from noma.compiler.middle.irgen import IRGen

BINARY = {
    "+": ir.Op.ADD, "-": ir.Op.SUB, "*": ir.Op.MUL, "/": ir.Op.DIV, "%": ir.Op.MOD,
    "^": ir.Op.POW, "**": ir.Op.POW, "==": ir.Op.EQ, "!=": ir.Op.NE, "<": ir.Op.LT,
    "<=": ir.Op.LE, ">": ir.Op.GT, ">=": ir.Op.GE, "&&": ir.Op.AND, "||": ir.Op.OR,
}
CASTS = ("f64", "f32", "i32", "i64")


def gen_expr(g: "IRGen", e: ast.Expr) -> ir.Value:
    gen = _GENERATORS.get(type(e), _unsupported)
    value = gen(g, e)
    if value is None:
        raise error(Kind.TYPE, "this call returns no value", e.span)
    return value


def gen_expr_or_void(g: "IRGen", e: ast.Expr) -> Optional[ir.Value]:
    return _GENERATORS.get(type(e), _unsupported)(g, e)


def _num(g: "IRGen", e: ast.Num) -> ir.Value:
    return g.const(e.value, g.span(e.span))


def _name(g: "IRGen", e: ast.Name) -> ir.Value:
    return g.load_name(e.id, e.span)


def _unary(g: "IRGen", e: ast.Unary) -> ir.Value:
    operand = gen_expr(g, e.operand)
    return g.b.value(ir.Op.NEG if e.op == "-" else ir.Op.NOT, operand, span=g.span(e.span))


def _tensor_data(g: "IRGen", e: ast.TensorData) -> ir.Value:
    return g.b.value(ir.Op.CONST_TENSOR, span=g.span(e.span), shape=tuple(e.shape), data=e.data)


def _field(g: "IRGen", e: ast.Field) -> ir.Value:
    dotted = ast.dotted_name(e)
    if dotted is None:
        raise error(Kind.TYPE, "fields exist only on names loaded from safetensors files "
                    "and on modules imported with `as`", e.span)
    return g.load_name(dotted, e.span)


def _str(g: "IRGen", e: ast.Str) -> ir.Value:
    raise error(Kind.TYPE, "a string can only be printed or used as a file path", e.span)


def _list(g: "IRGen", e: ast.ListLit) -> ir.Value:
    raise error(Kind.TYPE, "a list `[...]` is only allowed as a shape (e.g. `zeros([2, 3])`); "
                "write `tensor [...]` for a tensor", e.span)


def _unsupported(g: "IRGen", e: Any) -> ir.Value:
    raise error(Kind.SYNTAX, "unsupported expression", e.span)


def gen_left_chain(g: "IRGen", e: ast.Expr) -> ir.Value:
    """Operators, indexing and casts nest to the left (`1 + 1 + ... + 1`, `x[0][1]`, `e as f64 as
    i32`): the chain is walked with a loop, innermost first, so its length costs no recursion
    (the parser limits nesting that does recurse: brackets and right operands)."""
    chain = []
    node = e
    while isinstance(node, (ast.Binary, ast.Index, ast.Cast)):
        chain.append(node)
        node = node.left if isinstance(node, ast.Binary) else (
            node.target if isinstance(node, ast.Index) else node.operand)
    value = gen_expr(g, node)
    for link in reversed(chain):
        if isinstance(link, ast.Binary) and link.op in ("&&", "||"):
            value = gen_logical(g, link, value)
        elif isinstance(link, ast.Binary):
            right = gen_expr(g, link.right)
            value = g.b.value(BINARY[link.op], value, right, span=g.span(link.span))
        elif isinstance(link, ast.Index):
            if value.rank == 0:
                raise error(Kind.TYPE, "cannot index a scalar", link.span)
            index = g.scalar(link.index, "an index")
            value = g.b.value(ir.Op.INDEX, value, index, span=g.span(link.span))
        else:
            if link.to not in CASTS:
                raise error(Kind.TYPE, f"cannot cast to `{link.to}`; use f64, f32, i32 or i64", link.span)
            value = g.b.value(ir.Op.CAST, value, span=g.span(link.span), to=link.to)
    return value


def gen_logical(g: "IRGen", e: ast.Binary, left: ir.Value) -> ir.Value:
    """`a && b` / `a || b` with a scalar `a`: an IfOp on `a` whose one branch evaluates `b`, so
    `b` (and its effects) runs only when it decides the result; the value is 1.0 or 0.0.
    With a tensor `a` the operator is elementwise and evaluates both sides."""
    sid = g.span(e.span)  # `left` is e.left, already generated (gen_left_chain)
    if left.rank > 0:
        return g.b.value(BINARY[e.op], left, gen_expr(g, e.right), span=sid)
    is_and = e.op == "&&"
    temp = f"$logic{sid}"
    g.declare_local(temp, g.const(0.0 if is_and else 1.0))

    def evaluate_right() -> None:
        right = gen_expr(g, e.right)
        if right.rank > 0:
            raise error(Kind.TYPE, f"`{e.op}` with a scalar left side short-circuits, so its right side must "
                        f"be a scalar too, got a rank-{right.rank} tensor", e.right.span)
        g.set_local(temp, g.b.value(ir.Op.NE, right, g.const(0.0), span=sid))

    if is_and:
        g.gen_if(left, evaluate_right, None, sid, e.span)
    else:
        g.gen_if(left, lambda: None, evaluate_right, sid, e.span)
    result = g.lookup_local(temp)
    assert result is not None
    return result


def gen_tensor(g: "IRGen", e: ast.TensorLit) -> ir.Value:
    if len(e.shape) > 4:
        raise error(Kind.TYPE, "tensors have at most 4 dimensions", e.span)
    items = [g.scalar(item, "a tensor element") for item in e.items]
    return g.b.value(ir.Op.PACK, *items, span=g.span(e.span), shape=tuple(e.shape))


def gen_call(g: "IRGen", e: ast.Call) -> Optional[ir.Value]:
    user = g.symbols.functions.get(e.func)
    if user is not None:
        if e.kwargs:
            raise error(Kind.TYPE, f"`{e.func}` takes no keyword arguments", e.kwargs[0].span)
        args = tuple(gen_expr(g, a) for a in e.args)
        return g.call_user(user, args, e.name_span, e.span)
    builtin = BUILTINS.get(e.func)
    if builtin is None:
        raise g.undefined(e.func, e.name_span, "function")
    lo, hi, _ = builtin
    if not lo <= len(e.args) <= hi:
        want = str(lo) if lo == hi else (f"{lo} or more" if hi > 8 else f"{lo} to {hi}")
        raise error(Kind.TYPE, f"`{e.func}` takes {want} argument(s), got {len(e.args)}", e.name_span)
    if e.kwargs:
        raise error(Kind.TYPE, f"`{e.func}` takes no keyword arguments", e.kwargs[0].span)
    if e.func in INITIALISERS and not isinstance(e.args[0], ast.ListLit):
        raise error(Kind.TYPE, f"`{e.func}` takes its shape first, as a list: `{e.func}([2, 3], ...)`",
                    e.args[0].span)
    return g.builtins.call(e)


#: the generator of each expression class (the AST's classes have no subclasses)
_GENERATORS: dict[type, Callable[["IRGen", Any], Optional[ir.Value]]] = {
    ast.Call: gen_call, ast.Num: _num, ast.Name: _name, ast.Binary: gen_left_chain, ast.Index: gen_left_chain,
    ast.Cast: gen_left_chain, ast.Unary: _unary, ast.TensorLit: gen_tensor, ast.TensorData: _tensor_data,
    ast.Field: _field, ast.Str: _str, ast.ListLit: _list,
}
