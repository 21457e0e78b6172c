"""`noma repl`: the interactive read-eval-print loop.

Owns: main(), which picks the front end: the prompt_toolkit prompt (noma.repl.prompt) when stdin
is a terminal, or the plain line loop (noma.repl.core.run_piped) when it is piped, so that
`echo 'print(1);' | noma repl` works. The pieces: core.py (running inputs, Ctrl-C, errors),
progress.py (live training line, growth events), completion.py (tab completion), prompt.py
(keys, highlighting, history). Meta-commands live in noma.meta (shared with the kernel).
Imports: noma.repl.core; prompt_toolkit only through noma.repl.prompt.
"""

from __future__ import annotations

import sys


def main(dtype: str = "f64") -> int:
    """Run the REPL until end of input; the exit status (piped: 1 if some input failed)."""
    from noma.repl.core import ReplCore, run_piped

    interactive = sys.stdin is not None and sys.stdin.isatty()
    try:
        core = ReplCore(dtype, err=None if interactive else sys.stderr)
    except Exception as exc:  # e.g. the native runtime cannot be built
        print(f"error: cannot start a NOMA session ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 1
    if not interactive:
        return run_piped(core, sys.stdin)
    from noma.repl.prompt import run_interactive

    return run_interactive(core)


__all__ = ["main"]
