"""A NumPy interpreter of NOMA's IR: the executable specification and the test oracle.

Owns: Interpreter (every op and region, the tape, optimize loops) and the print format; the
state it runs on (InterpState) is in interp_state, the elementwise rules in interp_elementwise,
the optimizer formulas in interp_optimizers, the generator in interp_rng, resizes in
interp_resize, checkpoints in interp_checkpoint, CSV and safetensors files in interp_files, rows and
indices (slice, index, concat, one_hot) in interp_rows. An op
without a rule raises interp_elementwise.MissingRule (never passes its input through).
It is never the product's execution path (that is lower_llvm and the native runtime); tests
compare the two.

An oracle independent of the lowering: every semantic comes from the IR and the documented
runtime contracts, never from the lowering's machinery. Globals are InterpState.globals by slot
(GLOBAL_LOAD / GLOBAL_STORE only; the lowering's carry slots and arena are ignored), calls run
the callee's IR body (CALL, with the 10000-call limit), control flow is the IfOp / WhileOp /
OptimizeOp regions as ir.py defines them (an optimize step: body, loss logged, stop test,
gradient block, update, queued resizes). What it shares with the product is the front end
(parse, irgen, autodiff): tests run it on the IR before the IR passes, and check the front end
itself against programs that take other paths through it (tests/test_generated_programs.py).
Values: tensors are np.ndarray (float64, or float32 when module.dtype == "f32"), scalars floats.
Imports: the standard library, numpy, noma.compiler.middle.ir, noma.diagnostics, the interp_*
modules.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, Callable, Optional

import numpy as np

from noma.compiler.middle import ir
from noma.compiler.middle.ir import Block, IfOp, Instr, Op, OptimizeOp, WhileOp
from noma.diagnostics import Kind, NomaError, error, with_call_notes
from noma.compiler.interp import interp_checkpoint, interp_conv, interp_files, interp_resize, interp_rows, interp_thread
from noma.compiler.interp.interp_elementwise import MissingRule, elementwise
from noma.compiler.interp.interp_optimizers import OptSlot, hyperparameters, new_slot, optimizer_step
from noma.compiler.interp.interp_state import MEMORY_LIMIT, InterpState  # noqa: F401  (re-exported: tests and the session use it)

MAX_DEPTH = 10000
MAX_METRICS = 32  # metric names a context keeps (the runtime's NOMA_METRICS_MAX)


# ----------------------------------------------------------------------------- printing


def format_scalar(x: float) -> str:
    """A scalar as `print` writes it (noma.display: the one rule shared with the runtime)."""
    from noma.display import format_scalar as rule

    return rule(x)


def format_value(v: Any) -> str:
    """A scalar, or a tensor on one line as nested brackets (noma.display.format_print)."""
    from noma.display import format_print

    return format_print(v)


def _shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


class Interpreter:
    """Runs a module's functions on NumPy values, with the session state in `state`."""

    def __init__(self, module: ir.Module, state: Optional[InterpState] = None):
        self.module = module
        self.state = state if state is not None else InterpState()
        self.dt = np.float32 if module.dtype == "f32" else np.float64
        self.calls: list[int] = []  # span ids of the active calls (CALL), outermost first
        self._trace: Optional[tuple[NomaError, list[int]]] = None  # an error and the calls it was raised in
        self._ops: dict[Op, Callable[[Instr, list[Any]], Any]] = {}
        for op in Op:
            method = getattr(self, "_" + op.value, None)
            if method is not None:
                self._ops[op] = method
        for op, rule in interp_rows.RULES.items():
            self._ops[op] = partial(rule, self)

    # --- entry points

    def call(self, fn_name: str, *args: Any) -> Any:
        """Run a function of the module. Deep NOMA recursion (up to MAX_DEPTH nested calls) needs
        more Python frames and stack than the main thread has: the call runs on its own thread
        (interp_thread)."""
        fn = self.module.functions[fn_name]
        values = [self._value(a, p.rank) for a, p in zip(args, fn.params)]

        def run() -> Any:
            self._trace = None
            try:
                with np.errstate(all="ignore"):
                    return self._invoke(fn, values, fn.span, site=False)
            except NomaError as exc:  # the calls that led to it become its notes
                trace: list[int] = self._trace[1] if self._trace is not None and self._trace[0] is exc else []
                first = with_call_notes(exc.diagnostics[0], [self._span(i) for i in reversed(trace)])
                raise NomaError([first, *exc.diagnostics[1:]]) from None

        return interp_thread.run_deep(run, 40 * MAX_DEPTH)

    def prelude(self, fn_name: str, op: OptimizeOp) -> dict[int, Any]:
        """The values defined before `op`, a top-level op of function fn_name (which takes no
        arguments): the environment for forward() and gradients()."""
        env: dict[int, Any] = {}
        block = self.module.functions[fn_name].body
        with np.errstate(all="ignore"):
            self.run_block(Block([], block.ops[:[id(o) for o in block.ops].index(id(op))], []), env)
        return env

    def forward(self, op: OptimizeOp, env: Optional[dict[int, Any]] = None) -> list[Any]:
        """Run an optimize body once (carried values from env's inits); its yields."""
        env = self._body_env(op, env)
        with np.errstate(all="ignore"):
            return self.run_block(op.body, env)

    def gradients(self, op: OptimizeOp, env: Optional[dict[int, Any]] = None) -> tuple[Any, list[Any]]:
        """Run an optimize body then its grad block once: (loss, one gradient per parameter)."""
        assert op.grad is not None, "run autodiff.differentiate first"
        env = self._body_env(op, env)
        with np.errstate(all="ignore"):
            out = self.run_block(op.body, env)
            grads = self.run_block(op.grad, env)
        if self.state.tape:
            raise RuntimeError(f"internal: {len(self.state.tape)} values left on the tape")
        return out[0], grads

    # --- helpers

    def _body_env(self, op: OptimizeOp, env: Optional[dict[int, Any]]) -> dict[int, Any]:
        """A copy of env with the body's carried values bound to their inits; the tape emptied."""
        env = dict(env or {})
        self.state.tape.clear()
        for p, v in zip(op.body.params, op.inits):
            env[p.id] = env[v.id]
        return env

    def _span(self, span: int) -> Any:
        return self.module.spans[span] if 0 <= span < len(self.module.spans) else None

    def _value(self, x: Any, rank: int) -> Any:
        """x as the value of a rank-`rank` result (a float for scalars)."""
        a = np.asarray(x, dtype=self.dt)
        if a.ndim != rank:
            raise RuntimeError(f"internal: a rank-{a.ndim} value for a rank-{rank} result")
        return float(a) if rank == 0 else a

    def _arr(self, x: Any) -> np.ndarray:
        return np.asarray(x, dtype=self.dt)

    def _int(self, x: Any, span: int) -> int:
        f = float(x)
        if not math.isfinite(f):
            raise error(Kind.RUNTIME, f"expected a whole number, got {format_scalar(f)}", self._span(span))
        return int(math.trunc(f))

    def _dims(self, values: list[Any], span: int) -> list[int]:
        dims = [self._int(v, span) for v in values]
        for d in dims:
            if d < 0:
                raise error(Kind.RUNTIME, f"a dimension cannot be negative (got {d})", self._span(span))
            if d > 1 << 40:  # the native code's bound on one axis, also when another axis is 0
                raise error(Kind.SHAPE, f"a dimension cannot exceed 2^40 (got {d})", self._span(span))
        return dims

    def _room(self, shape: Any, span: int, what: str = "a tensor") -> None:
        """A runtime error (never an allocation) when a result of `shape` exceeds MEMORY_LIMIT."""
        count = 1
        for d in shape:
            count *= int(d)
        size = count * np.dtype(self.dt).itemsize
        if size > MEMORY_LIMIT:
            raise error(Kind.RUNTIME, f"cannot allocate {size} bytes for {what}: over the memory limit of "
                        f"{MEMORY_LIMIT} bytes", self._span(span))

    def _shape_error(self, ins: Instr, *shapes: tuple[int, ...]) -> Exception:
        text = " and ".join(_shape_text(s) for s in shapes)
        return error(Kind.SHAPE, f"{ins.op.value}: shapes {text} do not match", self._span(ins.span))

    # --- blocks and regions

    def _invoke(self, fn: ir.Function, args: list[Any], span: int, site: bool = True) -> Any:
        """Run fn's body; `site`: a CALL at span (the runtime's noma_enter: at most MAX_DEPTH active,
        each one's span kept for the notes of an error inside it), else the entry."""
        if site:
            if len(self.calls) >= MAX_DEPTH:
                raise self._traced(error(Kind.RUNTIME, f"recursion deeper than {MAX_DEPTH} calls", self._span(span)))
            self.calls.append(span)
        try:
            out = self.run_block(fn.body, {p.id: a for p, a in zip(fn.params, args)})
        except RecursionError:
            if site:
                self.calls.pop()  # the error is located at this call: it is no frame of its own
            site = False
            raise self._traced(error(Kind.RUNTIME, f"recursion deeper than {MAX_DEPTH} calls",
                                     self._span(span))) from None
        except NomaError as exc:
            raise self._traced(exc)
        finally:
            if site:
                self.calls.pop()
        return out[0] if out else None

    def _traced(self, exc: NomaError) -> NomaError:
        """exc, with the calls active where it was raised recorded (once: the innermost frame)."""
        if self._trace is None or self._trace[0] is not exc:
            self._trace = (exc, list(self.calls))
        return exc

    def run_block(self, block: Block, env: dict[int, Any]) -> list[Any]:
        for op in block.ops:
            if isinstance(op, Instr):
                rule = self._ops.get(op.op)
                if rule is None:
                    raise MissingRule(op.op)
                value = rule(op, [env[a.id] for a in op.args])
                if op.result is not None:
                    env[op.result.id] = self._value(value, op.result.rank)
            elif isinstance(op, IfOp):
                taken = op.then if float(env[op.cond.id]) != 0 else op.else_
                for r, v in zip(op.results, self.run_block(taken, env)):
                    env[r.id] = v
            elif isinstance(op, WhileOp):
                for r, v in zip(op.results, self._while(op, env)):
                    env[r.id] = v
            else:
                self._optimize(op, env)
        return [env[v.id] for v in block.yields]

    def _while(self, op: WhileOp, env: dict[int, Any]) -> list[Any]:
        carried = [env[v.id] for v in op.inits]
        while True:
            for p, v in zip(op.cond.params, carried):
                env[p.id] = v
            if float(self.run_block(op.cond, env)[0]) == 0:
                return carried
            for p, v in zip(op.body.params, carried):
                env[p.id] = v
            carried = self.run_block(op.body, env)

    def _optimize(self, op: OptimizeOp, env: dict[int, Any]) -> None:
        st = self.state
        h = hyperparameters(op.optimizer, [float(env[v.id]) for v in op.hyper])
        max_iter = self._int(env[op.max_iter.id], op.span)
        carried = [env[v.id] for v in op.inits]
        loss: Any = math.nan
        for ref in op.params:
            self._opt_slot(ref, op)
        outer, st.deferred = st.deferred, []
        for _ in range(max_iter):
            st.tape.clear()
            for p, v in zip(op.body.params, carried):
                env[p.id] = v
            out = self.run_block(op.body, env)
            loss, carried = out[0], out[2:]
            st.loss_log.append(float(np.sum(loss)))
            if float(out[1]) != 0:
                break
            if op.grad is None:
                raise RuntimeError("this optimize loop has no gradient: run autodiff.differentiate first")
            for ref, grad in zip(op.params, self.run_block(op.grad, env)):
                param, g = st.params[ref.slot], self._arr(grad)
                if param.shape != g.shape:
                    raise error(Kind.SHAPE, f"the gradient of '{ref.name}' has shape {_shape_text(g.shape)}, "
                                f"the parameter {_shape_text(param.shape)}", self._span(op.span))
                st.params[ref.slot] = self._arr(optimizer_step(self._opt_slot(ref, op), h, param, g))
            st.apply_deferred()
        else:
            st.warnings.append("optimize reached its iteration bound"
                               + (f" before `{op.until_text}` held" if op.until_text else ""))
        st.apply_deferred()
        st.deferred = outer
        for r, v in zip(op.results, [loss] + carried):
            env[r.id] = v

    def _opt_slot(self, ref: ir.ParamRef, op: OptimizeOp) -> OptSlot:
        """The parameter's optimizer state; fresh when missing or kept for another optimizer."""
        p, s = self._param(ref.slot, ref.name, op.span), self.state.opt.get(ref.slot)
        if s is None or s.kind != op.optimizer or s.step.shape != p.shape:
            s = self.state.opt[ref.slot] = new_slot(op.optimizer, p)
        return s

    def _param(self, slot: int, name: str, span: int) -> np.ndarray:
        if slot not in self.state.params:
            raise error(Kind.NAME, f"the parameter '{name}' is not defined", self._span(span))
        return self.state.params[slot]

    # --- elementwise and creation

    def _elementwise(self, ins: Instr, args: list[Any]) -> Any:
        arrays = [self._arr(a) for a in args]
        try:
            self._room(np.broadcast_shapes(*(a.shape for a in arrays)), ins.span)
        except ValueError:
            raise self._shape_error(ins, *(a.shape for a in arrays)) from None
        to = ins.attr("to")
        if ins.op is Op.CAST and to in ir.INT_RANGES:
            self._check_cast(ins, arrays[0], to)
        return elementwise(ins.op, arrays, to)

    def _check_cast(self, ins: Instr, a: Any, to: str) -> None:
        """`x as i32|i64` of a NaN or of a value whose truncation is out of the type's range fails."""
        flat = np.asarray(a, dtype=np.float64).reshape(-1)
        lo, hi = ir.INT_RANGES[to]
        with np.errstate(invalid="ignore"):
            t = np.trunc(flat)
            bad = ~((t >= lo) & (t < hi))
        if bad.any():
            x = float(flat[int(np.argmax(bad))])
            why = "" if math.isnan(x) else ": out of range"
            raise error(Kind.RUNTIME, f"cannot convert {format_scalar(x)} to {to}{why}", self._span(ins.span))

    def _check(self, ins: Instr, args: list[Any]) -> Any:
        rule = ins.attr("rule")
        if rule in ir.CHECK_WARNS:
            if not ir.check_passes(rule, float(args[0])) and ins.span not in self.state.warned_spans:
                self.state.warned_spans.add(ins.span)
                self.state.warnings.append(ir.CHECK_RULES[rule])
            return args[0]
        if not ir.check_passes(rule, float(args[0])):
            raise error(Kind.RUNTIME, f"{ir.CHECK_RULES[rule]} (got {format_scalar(float(args[0]))})",
                        self._span(ins.span))
        return args[0]

    def _const(self, ins: Instr, args: list[Any]) -> Any:
        return float(ins.attr("value"))

    def _pack(self, ins: Instr, args: list[Any]) -> Any:
        return np.array([float(a) for a in args], dtype=self.dt).reshape(tuple(ins.attr("shape")))

    def _const_tensor(self, ins: Instr, args: list[Any]) -> Any:
        data = np.frombuffer(ins.attr("data"), dtype="<f8")
        return data.astype(self.dt).reshape(tuple(ins.attr("shape")))

    def _fill(self, ins: Instr, args: list[Any]) -> Any:
        dims = self._dims(args[1:], ins.span)
        self._room(dims, ins.span)
        return np.full(dims, float(args[0]), dtype=self.dt)

    def _draw(self, kind: str, a: float, b: float, n: int) -> np.ndarray:
        if kind == "normal":
            return a + b * np.asarray(self.state.rng.normal(n), dtype=np.float64)
        return a + (b - a) * np.asarray(self.state.rng.uniform(n), dtype=np.float64)

    def _random(self, ins: Instr, args: list[Any]) -> Any:
        dims = self._dims(args[2:], ins.span)
        self._room(dims, ins.span)
        return self._draw(ins.attr("kind"), float(args[0]), float(args[1]), int(np.prod(dims))).reshape(dims)

    def _rand_scalar(self, ins: Instr, args: list[Any]) -> Any:
        """a + b * randn() or a + (b - a) * rand(), in the program's precision (an f32 program's
        rand() draws 24 bits)."""
        a, b, rng = self.dt(args[0]), self.dt(args[1]), self.state.rng
        if ins.attr("kind") == "normal":
            return float(a + b * self.dt(rng.randn()))
        return float(a + (b - a) * self.dt(rng.u24() if self.dt is np.float32 else rng.u53()))

    # --- reductions

    def _reduce(self, ins: Instr, args: list[Any], fn: Callable[..., Any]) -> Any:
        x, axis = self._arr(args[0]), ins.attr("axis")
        if axis is not None and x.ndim == 0:
            raise error(Kind.SHAPE, f"{ins.op.value}: cannot reduce a scalar along an axis", self._span(ins.span))
        if fn is not np.sum and (x.size == 0 or (axis is not None and x.shape[axis % x.ndim] == 0)):
            raise error(Kind.RUNTIME, f"{ins.op.value}: the tensor is empty", self._span(ins.span))
        keep = bool(ins.attr("keepdims")) and axis is not None
        return fn(x, axis=None if axis is None else axis % x.ndim, keepdims=keep)

    def _sum(self, ins: Instr, args: list[Any]) -> Any:
        return self._reduce(ins, args, np.sum)

    def _max_r(self, ins: Instr, args: list[Any]) -> Any:
        return self._reduce(ins, args, np.max)

    def _min_r(self, ins: Instr, args: list[Any]) -> Any:
        return self._reduce(ins, args, np.min)

    def _argmax(self, ins: Instr, args: list[Any]) -> Any:
        x = self._arr(args[0])
        if x.ndim == 0:
            return 0.0
        if x.shape[-1] == 0:
            raise error(Kind.RUNTIME, "argmax: the tensor is empty", self._span(ins.span))
        return np.argmax(x, axis=-1).astype(self.dt)

    def _sum_to(self, ins: Instr, args: list[Any]) -> Any:
        x, like = self._arr(args[0]), np.shape(args[1])
        try:
            ok = np.broadcast_shapes(x.shape, like) == x.shape
        except ValueError:
            ok = False
        if not ok:
            raise self._shape_error(ins, x.shape, like)
        lead = x.ndim - len(like)
        x = x.sum(axis=tuple(range(lead))) if lead else x
        axes = tuple(i for i, d in enumerate(like) if d == 1 and x.shape[i] != 1)
        return x.sum(axis=axes, keepdims=True) if axes else x

    def _broadcast_to(self, ins: Instr, args: list[Any]) -> Any:
        x, like = self._arr(args[0]), np.shape(args[1])
        try:
            return np.broadcast_to(x, like).copy()
        except ValueError:
            raise self._shape_error(ins, x.shape, like) from None

    # --- linear algebra and shape

    def _matmul(self, ins: Instr, args: list[Any]) -> Any:
        a, b = self._arr(args[0]), self._arr(args[1])
        a = a.T if ins.attr("ta") else a
        b = b.T if ins.attr("tb") else b
        if a.shape[1] != b.shape[0]:
            raise self._shape_error(ins, a.shape, b.shape)
        self._room((a.shape[0], b.shape[1]), ins.span)
        return a @ b

    def _transpose(self, ins: Instr, args: list[Any]) -> Any:
        return self._arr(args[0]).T.copy()

    def _reshape_to(self, ins: Instr, x: np.ndarray, dims: tuple[int, ...]) -> Any:
        if int(np.prod(dims)) != x.size:
            raise error(Kind.SHAPE, f"reshape: cannot reshape {x.size} elements {_shape_text(x.shape)} into "
                        f"{_shape_text(dims)}", self._span(ins.span))
        return x.reshape(dims)

    def _reshape(self, ins: Instr, args: list[Any]) -> Any:
        return self._reshape_to(ins, self._arr(args[0]), tuple(self._dims(args[1:], ins.span)))

    def _reshape_like(self, ins: Instr, args: list[Any]) -> Any:
        return self._reshape_to(ins, self._arr(args[0]), np.shape(args[1]))

    def _dim(self, ins: Instr, args: list[Any]) -> Any:
        shape, axis = np.shape(args[0]), ins.attr("axis")
        if not -len(shape) <= axis < len(shape):
            raise error(Kind.SHAPE, f"axis {axis} is out of range for a rank-{len(shape)} value", self._span(ins.span))
        return float(shape[axis])

    def _shape(self, ins: Instr, args: list[Any]) -> Any:
        return np.array(np.shape(args[0]), dtype=self.dt)

    def _zeros_like(self, ins: Instr, args: list[Any]) -> Any:
        return np.zeros(np.shape(args[0]), dtype=self.dt)

    # --- state and effects

    def _param_load(self, ins: Instr, args: list[Any]) -> Any:
        return self._param(ins.attr("slot"), ins.attr("name"), ins.span)

    def _param_set(self, ins: Instr, args: list[Any]) -> None:
        slot = ins.attr("slot")
        self._param_free(ins, args)
        self.state.params[slot] = self._arr(args[0]).copy()
        self.state.param_names[slot] = ins.attr("name")

    def _param_free(self, ins: Instr, args: list[Any]) -> None:
        slot = ins.attr("slot")
        self.state.params.pop(slot, None)
        self.state.opt.pop(slot, None)
        for key in [k for k in self.state.bindings if k[0] == slot]:
            del self.state.bindings[key]

    def _param_bind_dim(self, ins: Instr, args: list[Any]) -> None:
        slot, axis, dim = ins.attr("slot"), ins.attr("axis"), ins.attr("dim")
        size = self._param(slot, ins.attr("name") or "parameter", ins.span).shape[axis]
        if self.state.dims.get(dim, -1) < 0:
            self.state.dims[dim] = size
        elif self.state.dims[dim] != size:
            raise error(Kind.SHAPE, f"cannot bind axis {axis} of {self.state.param_names.get(slot)} (size {size}) "
                        f"to a dim of size {self.state.dims[dim]}", self._span(ins.span))
        self.state.bindings[(slot, axis)] = dim

    def _defer_or_run(self, apply: Callable[[], None]) -> None:
        """A resize runs now, or at the end of the training step that runs it."""
        if self.state.deferred is None:
            apply()
        else:
            self.state.deferred.append(apply)

    def _param_resize(self, ins: Instr, args: list[Any]) -> None:
        slot, name = ins.attr("slot"), ins.attr("name")
        self._param(slot, name, ins.span)
        a, b, dims = float(args[0]), float(args[1]), [self._int(d, ins.span) for d in args[2:]]
        self._defer_or_run(lambda: interp_resize.resize_param(
            self.state, slot, name, dims, ins.attr("policy"), a, b, self._span(ins.span), self.dt))

    def _dim_resize(self, ins: Instr, args: list[Any]) -> None:
        dim, size, a, b = ins.attr("dim"), self._int(args[0], ins.span), float(args[1]), float(args[2])
        self.state.dim_names.setdefault(dim, ins.attr("name"))
        self._defer_or_run(lambda: interp_resize.resize_dim(
            self.state, dim, size, ins.attr("policy"), a, b, self._span(ins.span), self.dt))

    def _param_keep(self, ins: Instr, args: list[Any]) -> None:
        slot, name, axis = ins.attr("slot"), ins.attr("name"), ins.attr("axis")
        p, span = self._param(slot, name, ins.span), self._span(ins.span)
        keep = interp_resize.keep_indices(self._arr(args[0]), p.shape[axis], name, span)  # checked now
        self._defer_or_run(lambda: interp_resize.keep_param(self.state, slot, name, axis, keep, span))

    def _dim_keep(self, ins: Instr, args: list[Any]) -> None:
        dim, name, span = ins.attr("dim"), ins.attr("name"), self._span(ins.span)
        self.state.dim_names.setdefault(dim, name)
        keep = interp_resize.keep_indices(self._arr(args[0]), self.state.dims.get(dim, -1), name, span)
        self._defer_or_run(lambda: interp_resize.keep_dim(self.state, dim, name, keep, span))

    def _save_checkpoint(self, ins: Instr, args: list[Any]) -> None:
        interp_checkpoint.save(self.state, ins.attr("path"), self.module.dtype, self._span(ins.span))

    def _load_checkpoint(self, ins: Instr, args: list[Any]) -> None:
        interp_checkpoint.load(self.state, ins.attr("path"), self.module.dtype, self._span(ins.span),
                               self.state.deferred is not None)

    def _dim_load(self, ins: Instr, args: list[Any]) -> Any:
        if ins.attr("dim") not in self.state.dims:
            raise error(Kind.NAME, f"the dimension '{ins.attr('name')}' is not defined", self._span(ins.span))
        return float(self.state.dims[ins.attr("dim")])

    def _dim_set(self, ins: Instr, args: list[Any]) -> None:
        v = float(args[0])
        if not (0 <= v < 2.0 ** 62 and v == math.floor(v)):
            raise error(Kind.SHAPE, f"a dim's size must be a whole number from 0 to 2^62 - 1 (got {format_scalar(v)})",
                        self._span(ins.span))
        self.state.dim_names[ins.attr("dim")] = ins.attr("name")
        self.state.set_dim(ins.attr("dim"), int(v))

    def _global_load(self, ins: Instr, args: list[Any]) -> Any:
        if ins.attr("slot") not in self.state.globals:
            raise error(Kind.NAME, f"'{ins.attr('name')}' is not defined", self._span(ins.span))
        return self.state.globals[ins.attr("slot")]

    def _global_store(self, ins: Instr, args: list[Any]) -> None:
        self.state.globals[ins.attr("slot")] = args[0]

    def _seed(self, ins: Instr, args: list[Any]) -> None:
        self.state.rng.seed(float(args[0]))

    def _print(self, ins: Instr, args: list[Any]) -> None:
        values = iter(args)
        parts = [format_value(next(values)) if p is None else p for p in ins.attr("parts", ())]
        self.state.output.append(" ".join(parts))

    def _report(self, ins: Instr, args: list[Any]) -> None:
        name = ins.attr("name")
        if name not in self.state.metrics and len(self.state.metrics) == MAX_METRICS:
            raise error(Kind.RUNTIME, f"report: more than {MAX_METRICS} metric names", self._span(ins.span))
        self.state.metrics.setdefault(name, []).append((len(self.state.loss_log), float(args[0])))

    def _opt_reset(self, ins: Instr, args: list[Any]) -> None:
        self.state.opt.clear()

    def _call(self, ins: Instr, args: list[Any]) -> Any:
        fn = self.module.functions.get(ins.attr("callee"))
        if fn is None:
            raise error(Kind.NAME, f"the function '{ins.attr('callee')}' is not in this module", self._span(ins.span))
        return self._invoke(fn, args, ins.span)

    def _tape_push(self, ins: Instr, args: list[Any]) -> None:
        self.state.tape.append(args[0])

    def _tape_pop(self, ins: Instr, args: list[Any]) -> Any:
        if not self.state.tape:
            raise error(Kind.RUNTIME, "internal error: the tape is empty", self._span(ins.span))
        return self.state.tape.pop()

    # --- files

    def _io(self, ins: Instr, message: str) -> Exception:
        return error(Kind.IO, message, self._span(ins.span))

    def _load_csv(self, ins: Instr, args: list[Any]) -> Any:
        return interp_files.load_csv(ins.attr("path"), self.dt, lambda m: self._io(ins, m))

    def _save_csv(self, ins: Instr, args: list[Any]) -> None:
        interp_files.save_csv(ins.attr("path"), args[0], lambda m: self._io(ins, m))

    def _load_st(self, ins: Instr, args: list[Any]) -> Any:
        return interp_files.load_st(ins.attr("path"), ins.attr("name"), self.dt, lambda m: self._io(ins, m))

    def _load_st_globals(self, ins: Instr, args: list[Any]) -> None:
        for name, slot in zip(ins.attr("names"), ins.attr("slots")):
            self.state.globals[slot] = interp_files.load_st(ins.attr("path"), name, self.dt,
                                                            lambda m: self._io(ins, m))

    def _save_st(self, ins: Instr, args: list[Any]) -> None:
        tag = "F32" if self.dt is np.float32 else "F64"
        interp_files.save_st(ins.attr("path"), list(ins.attr("names")), args, tag, lambda m: self._io(ins, m))


for _op in ir.ELEMENTWISE:
    setattr(Interpreter, "_" + _op.value, Interpreter._elementwise)
interp_conv.install(Interpreter)
