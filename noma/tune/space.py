"""Search spaces of `noma tune --param NAME=SPEC`, parsed into Ray Tune domains.

SPEC is one of `loguniform:LOW:HIGH`, `uniform:LOW:HIGH`, `randint:LOW:HIGH` (HIGH excluded),
`choice:A,B,C` (numbers) or a plain number (a constant). A malformed one is a located syntax error
in its own Source (`--param`), like a malformed define. Imports Ray lazily (only `domain`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from noma.diagnostics import Diagnostic, Kind, NomaError, Source, Span

KINDS = ("loguniform", "uniform", "randint", "choice")


@dataclass(frozen=True)
class Param:
    """One search parameter: its kind and its numbers (bounds, or the choices, or the constant)."""

    name: str
    kind: str  # one of KINDS, or "const"
    values: tuple[float, ...]

    def mutation(self) -> Any:
        """What PBT's explore draws from: the choices as a list (a mutation moves to a
        neighbouring choice or resamples), else the domain (perturbed by x0.8 / x1.2)."""
        if self.kind == "choice":
            return [_number(x) for x in self.values]
        return self.domain()

    def domain(self) -> Any:
        """The Ray Tune search domain (or the constant)."""
        from ray import tune

        v = self.values
        if self.kind == "loguniform":
            return tune.loguniform(v[0], v[1])
        if self.kind == "uniform":
            return tune.uniform(v[0], v[1])
        if self.kind == "randint":
            return tune.randint(int(v[0]), int(v[1]))
        if self.kind == "choice":
            return tune.choice([_number(x) for x in v])
        return _number(v[0])


def _number(x: float) -> Any:
    return int(x) if float(x).is_integer() else x


def parse_param(text: str) -> Param:
    """`lr=loguniform:1e-4:1e-1` → Param (NomaError located in the text when malformed)."""
    source = Source("--param", text)

    def fail(message: str) -> NomaError:
        return NomaError(Diagnostic(Kind.SYNTAX, message, Span(source, 0, max(1, len(text)))))

    name, sep, spec = text.partition("=")
    if not sep or not name.strip().isidentifier():
        raise fail("a search parameter is NAME=SPEC (e.g. lr=loguniform:1e-4:1e-1, hidden=choice:4,8,16)")
    kind, colon, rest = spec.partition(":")
    try:
        if not colon:
            return Param(name.strip(), "const", (float(spec),))
        if kind == "choice":
            values = tuple(float(x) for x in rest.split(","))
            if not values:
                raise ValueError
            return Param(name.strip(), kind, values)
        if kind in KINDS:
            low, high = (float(x) for x in rest.split(":"))
            if not low < high or (kind == "loguniform" and low <= 0):
                raise fail(f"{kind} needs LOW < HIGH" + (" and LOW > 0" if kind == "loguniform" else ""))
            return Param(name.strip(), kind, (low, high))
    except ValueError:
        pass
    raise fail(f"unknown search space {spec!r}: loguniform:LOW:HIGH, uniform:LOW:HIGH, randint:LOW:HIGH, "
               "choice:A,B,C or a number")


def example_config(params: list[Param]) -> dict[str, Any]:
    """One value per parameter (the lowest), to check the program accepts them before Ray starts."""
    return {p.name: _number(p.values[0]) if p.kind != "randint" else int(p.values[0]) for p in params}
