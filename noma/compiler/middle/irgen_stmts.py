"""IR generation for each statement form, including `optimize` (part of irgen).

Owns: one handler per ast statement class, registered in HANDLERS; the optimizer configuration
from the explicit `with` syntax or the original NOMA's magic variable names.
Imports: ast, ir, irgen (for the generator and its helpers), diagnostics.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Optional

from noma.compiler.front import ast

from noma import optimizers
from noma.compiler.middle import ir
from noma.compiler.middle.irgen_flow import BRK, CONT, MAGIC_LR, MAGIC_MAX, RET, RETVAL, _assigned, _rank_words
from noma.diagnostics import Kind, error

if TYPE_CHECKING:
    from noma.compiler.middle.irgen import IRGen

HYPER_ALIASES = optimizers.HYPER_ALIASES
DEFAULT_MAX_ITER = 1000.0


def bind(g: "IRGen", name: str, value: ir.Value, span_id: int) -> Optional[int]:
    """`let name = value`: a global at the top level of a cell (its slot returned), else a local."""
    if g.at_global_scope():
        g.symbols.whole_models.pop(name, None)
        var = g.symbols.global_slot(name, value.rank)
        g.b.emit(ir.Op.GLOBAL_STORE, (value,), span_id, slot=var.slot, name=name)
        const = g._const_of(value)
        if const is None:
            g.symbols.known_constants.pop(name, None)
        else:
            g.symbols.known_constants[name] = const
        return var.slot
    g.declare_local(name, value)
    return None


def gen_let(g: "IRGen", s: ast.Let) -> None:
    bind(g, s.name, g.gen_expr(s.value), g.span(s.name_span))


def gen_assign(g: "IRGen", s: ast.Assign) -> None:
    value = g.gen_expr(s.value)
    if g.lookup_local(s.name) is not None:
        g.set_local(s.name, value)
        return
    sym = g.symbols
    if s.name in sym.globals:
        var = sym.globals[s.name]
        sym.whole_models.pop(s.name, None)
        if var.rank != value.rank:
            if not g.at_global_scope():
                raise error(Kind.TYPE, f"`{s.name}` holds {_rank_words(var.rank)}; cannot assign "
                            f"{_rank_words(value.rank)} to it here", s.span)
            var = sym.global_slot(s.name, value.rank)
        g.b.emit(ir.Op.GLOBAL_STORE, (value,), g.span(s.name_span), slot=var.slot, name=s.name)
        const = g._const_of(value)
        if g.at_global_scope() and const is not None:
            sym.known_constants[s.name] = const
        else:
            sym.known_constants.pop(s.name, None)
        return
    if s.name in sym.params:
        raise error(Kind.TYPE, f"`{s.name}` is a learnable parameter: re-initialise it with `learn` "
                    "or resize it with `realloc`", s.name_span)
    if s.name in sym.dims:
        raise error(Kind.TYPE, f"`{s.name}` is a dim: change it with `realloc {s.name} = N;`", s.name_span)
    err = g.undefined(s.name, s.name_span, "variable")
    err.diagnostics[0] = type(err.diagnostics[0])(Kind.NAME, f"assignment to undeclared variable `{s.name}`",
                                                  s.name_span, f"declare it first with `let {s.name} = ...;`")
    raise err


def gen_learn(g: "IRGen", s: ast.Learn) -> None:
    value = g.gen_expr(s.value)
    var = g.symbols.param_slot(s.name, value.rank)
    sid = g.span(s.name_span)
    g.b.emit(ir.Op.PARAM_SET, (value,), sid, slot=var.slot, name=s.name)
    g.bind_param_dims(s.name, var, s.value, sid)


def gen_dim(g: "IRGen", s: ast.DimDecl) -> None:
    value = g.scalar(s.value, "a dim's size")
    known = _literal(s.value)
    if known is not None and not (0 <= known < 2.0 ** 62 and known == math.floor(known)):
        raise error(Kind.SHAPE, f"a dim's size must be a whole number from 0 to 2^62 - 1 (got {known:g})",
                    s.value.span)
    dim = g.symbols.dim_id(s.name)
    # the run-time check of a computed size (whole, >= 0) reports at the value, as the one above
    g.b.emit(ir.Op.DIM_SET, (value,), g.span(s.value.span), dim=dim, name=s.name)


def _literal(e: ast.Expr) -> Optional[float]:
    """The value of a number written in the source (`3`, `-1`), else None."""
    if isinstance(e, ast.Num):
        return e.value
    if isinstance(e, ast.Unary) and e.op == "-" and isinstance(e.operand, ast.Num):
        return -e.operand.value
    return None


def gen_alloc(g: "IRGen", s: ast.Alloc) -> None:
    dims = [g.scalar(d, "a dimension") for d in s.dims.items]
    if not 1 <= len(dims) <= 4:
        raise error(Kind.TYPE, "a buffer has 1 to 4 dimensions", s.dims.span)
    zero = g.const(0.0)
    value = g.b.value(ir.Op.FILL, zero, *dims, span=g.span(s.span))
    var = g.symbols.param_slot(s.name, len(dims))
    sid = g.span(s.name_span)
    g.b.emit(ir.Op.PARAM_SET, (value,), sid, slot=var.slot, name=s.name)
    g.bind_param_dims(s.name, var, ast.Call("zeros", (s.dims,), (), s.span, s.span), sid)


def _policy(g: "IRGen", p: Optional[ast.InitPolicy], for_dim: bool) -> tuple[int, ir.Value, ir.Value]:
    nan = g.const(math.nan)
    if p is None:
        return ir.POLICIES["default"], nan, nan
    if p.name not in ir.POLICIES:
        raise error(Kind.NAME, f"unknown init policy `{p.name}`; use one of "
                    + ", ".join(ir.POLICIES), p.span)
    if p.name in ("copy", "preserve") and not for_dim:
        raise error(Kind.TYPE, f"`init {p.name}` resizes a whole layer: use it with a dim "
                    "(`realloc hidden = 16 init copy;`)", p.span)
    wanted = 2 if p.name in ("normal", "uniform") else 0
    if len(p.args) != wanted:
        raise error(Kind.TYPE, f"`init {p.name}` takes {wanted} argument(s), got {len(p.args)}", p.span)
    args = [g.scalar(a, "an init argument") for a in p.args] + [nan, nan]
    return ir.POLICIES[p.name], args[0], args[1]


def gen_realloc(g: "IRGen", s: ast.Realloc) -> None:
    sym, sid = g.symbols, g.span(s.span)
    if s.name in sym.params:
        var = sym.params[s.name]
        if not isinstance(s.dims, ast.ListLit):
            raise error(Kind.TYPE, f"`realloc {s.name}` needs a shape like `[2, 16]`", s.dims.span)
        dims = [g.scalar(d, "a dimension") for d in s.dims.items]
        if len(dims) != var.rank:
            raise error(Kind.SHAPE, f"`{s.name}` has rank {var.rank}; the new shape has {len(dims)} "
                        "dimensions (realloc keeps the rank)", s.dims.span)
        policy, a, b = _policy(g, s.policy, for_dim=False)
        g.b.emit(ir.Op.PARAM_RESIZE, (a, b, *dims), sid, slot=var.slot, name=s.name, policy=policy)
    elif s.name in sym.dims:
        if isinstance(s.dims, ast.ListLit):
            raise error(Kind.TYPE, f"`{s.name}` is a dim: give its new size, e.g. `realloc {s.name} = 16;`",
                        s.dims.span)
        size = g.scalar(s.dims, "a dim's size")
        policy, a, b = _policy(g, s.policy, for_dim=True)
        g.b.emit(ir.Op.DIM_RESIZE, (size, a, b), sid, dim=sym.dims[s.name], name=s.name, policy=policy)
    else:
        g.load_name(s.name, s.name_span)  # freed / undefined diagnostics
        raise error(Kind.TYPE, f"`{s.name}` is not a parameter, buffer or dim; only those can be "
                    "reallocated", s.name_span)


def gen_realloc_keep(g: "IRGen", s: ast.ReallocKeep) -> None:
    """`realloc hidden keep idx;` / `realloc w keep idx axis 1;`: keep the units idx lists."""
    sym, sid = g.symbols, g.span(s.span)
    idx = g.gen_expr(s.indices)
    if idx.rank != 1:
        raise error(Kind.TYPE, "`keep` takes the indices of the units to keep as a vector, got "
                    + ("a scalar" if idx.rank == 0 else f"a rank-{idx.rank} tensor"), s.indices.span)
    if s.name in sym.params:
        var = sym.params[s.name]
        if s.axis is None:
            raise error(Kind.TYPE, f"`{s.name}` is a parameter: say along which axis, "
                        f"e.g. `realloc {s.name} keep idx axis 0;`", s.span)
        node = s.axis
        if not isinstance(node, ast.Num) or node.value != int(node.value):
            raise error(Kind.TYPE, "an axis must be an integer written in the statement", node.span)
        axis = int(node.value)
        if not 0 <= axis < var.rank:
            raise error(Kind.SHAPE, f"axis {axis} is out of range for `{s.name}` (rank {var.rank})", node.span)
        g.b.emit(ir.Op.PARAM_KEEP, (idx,), sid, slot=var.slot, name=s.name, axis=axis)
    elif s.name in sym.dims:
        if s.axis is not None:
            raise error(Kind.TYPE, f"`{s.name}` is a dim: its units are kept along every axis it sizes "
                        "(no `axis`)", s.axis.span)
        g.b.emit(ir.Op.DIM_KEEP, (idx,), sid, dim=sym.dims[s.name], name=s.name)
    else:
        g.load_name(s.name, s.name_span)
        raise error(Kind.TYPE, f"`{s.name}` is not a parameter, buffer or dim; only those can keep units",
                    s.name_span)


def gen_free(g: "IRGen", s: ast.Free) -> None:
    sym = g.symbols
    if s.name not in sym.params:
        g.load_name(s.name, s.name_span)
        raise error(Kind.TYPE, f"`{s.name}` is not a parameter or buffer; only those can be freed", s.name_span)
    var = sym.params.pop(s.name)
    sym.freed[s.name] = s.span
    g.b.emit(ir.Op.PARAM_FREE, (), g.span(s.span), slot=var.slot, name=s.name)


def gen_return(g: "IRGen", s: ast.Return) -> None:
    if g.fn.toplevel:
        raise error(Kind.SYNTAX, "`return` outside a function", s.span)
    if g.fn.optimize_body is not None:
        raise error(Kind.SYNTAX, "`return` is not allowed inside an optimize body", s.span)
    g.set_local(RET, g.const(1.0))
    if s.value is not None:
        value = g.gen_expr(s.value)
        if g.lookup_local(RETVAL) is None:
            g.fn.scopes[1][RETVAL] = value
        else:
            old = g.lookup_local(RETVAL)
            assert old is not None
            if old.rank != value.rank:
                raise error(Kind.TYPE, f"this function returns {_rank_words(old.rank)} elsewhere but "
                            f"{_rank_words(value.rank)} here", s.value.span)
            g.set_local(RETVAL, value)


def gen_expr_stmt(g: "IRGen", s: ast.ExprStmt) -> None:
    value = g.gen_expr_or_void(s.value)
    is_print = isinstance(s.value, ast.Call) and s.value.func == "print"
    if value is not None and g.at_global_scope() and not is_print:
        g.store_value(value)
    elif g.at_global_scope():
        g.has_value = False


def gen_if(g: "IRGen", s: ast.If) -> None:
    cond = g.scalar(s.cond, "a condition")
    else_ = s.else_
    g.gen_if(cond, lambda: g.gen_stmts(s.then.stmts),
             (lambda: g.gen_stmts(else_.stmts)) if else_ is not None else None, g.span(s.span), s.span)


def gen_while(g: "IRGen", s: ast.While) -> None:
    g.gen_loop(lambda: g.scalar(s.cond, "a loop condition"), lambda: g.gen_stmts(s.body.stmts),
               s.body.stmts, g.span(s.span))


def _counted_loop(g: "IRGen", var: str, start: ir.Value, stop: ir.Value, body: Callable[[], None],
                  stmts: tuple, span: int) -> None:
    g.new_scope({var: start})

    def body_fn() -> None:
        g.new_scope()
        body()
        g.fn.scopes.pop()
        i = g.lookup_local(var)
        assert i is not None
        g.set_local(var, g.b.value(ir.Op.ADD, i, g.const(1.0)))

    def cond_fn() -> ir.Value:
        i = g.lookup_local(var)
        assert i is not None
        return g.b.value(ir.Op.LT, i, stop)

    g.gen_loop(cond_fn, body_fn, stmts, span, extra_carried=(var,))
    g.fn.scopes.pop()


def gen_for(g: "IRGen", s: ast.For) -> None:
    start = g.scalar(s.start, "a range start")
    stop = g.scalar(s.stop, "a range end")
    _counted_loop(g, s.var, start, stop, lambda: g.gen_stmts(s.body.stmts), s.body.stmts, g.span(s.span))


def gen_batch(g: "IRGen", s: ast.Batch) -> None:
    sid = g.span(s.span)
    data = g.gen_expr(s.data)
    if data.rank == 0:
        raise error(Kind.TYPE, "batch needs a tensor to split into row blocks, got a scalar", s.data.span)
    size = g.b.value(ir.Op.CHECK, g.scalar(s.size, "a batch size"), span=g.span(s.size.span), rule="batch_size")
    rows = g.b.value(ir.Op.DIM, data, axis=0)
    count = g.b.value(ir.Op.CEIL, g.b.value(ir.Op.DIV, rows, size))
    counter = "$batch" + str(sid)

    def body() -> None:
        i = g.lookup_local(counter)
        assert i is not None
        start = g.b.value(ir.Op.MUL, i, size)
        end = g.b.value(ir.Op.MIN, g.b.value(ir.Op.ADD, start, size), rows)
        g.declare_local(s.var, g.b.value(ir.Op.SLICE, data, start, end, span=sid))
        if s.index_var is not None:
            g.declare_local(s.index_var, i)
        g.gen_stmts(s.body.stmts)

    _counted_loop(g, counter, g.const(0.0), count, body, s.body.stmts, sid)


def gen_break(g: "IRGen", s: ast.Break) -> None:
    if g.fn.loop_depth == 0:
        raise error(Kind.SYNTAX, "`break` outside a loop", s.span)
    g.set_local(BRK, g.const(1.0))


def gen_continue(g: "IRGen", s: ast.Continue) -> None:
    if g.fn.loop_depth == 0:
        raise error(Kind.SYNTAX, "`continue` outside a loop", s.span)
    g.set_local(CONT, g.const(1.0))


def gen_minimize(g: "IRGen", s: ast.Minimize) -> None:
    state = g.fn.optimize_body
    if state is None:
        raise error(Kind.SYNTAX, "`minimize` outside an optimize body", s.span)
    if len(g.fn.scopes) != state["depth"]:
        raise error(Kind.SYNTAX, "`minimize` must stand at the top level of the optimize body, "
                    "not inside an if or a loop", s.span)
    if state["loss"] is not None:
        raise error(Kind.SYNTAX, "an optimize body has one `minimize`", s.span)
    value = g.gen_expr(s.value)
    if value.rank != 0:
        raise error(Kind.TYPE, f"`minimize` needs a scalar loss, got {_rank_words(value.rank)} "
                    "(reduce it with mean or sum)", s.value.span)
    state["loss"] = value
    state["name"] = s.value.id if isinstance(s.value, ast.Name) else None


def gen_load_csv(g: "IRGen", s: ast.LoadCsv) -> None:
    value = g.b.value(ir.Op.LOAD_CSV, span=g.span(s.path.span), path=s.path.value)
    bind(g, s.name, value, g.span(s.name_span))


def gen_save_csv(g: "IRGen", s: ast.SaveCsv) -> None:
    value = g.gen_expr(s.value)
    g.b.emit(ir.Op.SAVE_CSV, (value,), g.span(s.path.span), path=s.path.value)


def gen_load_st(g: "IRGen", s: ast.LoadSafetensors) -> None:
    header = g.saved_headers.get(s.path.value)
    if header is None:
        if g.read_header is None:
            raise error(Kind.IO, "cannot read safetensors files here", s.path.span)
        try:
            header = g.read_header(s.path.value)
        except OSError as exc:
            raise error(Kind.IO, f"cannot read `{s.path.value}`: {exc.strerror or exc}", s.path.span) from None
        except ValueError as exc:
            raise error(Kind.IO, f"`{s.path.value}` is not a valid safetensors file: {exc}", s.path.span) from None
    sid = g.span(s.path.span)
    if g.at_global_scope() and len(header) > 1:  # one runtime call reads them all (any number)
        first = next(iter(header))  # `m` itself: the file's first tensor (as below)
        targets = [(f"{s.name}.{name}", name) for name in sorted(header)] + [(s.name, first)]
        slots = []
        for var, name in targets:
            slots.append(g.symbols.global_slot(var, header[name]).slot)
            g.symbols.known_constants.pop(var, None)
        g.b.emit(ir.Op.LOAD_ST_GLOBALS, (), sid, path=s.path.value, names=tuple(n for _, n in targets),
                 ranks=tuple(header[n] for _, n in targets), slots=tuple(slots))
        g.symbols.whole_models[s.name] = tuple(header)
        return
    loaded = {}
    for name, rank in sorted(header.items()):
        loaded[name] = g.b.value(ir.Op.LOAD_ST, span=sid, path=s.path.value, name=name, rank=rank)
        bind(g, f"{s.name}.{name}", loaded[name], sid)
    if not loaded:
        return
    first = next(iter(header))  # the file's order (NOMA and the original write the statement's order)
    bind(g, s.name, loaded[first], sid)
    if len(header) > 1:  # the original NOMA's `m` for a file of several tensors: its first, with a warning
        names = tuple(header)
        if g.at_global_scope():
            g.symbols.whole_models[s.name] = names
        else:
            g.local_models[s.name, loaded[first].id] = names


def gen_save_st(g: "IRGen", s: ast.SaveSafetensors) -> None:
    names = tuple(n for n, _ in s.entries)
    values = tuple(g.gen_expr(e) for _, e in s.entries)
    for (name, expr), v in zip(s.entries, values):
        if v.rank == 0:
            raise error(Kind.TYPE, f"`{name}` is a scalar; safetensors stores tensors", expr.span)
    g.saved_headers[s.path.value] = {n: v.rank for n, v in zip(names, values)}
    g.b.emit(ir.Op.SAVE_ST, values, g.span(s.path.span), path=s.path.value, names=names)


def gen_fn_nested(g: "IRGen", s: ast.FnDef) -> None:
    raise error(Kind.SYNTAX, "functions are defined at the top level", s.span)


# ----------------------------------------------------------------------------- optimize


def _optimizer_config(g: "IRGen", s: ast.Optimize) -> tuple[int, list[ir.Value]]:
    nan = g.const(math.nan)
    hyper = [nan] * ir.HYPER_LEN
    if s.optimizer is not None:
        kind = ir.OPTIMIZERS.get(s.optimizer.name)
        if kind is None:
            raise error(Kind.NAME, f"unknown optimizer `{s.optimizer.name}`; use {optimizers.names_text()}",
                        s.optimizer.span)
        for kw in s.optimizer.kwargs:
            key = HYPER_ALIASES.get(kw.name)
            if key is None:
                raise error(Kind.NAME, f"unknown hyperparameter `{kw.name}` for {s.optimizer.name}; known: "
                            + ", ".join(sorted(set(HYPER_ALIASES))), kw.span)
            hyper[ir.HYPER_NAMES.index(key)] = g.scalar(kw.value, f"`{kw.name}`")
        return kind, hyper
    kind = _magic_kind(g, s)
    lr = g.magic(MAGIC_LR)
    hyper[0] = g.load_name(lr[0], s.span) if lr else g.const(0.01)
    for names, key in ((("beta1",), "beta1"), (("beta2",), "beta2"), (("epsilon", "eps"), "eps")):
        found = g.magic(names)
        if found:
            hyper[ir.HYPER_NAMES.index(key)] = g.load_name(found[0], s.span)
    if kind == ir.OPTIMIZERS["rmsprop"]:
        hyper[ir.HYPER_NAMES.index("alpha")] = hyper[ir.HYPER_NAMES.index("beta2")]
    return kind, hyper


def _magic_kind(g: "IRGen", s: ast.Optimize) -> int:
    found = g.magic(("optimizer",))
    if found is not None:
        name, value = found
        if value is None or int(value) not in (1, 2, 3):
            raise error(Kind.TYPE, "`optimizer` must be set to the constant 1 (SGD), 2 (Adam) or 3 "
                        "(RMSprop) before the optimize", s.span)
        return int(value)
    for flag, kind in (("use_adam", 2), ("use_rmsprop", 3)):
        found = g.magic((flag,))
        if found is not None and found[1] is not None and found[1] != 0:
            return kind
    return 1


def gen_optimize(g: "IRGen", s: ast.Optimize) -> None:
    if g.fn.optimize_body is not None:
        raise error(Kind.SYNTAX, "an optimize cannot be nested in another optimize body", s.span)
    refs: list[ir.ParamRef] = []
    for n in s.params:
        if n.id not in g.symbols.params:
            if g.lookup_local(n.id) is None and n.id not in g.symbols.globals:
                g.load_name(n.id, n.span)
            raise error(Kind.TYPE, f"`{n.id}` is not a learnable parameter; declare it with `learn {n.id} = ...;`",
                        n.span)
        if any(r.name == n.id for r in refs):
            raise error(Kind.SYNTAX, f"`{n.id}` is listed twice", n.span)
        p = g.symbols.params[n.id]
        refs.append(ir.ParamRef(p.slot, n.id, p.rank))
    kind, hyper = _optimizer_config(g, s)
    if s.max_iter is not None:
        max_iter = g.scalar(s.max_iter, "the iteration bound")
    else:
        found = g.magic(MAGIC_MAX)
        max_iter = g.load_name(found[0], s.span) if found else g.const(DEFAULT_MAX_ITER)
    carried = sorted(n for n in _assigned(s.body.stmts) if g.lookup_local(n) is not None)
    inits = [v for n in carried if (v := g.lookup_local(n)) is not None]  # every carried name is local
    body = ir.Block(params=[g.module.new_value(v.rank) for v in inits])
    state: dict = {"loss": None, "name": None, "depth": len(g.fn.scopes) + 1}

    def body_gen() -> None:
        for n, p in zip(carried, body.params):
            g.set_local(n, p)
        saved_depth, g.fn.loop_depth = g.fn.loop_depth, 0
        g.fn.optimize_body = state
        try:
            g.gen_stmts(s.body.stmts)
            if state["loss"] is None:
                raise error(Kind.SYNTAX, "this optimize body has no `minimize` statement", s.span)
            stop = g.scalar(s.until, "the `until` condition") if s.until is not None else g.const(0.0)
        finally:
            g.fn.optimize_body = None
            g.fn.loop_depth = saved_depth
        body.yields.extend([state["loss"], stop])
        for n, p in zip(carried, body.params):
            v = g.lookup_local(n)
            assert v is not None
            if v.rank != p.rank:
                raise error(Kind.TYPE, f"`{n}` changes from {_rank_words(p.rank)} to {_rank_words(v.rank)} "
                            "inside the optimize body", s.span)
            body.yields.append(v)

    g.in_block(body, body_gen)
    results = [g.module.new_value(0)] + [g.module.new_value(v.rank) for v in inits]
    carry_slots = [None if v.rank == 0 else (g.symbols.new_global_slot(), g.symbols.new_global_slot())
                   for v in inits]
    until_text = s.until.span.text() if s.until is not None else ""
    op = ir.OptimizeOp(refs, kind, hyper, max_iter, list(inits), body, results,
                       until_text=until_text, span=g.span(s.span), carry_slots=carry_slots)
    g.b.block.ops.append(op)
    for var, r in zip(carried, results[1:]):
        g.set_local(var, r)
    name = state["name"]
    if name is not None:
        if g.lookup_local(name) is not None:
            g.set_local(name, results[0])
        else:
            slot = bind(g, name, results[0], g.span(s.span))
            # an interrupted or failed loop leaves its last computed loss there too
            op.result_slot = -1 if slot is None else slot


HANDLERS: dict[type, Callable] = {
    ast.Let: gen_let, ast.Assign: gen_assign, ast.Learn: gen_learn, ast.DimDecl: gen_dim,
    ast.Alloc: gen_alloc, ast.Realloc: gen_realloc, ast.ReallocKeep: gen_realloc_keep, ast.Free: gen_free,
    ast.Return: gen_return,
    ast.ExprStmt: gen_expr_stmt, ast.If: gen_if, ast.While: gen_while, ast.For: gen_for,
    ast.Batch: gen_batch, ast.Break: gen_break, ast.Continue: gen_continue, ast.Minimize: gen_minimize,
    ast.Optimize: gen_optimize, ast.LoadCsv: gen_load_csv, ast.SaveCsv: gen_save_csv,
    ast.LoadSafetensors: gen_load_st, ast.SaveSafetensors: gen_save_st, ast.FnDef: gen_fn_nested,
}
