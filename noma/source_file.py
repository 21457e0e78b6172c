"""Reading NOMA text from files: bytes → Source, with located errors for undecodable bytes.

Owns: decoding a file's bytes as UTF-8 (a leading BOM is dropped) and, when a byte is not
UTF-8, the diagnostic naming the line and column of the first bad byte, with the line shown
(bad bytes rendered as U+FFFD) and a caret under it; reading only regular files (and pipes, for
a program itself), never a device such as /dev/zero. `noma run`/`check`/`emit`/`build`, the
REPL's and the kernel's `:run FILE` and `:load FILE` (its JSON of definitions) read through it.
Imports: noma.diagnostics only (and os, stat, errno).
"""

from __future__ import annotations

import errno
import os
import stat

from noma.diagnostics import Diagnostic, Kind, NomaError, Source, Span, error


def read_bytes(path: str, pipes: bool = False) -> bytes:
    """The bytes of a regular file (or, with `pipes`, of a pipe: `noma run <(gen)`); OSError for
    anything else, before opening it (a device such as /dev/zero would be read until memory runs
    out; opening a FIFO waits for a writer, and a module is read again at every import)."""
    mode = os.stat(path).st_mode
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "Is a directory")
    if not (stat.S_ISREG(mode) or (pipes and stat.S_ISFIFO(mode))):
        what = "a device, pipe or socket" if not pipes else "a device or socket"
        raise OSError(errno.EINVAL, f"not a regular file ({what})")
    with open(path, "rb") as f:
        return f.read()


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
        data = read_bytes(path, pipes=True)
    except OSError as exc:
        raise error(Kind.IO, f"cannot read {path}: {exc.strerror or exc}") from None
    return decode(path, data)
