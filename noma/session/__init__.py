"""The live session: compiled cells, the runtime context, history, undo and checkpoints.

`noma.session.Session` (core.py) is the one façade the front ends (REPL, kernel, `noma run`, tune) use.
"""

from noma.session.core import Event, ExecResult, Session

__all__ = ["Event", "ExecResult", "Session"]
