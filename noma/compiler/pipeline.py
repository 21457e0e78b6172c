"""The compile pipeline, the one sequence of stages every user of the compiler runs.

    source ─ parse ─▶ AST (defines applied) ─ irgen ─▶ IR ─ autodiff ─▶ IR with gradient blocks
       ─ passes ─▶ IR ─ verify ─ link (LLVM symbol per function) ─ lower ─▶ LLVM IR ─ jit ─▶ native code

Owns: `compile()` (source or AST → `Artifacts`, stopping after the stage asked for) and the
`Artifacts` record of what each stage produced: the AST, the IR as irgen made it (printed, when
asked to keep it), the module after autodiff and passes, the LLVM IR text that was lowered and the
LLVM symbol of each function. The session (cells in its JIT), `noma check`, `noma emit`,
`noma build` and the language server all call it, so they run the same stages in the same order
and report the same diagnostics; `:ir`, `:grad` and `:llvm` show the artifacts the session kept.
Nothing here reads files (irgen calls the caller's `read_header` for `load_safetensors`) or runs
a program. Input: Source (or an AST), a SymbolTable (changed in place). Output: Artifacts.
Imports: noma.compiler.front, noma.compiler.middle, noma.compiler.llvm (lazily: checking a
program never loads llvmlite), noma.diagnostics.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal, Mapping, Optional

from noma.diagnostics import Source

if TYPE_CHECKING:
    from noma.compiler.front import ast
    from noma.compiler.front.symbols import SymbolTable
    from noma.compiler.middle import ir

#: irgen's callback for `load_safetensors` headers (path → tensor ranks); the caller chooses it
HeaderReader = Callable[[str], Any]
#: where compile() stops: after parsing, irgen, autodiff + passes, lowering, or JIT compilation
Stage = Literal["ast", "ir", "grad", "llvm", "native"]
_ORDER: tuple[Stage, ...] = ("ast", "ir", "grad", "llvm", "native")


@dataclass
class Linkage:
    """How the IR's functions become LLVM symbols: `symbols` (IR function → LLVM symbol) for the
    functions lowered, `own_pointers` (functions whose pointer global the module defines) and
    `shared` (whether an outlined loop kernel is defined by an earlier module: jit.JIT.defines)."""

    symbols: dict[str, str]
    own_pointers: set[str]
    shared: Optional[Callable[[str], bool]] = None


def whole_program(module: "ir.Module") -> Linkage:
    """The linkage of a self-contained module: `noma_<fn>` symbols, every pointer global defined."""
    return Linkage({n: f"noma_{n}" for n in module.functions}, set(module.functions))


#: chooses the linkage once the module is final; may drop functions compiled earlier (the session
#: turns them into externs of the module)
Linker = Callable[["ir.Module"], Linkage]


class PrintedLater(Mapping[str, str]):
    """Function name → its printed IR, printed on first access from a snapshot (ir.snapshot)."""

    def __init__(self, module: "ir.Module"):
        self._module = module
        self._printed: dict[str, str] = {}

    def __getitem__(self, name: str) -> str:
        from noma.compiler.middle import ir

        if name not in self._printed:
            if name not in self._module.functions:
                raise KeyError(name)
            self._printed[name] = ir.print_function(self._module, name)
        return self._printed[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._module.functions)

    def __len__(self) -> int:
        return len(self._module.functions)


@dataclass
class Artifacts:
    """What the stages of one compilation produced (later stages None when compile() stopped)."""

    source: Source
    cell: str  # the name of the top-level code's function
    program: Optional["ast.Program"] = None  # the AST, defines applied
    #: the IR of each function as irgen produced it (before autodiff), printed; kept on request
    ir_text: Mapping[str, str] = field(default_factory=dict)
    module: Optional["ir.Module"] = None  # after autodiff and passes, verified: what is lowered
    has_value: bool = False  # the top level leaves a value in global slot 0
    linkage: Optional[Linkage] = None
    llvm_text: Optional[str] = None  # the LLVM IR that was lowered (and JIT-compiled)
    #: seconds per stage: front_end (parse, IR, autodiff, passes), lowering, and the JIT's
    #: llvm_parse, llvm_optimise, llvm_codegen
    phases: dict[str, float] = field(default_factory=dict)

    def ir_module_text(self) -> str:
        """The whole IR before autodiff as ir.print_module prints it."""
        return "\n".join(self.ir_text[n] for n in sorted(self.ir_text))

    def functions(self, stage: str, target: str = "") -> list[str]:
        """The functions a stage holds, sorted: irgen's (`ir`; kept with keep_ir), the final
        module's (`grad`), those lowered to LLVM IR (`llvm`). With a `target`: the top level's
        (`cell`) or those of one source function (`f` selects its specialisations `f.s`, `f.t2`...)."""
        if stage == "ir":
            names = sorted(self.ir_text)
        elif stage == "grad":
            names = sorted(self.module.functions) if self.module is not None else []
        else:
            names = sorted(self.linkage.symbols) if self.linkage is not None and self.llvm_text is not None else []
        if not target:
            return names
        if target == "cell":
            return [n for n in names if n == self.cell]
        return [n for n in names if selects(target, n)]

    def text(self, stage: str, names: Optional[list[str]] = None) -> str:
        """A stage's text (`ir`, `grad` or `llvm`): the whole of it, or only the functions `names`."""
        from noma.compiler.middle import ir

        if stage == "ir":
            return self.ir_module_text() if names is None else "\n".join(self.ir_text[n] for n in names)
        if stage == "grad":
            assert self.module is not None
            if names is None:
                return ir.print_module(self.module)
            return "\n".join(ir.print_function(self.module, n) for n in names)
        assert self.llvm_text is not None and self.linkage is not None
        if names is None:
            return self.llvm_text
        return _llvm_blocks(self.llvm_text, [self.linkage.symbols[n] for n in names])


_SPEC_PART = re.compile(r"(s|t\d+|gl|p\d+r\d+)(\.|$)")


def selects(target: str, name: str) -> bool:
    """Whether the IR function `name` is the source function `target` or one of its
    specialisations (`f.s.t2`, `f.gl.3`, ...), not `f.g` of a module imported as `f`."""
    return name == target or (name.startswith(target + ".") and _SPEC_PART.match(name[len(target) + 1:]) is not None)


def _llvm_blocks(text: str, symbols: list[str]) -> str:
    """The `define ... { ... }` blocks of the given LLVM symbols."""
    out: list[str] = []
    keep = False
    for line in text.splitlines():
        if line.startswith("define"):
            keep = any(f"@{s}(" in line or f'@"{s}"(' in line for s in symbols)
        if keep:
            out.append(line)
            if line == "}":
                keep = False
                out.append("")
    return "\n".join(out).rstrip() + "\n"


def compile(source: Source, symbols: "SymbolTable", *, dtype: str = "f64",
            read_header: Optional[HeaderReader] = None, run_main: bool = True, cell: str = "__main",
            program: Optional["ast.Program"] = None, defines: Optional[Mapping[str, Any]] = None,
            used: Optional[set[str]] = None, stop: Stage = "llvm", optimize: bool = True,
            keep_ir: bool = False, link: Linker = whole_program, jit: Any = None,
            base_dir: Optional[str] = None, loader: Any = None, spans: Optional[list] = None) -> Artifacts:
    """Run the pipeline on `source` (or on its already parsed `program`) against `symbols`
    (changed in place) up to and including the stage `stop`.

    `defines` (noma.compiler.front.defines.Define by name) replace top-level let/dim values; the
    names replaced are added to `used`. `optimize=False` skips the IR passes (the test oracle runs
    the IR without them). `keep_ir` keeps the printed IR before autodiff (`Artifacts.ir_text`).
    `link` names the LLVM symbols once the module is final; `jit` (noma.compiler.llvm.jit.JIT)
    compiles the LLVM IR for stop="native". `import`s are relative to `base_dir` (None: the file's
    directory when the source is a file, else the working directory) and read through `loader` (a
    noma.compiler.front.modules.ModuleLoader; None: a fresh one). `spans`: the span table the
    module extends (a session's, shared by its cells so that span ids stay unique; None: a new
    one). Raises NomaError for the program's mistakes.
    """
    from noma.compiler.front.budget import run_stage

    started = time.perf_counter()
    art = Artifacts(source, cell)
    art.program = _parse(source, program, defines, used)
    if stop == "ast":
        return art
    run_stage(source, _middle, art, symbols, dtype, read_header, run_main,
              differentiate=_ORDER.index(stop) >= _ORDER.index("grad"), optimize=optimize, keep_ir=keep_ir,
              base_dir=base_dir, loader=loader, spans=spans)
    art.phases["front_end"] = time.perf_counter() - started
    if _ORDER.index(stop) < _ORDER.index("llvm"):
        return art
    lower(art, link)
    if stop == "native":
        if jit is None:
            raise ValueError("compile(stop='native') needs the JIT to compile into")
        jit_compile(art, jit)
    return art


def _parse(source: Source, program: Optional["ast.Program"], defines: Optional[Mapping[str, Any]],
           used: Optional[set[str]]) -> "ast.Program":
    from noma.compiler.front.defines import apply_defines
    from noma.compiler.front.parse import parse

    if program is None:
        program = parse(source)
    if defines:
        program, replaced = apply_defines(program, defines)
        if used is not None:
            used |= replaced
    return program


def _middle(art: Artifacts, symbols: "SymbolTable", dtype: str, read_header: Optional[HeaderReader],
            run_main: bool, *, differentiate: bool, optimize: bool, keep_ir: bool, base_dir: Optional[str],
            loader: Any, spans: Optional[list] = None) -> None:
    """imports → irgen → (kept IR text) → autodiff → passes → verify, into `art`."""
    from noma.compiler.front.modules import expand, source_dir
    from noma.compiler.middle import autodiff, ir, irgen, passes

    assert art.program is not None
    where = base_dir if base_dir is not None else source_dir(art.program.span.source)
    program = expand(art.program, symbols, where, loader)  # imported definitions compiled in
    module, art.has_value = irgen.generate(program, symbols, dtype, read_header, run_main, art.cell, spans)
    if keep_ir:  # printed when asked for (printing a 1 MB program's IR cost ~1 s per compile)
        art.ir_text = PrintedLater(ir.snapshot(module))
    if differentiate:
        autodiff.differentiate(module)
        if optimize:
            passes.optimize_module(module)
    ir.verify(module)
    art.module = module


def lower(art: Artifacts, link: Linker = whole_program) -> str:
    """The final module → LLVM IR text (`art.llvm_text`), with the symbols `link` chooses."""
    from noma.compiler.front.budget import run_stage
    from noma.compiler.llvm.lower_llvm import lower_module

    assert art.module is not None
    started = time.perf_counter()
    art.linkage = link(art.module)
    art.llvm_text = run_stage(art.source, lower_module, art.module, symbols=art.linkage.symbols,
                              own_pointers=art.linkage.own_pointers, name=art.cell, shared=art.linkage.shared)
    art.phases["lowering"] = time.perf_counter() - started
    return art.llvm_text


def jit_compile(art: Artifacts, jit: Any) -> None:
    """Add the lowered module to `jit` (noma.compiler.llvm.jit.JIT); its phases into `art.phases`."""
    assert art.llvm_text is not None
    jit.last_phases = {}
    jit.add_ir(art.llvm_text, art.cell)
    art.phases.update(jit.last_phases)
