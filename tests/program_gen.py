"""Hypothesis strategies for random NOMA programs (used by tests/test_generated_programs.py).

`training_programs()`: data and learnable parameters with fixed values, globals of fixed shapes,
user functions (pure, writing globals, recursive) and one `optimize(...) with sgd(lr = 1) max 1`
loop whose body assigns locals and globals at every nesting level (if/else, for, while, batch,
calls) and accumulates the global `loss` from random broadcasting expressions of the
differentiable builtins (arguments kept in their safe domains: log and sqrt of x*x + c, divisions
by x*x + c, tan of a bounded value). A GenProgram renders it two ways: `training` (the loop) and
`forward` (the same body as a plain block at the top level, without `minimize`). The forward
program is the reference for the loss and the globals: its code goes through irgen's ordinary
statements, not the training-step path; finite differences of its loss check the gradient the
one step applied (w_after - w_before = -grad).

`resize_programs()`: random sequences of `realloc` (every policy, parameters and dims), `free`,
re-`learn`, short training loops (also resizing inside the body) and prints.

Every choice is drawn from hypothesis, so failures shrink to small programs.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
from hypothesis import strategies as st

Shape = tuple[int, ...]

UNARY = ["sigmoid", "tanh", "relu", "abs", "sin", "cos", "exp", "log", "sqrt", "tan", "neg", "floor", "ceil"]
BINARY = ["+", "-", "*", "/", "^", "pow", "min", "max", "%"]


@dataclass
class GenProgram:
    prelude: str
    body: str  # the optimize body without `minimize`, indented by 4
    params: dict[str, np.ndarray]
    globals: list[str]

    @property
    def training(self) -> str:
        names = ", ".join(self.params)
        return (f"{self.prelude}optimize({names}) with sgd(lr = 1) max 1 {{\n{self.body}"
                f"    minimize loss;\n}}\n")

    @property
    def forward(self) -> str:
        return f"{self.prelude}if 1 {{\n{self.body}}}\n"


def literal(a: Any) -> str:
    a = np.asarray(a, dtype=float)
    if a.ndim == 0:
        return repr(float(a))
    return "[" + ", ".join(literal(x) for x in a) + "]"


def tensor_text(a: np.ndarray) -> str:
    return literal(a) if np.ndim(a) == 0 else f"tensor {literal(a)}"


@dataclass
class Var:
    name: str
    shape: Shape
    kind: str  # param | global | local | counter


@dataclass
class Fn:
    name: str
    arg: Shape
    result: Shape
    recursive: bool


@dataclass
class Gen:
    """One program's generator state: the draw function and what is in scope."""

    draw: Callable[..., Any]
    n: int
    m: int
    scopes: list[list[Var]] = field(default_factory=list)
    fns: list[Fn] = field(default_factory=list)
    counter: itertools.count = field(default_factory=itertools.count)
    in_batch: Optional[str] = None
    max_depth: int = 2
    no_globals: bool = False  # inside a recursive function: no global reads or writes

    # ------------------------------------------------------------------ basics

    def shapes(self) -> list[Shape]:
        n, m = self.n, self.m
        return list(dict.fromkeys([(), (n,), (m,), (m, n), (n, m), (m, 1), (n, 1), (1, n)]))

    def pick(self, options: list[Any]) -> Any:
        return options[self.draw(st.integers(0, len(options) - 1))]

    def chance(self, p: float) -> bool:
        return self.draw(st.integers(0, 99)) < int(p * 100)

    def fresh(self, prefix: str) -> str:
        return f"{prefix}{next(self.counter)}"

    def values(self, shape: Shape, lo: float = -1.5, hi: float = 1.5) -> np.ndarray:
        count = int(np.prod(shape)) if shape else 1
        xs = self.draw(st.lists(st.integers(int(lo * 8), int(hi * 8)), min_size=count, max_size=count))
        return (np.array(xs, dtype=float) / 8 + 0.0625).reshape(shape)

    def visible(self, shape: Shape) -> list[Var]:
        return [v for scope in self.scopes for v in scope if v.shape == shape and v.kind != "data"]

    def assignable(self) -> list[Var]:
        return [v for scope in self.scopes for v in scope if v.kind in ("global", "local")]

    # ------------------------------------------------------------------ expressions

    def broadcast_sources(self, shape: Shape) -> list[Shape]:
        out = []
        for s in self.shapes():
            try:
                if np.broadcast_shapes(shape, s) == shape:
                    out.append(s)
            except ValueError:
                pass
        return out

    def var(self, vs: list[Var]) -> str:
        """One of vs, a parameter half of the time when there is one (so losses depend on them)."""
        params = [v for v in vs if v.kind == "param"]
        return self.pick(params if params and self.chance(0.5) else vs).name

    def leaf(self, shape: Shape) -> str:
        vs = self.visible(shape)
        if vs and self.chance(0.8):
            return self.var(vs)
        near = [v for s in self.broadcast_sources(shape) for v in self.visible(s)]
        const = literal(self.values(())) if shape == () else tensor_text(self.values(shape))
        if near and self.chance(0.7):
            return f"({self.var(near)} {self.pick(['+', '*', '-'])} {const})"
        return const

    def expr(self, shape: Shape, depth: int) -> str:
        if depth <= 0 or self.chance(0.25):
            return self.leaf(shape)
        makers = [self.unary, self.binary, self.binary]
        if shape == ():
            makers += [self.reduce, self.reduce]
            if self.in_batch:
                makers.append(self.batch_term)
        if len(shape) == 1:
            makers += [self.reduce_axis, self.softmax, self.index_row, self.matvec]
        if len(shape) == 2:
            makers += [self.matmul, self.transpose, self.reshape, self.slice_rows, self.concat]
        if any(f.result == shape for f in self.fns) and not self.no_globals:
            makers.append(self.call)
        text = self.pick(makers)(shape, depth - 1)
        return text if text is not None else self.leaf(shape)

    def unary(self, shape: Shape, depth: int) -> str:
        f = self.pick(UNARY)
        x = self.expr(shape, depth)
        if f == "neg":
            return f"(-{x})"
        if f in ("log", "sqrt"):
            return f"{f}({x} * {x} + {'0.5' if f == 'log' else '0.25'})"
        if f == "exp":
            return f"exp(tanh({x}))" if self.chance(0.5) else f"exp(0.3 * {x})"
        if f == "tan":
            return f"tan(0.5 * tanh({x}))"
        return f"{f}({x})"

    def binary(self, shape: Shape, depth: int) -> str:
        op = self.pick(BINARY)
        a, b = self.expr(shape, depth), self.expr(self.pick(self.broadcast_sources(shape)), depth)
        if self.chance(0.5) and op in ("+", "-", "*", "min", "max"):
            a, b = b, a
        if op == "/":
            return f"({a} / ({b} * {b} + 0.5))"
        if op == "^":
            return self.pick([f"({a} ^ 2)", f"({a} ** 3)", f"(({a} * {a} + 0.5) ^ 1.5)", f"(({a} * {a} + 0.5) ^ 0.5)"])
        if op in ("min", "max"):
            return f"{op}({a}, {b})"
        if op == "pow":  # a positive base, a bounded exponent: both get gradients
            return f"pow({a} * {a} + 0.5, tanh({b}))"
        if op == "%":
            return f"({a} % 1.75)"
        return f"({a} {op} {b})"

    def reduce(self, shape: Shape, depth: int) -> str:
        kind = self.pick(["sum", "mean", "max", "min", "dot", "ce", "clip"])
        if kind == "dot":
            return f"dot({self.expr((self.n,), depth)}, {self.expr((self.n,), depth)})"
        if kind == "ce":
            return f"cross_entropy({self.expr((self.m, self.n), depth)}, {self.pick(['Y', 'C'])})"
        if kind == "clip":
            return f"sum(clip({self.expr(self.pick(self.shapes()[1:]), depth)}, -0.8, 0.9))"
        return f"{kind}({self.expr(self.pick(self.shapes()[1:]), depth)})"

    def reduce_axis(self, shape: Shape, depth: int) -> Optional[str]:
        (k,) = shape
        options = [(s, 0) for s in self.shapes() if len(s) == 2 and s[1] == k]
        options += [(s, 1) for s in self.shapes() if len(s) == 2 and s[0] == k and s[1] != 1]
        if not options:
            return None
        s, axis = self.pick(options)
        return f"{self.pick(['sum', 'mean'])}({self.expr(s, depth)}, {axis})"

    def softmax(self, shape: Shape, depth: int) -> str:
        return f"{self.pick(['softmax', 'log_softmax'])}({self.expr(shape, depth)})"

    def index_row(self, shape: Shape, depth: int) -> Optional[str]:
        (k,) = shape
        options = [s for s in self.shapes() if len(s) == 2 and s[1] == k]
        if not options:
            return None
        s = self.pick(options)
        return f"{self.expr(s, depth)}[{self.draw(st.integers(0, s[0] - 1))}]"

    def matvec(self, shape: Shape, depth: int) -> Optional[str]:
        (p,) = shape
        options = [s for s in self.shapes() if len(s) == 2 and s[0] == p and s[1] > 1]
        if not options:
            return None
        s = self.pick(options)
        return f"matmul({self.expr(s, depth)}, {self.expr((s[1],), depth)})"

    def matmul(self, shape: Shape, depth: int) -> Optional[str]:
        p, q = shape
        ks = [k for k in (self.n, self.m) if (p, k) in self.shapes() and (k, q) in self.shapes()]
        if not ks:
            return None
        k = self.pick(ks)
        return f"matmul({self.expr((p, k), depth)}, {self.expr((k, q), depth)})"

    def transpose(self, shape: Shape, depth: int) -> Optional[str]:
        p, q = shape
        return f"transpose({self.expr((q, p), depth)})" if (q, p) in self.shapes() else None

    def reshape(self, shape: Shape, depth: int) -> Optional[str]:
        size = shape[0] * shape[1]
        options = [s for s in self.shapes() if s and int(np.prod(s)) == size and s != shape]
        if not options:
            return None
        return f"reshape({self.expr(self.pick(options), depth)}, [{shape[0]}, {shape[1]}])"

    def slice_rows(self, shape: Shape, depth: int) -> Optional[str]:
        p, q = shape
        options = [s for s in self.shapes() if len(s) == 2 and s[1] == q and s[0] > p]
        if not options:
            return None
        s = self.pick(options)
        a = self.draw(st.integers(0, s[0] - p))
        return f"slice({self.expr(s, depth)}, {a}, {a + p})"

    def concat(self, shape: Shape, depth: int) -> Optional[str]:
        p, q = shape
        options = [(a, p - a) for a in range(1, p) if (a, q) in self.shapes() and (p - a, q) in self.shapes()]
        if not options:
            return None
        a, b = self.pick(options)
        return f"concat({self.expr((a, q), depth)}, {self.expr((b, q), depth)})"

    def call(self, shape: Shape, depth: int) -> str:
        f = self.pick([f for f in self.fns if f.result == shape])
        arg = self.expr(f.arg, depth)
        if f.recursive:
            return f"{f.name}({self.draw(st.integers(0, 3))}, {arg})"
        return f"{f.name}({arg})"

    def batch_term(self, shape: Shape, depth: int) -> str:
        xb = self.in_batch
        if self.chance(0.5):
            return f"sum({xb} * {self.expr((self.n,), depth)})"
        return f"mean(matmul({xb}, {self.expr((self.n, 1), depth)}))"

    def condition(self) -> str:
        counters = [v.name for scope in self.scopes for v in scope if v.kind == "counter"]
        left = f"{self.expr((), 1)} > {literal(self.values(()))}"
        if counters and self.chance(0.7):
            i = self.pick(counters)
            c = f"{i} {self.pick(['<', '>=', '==', '!='])} {self.draw(st.integers(0, 2))}"
            vectors = [v for scope in self.scopes for v in scope if len(v.shape) == 1 and v.kind != "data"]
            options = [c, f"{c} && {left}", f"{c} || {left}", f"!({c})"]
            if vectors:  # short-circuit guards: the index is out of range when the guard fails
                v = self.pick(vectors)
                options += [f"{i} < {v.shape[0]} && {v.name}[{i}] > 0", f"{i} >= {v.shape[0]} || {v.name}[{i}] < 0.5"]
            return self.pick(options)
        return left

    # ------------------------------------------------------------------ statements

    def block(self, depth: int, indent: int, count: int, in_fn: bool = False) -> str:
        self.scopes.append([])
        try:
            return "".join(self.stmt(depth, indent, in_fn) for _ in range(count))
        finally:
            self.scopes.pop()

    def stmt(self, depth: int, indent: int, in_fn: bool) -> str:
        pad = " " * indent
        kinds = ["let"] if self.no_globals else ["let", "global", "loss", "loss"]
        if any(v.kind == "local" for v in self.assignable()):
            kinds.append("local")
        if self.fns and not self.no_globals:
            kinds.append("call")
        if depth > 0:
            kinds += ["if", "if", "for", "while"] + ([] if in_fn or self.in_batch else ["batch"])
        kind = self.pick(kinds)
        if kind == "let":
            shape = self.pick(self.shapes())
            name = self.fresh("t")
            text = f"{pad}let {name} = {self.expr(shape, 2)};\n"
            self.scopes[-1].append(Var(name, shape, "local"))
            return text
        if kind in ("global", "local"):
            v = self.pick([v for v in self.assignable() if v.kind == kind] or self.assignable())
            value = self.expr(v.shape, 2)
            if self.chance(0.5):
                value = f"tanh({value})"
            elif self.chance(0.5):
                value = f"0.5 * {v.name} + 0.25 * {value}"
            return f"{pad}{v.name} = {value};\n"
        if kind == "loss":
            return f"{pad}loss = loss + {self.expr((), 2)};\n"
        if kind == "call":
            f = self.pick(self.fns)
            name = self.fresh("t")
            text = f"{pad}let {name} = {self.call(f.result, 1)};\n"
            self.scopes[-1].append(Var(name, f.result, "local"))
            if self.chance(0.5):
                text += f"{pad}loss = loss + sum({name}) * 0.5;\n"
            return text
        inner = self.draw(st.integers(1, 3))
        if kind == "if":
            cond = self.condition()
            then = self.block(depth - 1, indent + 4, inner, in_fn)
            if self.chance(0.6):
                other = self.block(depth - 1, indent + 4, self.draw(st.integers(1, 2)), in_fn)
                return f"{pad}if {cond} {{\n{then}{pad}}} else {{\n{other}{pad}}}\n"
            return f"{pad}if {cond} {{\n{then}{pad}}}\n"
        if kind == "for":
            i = self.fresh("i")
            self.scopes.append([Var(i, (), "counter")])
            try:
                body = self.block(depth - 1, indent + 4, inner, in_fn)
            finally:
                self.scopes.pop()
            return f"{pad}for {i} in 0..{self.draw(st.integers(0, 3))} {{\n{body}{pad}}}\n"
        if kind == "while":
            j = self.fresh("j")
            self.scopes.append([Var(j, (), "counter")])
            try:
                body = self.block(depth - 1, indent + 4, inner, in_fn)
            finally:
                self.scopes.pop()
            stop = self.draw(st.integers(0, 3))
            return (f"{pad}let {j} = 0;\n{pad}while {j} < {stop} {{\n{body}"
                    f"{pad}    {j} = {j} + 1;\n{pad}}}\n")
        xb, bi = self.fresh("xb"), self.fresh("b")
        self.in_batch = xb
        self.scopes.append([Var(bi, (), "counter")])
        try:
            body = self.block(depth - 1, indent + 4, inner, in_fn)
        finally:
            self.scopes.pop()
            self.in_batch = None
        return f"{pad}batch {xb}, {bi} in X with {self.draw(st.integers(1, 3))} {{\n{body}{pad}}}\n"

    def function(self) -> str:
        """A function of one argument `a`: plain (it may read and write globals and `loss`), or
        recursive `(n, a)`, reading only parameters and data: a gradient through a global into or
        out of a recursive call is refused with a located error (LANGUAGE.md), not computed."""
        name = self.fresh("f")
        recursive = self.chance(0.35)
        arg = self.pick(self.shapes())
        result = arg if recursive else self.pick(self.shapes())
        outer = [v for v in self.scopes[0] if not recursive or v.kind != "global"]
        saved, self.scopes = self.scopes, [outer, [Var("a", arg, "local")]]
        self.no_globals = recursive
        try:
            body = self.block(1, 4, self.draw(st.integers(1, 3)), in_fn=True)
            if recursive:
                base = self.expr(result, 1)
                step = self.expr(arg, 1)
                self.fns.append(Fn(name, arg, result, True))
                text = (f"fn {name}(n, a) {{\n{body}    if n <= 0 {{\n        return {base};\n    }}\n"
                        f"    return 0.5 * {name}(n - 1, {step}) + 0.25 * a;\n}}\n")
            else:
                text = f"fn {name}(a) {{\n{body}    return {self.expr(result, 2)};\n}}\n"
                self.fns.append(Fn(name, arg, result, False))
        finally:
            self.scopes = saved
            self.no_globals = False
        return text


@st.composite
def training_programs(draw: Callable[..., Any]) -> GenProgram:
    g = Gen(draw, n=draw(st.sampled_from([2, 3])), m=draw(st.sampled_from([2, 3])))
    top: list[Var] = []
    g.scopes = [top]
    rows = draw(st.integers(3, 5))
    prelude = f"let X = {tensor_text(g.values((rows, g.n)))};\n"
    onehot = np.eye(g.n)[[draw(st.integers(0, g.n - 1)) for _ in range(g.m)]]
    prelude += f"let Y = {tensor_text(onehot)};\n"
    prelude += f"let C = {tensor_text(np.argmax(onehot, axis=1).astype(float))};\n"
    params = {}
    for _ in range(draw(st.integers(1, 2))):
        name, shape = g.fresh("w"), g.pick(g.shapes())
        params[name] = g.values(shape)
        prelude += f"learn {name} = {tensor_text(params[name])};\n"
        top.append(Var(name, shape, "param"))
    names = []
    for _ in range(draw(st.integers(1, 3))):
        name, shape = g.fresh("g"), g.pick(g.shapes())
        prelude += f"let {name} = {tensor_text(g.values(shape))};\n"
        top.append(Var(name, shape, "global"))
        names.append(name)
    prelude += "let loss = 0;\n"
    for _ in range(draw(st.integers(1, 3))):
        prelude += g.function()
    body = "    loss = 0;\n" + g.block(g.max_depth, 4, draw(st.integers(2, 6)))
    w = g.pick([v for v in top if v.kind == "param"])
    body += f"    loss = loss + sum({w.name} * {w.name}) * 0.1 + {g.expr((), 2)};\n"
    return GenProgram(prelude, body, params, names)


# ----------------------------------------------------------------------------- resizes

PARAM_POLICIES = ["", " init zeros", " init normal(0.5, 2)", " init uniform(-1, 1)", " init xavier", " init he"]
DIM_POLICIES = PARAM_POLICIES + [" init copy", " init preserve"]


@st.composite
def resize_programs(draw: Callable[..., Any]) -> str:
    """Parameters bound to dims and free ones, resized, freed, re-learned and trained in turn."""
    g = Gen(draw, n=2, m=3)
    lines = [f"seed({draw(st.integers(0, 9))});", f"dim h = {draw(st.integers(1, 3))};",
             "learn A = normal([2, h], 0, 1);", "learn b = zeros([h]);", "learn C = normal([h, 1], 0, 1);",
             f"learn v = {tensor_text(g.values((3,)))};", "let X = tensor [[0.5, -1], [1, 0.25], [-0.5, 2]];",
             "let k = 0;"]
    live = {"A": True, "b": True, "C": True, "v": True}
    loss = "mean((matmul(tanh(matmul(X, A) + b), C)) ^ 2) + sum(v * v) * 0.1"
    for _ in range(draw(st.integers(1, 6))):
        kind = g.pick(["dim", "dim", "param", "free", "train", "train_resize", "print"])
        policy = g.pick(DIM_POLICIES)
        if kind == "dim":
            lines.append(f"realloc h = {draw(st.integers(1, 4))}{policy};")
        elif kind == "param" and live["v"]:
            lines.append(f"realloc v = [{draw(st.integers(1, 5))}]{g.pick(PARAM_POLICIES)};")
        elif kind == "free":
            lines.append("free v;" if live["v"] else f"learn v = {tensor_text(g.values((2,)))};")
            live["v"] = not live["v"]
        elif kind in ("train", "train_resize"):
            opt = g.pick(["sgd(lr = 0.1)", "adam(lr = 0.05)", "rmsprop(lr = 0.01)", "sgd(lr = 0.05, momentum = 0.9)",
                          "adamw(lr = 0.02)"])
            params = "A, b, C" + (", v" if live["v"] else "")
            term = loss if live["v"] else loss.replace(" + sum(v * v) * 0.1", "")
            resize = ""
            if kind == "train_resize":
                resize = (f"    k = k + 1;\n    if k % 3 == 1 {{\n        realloc h = {draw(st.integers(1, 4))}"
                          f"{policy};\n    }}\n")
            lines.append(f"optimize({params}) with {opt} max {draw(st.integers(1, 4))} {{\n{resize}"
                         f"    let loss = {term};\n    minimize loss;\n}}")
        else:
            lines.append("print(h, shape(A), shape(b), shape(C));")
    lines.append("print(shape(A), shape(C), sum(A), sum(C));")
    return "\n".join(lines) + "\n"
