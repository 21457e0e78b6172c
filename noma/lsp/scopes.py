"""Definitions and references of a parsed NOMA program, resolved with NOMA's scoping rules.

Owns: ScopeIndex — every name a program declares (functions and their arguments, learnable
parameters, alloc buffers, dims, globals, locals, loop variables, loaded data) with where it is
visible, and every use of a name resolved to its declaration. Scoping: blocks open scopes; a
top-level declaration is a global, visible after it and inside every function (functions see
globals, not their callers' locals); functions are visible everywhere; `learn w` of a parameter
already declared re-initialises it (a use, not a new name); the variable an `optimize` body
minimizes stays visible after the loop and in its `until` condition.
Input: a noma.compiler.front.ast.Program from the compiler's parser. Nothing is evaluated.
Imports: noma.compiler.front.ast, noma.diagnostics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

from noma.compiler.front import ast
from noma.diagnostics import Span

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(eq=False)
class Definition:
    """A declared name."""

    name: str
    kind: str  # function | argument | parameter | buffer | dim | global | local | loop | data | model
    span: Span  # the name where it is declared
    decl: Span  # the whole declaring statement (or function)
    visible_from: int
    visible_to: int
    function: Optional[str] = None  # the enclosing function, None at the top level
    value: Optional[ast.Expr] = None
    node: object = None
    children: list["Definition"] = field(default_factory=list)

    @property
    def is_global(self) -> bool:
        return self.function is None and self.kind in _GLOBAL_KINDS


@dataclass(frozen=True)
class Reference:
    """One occurrence of a name (its declaration included) resolved to its Definition."""

    start: int
    end: int
    definition: Definition


class ScopeIndex:
    """All definitions and references of one program."""

    def __init__(self, program: ast.Program):
        self.program = program
        self.definitions: list[Definition] = []
        self.references: list[Reference] = []
        self.functions: dict[str, Definition] = {}
        self.globals: dict[str, Definition] = {}
        self._end = program.span.end
        self._scopes: list[dict[str, Definition]] = []
        self._function: Optional[str] = None
        self._collect_functions(program)
        self._scopes = [self.globals]
        for item in program.items:
            if not isinstance(item, ast.FnDef):
                self._stmt(item, self._end)
        for item in program.items:
            if isinstance(item, ast.FnDef):
                self._fn(item)

    # ------------------------------------------------------------------ queries

    def reference_at(self, offset: int) -> Optional[Reference]:
        """The name occurrence at (or just before) an offset."""
        best = None
        for ref in self.references:
            if ref.start <= offset <= ref.end:
                if best is None or ref.start > best.start:
                    best = ref
        return best

    def references_to(self, definition: Definition) -> list[Reference]:
        return [r for r in self.references if r.definition is definition]

    def visible(self, offset: int) -> list[Definition]:
        """Definitions a name typed at `offset` could mean (innermost first, one per name)."""
        in_function = self._function_at(offset) is not None
        seen: dict[str, Definition] = {}
        for d in sorted(self.definitions, key=lambda d: -d.visible_from):  # innermost first
            if d.kind != "function" and d.visible_from <= offset <= d.visible_to:
                seen.setdefault(d.name, d)
        for d in self.definitions:
            if d.kind == "function" or (in_function and d.is_global):  # functions see every global
                seen.setdefault(d.name, d)
        return list(seen.values())

    def _function_at(self, offset: int) -> Optional[Definition]:
        for d in self.functions.values():
            if d.decl.start <= offset <= d.decl.end:
                return d
        return None

    # ------------------------------------------------------------------ building

    def _collect_functions(self, program: ast.Program) -> None:
        for item in program.items:
            if isinstance(item, ast.FnDef) and item.name not in self.functions:
                d = Definition(item.name, "function", item.name_span, item.span, 0, self._end, node=item)
                self.functions[item.name] = d
                self.definitions.append(d)
                self._ref(item.name_span, d)

    def _ref(self, span: Span, d: Definition) -> None:
        self.references.append(Reference(span.start, span.end, d))

    def _define(self, name: str, kind: str, span: Span, decl: Span, scope_end: int,
                value: Optional[ast.Expr] = None, node: object = None,
                visible_from: Optional[int] = None) -> Definition:
        d = Definition(name, kind, span, decl, decl.end if visible_from is None else visible_from,
                       scope_end, self._function, value, node)
        self.definitions.append(d)
        self._scopes[-1][name] = d
        self._ref(span, d)
        return d

    def _lookup(self, name: str) -> Optional[Definition]:
        for scope in reversed(self._scopes):
            if name in scope:
                return scope[name]
        if self._function is not None and name in self.globals:
            return self.globals[name]  # functions (walked after the top level) see every global
        return self.functions.get(name)

    def _use(self, name: str, span: Span) -> None:
        d = self._lookup(name)
        if d is not None:
            self._ref(span, d)

    def _block(self, block: ast.Block) -> dict[str, Definition]:
        self._scopes.append({})
        for s in block.stmts:
            self._stmt(s, block.span.end)
        return self._scopes.pop()

    def _stmt(self, s: object, scope_end: int) -> None:
        if isinstance(s, ast.FnDef):
            self._fn(s)
        elif isinstance(s, ast.Learn):
            self._expr(s.value)
            existing = self._lookup(s.name)
            if existing is not None and existing.kind == "parameter":
                self._ref(s.name_span, existing)
            else:
                self._define(s.name, "parameter", s.name_span, s.span, scope_end, s.value, s)
        elif isinstance(s, (ast.Let, ast.DimDecl)):
            self._expr(s.value)
            kind = _KIND[type(s)] if self._function is None and len(self._scopes) == 1 else "local"
            if isinstance(s, ast.DimDecl):
                kind = "dim"
            self._define(s.name, kind, s.name_span, s.span, scope_end, s.value, s)
        elif isinstance(s, ast.Alloc):
            self._expr(s.dims)
            self._define(s.name, "buffer", s.name_span, s.span, scope_end, s.dims, s)
        elif isinstance(s, (ast.LoadCsv, ast.LoadSafetensors)):
            self._define(s.name, _KIND[type(s)], s.name_span, s.span, scope_end, None, s)
        elif isinstance(s, ast.Assign):
            self._expr(s.value)
            self._use(s.name, s.name_span)
        elif isinstance(s, ast.Realloc):
            self._expr(s.dims)
            if s.policy is not None:
                for a in s.policy.args:
                    self._expr(a)
            self._use(s.name, s.name_span)
        elif isinstance(s, ast.ReallocKeep):
            self._expr(s.indices)
            if s.axis is not None:
                self._expr(s.axis)
            self._use(s.name, s.name_span)
        elif isinstance(s, ast.Free):
            self._use(s.name, s.name_span)
        elif isinstance(s, (ast.Return,)):
            if s.value is not None:
                self._expr(s.value)
        elif isinstance(s, (ast.ExprStmt, ast.Minimize)):
            self._expr(s.value)
        elif isinstance(s, ast.SaveCsv):
            self._expr(s.value)
        elif isinstance(s, ast.SaveSafetensors):
            for _, e in s.entries:
                self._expr(e)
        elif isinstance(s, ast.If):
            self._expr(s.cond)
            self._block(s.then)
            if s.else_ is not None:
                self._block(s.else_) if isinstance(s.else_, ast.Block) else self._stmt(s.else_, scope_end)
        elif isinstance(s, ast.While):
            self._expr(s.cond)
            self._block(s.body)
        elif isinstance(s, ast.For):
            self._expr(s.start)
            self._expr(s.stop)
            self._scopes.append({})
            self._define(s.var, "loop", s.var_span, s.span, s.body.span.end, node=s, visible_from=s.body.span.start)
            self._block(s.body)
            self._scopes.pop()
        elif isinstance(s, ast.Batch):
            self._expr(s.data)
            self._expr(s.size)
            self._scopes.append({})
            self._define(s.var, "loop", s.var_span, s.span, s.body.span.end, node=s, visible_from=s.body.span.start)
            if s.index_var is not None:
                span = _name_after(s.var_span, s.index_var)
                if span is not None:
                    self._define(s.index_var, "loop", span, s.span, s.body.span.end, node=s,
                                 visible_from=s.body.span.start)
            self._block(s.body)
            self._scopes.pop()
        elif isinstance(s, ast.Optimize):
            self._optimize(s, scope_end)

    def _optimize(self, s: ast.Optimize, scope_end: int) -> None:
        for p in s.params:
            self._use(p.id, p.span)
        if s.optimizer is not None:
            for kw in s.optimizer.kwargs:
                self._expr(kw.value)
        if s.max_iter is not None:
            self._expr(s.max_iter)
        self._scopes.append({})
        for st in s.body.stmts:
            self._stmt(st, s.body.span.end)
        if s.until is not None:
            self._expr(s.until)
        body = self._scopes.pop()
        for st in s.body.stmts:  # the minimized variable outlives the loop
            if isinstance(st, ast.Minimize) and isinstance(st.value, ast.Name) and st.value.id in body:
                d = body[st.value.id]
                d.visible_to = scope_end
                self._scopes[-1][d.name] = d

    def _fn(self, s: ast.FnDef) -> None:
        fn = self.functions.get(s.name)
        outer, self._function = self._function, s.name
        saved, self._scopes = self._scopes, [{}]
        for name, span in zip(s.params, s.param_spans):
            d = self._define(name, "argument", span, s.span, s.span.end, node=s, visible_from=s.body.span.start)
            if fn is not None and fn.node is s:
                fn.children.append(d)
        self._block(s.body)
        self._scopes, self._function = saved, outer

    def _expr(self, e: object) -> None:
        if isinstance(e, ast.Name):
            self._use(e.id, e.span)
        elif isinstance(e, ast.Call):
            if e.func in self.functions:
                self._ref(e.name_span, self.functions[e.func])
            for a in e.args:
                self._expr(a)
            for kw in e.kwargs:
                self._expr(kw.value)
        elif isinstance(e, (ast.TensorLit, ast.ListLit)):
            for item in e.items:
                self._expr(item)
        elif isinstance(e, ast.Unary):
            self._expr(e.operand)
        elif isinstance(e, ast.Binary):
            self._expr(e.left)
            self._expr(e.right)
        elif isinstance(e, ast.Index):
            self._expr(e.target)
            self._expr(e.index)
        elif isinstance(e, (ast.Field, ast.Cast)):
            self._expr(e.target if isinstance(e, ast.Field) else e.operand)
        elif isinstance(e, ast.KwArg):
            self._expr(e.value)


_GLOBAL_KINDS = frozenset({"global", "parameter", "buffer", "dim", "data", "model"})
_KIND: dict[type, str] = {
    ast.Let: "global", ast.Learn: "parameter", ast.DimDecl: "dim", ast.Alloc: "buffer",
    ast.LoadCsv: "data", ast.LoadSafetensors: "model",
}


def _name_after(span: Span, name: str) -> Optional[Span]:
    """The span of `name` as the next word after `span` (the index variable of `batch xb, i`)."""
    text = span.source.text
    for m in _NAME.finditer(text, span.end):
        return Span(span.source, m.start(), m.end()) if m.group(0) == name else None
    return None
