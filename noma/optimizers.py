"""The optimizer registry: every optimizer of the language, declared once.

Owns: each optimizer's name, its kind (its NOMA_OPT_* number in noma_rt.h; tests/rt/test_abi.py
checks the two agree), the hyperparameters it uses with their defaults, the layout of the
hyperparameter vector the IR passes to the runtime, the keyword spellings of hyperparameters,
and the one-line doc the REPL, the kernel, the language server and docs/LANGUAGE.md show.
The update formulas live in two places, tested against each other: the C runtime
(noma/rt/native/noma_rt_params.c, `opt_apply`) and the interpreter
(noma/compiler/interp/interp_optimizers.py, `UPDATES`, keyed by the names here).
Read by: the IR (ir.OPTIMIZERS), irgen (optimizer specs), the interpreter, checkpoints, meta
commands, the lexer and the completions. docs/CONTRIBUTING.md walks through adding one.
Imports: the standard library only (the lexer imports it; it must stay cheap).
"""

from __future__ import annotations

from dataclasses import dataclass

#: The hyperparameter vector's layout (HYPER_LEN reals, NaN = the optimizer's default).
HYPER_NAMES = ("lr", "beta1", "beta2", "eps", "weight_decay", "momentum", "alpha", "dampening",
               "nesterov")
HYPER_LEN = 16
#: Keyword spellings accepted in `with adam(...)` -> hyperparameter name.
HYPER_ALIASES = {
    "lr": "lr", "learning_rate": "lr", "beta1": "beta1", "beta2": "beta2", "eps": "eps",
    "epsilon": "eps", "weight_decay": "weight_decay", "momentum": "momentum", "alpha": "alpha",
    "dampening": "dampening", "nesterov": "nesterov",
}
#: The default of each hyperparameter an optimizer does not set itself (PyTorch's).
COMMON_DEFAULTS = {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0,
                   "momentum": 0.0, "alpha": 0.99, "dampening": 0.0, "nesterov": 0.0}


def _number(x: float) -> str:
    """0.001 -> `0.001`, 1e-08 -> `1e-8`, 0.0 -> `0` (as the docs write them)."""
    text = f"{x:g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


@dataclass(frozen=True)
class Optimizer:
    """One optimizer: `with NAME(hyper = value, ...)`."""

    name: str
    kind: int  # NOMA_OPT_<NAME> in noma_rt.h
    hyper: tuple[tuple[str, float], ...]  # the hyperparameters it reads, with defaults, doc order
    summary: str  # what it is, for hover docs

    def defaults(self) -> dict[str, float]:
        """Every hyperparameter's default for this optimizer (NaN entries of the vector)."""
        return {**COMMON_DEFAULTS, **dict(self.hyper)}

    def signature(self) -> str:
        """`adam(lr = 0.001, beta1 = 0.9, ...)`, as docs/LANGUAGE.md writes it."""
        return f"{self.name}(" + ", ".join(f"{k} = {_number(v)}" for k, v in self.hyper) + ")"

    def doc(self) -> str:
        return f"{self.signature()}: optimizer ({self.summary})"


_ALL = (
    Optimizer("sgd", 1, (("lr", 0.01), ("momentum", 0.0), ("dampening", 0.0), ("nesterov", 0.0),
                         ("weight_decay", 0.0)), "stochastic gradient descent, PyTorch's SGD"),
    Optimizer("adam", 2, (("lr", 0.001), ("beta1", 0.9), ("beta2", 0.999), ("eps", 1e-8),
                          ("weight_decay", 0.0)), "PyTorch's Adam"),
    Optimizer("adamw", 4, (("lr", 0.001), ("beta1", 0.9), ("beta2", 0.999), ("eps", 1e-8),
                           ("weight_decay", 0.01)), "Adam with decoupled weight decay, PyTorch's AdamW"),
    Optimizer("rmsprop", 3, (("lr", 0.01), ("alpha", 0.99), ("eps", 1e-8), ("momentum", 0.0),
                             ("weight_decay", 0.0)), "PyTorch's RMSprop"),
)
#: name -> Optimizer, in the order the docs list them.
OPTIMIZERS: dict[str, Optimizer] = {o.name: o for o in _ALL}
#: kind -> Optimizer.
BY_KIND: dict[int, Optimizer] = {o.kind: o for o in _ALL}
#: name -> kind (the runtime's numbering).
KINDS: dict[str, int] = {o.name: o.kind for o in _ALL}


def names_text() -> str:
    """`sgd, adam, adamw or rmsprop` (for diagnostics)."""
    names = list(OPTIMIZERS)
    return ", ".join(names[:-1]) + " or " + names[-1]


def name_of(kind: int) -> str:
    """The name of optimizer kind `kind` (`none` for 0, `kind N` when unknown)."""
    if kind == 0:
        return "none"
    opt = BY_KIND.get(kind)
    return opt.name if opt is not None else f"kind {kind}"
