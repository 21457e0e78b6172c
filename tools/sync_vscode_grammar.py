"""Regenerate the word lists of the VS Code grammar from the compiler's tables.

editors/vscode/syntaxes/noma.tmLanguage.json is JSON that VS Code reads as it is, so it cannot
import the tables: its builtin-call and optimizer rules list the words. This script rewrites
those two lists from the builtin table (noma.compiler.middle.ops.BUILTINS) and the optimizer
registry (noma.optimizers); `--check` only reports whether they are current (a test runs it).

usage: python tools/sync_vscode_grammar.py [--check]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GRAMMAR = ROOT / "editors" / "vscode" / "syntaxes" / "noma.tmLanguage.json"
sys.path.insert(0, str(ROOT))

from noma import optimizers  # noqa: E402
from noma.compiler.middle import ops  # noqa: E402


def _alternation(words: list[str]) -> str:
    """Longest first, so no word is cut short by a prefix of it."""
    return "|".join(sorted(words, key=lambda w: (-len(w), w)))


def generated(grammar: dict) -> dict:
    """The grammar with its builtin and optimizer lists rebuilt from the tables."""
    repo = grammar["repository"]
    repo["builtin-call"]["match"] = r"\b(" + _alternation(list(ops.BUILTINS)) + r")\b(?=\s*\()"
    repo["optimizer"]["match"] = r"\b(with)\s+(" + _alternation(list(optimizers.OPTIMIZERS)) + r")\b"
    return grammar


def render(grammar: dict) -> str:
    return json.dumps(grammar, indent=2) + "\n"


def main(argv: list[str]) -> int:
    text = GRAMMAR.read_text(encoding="utf-8")
    new = render(generated(json.loads(text)))
    if "--check" in argv:
        if new != text:
            print(f"{GRAMMAR} is out of date: run python tools/sync_vscode_grammar.py", file=sys.stderr)
            return 1
        return 0
    if new != text:
        GRAMMAR.write_text(new, encoding="utf-8")
        print(f"rewrote {GRAMMAR}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
