"""Programs generated from NOMA's grammar (noma/compiler/front/grammar.lark) for the fuzz tests.

Owns: GrammarGenerator: random derivations of the grammar's `start` rule with a bounded depth
and a token budget (past either, each nonterminal takes its shallowest alternative), terminals
drawn from pools of names (declared variables, builtins, optimizers, casts), hostile numbers and
file paths; a declaration prelude often comes first, so that generated code gets past name
resolution into shape checking, code generation and the runtime.
Imports: lark (the grammar's compiled rules), noma.compiler.middle.irgen_builtins (builtin names).
"""

from __future__ import annotations

import random
from pathlib import Path

from lark import Lark

from noma import optimizers

GRAMMAR = Path(__file__).resolve().parents[2] / "noma" / "compiler" / "front" / "grammar.lark"

PRELUDE = """let a = 2;
let b = ones([2, 3]);
let x = tensor [[1, 2, 3], [4, 5, 6]];
learn W = zeros([3, 2]);
dim d = 3;
fn f(v) { return v * 2; }
"""
VARIABLES = ("a", "b", "x", "W", "d", "f", "v", "loss", "i", "xb", "yb")
OPTIMIZERS = tuple(optimizers.OPTIMIZERS)
CASTS = ("i32", "i64", "f32", "f64")
NUMBERS = ("0", "1", "2", "3", "0.5", "1", "2", "4", "10", "1e308", "3037000500", "100000",
           "1e-320", "2147483648")
STRINGS = ('"out.csv"', '"data/with_header.csv"', '"data/ragged.csv"', '"data/external.safetensors"',
           '"ck.safetensors"', '"missing.csv"', '""', '"data"', '"data/huge_header.safetensors"',
           '"data/bad_offsets.safetensors"')
_ATOM_WEIGHTS = {("NUMBER",): 3.0, ("NAME",): 3.0, ("NAME", "call_args"): 1.5, ("STRING",): 0.15,
                 ("_LPAR", "expr", "_RPAR"): 0.4, ("list_lit",): 0.6, ("_TENSOR", "list_lit"): 0.6}
INIT_POLICIES = ("default", "zeros", "normal", "uniform", "xavier", "he", "copy", "preserve")
#: The names that the grammar's context asks for after a keyword (mostly: sometimes any name).
_AFTER = {"as": CASTS, "with": OPTIMIZERS, "init": INIT_POLICIES}
#: Punctuation and keywords: the text of each fixed terminal.
_FIXED_BREAK = {"_SEMI", "_LBRACE", "_RBRACE"}


def _builtins() -> tuple[str, ...]:
    from noma.compiler.middle.irgen_builtins import BUILTINS

    return tuple(sorted(BUILTINS))


class GrammarGenerator:
    """Random programs from the grammar; `generate(rng)` is deterministic in the rng."""

    def __init__(self, max_depth: int = 36, max_tokens: int = 240):
        parser = Lark(GRAMMAR.read_text(), parser="lalr", start="start")
        self.rules: dict[str, list[list[tuple[str, bool]]]] = {}
        for rule in parser.rules:
            self.rules.setdefault(rule.origin.name, []).append(
                [(sym.name, sym.is_term) for sym in rule.expansion])
        self.fixed: dict[str, str] = {}
        for term in parser.terminals:
            value = term.pattern.value
            if term.pattern.type == "re":
                value = value.replace("\\b", "")
            self.fixed[term.name] = value
        self.max_depth = max_depth
        self.max_tokens = max_tokens
        self.builtins = _builtins()
        self.height = self._heights()

    def _heights(self) -> dict[str, int]:
        """For each nonterminal, the least derivation height (terminals count 0)."""
        inf = 10 ** 9
        height = {name: inf for name in self.rules}
        changed = True
        while changed:
            changed = False
            for name, alternatives in self.rules.items():
                for expansion in alternatives:
                    h = 1 + max((0 if term else height[sym] for sym, term in expansion), default=0)
                    if h < height[name]:
                        height[name] = h
                        changed = True
        return height

    def _terminal(self, rng: random.Random, name: str, previous: str) -> str:
        if name == "NAME" and previous in _AFTER and rng.random() < 0.9:
            return rng.choice(_AFTER[previous])
        if name == "NAME":
            r = rng.random()
            if r < 0.55:
                return rng.choice(VARIABLES)
            if r < 0.9:
                return rng.choice(self.builtins)
            return rng.choice(OPTIMIZERS + CASTS)
        if name == "NUMBER":
            return rng.choice(NUMBERS)
        if name == "STRING":
            return rng.choice(STRINGS)
        return self.fixed[name]

    def _expand(self, rng: random.Random, symbol: str, depth: int, out: list[str]) -> None:
        alternatives = self.rules[symbol]
        if depth >= self.max_depth or len(out) >= self.max_tokens:
            least = min(self._alt_height(e) for e in alternatives)
            alternatives = [e for e in alternatives if self._alt_height(e) == least]
        weights = [self._weight(symbol, e) for e in alternatives]
        for sym, term in rng.choices(alternatives, weights)[0]:
            if term:
                out.append(self._terminal(rng, sym, out[-1] if out else ""))
                if sym in _FIXED_BREAK:
                    out.append("\n")
            else:
                self._expand(rng, sym, depth + 1, out)

    @staticmethod
    def _weight(symbol: str, expansion: list[tuple[str, bool]]) -> float:
        """Statements repeat often; operator, postfix and list chains are rare, numbers and names
        the likeliest atoms and strings rare, so that expressions stay small and varied."""
        symbols = [sym for sym, _ in expansion]
        if symbol == "postfix" and "_DOT" in symbols:  # `m.f(...)` / `t.name`: a module or file's only
            return 0.003
        if symbol in symbols:
            if symbol == "__start_star_0":
                return 4.0
            return 0.5 if "_star_" in symbol else 0.07
        if symbol == "power" and len(symbols) > 1:
            return 0.1
        if symbol == "arg" and symbols[0] == "NAME":  # keyword arguments are rarer (and come last)
            return 0.2
        return _ATOM_WEIGHTS.get(tuple(symbols), 1.0) if symbol == "atom" else 1.0

    def _alt_height(self, expansion: list[tuple[str, bool]]) -> int:
        return max((0 if term else self.height[sym] for sym, term in expansion), default=0)

    def generate(self, rng: random.Random) -> str:
        out: list[str] = []
        self._expand(rng, "start", 0, out)
        text = " ".join(out).replace(" \n ", "\n").replace(" \n", "\n")
        if rng.random() < 0.6:
            text = PRELUDE + text
        return text + "\n"
