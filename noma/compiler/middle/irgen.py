"""Checked AST → IR: name resolution, rank inference, monomorphisation, structured SSA.

Owns: turning a Program (a file or a cell) into an ir.Module whose entry `__cell` runs the
top-level statements; specialising user functions per argument ranks; turning mutable variables
and `break`/`continue`/`return` into structured SSA (if results, loop-carried values, flags);
the `optimize` statement's parameters, optimizer, stop test and carried state.
Input: ast.Program + a SymbolTable (changed in place: pass a clone). Output: ir.Module.
Imports: ast, ir, rewrite (the call graph), symbols, irgen_flow, irgen_stmts, irgen_exprs, irgen_builtins
(they see IRGen only as a type), diagnostics. The only module that
knows AST and IR.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Callable, Optional

from noma.compiler.front import ast

from noma.compiler.middle import ir, rewrite
from noma.compiler.front.budget import too_deep
from noma.compiler.middle.irgen_builtins import BUILTINS, INITIALISERS, BuiltinContext
from noma.compiler.middle import irgen_exprs, irgen_stmts
from noma.compiler.middle.irgen_flow import BRK, CONT, RET, RETVAL, _assigned, _exits, _rank_words
from noma.compiler.middle.irgen_scopes import Changes, Journal, Scope
from noma.compiler.front.symbols import VALUE_SLOT, ParamVar, SymbolTable
from noma.diagnostics import Kind, NomaError, Span, error

#: Result ranks tried, in order, for a recursive function (None: it returns no value).
RANK_CANDIDATES: tuple[Optional[int], ...] = (0, 1, 2, 3, 4, None)

#: The statements that may take a break/continue/return exit (irgen_flow._exits: no other can).
_MAY_EXIT = frozenset((ast.Break, ast.Continue, ast.Return, ast.If, ast.While, ast.For, ast.Batch))

#: Reads a safetensors header at compile time: path -> {tensor name: rank}.
HeaderReader = Callable[[str], dict[str, int]]


@dataclass
class FnState:
    """What is being generated: the cell entry or one specialisation of a user function."""

    name: str
    toplevel: bool
    scopes: list[dict[str, ir.Value]] = field(default_factory=list)  # Scope objects (irgen_scopes)
    loop_depth: int = 0
    optimize_body: Optional[dict] = None  # records the `minimize` of the innermost optimize
    journal: Journal = field(default_factory=Journal)  # the writes in_block undoes

    def __post_init__(self) -> None:
        if not self.scopes:
            self.scopes = [Scope(self.journal, 0)]


class IRGen:
    """Generates one module. Use `generate(program)` once per instance."""

    def __init__(self, symbols: SymbolTable, dtype: str = "f64", read_header: Optional[HeaderReader] = None,
                 cell_name: str = "__cell", spans: Optional[list] = None):
        self.symbols = symbols
        # `spans`: a session's one span table (append-only), so a span id in code compiled by an
        # earlier cell still names its span when a later cell's run fails inside that code
        self.module = ir.Module(dtype=dtype, spans=spans if spans is not None else [])
        self.read_header = read_header
        self.cell_name = cell_name
        self.b: ir.Builder = ir.Builder(self.module, ir.Block())
        self.fn = FnState(cell_name, toplevel=True)
        self.specs: dict[tuple[str, tuple[int, ...]], Optional[int]] = {}
        self.in_progress: set[tuple[str, tuple[int, ...]]] = set()
        #: result rank assumed for recursive calls of a specialisation being generated
        self.rank_guess: dict[tuple[str, tuple[int, ...]], Optional[int]] = {}
        self.guess_used: set[tuple[str, tuple[int, ...]]] = set()
        self.has_value = False
        self.value_rank = 0
        self.const_values: dict[int, float] = {}
        self.saved_headers: dict[str, dict[str, int]] = {}
        #: locals bound by a load_safetensors of several tensors: (name, value id) -> the file's tensor names
        self.local_models: dict[tuple[str, int], tuple[str, ...]] = {}
        #: the outermost statement (of the cell or a function) being generated, for too_deep()
        self.where: Optional[Span] = None
        self.builtins = BuiltinContext(self)
        #: whether a CALL was emitted: without one no function can be recursive
        self.has_calls = False

    # ------------------------------------------------------------------ entry points

    def generate(self, program: ast.Program, run_main: bool = False) -> ir.Module:
        for item in program.items:
            if isinstance(item, ast.FnDef):
                self.symbols.functions[item.name] = item
        body = ir.Block()
        self.b = ir.Builder(self.module, body)
        stmts = tuple(i for i in program.items if not isinstance(i, ast.FnDef))
        try:
            self.gen_stmts(stmts)
        except RecursionError:  # the parser limits source nesting; this is the last resort
            raise too_deep(self.where) from None
        # statements imported from modules (their declarations) do not count: the file's own do
        own = [s for s in stmts if s.span.source is program.span.source]
        if run_main and not own and "main" in self.symbols.functions:
            main = self.symbols.functions["main"]
            value = self.call_user(main, (), main.name_span, main.span, located=False)
            if value is not None:  # `noma run` prints what main returns, in print's format
                self.b.emit(ir.Op.PRINT, (value,), self.span(main.name_span), parts=(None,))
        self.module.functions[self.cell_name] = ir.Function(self.cell_name, [], body, None)
        self.module.entry = self.cell_name
        for fn in self.module.functions.values() if self.has_calls else ():
            if rewrite.is_recursive(self.module, fn.name):
                _keep_reentered_loops(fn.body)
        return self.module

    def span(self, span: Optional[Span]) -> int:
        if span is None:
            return -1
        spans = self.module.spans  # module.add_span(span), inlined: irgen adds a span per operation
        spans.append(span)
        return len(spans) - 1

    def store_value(self, value: ir.Value) -> None:
        """Make value the cell's result (global slot 0)."""
        self.b.emit(ir.Op.GLOBAL_STORE, (value,), slot=VALUE_SLOT, name="_")
        self.has_value = True
        self.value_rank = value.rank

    # ------------------------------------------------------------------ scopes

    def lookup_local(self, name: str) -> Optional[ir.Value]:
        scopes = self.fn.scopes
        if len(scopes) == 1:  # the top level of a cell: one scope
            return scopes[0].get(name)
        scope = self.fn.journal.find(name, scopes)
        return None if scope is None else scope[name]

    def set_local(self, name: str, value: ir.Value) -> None:
        scopes = self.fn.scopes
        scope = self.fn.journal.find(name, scopes)
        (scopes[-1] if scope is None else scope)[name] = value

    def declare_local(self, name: str, value: ir.Value) -> None:
        self.fn.scopes[-1][name] = value

    def new_scope(self, entries: Optional[dict[str, ir.Value]] = None) -> None:
        """Open an inner scope (closed by popping fn.scopes)."""
        self.fn.scopes.append(Scope(self.fn.journal, len(self.fn.scopes), entries))

    def at_global_scope(self) -> bool:
        return self.fn.toplevel and len(self.fn.scopes) == 1

    # ------------------------------------------------------------------ blocks with merging

    def in_block(self, block: ir.Block, gen: Callable[[], None]) -> Changes:
        """Generate into block with a fresh inner scope; the scopes around it are as before
        afterwards (its writes undone: irgen_scopes); returns what it left in them."""
        saved_b, fn = self.b, self.fn
        scopes, journal = fn.scopes, fn.journal
        depth = len(scopes)
        mark = journal.mark()
        self.b = ir.Builder(self.module, block)
        self.new_scope()
        try:
            gen()
            return Changes(journal, mark, scopes, depth)
        finally:
            journal.undo(mark)
            del scopes[depth:]
            self.b = saved_b

    def placeholder(self, rank: int) -> ir.Value:
        zero = self.b.const(0.0)
        if rank == 0:
            return zero
        one = self.b.const(1.0)
        return self.b.value(ir.Op.FILL, zero, *([one] * rank))

    def gen_if(self, cond: ir.Value, then: Callable[[], None], else_: Optional[Callable[[], None]], span: int,
               where: Span) -> None:
        """An IfOp whose results are the outer variables either branch changes."""
        scopes = self.fn.scopes
        tb, eb = ir.Block(), ir.Block()
        after_t = self.in_block(tb, then)
        after_e = self.in_block(eb, else_) if else_ is not None else None
        branches = [after_t] if after_e is None else [after_t, after_e]
        written: dict[int, set[str]] = {}
        for branch in branches:
            for level, name in branch.before:
                written.setdefault(level, set()).add(name)
        changed: list[tuple[int, str]] = []
        for level in sorted(written):  # in the order of the scopes and of their names
            names = written[level]
            for name, before in scopes[level].items():
                if name in names and any(b.value(level, name, before) is not before for b in branches):
                    changed.append((level, name))
        # special flags may be introduced by a branch (e.g. $retval on a return)
        for level in sorted(written):
            if RETVAL in written[level] and RETVAL not in scopes[level]:
                changed.append((level, RETVAL))
        results = []
        for level, name in changed:
            old = scopes[level].get(name)
            vt = after_t.value(level, name, old)
            ve = after_e.value(level, name, old) if after_e is not None else old
            rank = (vt or ve).rank  # type: ignore[union-attr]
            if vt is not None and ve is not None and vt.rank != ve.rank:
                raise error(Kind.TYPE, f"`{name}` is {_rank_words(vt.rank)} in one branch and "
                            f"{_rank_words(ve.rank)} in the other", where)
            for block, v in ((tb, vt), (eb, ve)):
                block.yields.append(v if v is not None else self._placeholder_in(block, rank))
            results.append(self.module.new_value(rank))
        self.b.block.ops.append(ir.IfOp(cond, tb, eb, results, span))
        for (level, name), value in zip(changed, results):
            scopes[level][name] = value

    def _placeholder_in(self, block: ir.Block, rank: int) -> ir.Value:
        saved = self.b
        self.b = ir.Builder(self.module, block)
        try:
            return self.placeholder(rank)
        finally:
            self.b = saved

    def guard(self) -> ir.Value:
        """1.0 when no break/continue/return flag in scope is set."""
        flags = [v for n in (BRK, CONT, RET) if (v := self.lookup_local(n)) is not None]
        if not flags:
            return self.b.const(1.0)
        any_set = flags[0]
        for f in flags[1:]:
            any_set = self.b.value(ir.Op.OR, any_set, f)
        return self.b.value(ir.Op.NOT, any_set)

    # ------------------------------------------------------------------ statements

    def gen_stmts(self, stmts: tuple) -> None:
        outermost = len(self.fn.scopes) <= (1 if self.fn.toplevel else 2)
        for i, stmt in enumerate(stmts):
            if outermost:
                self.where = stmt.span
            self.gen_stmt(stmt)
            if i + 1 < len(stmts) and type(stmt) in _MAY_EXIT and _exits((stmt,)):
                rest = stmts[i + 1:]
                self.gen_if(self.guard(), lambda: self.gen_stmts(rest), None, -1, stmt.span)
                return

    def gen_stmt(self, s: ast.Stmt) -> None:
        irgen_stmts.HANDLERS[type(s)](self, s)

    # ------------------------------------------------------------------ loops

    def gen_loop(self, cond_fn: Callable[[], ir.Value], body_fn: Callable[[], None], body_stmts: tuple,
                 span: int, extra_carried: tuple[str, ...] = ()) -> None:
        """A WhileOp carrying every outer local the body assigns; handles break/continue flags."""
        self.new_scope()
        exits = _exits(body_stmts)
        if BRK in exits:
            self.declare_local(BRK, self.b.const(0.0))
        if RET in exits and self.lookup_local(RETVAL) is None:  # lives in the function's scope
            self.fn.scopes[1][RETVAL] = self.placeholder(self._trial_return_rank(body_fn))
        names = (_assigned(body_stmts) | set(extra_carried) | ({BRK} if BRK in exits else set()))
        carried = sorted(n for n in names if self.lookup_local(n) is not None)
        inits = [self.lookup_local(n) for n in carried]
        cond_block = ir.Block(params=[self.module.new_value(v.rank) for v in inits])  # type: ignore[union-attr]
        body_block = ir.Block(params=[self.module.new_value(v.rank) for v in inits])  # type: ignore[union-attr]

        def cond_gen() -> None:
            for n, p in zip(carried, cond_block.params):
                self.set_local(n, p)
            c = cond_fn()
            g = [v for n in (BRK, RET) if n in carried and (v := self.lookup_local(n)) is not None]
            for flag in g:
                c = self.b.value(ir.Op.AND, c, self.b.value(ir.Op.NOT, flag))
            cond_block.yields.append(c)

        def body_gen() -> None:
            for n, p in zip(carried, body_block.params):
                self.set_local(n, p)
            if CONT in exits:
                self.declare_local(CONT, self.b.const(0.0))
            self.fn.loop_depth += 1
            try:
                body_fn()
            finally:
                self.fn.loop_depth -= 1
            for n, p in zip(carried, body_block.params):
                v = self.lookup_local(n)
                assert v is not None
                if v.rank != p.rank:
                    where = self.module.spans[span] if span >= 0 else None
                    raise error(Kind.TYPE, f"`{n}` changes from {_rank_words(p.rank)} to "
                                f"{_rank_words(v.rank)} inside the loop", where)
                body_block.yields.append(v)

        self.in_block(cond_block, cond_gen)
        self.in_block(body_block, body_gen)
        results = [self.module.new_value(v.rank) for v in inits]  # type: ignore[union-attr]
        loop = ir.WhileOp(list(inits), cond_block, body_block, results, span)  # type: ignore[arg-type]
        if self.fn.optimize_body is None:  # the tape of a training step needs every iteration's data
            slot = self.symbols.new_global_slot
            loop.carry_slots = [None if v.rank == 0 else (slot(), slot()) for v in inits]  # type: ignore[union-attr]
        self.b.block.ops.append(loop)
        for n, r in zip(carried, results):
            self.set_local(n, r)
        self.fn.scopes.pop()

    def _trial_return_rank(self, body_fn: Callable[[], None]) -> int:
        """Generate a loop body once into a scratch block to learn the rank it returns."""
        scopes = self.fn.scopes
        depth = len(scopes)
        trial = ir.Block()
        self.new_scope({RETVAL: self.b.const(0.0)})
        try:
            after = self.in_block(trial, body_fn)
            for level in reversed(range(len(scopes))):  # the innermost $retval when the body ended
                value = after.value(level, RETVAL, scopes[level].get(RETVAL))
                if value is not None:
                    return value.rank
            return 0
        finally:
            del scopes[depth:]

    # ------------------------------------------------------------------ expressions

    def gen_expr(self, e: ast.Expr) -> ir.Value:
        return irgen_exprs.gen_expr(self, e)

    def gen_expr_or_void(self, e: ast.Expr) -> Optional[ir.Value]:
        return irgen_exprs.gen_expr_or_void(self, e)

    def scalar(self, e: ast.Expr, what: str) -> ir.Value:
        v = self.gen_expr(e)
        if v.rank != 0:
            raise error(Kind.TYPE, f"{what} must be a scalar, got {_rank_words(v.rank)}", e.span)
        return v

    def load_name(self, name: str, span: Span) -> ir.Value:
        local = self.lookup_local(name)
        if local is not None:
            if (name, local.id) in self.local_models:
                self.warn_whole_model(name, self.local_models[name, local.id], span)
            return local
        sid = self.span(span)
        sym = self.symbols
        if name in sym.whole_models and name in sym.globals:
            self.warn_whole_model(name, sym.whole_models[name], span)
        if name in sym.freed and name not in sym.params:
            at = sym.freed[name]
            raise error(Kind.NAME, f"`{name}` was freed at line {at.line}, column {at.column}", span)
        if name in sym.params:
            p = sym.params[name]
            return self.b.value(ir.Op.PARAM_LOAD, span=sid, slot=p.slot, name=name, rank=p.rank)
        if name in sym.dims:
            return self.b.value(ir.Op.DIM_LOAD, span=sid, dim=sym.dims[name], name=name)
        if name in sym.globals:
            g = sym.globals[name]
            return self.b.value(ir.Op.GLOBAL_LOAD, span=sid, slot=g.slot, name=name, rank=g.rank)
        if name in sym.functions or name in BUILTINS:
            raise error(Kind.TYPE, f"`{name}` is a function; call it with parentheses", span)
        raise self.undefined(name, span, "variable")

    def warn_whole_model(self, name: str, tensors: tuple[str, ...], span: Span) -> None:
        """The original NOMA's use of a loaded file of several tensors as one tensor value."""
        listed = ", ".join(f"`{t}`" for t in tensors)
        self.module.warnings.append((
            self.span(span),
            f"`{name}` holds {len(tensors)} tensors ({listed}); as in the original NOMA, `{name}` alone "
            f"is the first one in the file, `{tensors[0]}`",
            f"write `{name}.{tensors[0]}` (or `{name}.NAME` for another tensor) to say which one"))

    def undefined(self, name: str, span: Span, what: str) -> NomaError:
        known = list(self.symbols.globals) + list(self.symbols.params) + list(self.symbols.dims)
        for scope in self.fn.scopes:
            known += [k for k in scope if not k.startswith("$")]
        if what == "function":
            known = list(self.symbols.functions) + list(BUILTINS) + list(INITIALISERS)
        close = difflib.get_close_matches(name, known, n=1)
        note = f"did you mean `{close[0]}`?" if close else None
        return error(Kind.NAME, f"undefined {what} `{name}`", span, note)

    # ------------------------------------------------------------------ user functions

    def call_user(self, fn: ast.FnDef, args: tuple[ir.Value, ...], name_span: Span, span: Span,
                  located: bool = True) -> Optional[ir.Value]:
        """A CALL of fn's specialisation for the arguments' ranks, at name_span (`located=False`:
        the implicit call of `main`, which no error's `called from` note shows)."""
        if len(args) != len(fn.params):
            raise error(Kind.TYPE, f"`{fn.name}` takes {len(fn.params)} argument(s), got {len(args)}", name_span)
        ranks = tuple(a.rank for a in args)
        key = (fn.name, ranks)
        spec = spec_name(fn.name, ranks)
        if key not in self.specs and key not in self.in_progress:
            try:
                self.specialise(fn, ranks, spec)
            except NomaError as exc:
                raise _called_from(exc, fn.name, name_span) from None
        if key in self.specs:
            result_rank = self.specs[key]
        else:  # a recursive call while its body is generated: the rank being tried
            result_rank = self.rank_guess[key]
            self.guess_used.add(key)
        self.has_calls = True
        return self.b.emit(ir.Op.CALL, args, self.span(name_span) if located else -1, callee=spec,
                           result_rank=result_rank)

    def specialise(self, fn: ast.FnDef, ranks: tuple[int, ...], spec: str) -> None:
        """Generate `fn` for argument ranks. A recursive function's inner calls need its result rank
        before the body is known: the body is generated with each candidate rank (scalar first,
        then tensors, then no result) until the rank it returns is the one assumed."""
        key = (fn.name, ranks)
        errors: list[NomaError] = []
        for guess in RANK_CANDIDATES:
            specs, functions = dict(self.specs), dict(self.module.functions)
            self.rank_guess[key] = guess
            self.guess_used.discard(key)
            try:
                result_rank = self._specialise_once(fn, ranks, spec)
            except NomaError as exc:
                if key not in self.guess_used:
                    raise
                errors.append(exc)
                result_rank = -1
            if key not in self.guess_used or result_rank == guess:
                return
            self.specs, self.module.functions = specs, functions  # drop what the wrong guess made
        if not errors:
            raise error(Kind.TYPE, f"`{fn.name}` returns a different rank than its recursive calls assume, "
                        "for every rank", fn.name_span)
        # an error that no rank explains (e.g. an undefined name) before the rank errors of wrong guesses
        raise next((e for e in errors if e.diagnostics[0].kind is not Kind.TYPE), errors[0])

    def _specialise_once(self, fn: ast.FnDef, ranks: tuple[int, ...], spec: str) -> Optional[int]:
        key = (fn.name, ranks)
        self.in_progress.add(key)
        saved = (self.b, self.fn)
        params = [self.module.new_value(r) for r in ranks]
        body = ir.Block()
        self.b = ir.Builder(self.module, body)
        self.fn = FnState(spec, toplevel=False)
        self.fn.scopes = [Scope(self.fn.journal, 0, dict(zip(fn.params, params))), Scope(self.fn.journal, 1)]
        try:
            self.declare_local(RET, self.b.const(0.0))
            stmts = fn.body.stmts
            if stmts and isinstance(stmts[-1], ast.ExprStmt) and stmts[-1].is_tail:
                stmts = stmts[:-1] + (ast.Return(stmts[-1].value, stmts[-1].span),)
            self.gen_stmts(stmts)
            retval = self.lookup_local(RETVAL)
            result_rank = None if retval is None else retval.rank
            if retval is not None:
                body.yields.append(retval)
        finally:
            self.b, self.fn = saved
            self.in_progress.discard(key)
        self.specs[key] = result_rank
        self.module.functions[spec] = ir.Function(spec, params, body, result_rank, self.span(fn.name_span))
        return result_rank

    # ------------------------------------------------------------------ optimize helpers

    def magic(self, names: tuple[str, ...]) -> Optional[tuple[str, Optional[float]]]:
        """The first magic hyperparameter variable in scope: (its name, constant value if known)."""
        for n in names:
            local = self.lookup_local(n)
            if local is not None:
                return n, self._const_of(local)
            if n in self.symbols.globals:
                return n, self.symbols.known_constants.get(n)
        return None

    def _const_of(self, v: ir.Value) -> Optional[float]:
        return self.const_values.get(v.id)

    def const(self, value: float, span: int = -1) -> ir.Value:
        """A CONST whose value irgen remembers (for the optimizer's magic names)."""
        v = self.b.const(value, span)
        self.const_values[v.id] = float(value)
        return v

    def bind_param_dims(self, name: str, var: ParamVar, value_expr: ast.Expr, sid: int) -> None:
        """`learn W = normal([2, hidden], ...)` records that axis 1 of W is sized by `hidden`."""
        if not (isinstance(value_expr, ast.Call) and value_expr.func in INITIALISERS and value_expr.args):
            return
        shape = value_expr.args[0]
        if not isinstance(shape, ast.ListLit):
            return
        for axis, item in enumerate(shape.items):
            if isinstance(item, ast.Name) and item.id in self.symbols.dims and self.lookup_local(item.id) is None:
                var.dims[axis] = item.id
                self.b.emit(ir.Op.PARAM_BIND_DIM, (), sid, slot=var.slot, axis=axis, dim=self.symbols.dims[item.id])


def _called_from(exc: NomaError, name: str, call: Span) -> NomaError:
    """An error inside a function of another file (a module's, the standard library's) with a note
    naming the call that reached it (`in `nn.dense`, called at train.noma:12:9`): the located line
    alone is in code the user did not write."""
    first = exc.diagnostics[0]
    if first.span is None or first.span.source is call.source:
        return exc
    where = f"in `{name}`, called at {call.source.name}:{call.line}:{call.column}"
    note = f"{first.note}; {where}" if first.note else where
    return NomaError([dataclasses.replace(first, note=note), *exc.diagnostics[1:]])


def _keep_reentered_loops(block: ir.Block) -> None:
    """In a recursive function, a loop whose iteration calls a function may run again (in a
    deeper activation) before its iteration ends: it must not keep its carried tensors in its
    fixed global slots (the deeper loop would overwrite them), so it keeps them in the arena."""
    for b in ir.walk_blocks(block):
        for op in b.ops:
            if isinstance(op, ir.WhileOp) and op.carry_slots and any(
                    isinstance(o, ir.Instr) and o.op is ir.Op.CALL
                    for inner in (op.cond, op.body) for blk in ir.walk_blocks(inner) for o in blk.ops):
                op.carry_slots = []


def spec_name(name: str, ranks: tuple[int, ...]) -> str:
    """The IR name of `name` specialised for argument ranks (`f` at (0, 2) → `f.s.t2`)."""
    return name + "".join("." + ("s" if r == 0 else f"t{r}") for r in ranks)


def generate(program: ast.Program, symbols: SymbolTable, dtype: str = "f64",
             read_header: Optional[HeaderReader] = None, run_main: bool = False,
             cell_name: str = "__cell", spans: Optional[list] = None) -> tuple[ir.Module, bool]:
    """Compile a program or cell. Returns the module and whether the cell leaves a value in slot 0.
    `spans`: the span table to extend (a session's, shared by its cells), else a new one."""
    gen = IRGen(symbols, dtype, read_header, cell_name, spans)
    module = gen.generate(program, run_main=run_main)
    return module, gen.has_value
