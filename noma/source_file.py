"""Reading NOMA text from files: bytes → Source, with located errors for undecodable bytes.

Owns: decoding a file's bytes as UTF-8 (a leading BOM is dropped) and, when a byte is not
UTF-8, the diagnostic naming the line and column of the first bad byte, with the line shown
(bad bytes rendered as U+FFFD) and a caret under it. `noma run`/`check`/`emit`/`build`, the
REPL's and the kernel's `:run FILE` and `:load FILE` (its JSON of definitions) read through it.
Imports: noma.diagnostics only.
"""

from __future__ import annotations

from noma.diagnostics import Diagnostic, Kind, NomaError, Source, Span, error


def decode(name: str, data: bytes) -> Source:
    """The Source of a file's bytes; raises NomaError (syntax, located) at the first bad byte."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return Source(name, data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        bad = exc.start
    shown = Source(name, data.decode("utf-8", errors="replace"))
    at = len(data[:bad].decode("utf-8"))  # the bad byte's character offset in `shown`
    byte = data[bad]
    raise NomaError(Diagnostic(
        Kind.SYNTAX, f"the file is not UTF-8 text: byte 0x{byte:02x} cannot start or continue a character",
        Span(shown, at, at + 1), "save the file as UTF-8"))


def read(path: str) -> Source:
    """Read and decode a source file; raises NomaError (io) when it cannot be read."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise error(Kind.IO, f"cannot read {path}: {exc.strerror or exc}") from None
    return decode(path, data)
