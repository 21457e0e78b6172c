"""One checked version of a NOMA document: its diagnostics, AST, scope index and symbol table.

Owns: running the compile pipeline (noma.compiler.pipeline up to autodiff and passes, the path
`noma check` takes)
on a document without executing anything (a notebook's meta-command lines blanked out), and
the text the server shows for a name (hover, completion details). `load_safetensors` files are
not opened: the header reader given to irgen refuses, so the statement gets an information
diagnostic saying the file's tensors are unknown to the server (irgen stops there, as `noma
check` stops at its first error); `load_csv` needs no file at compile time (its result is rank
2). A compiler crash becomes a diagnostic, never an exception out of the server.
Imports: noma.compiler (pipeline, parse, ast, symbols, irgen_builtins), noma.diagnostics,
noma.lsp.scopes, noma.lsp.positions, noma.lsp.vocabulary.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional

from noma.compiler import pipeline
from noma.compiler.front import ast
from noma.compiler.middle.irgen_builtins import INITIALISERS
from noma.compiler.front.parse import parse
from noma.compiler.front.symbols import SymbolTable
from noma.diagnostics import Diagnostic, Kind, NomaError, Source
from noma.lsp import vocabulary
from noma.lsp.positions import LineIndex
from noma.lsp.scopes import Definition, ScopeIndex

#: What the refusing header reader says (irgen prefixes "cannot read `PATH`: ").
NO_FILE_READS = ("the language server opens no files, so the names and ranks of its tensors are "
                 "unknown here and the code after this statement is not checked (`noma check` reads them)")


class _NoFileReads:
    """A header reader for irgen that reads nothing and remembers that it was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, path: str) -> Any:
        self.asked.append(path)
        raise OSError(0, NO_FILE_READS)


@dataclass
class Problem:
    """A diagnostic as the server publishes it."""

    diagnostic: Diagnostic
    severity: str  # error | warning | information


@dataclass
class Analysis:
    """The result of checking one document version."""

    source: Source
    lines: LineIndex
    problems: list[Problem]
    program: Optional[ast.Program]
    index: Optional[ScopeIndex]
    symbols: SymbolTable
    dtype: str


def blank_meta_commands(text: str) -> str:
    """A notebook's text with its meta-command lines (`:params`, noma.meta.is_meta) blanked out,
    every other character kept in place (so spans still point into the notebook's text)."""
    from noma.meta import is_meta

    lines = text.split("\n")
    return "\n".join(" " * len(line) if is_meta(line) else line for line in lines)


def analyze(name: str, text: str, dtype: str = "f64", notebook: bool = False) -> Analysis:
    """Check a document as `noma check` does (without reading files); never raises.

    `notebook`: the text is a notebook's cells one after another (jupyterlab-lsp's virtual
    document), checked as one session runs them; meta-command lines are not NOMA and are skipped.
    """
    if notebook:
        text = blank_meta_commands(text)
    source = Source(name, text)
    symbols = SymbolTable()
    problems: list[Problem] = []
    program: Optional[ast.Program] = None
    index: Optional[ScopeIndex] = None
    reader = _NoFileReads()
    try:
        program = parse(source)
        index = _index(program)
        pipeline.compile(source, symbols, dtype=dtype, read_header=reader, cell="__cell0", program=program,
                         stop="grad")
    except NomaError as exc:
        for d in exc.diagnostics:
            unknown = reader.asked and d.kind is Kind.IO and NO_FILE_READS in d.message
            problems.append(Problem(d, "information" if unknown else
                                    ("warning" if d.kind is Kind.WARNING else "error")))
    except Exception as exc:  # a compiler bug: report it as `noma check` does, keep serving
        msg = f"internal compiler error ({type(exc).__name__}: {exc}); please report this program"
        problems.append(Problem(Diagnostic(Kind.RUNTIME, msg), "error"))
    problems = [Problem(in_document(p.diagnostic, source, program), p.severity) for p in problems]
    return Analysis(source, LineIndex(text), problems, program, index, symbols, dtype)


def in_document(d: Diagnostic, source: Source, program: Optional[ast.Program]) -> Diagnostic:
    """A diagnostic located in an imported file, shown at the document's `import` of that file
    (or its first import), its message naming the file, line and column."""
    if d.span is None or d.span.source is source:
        return d
    imports = [i for i in (program.items if program else ()) if isinstance(i, ast.Import)]
    if not imports:
        return Diagnostic(d.kind, d.message, None, d.note)
    name = d.span.source.name.replace("\\", "/")
    here = next((i for i in imports if name.endswith(i.path.replace(".", "/") + ".noma" if i.dotted
                                                     else i.path.split("/")[-1])), imports[0])
    message = f"in {d.span.source.name}:{d.span.line}:{d.span.column}: {d.message}"
    return Diagnostic(d.kind, message, here.path_span, d.note)


def _index(program: ast.Program) -> Optional[ScopeIndex]:
    """The program's scope index; None (logged) for a program nested deeper than Python recurses."""
    try:
        return ScopeIndex(program)
    except RecursionError:
        logging.getLogger(__name__).warning("the program nests too deeply for the scope index")
        return None


# ----------------------------------------------------------------------------- describing names


def _text(e: Optional[ast.Expr]) -> str:
    return e.span.text() if e is not None else ""


def _declared_shape(value: Optional[ast.Expr]) -> Optional[str]:
    """The shape an initialiser states in the source (`[2, hidden]`), or None."""
    if isinstance(value, ast.ListLit):
        return value.span.text()
    if isinstance(value, (ast.TensorLit, ast.TensorData)):
        return "[" + ", ".join(str(d) for d in value.shape) + "]"
    if isinstance(value, ast.Num):
        return "scalar"
    if isinstance(value, ast.Call):
        args = value.args
        if value.func in INITIALISERS and args and isinstance(args[0], ast.ListLit):
            return args[0].span.text()
        dims = {"rand_tensor": args, "rand_normal_tensor": args[2:], "xavier_init": args[2:],
                "he_init": args[1:]}.get(value.func)
        if dims:
            return "[" + ", ".join(_text(a) for a in dims) + "]"
    return None


def _rank_words(rank: int) -> str:
    return "scalar" if rank == 0 else f"rank-{rank} tensor"


def describe(d: Definition, analysis: Analysis) -> str:
    """One line for a name: what it is, its shape (as declared) and dtype where known."""
    dtype = analysis.dtype
    sym = analysis.symbols
    if d.kind == "function":
        fn = d.node
        params = ", ".join(fn.params) if isinstance(fn, ast.FnDef) else ""
        return f"fn {d.name}({params})"
    if d.kind == "argument":
        return f"{d.name}: argument of fn {d.function} (scalar or tensor: functions are generic) {dtype}"
    if d.kind == "loop":
        return f"{d.name}: loop variable"
    if d.kind == "dim":
        return f"dim {d.name} = {_text(d.value)}"
    if d.kind in ("parameter", "buffer"):
        word = "learn" if d.kind == "parameter" else "alloc"
        var = sym.params.get(d.name)
        shape = _declared_shape(d.value)
        parts = []
        if shape is not None:
            parts.append(shape)
        if var is not None and shape != "scalar":
            parts.append(_rank_words(var.rank))
        text = f"{word} {d.name}: {' '.join(parts) if parts else 'shape unknown'} {dtype}"
        if var is not None and var.dims:
            text += " (" + ", ".join(f"axis {a} = dim {n}" for a, n in sorted(var.dims.items())) + ")"
        return text
    if d.kind == "data":
        return f"load_csv {d.name}: rank-2 tensor {dtype} (rows and columns known when the file is read)"
    if d.kind == "model":
        return f"load_safetensors {d.name}: tensors of the file (unknown to the language server)"
    shape = _declared_shape(d.value)
    global_var = sym.globals.get(d.name) if d.kind == "global" else None
    where = "global" if d.kind == "global" else (f"local of fn {d.function}" if d.function else "local")
    if shape is None and global_var is not None:
        shape = _rank_words(global_var.rank)
    return f"let {d.name}: {shape or 'shape known at run time'} {dtype} ({where})"


def builtin_detail(name: str) -> str:
    return vocabulary.doc(name) or vocabulary.signature(name)
