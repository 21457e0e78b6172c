"""irgen's control-flow vocabulary, shared by irgen and its statement generators (irgen_stmts).

Owns: the names of the flags `break`, `continue` and `return` become in structured SSA (BRK, CONT,
RET, RETVAL), the names an optimize statement's config accepts for its learning rate and its
iteration limit (MAGIC_LR, MAGIC_MAX), the syntactic scans of a statement list (which exits it may
take, which names it assigns) and the words for a rank in messages.
Imports: noma.compiler.front.ast.
"""

from __future__ import annotations

from noma.compiler.front import ast

BRK, CONT, RET, RETVAL = "$brk", "$cont", "$ret", "$retval"
MAGIC_LR = ("learning_rate", "lr")
MAGIC_MAX = ("max_iterations", "max_iter", "iterations")


def _exits(stmts: tuple, depth: int = 0) -> set[str]:
    """Which of break/continue/return the statements may take, at the current loop level."""
    found: set[str] = set()
    for s in stmts:
        if isinstance(s, ast.Break) and depth == 0:
            found.add(BRK)
        elif isinstance(s, ast.Continue) and depth == 0:
            found.add(CONT)
        elif isinstance(s, ast.Return):
            found.add(RET)
        elif isinstance(s, ast.If):
            found |= _exits(s.then.stmts, depth)
            if s.else_ is not None:
                found |= _exits(s.else_.stmts, depth)
        elif isinstance(s, (ast.While, ast.For, ast.Batch)):
            found |= _exits(s.body.stmts, depth + 1) & {RET}
    return found


def _assigned(stmts: tuple) -> set[str]:
    """Names assigned anywhere in the statements (over-approximates what a loop carries)."""
    names: set[str] = set()
    for s in stmts:
        if isinstance(s, ast.Assign):
            names.add(s.name)
        elif isinstance(s, ast.Return):
            names |= {RET, RETVAL}
        elif isinstance(s, ast.Break):
            names.add(BRK)
        elif isinstance(s, ast.If):
            names |= _assigned(s.then.stmts) | (_assigned(s.else_.stmts) if s.else_ else set())
        elif isinstance(s, (ast.While, ast.For, ast.Batch, ast.Optimize)):
            names |= _assigned(s.body.stmts)
    return names


def _rank_words(rank: int) -> str:
    return "a scalar" if rank == 0 else f"a rank-{rank} tensor"
