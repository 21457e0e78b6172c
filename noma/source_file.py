"""Reading NOMA text from files: bytes → Source, with located errors for undecodable bytes.

Owns: decoding a file's bytes as UTF-8 (a leading BOM is dropped) and, when a byte is not
UTF-8, the diagnostic naming the line and column of the first bad byte, with the line shown
(bad bytes rendered as U+FFFD) and a caret under it; reading only regular files (and pipes, for
a program itself), never a device such as /dev/zero. `noma run`/`check`/`emit`/`build`, the
REPL's and the kernel's `:run FILE` and `:load FILE` (its JSON of definitions) read through it.

Also the rule for every data file a program or session names (CSV, safetensors, checkpoints and
their PATH.json, in the interpreter and the compile-time header reader; noma_rt_io.c's
open_regular is the runtime's copy): only regular files are read and written, anything else at
the path (a directory, a named pipe, a device, a socket) is an OSError saying what it is, raised
without blocking (opening a FIFO waits for its other end; /dev/zero never ends): `open_regular`.
Imports: noma.diagnostics only (and os, stat, errno).
"""

from __future__ import annotations

import errno
import os
import stat
from typing import IO, Any, Optional

from noma.diagnostics import Diagnostic, Kind, NomaError, Source, Span, error


def file_kind(mode: int) -> str:
    """What a file that is not a regular file is ("a directory", "a named pipe (FIFO)", ...)."""
    for test, what in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return what
    return "not a regular file"


def _not_regular(mode: int) -> OSError:
    code = errno.EISDIR if stat.S_ISDIR(mode) else errno.EINVAL
    return OSError(code, f"it is {file_kind(mode)}, not a regular file")


def open_regular(path: str, mode: str = "rb", encoding: Optional[str] = None, errors: Optional[str] = None) -> IO[Any]:
    """`open(path, mode)` ("r"/"rb" or "w"/"wb") for a regular file only (written: one that
    exists or is created); OSError (its strerror says what the path is instead) for anything
    else, without blocking: the kind is checked before opening and again on the descriptor,
    opened non-blocking, and a file is truncated for writing only after that check."""
    writing = mode.startswith("w")
    try:
        st: Optional[os.stat_result] = os.stat(path)
    except FileNotFoundError:
        if not writing:
            raise
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise _not_regular(st.st_mode)
    flags = (os.O_WRONLY | os.O_CREAT if writing else os.O_RDONLY) | os.O_NONBLOCK | os.O_CLOEXEC
    fd = os.open(path, flags, 0o666)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(st.st_mode)
        os.set_blocking(fd, True)
        if writing:
            os.ftruncate(fd, 0)
        return open(fd, mode, encoding=encoding, errors=errors)
    except BaseException:
        os.close(fd)
        raise


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


def read(path: str, pipes: bool = True) -> Source:
    """Read and decode a source file (a data file's text with `pipes` False: a regular file only);
    raises NomaError (io) when it cannot be read."""
    try:
        data = read_bytes(path, pipes=pipes)
    except OSError as exc:
        raise error(Kind.IO, f"cannot read {path}: {exc.strerror or exc}") from None
    return decode(path, data)
