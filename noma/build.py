"""`noma build`: a NOMA program as a standalone native executable.

Owns: `build_executable` — compile the whole program with the pipeline `noma run` uses
(`noma.emit.compile_program`: noma.compiler.pipeline up to LLVM IR), emit a PIC object
with llvmlite for the host CPU or a portable target (`--cpu x86-64-v3`), generate a small C
`main` that registers the pre-rendered source locations of every span
(`noma.diagnostics.location_text`, so run-time errors print the caret rendering `noma run`
prints) and calls `noma_exe_main(noma___main)`, and link object + main + the C runtime with the
system C compiler (`cc`, `-lm` only). The runtime's C sources are compiled once per
(dtype, CPU, sources, flags, compiler) into one relocatable object kept in the runtime's build
cache (noma.rt.native_build: `$NOMA_CACHE_DIR` or `~/.cache/noma`), so a build costs one LLVM compile and
one link.

Executables do not depend on Python or NumPy (`ldd`: libc, libm, the loader) and so do not use
NumPy's OpenBLAS: `matmul` runs the runtime's own blocked loop (no gemm is registered).
Results are bit-identical to `noma run` with `NOMA_NO_BLAS=1`, and to plain `noma run` as long
as no matmul is large enough (m·n·k ≥ 4096) to go to BLAS.

Imports: noma.emit, noma.compiler.llvm.jit (object code), noma.rt.native_build (sources, compiler
discovery, the build cache), noma.diagnostics.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from noma.diagnostics import Diagnostic, Kind, NomaError, Source, Span, located_warnings, location_text

__all__ = ["build_executable", "runtime_object", "generate_main", "BUILD_HINT"]

# Bump when the recipe of the cached runtime object changes in a way the hash would not see.
_RECIPE_VERSION = "1"
_BASE_FLAGS = ["-O2", "-std=c11", "-fno-math-errno"]
_DEFINES = ["-DNOMA_NO_TEST_HOOKS"]
_GC_SECTIONS = sys.platform.startswith("linux")

BUILD_HINT = ("install one: `apt install gcc` (Debian/Ubuntu), `dnf install gcc` (Fedora), "
              "`xcode-select --install` (macOS); or point $CC at one")

# ----------------------------------------------------------------------------- C compiler


def _build_error(message: str, note: str | None = None, kind: Kind = Kind.RUNTIME) -> NomaError:
    return NomaError(Diagnostic(kind, message, None, note))


def _compiler() -> list[str]:
    """The C compiler argv prefix, or a NomaError naming the package to install."""
    from noma.rt import native_build

    try:
        return native_build.compiler_command()
    except native_build.CompilerNotFound:
        cc = os.environ.get("CC", "").strip()
        where = f"$CC is {cc!r}, which was not found" if cc else "looked for cc, gcc and clang on $PATH"
        raise _build_error(f"noma build needs a C compiler to link the executable, and none was found "
                           f"({where})", BUILD_HINT) from None


def _run(cmd: list[str], what: str) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as exc:
        raise _build_error(f"cannot run the C compiler {cmd[0]!r} ({exc.strerror or exc})", BUILD_HINT) from None
    if proc.returncode != 0:
        detail = (proc.stderr + proc.stdout).strip()
        raise _build_error(f"{what} failed (exit {proc.returncode}):\n$ {' '.join(cmd)}\n{detail}")


def _dtype_flags(dtype: str) -> list[str]:
    return ["-DNOMA_F32"] if dtype == "f32" else []


def _march(cpu: str) -> list[str]:
    return ["-march=native"] if cpu == "host" else [f"-march={cpu}"]


# ----------------------------------------------------------------------------- runtime object


def _runtime_key(cc: list[str], flags: list[str], dtype: str, cpu: str) -> str:
    from noma.rt import native_build

    parts = [_RECIPE_VERSION, dtype, cpu, " ".join(flags), " ".join(cc), os.environ.get("CC", ""),
             sys.platform, platform.machine()]
    if cpu == "host":
        parts.append(native_build.cpu_fingerprint())
    return native_build.source_key(parts)


def _runtime_flags(dtype: str) -> list[str]:
    flags = list(_BASE_FLAGS) + _dtype_flags(dtype) + list(_DEFINES)
    if _GC_SECTIONS:
        flags += ["-ffunction-sections", "-fdata-sections"]
    return flags


def _compile_runtime_object(out: Path, cc: list[str], flags: list[str], cpu: str) -> None:
    """Every runtime source compiled and combined (`cc -r`) into the relocatable object `out`."""
    from noma.rt import native_build

    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".exe-build-") as tmp:
        objects = []
        for src in native_build.c_sources():
            obj = Path(tmp) / (src.stem + ".o")
            base = cc + flags + ["-I", str(native_build.include_dir()), "-c", str(src), "-o", str(obj)]
            try:
                _run(base[:len(cc)] + _march(cpu) + base[len(cc):], f"compiling the runtime ({src.name})")
            except NomaError:
                _run(base, f"compiling the runtime ({src.name})")  # compiler rejects -march=...
            objects.append(str(obj))
        _run(cc + ["-r", "-nostdlib", "-o", str(out)] + objects, "combining the runtime objects")


def runtime_object(dtype: str = "f64", cpu: str = "host") -> Path:
    """The runtime's C sources compiled into one relocatable object, kept in the runtime's build
    cache (noma.rt.native_build.cached; built on first use).

    Flags: `-O2 -std=c11 -fno-math-errno -march=native|CPU [-DNOMA_F32] -DNOMA_NO_TEST_HOOKS`;
    when the compiler rejects the -march flag it is retried without (generic code).
    """
    from noma.rt import native_build

    cc = _compiler()
    flags = _runtime_flags(dtype)
    key = _runtime_key(cc, flags, dtype, cpu)
    safe_cpu = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in cpu)
    directory = native_build.cache_dir()
    path = directory / f"noma_rt_exe_{dtype}_{safe_cpu}_{key[:20]}.o"
    try:
        return native_build.cached(path, lambda out: _compile_runtime_object(out, cc, flags, cpu))
    except OSError as exc:
        raise _build_error(f"cannot write the cache directory {directory}: {exc.strerror or exc}",
                           kind=Kind.IO) from None


# ----------------------------------------------------------------------------- generated main


def _c_string(text: str) -> str:
    """A C string literal of text's UTF-8 bytes (octal escapes; `?` escaped against trigraphs)."""
    out = ['"']
    for byte in text.encode("utf-8"):
        ch = chr(byte)
        if ch in '"\\?':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif 0x20 <= byte < 0x7F:
            out.append(ch)
        else:
            out.append(f"\\{byte:03o}")
    out.append('"')
    return "".join(out)


_VALUE_PRINTER = """
/* `noma run` prints the value the program's last expression statement leaves in global slot 0
   (scalars exactly as `noma run`; tensors as a `tensor[SHAPE] DTYPE` line and print's layout). */
static void noma_print_value(void) {
    if (!noma_global_defined(0)) return;
    const NomaTensor *v = noma_global(0);
    if (v->rank == 0) {
        noma_print_scalar(v->data[0]);
    } else {
        char head[160];
        int n = snprintf(head, sizeof head, "tensor[");
        for (int64_t i = 0; i < v->rank; i++)
            n += snprintf(head + n, sizeof head - (size_t)n, i ? ", %lld" : "%lld", (long long)v->dims[i]);
        snprintf(head + n, sizeof head - (size_t)n, "] %s", sizeof(real) == 4 ? "f32" : "f64");
        noma_print_str(head);
        noma_print_end();
        noma_print_tensor(v);
    }
    noma_print_end();
}
"""


def span_table(spans: Sequence[Optional[Span]]) -> tuple[list[Optional[Span]], list[int]]:
    """The module's spans, extended by the calls inlined code was inlined at that are not in it,
    and per span the index of its Span.inlined_at (-1: none): the runtime walks these chains for
    an error's `called from here` notes (noma_set_span_parents)."""
    table, index = list(spans), {id(s): i for i, s in enumerate(spans) if s is not None}
    parents: list[int] = []
    i = 0
    while i < len(table):  # the table grows while it is walked: each chain's links get an index
        span = table[i]
        at = None if span is None else span.inlined_at
        if at is not None and id(at) not in index:
            index[id(at)] = len(table)
            table.append(at)
        parents.append(-1 if at is None else index[id(at)])
        i += 1
    return table, parents


def generate_main(span_texts: list[Optional[str]], entry_symbol: str, has_value: bool, origin: str = "",
                  warnings: Sequence[str] = (), span_parents: Sequence[int] = ()) -> str:
    """C source of the executable's `main`: print the compiler's warnings (rendered, as `noma run`
    shows them), register the span texts (None: no location) and, where code was inlined, each
    span's inlined-at span (span_table), run the entry through `noma_exe_main` (context, SIGINT
    handler, error printing with the call notes, exit status)."""
    lines = [f"/* generated by noma build{' from ' + origin if origin else ''}; do not edit */",
             "#include <stddef.h>", "#include <stdint.h>", "#include <stdio.h>", '#include "noma_rt.h"', "",
             f"void {entry_symbol}(void);", ""]
    unique: dict[str, int] = {}
    for text in span_texts:
        if text is not None and text not in unique:
            unique[text] = len(unique)
            lines.append(f"static const char noma_span_{unique[text]}[] = {_c_string(text)};")
    if span_texts:
        refs = ", ".join("NULL" if t is None else f"noma_span_{unique[t]}" for t in span_texts)
        lines.append(f"static const char *noma_span_texts[{len(span_texts)}] = {{{refs}}};")
    if any(p >= 0 for p in span_parents):
        lines.append(f"static const int64_t noma_span_parents[{len(span_parents)}] = "
                     f"{{{', '.join(str(p) for p in span_parents)}}};")
    if has_value:
        lines.append(_VALUE_PRINTER)
    lines += ["", "static void noma_program(void) {", f"    {entry_symbol}();"]
    if has_value:
        lines.append("    noma_print_value();")
    lines += ["}", "", "int main(void) {"]
    for text in warnings:
        lines.append(f"    fputs({_c_string(text + chr(10))}, stderr);")
    if span_texts:
        lines.append(f"    noma_set_span_texts({len(span_texts)}, noma_span_texts);")
    if any(p >= 0 for p in span_parents):
        lines.append(f"    noma_set_span_parents({len(span_parents)}, noma_span_parents);")
    lines += ["    return noma_exe_main(noma_program);", "}", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- build


def build_executable(source: Union[Source, str], output: Union[str, Path], dtype: str = "f64",
                     opt_level: int = 2, cpu: str = "host", defines: Optional[Any] = None) -> Path:
    """Compile `source` and link it into the executable `output` (returned as a Path).

    Raises NomaError: the program's own diagnostics (the same as `noma run`/`noma check` give at
    compile time; `defines` as for `noma run -D`), no C compiler (naming the package to install),
    a failed link, an unwritable output path.
    """
    from noma.compiler.llvm import jit
    from noma.emit import ENTRY, compile_program
    from noma.rt import native_build

    if isinstance(source, str):
        source = Source("<program>", source)
    if dtype not in ("f64", "f32"):
        raise ValueError(f"unknown dtype {dtype!r} (expected 'f64' or 'f32')")
    from noma.compiler.front.defines import make_defines, parse_with_defines

    program = compile_program(source, dtype, program=parse_with_defines(source, make_defines(defines)))
    assert program.module is not None and program.llvm_text is not None and program.linkage is not None
    cc = _compiler()
    obj = jit.emit_object(program.llvm_text, opt_level=opt_level, cpu=cpu, pic=True)
    runtime = runtime_object(dtype, cpu)
    spans, parents = span_table(program.module.spans)
    texts = [None if span is None else location_text(span) for span in spans]
    warnings = [d.render() for d in located_warnings(program.module.spans, program.module.warnings)]
    entry = program.linkage.symbols[ENTRY]
    main_c = generate_main(texts, entry, program.has_value, source.name, warnings, parents)

    output = Path(output)
    out_dir = output.resolve().parent
    if not out_dir.is_dir():
        raise _build_error(f"cannot write {output}: directory {out_dir} does not exist", kind=Kind.IO)
    with tempfile.TemporaryDirectory(prefix="noma-build-") as tmp:
        obj_path = Path(tmp) / "program.o"
        obj_path.write_bytes(obj)
        main_path = Path(tmp) / "main.c"
        main_path.write_text(main_c, encoding="utf-8")
        tmp_out = ""
        try:
            fd, tmp_out = tempfile.mkstemp(dir=out_dir, prefix=f".{output.name}.")
            os.close(fd)
            cmd = (cc + list(_BASE_FLAGS) + _dtype_flags(dtype) + ["-I", str(native_build.include_dir()),
                   str(main_path), str(obj_path), str(runtime), "-o", tmp_out, "-lm"])
            if _GC_SECTIONS:
                cmd.append("-Wl,--gc-sections")
            _run(cmd, "linking the executable")
            os.chmod(tmp_out, 0o755)
            if output.is_dir():
                raise _build_error(f"cannot write {output}: it is a directory", kind=Kind.IO)
            os.replace(tmp_out, output)
        except OSError as exc:
            raise _build_error(f"cannot write {output}: {exc.strerror or exc}", kind=Kind.IO) from None
        finally:
            if tmp_out and os.path.exists(tmp_out):
                os.unlink(tmp_out)
    return output

