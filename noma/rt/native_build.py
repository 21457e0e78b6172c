"""Compiling the C runtime (``noma/rt/native/*.c``) and the one cache its builds are kept in.

Owns: the runtime's sources and headers, finding the C compiler (``$CC``, else ``cc`` / ``gcc``
/ ``clang``), the shared library's recipe, and the build cache both runtime builds use (the JIT's
shared library here, the executables' relocatable object in noma.build): the cache directory
(``$NOMA_CACHE_DIR`` or ``~/.cache/noma``), the key (a hash of the recipe's parts, the machine
and every source and header) and `cached()`, which builds a missing file under a lock into a
temporary file of the cache directory and renames it into place (atomic: concurrent processes
see no file or the whole one).
Imports: the standard library, noma.rt.native_types (dtype names).
"""

from __future__ import annotations

import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Callable, Sequence

from noma.rt.native_types import _norm_dtype

NATIVE_DIR = Path(__file__).resolve().parent / "native"

# Bump when the build recipe changes in a way the hash would not see.
_RECIPE_VERSION = "1"

_OPT_FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fno-semantic-interposition"]
_SHARED_FLAGS = ["-std=c11", "-fPIC", "-shared"]
_LINK_FLAGS = ["-Wl,-Bsymbolic", "-lm"]

_BUILD_LOCK = threading.Lock()


class CompilerNotFound(Exception):
    """No C compiler is available to build the native runtime."""


class RuntimeBuildError(Exception):
    """The C compiler failed on the runtime sources."""


# ---------------------------------------------------------------------------
# Sources, compiler
# ---------------------------------------------------------------------------


def c_sources() -> list[Path]:
    """The runtime's C files (all are compiled together)."""
    return sorted(NATIVE_DIR.glob("*.c"))


def header_files() -> list[Path]:
    return sorted(NATIVE_DIR.glob("*.h"))


def include_dir() -> Path:
    """Directory holding noma_rt.h (pass as -I when linking executables)."""
    return NATIVE_DIR


def build_flags(dtype: str = "f64") -> list[str]:
    """Compiler flags of the shared library (without sources, -o, link flags)."""
    flags = list(_OPT_FLAGS) + list(_SHARED_FLAGS)
    if _norm_dtype(dtype) == "f32":
        flags.append("-DNOMA_F32")
    return flags


def compiler_command() -> list[str]:
    """The C compiler as an argv prefix: ``$CC`` (may hold arguments) or cc/gcc/clang."""
    env = os.environ.get("CC", "").strip()
    if env:
        argv = shlex.split(env)
        if argv and shutil.which(argv[0]):
            return argv
        raise CompilerNotFound(
            f"the C compiler named by $CC ({env!r}) was not found. NOMA builds its native "
            "runtime with a C compiler: fix $CC, or install one (Debian/Ubuntu: "
            "`apt-get install build-essential`, or just `gcc`)."
        )
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return [path]
    raise CompilerNotFound(
        "no C compiler found (looked for cc, gcc and clang). NOMA builds its native runtime "
        "with the system C compiler: install one (Debian/Ubuntu: `apt-get install "
        "build-essential`, or just `gcc`) or set $CC."
    )


# ---------------------------------------------------------------------------
# The build cache
# ---------------------------------------------------------------------------


def cache_dir() -> Path:
    env = os.environ.get("NOMA_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "noma"


def cpu_fingerprint() -> str:
    """-march=native code is CPU specific: key the cache by the CPU's features."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith(("flags", "Features", "isa")):
                    return line.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


_cpu_fingerprint = cpu_fingerprint  # the name tests and older callers use


def source_key(parts: Sequence[str]) -> str:
    """The cache key of a build: a hash of its recipe's `parts` and of every source and header."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8", "replace"))
        h.update(b"\0")
    for src in c_sources() + header_files():
        h.update(src.name.encode())
        h.update(b"\0")
        h.update(src.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def cached(path: Path, build: Callable[[Path], None]) -> Path:
    """`path` in the cache; when missing, `build(tmp)` writes it to a temporary file of the same
    directory, which is then renamed into place (atomic). Builds in this process are serialised;
    raises OSError when the cache directory cannot be written."""
    if path.is_file():
        return path
    with _BUILD_LOCK:
        if path.is_file():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".build-", suffix=path.suffix)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            build(tmp)
            os.replace(tmp, path)  # atomic: readers see the old name or the full file
        finally:
            if tmp.exists():
                tmp.unlink()
    return path


# ---------------------------------------------------------------------------
# The JIT's shared library
# ---------------------------------------------------------------------------


def _build_key(dtype: str) -> str:
    return source_key([_RECIPE_VERSION, dtype, " ".join(build_flags(dtype)), " ".join(_LINK_FLAGS),
                       os.environ.get("CC", ""), sys.platform, platform.machine(), cpu_fingerprint()])


def _compile(out: Path, dtype: str) -> None:
    cc = compiler_command()
    sources = [str(s) for s in c_sources()]
    if not sources:
        raise RuntimeBuildError(f"no C sources found in {NATIVE_DIR} (is the package complete?)")
    flags = build_flags(dtype)
    attempts = [flags]
    if "-march=native" in flags:  # some compilers / targets reject it
        attempts.append([f for f in flags if f != "-march=native"])
    errors = ""
    for fl in attempts:
        cmd = cc + fl + ["-I", str(NATIVE_DIR)] + sources + ["-o", str(out)] + _LINK_FLAGS
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True)
        except FileNotFoundError as exc:
            raise CompilerNotFound(
                f"cannot run the C compiler {cc[0]!r} ({exc}). Install one (Debian/Ubuntu: "
                "`apt-get install build-essential`, or just `gcc`) or set $CC."
            ) from None
        if proc.returncode == 0:
            os.chmod(out, 0o755)
            return
        errors = f"$ {' '.join(cmd)}\n{proc.stderr}{proc.stdout}"
    raise RuntimeBuildError("building the NOMA native runtime failed:\n" + errors)


def runtime_library_path(dtype: str = "f64") -> Path:
    """Path of the runtime shared library for dtype ('f64' or 'f32'), building it when not cached."""
    dtype = _norm_dtype(dtype)
    suffix = ".dylib" if sys.platform == "darwin" else ".so"
    path = cache_dir() / f"libnoma_rt_{dtype}_{_build_key(dtype)[:20]}{suffix}"
    return cached(path, lambda tmp: _compile(tmp, dtype))
