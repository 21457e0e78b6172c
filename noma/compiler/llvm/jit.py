"""LLVM IR text -> native code: the session JIT and object/assembly emission for `noma build`.

Owns: LLVM target initialisation, the new-pass-manager optimisation pipeline, `JIT` (one MCJIT
execution engine per session, every module added to it kept alive for its lifetime, symbols
checked before linking, a process-wide object cache keyed by a hash of the IR text) and
`emit_object` / `emit_assembly`.

Runtime binding: the f64 and f32 runtimes export the same `noma_*` names, so a JIT never lets
the dynamic linker pick one: each runtime function a module declares is renamed to
`<name>.<dtype>` and that name is registered (llvm.add_symbol) with the address of the function
in this JIT's runtime library. Emitted objects (`noma build`) keep the plain names.
Imports: llvmlite.binding (the only module that does), noma.rt.native_lib.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import re
import threading
import time
from typing import Any, Optional

import llvmlite.binding as llvm

from noma.rt import native_lib

__all__ = ["JIT", "JITError", "UndefinedSymbolError", "emit_object", "emit_assembly", "host_cpu"]


class JITError(Exception):
    """LLVM rejected a module (parse or verification error, duplicate definition)."""


class UndefinedSymbolError(JITError):
    """A module refers to a function or global that nothing defines."""

    def __init__(self, symbol: str, module: str):
        super().__init__(f"module {module!r} refers to undefined symbol {symbol!r}")
        self.symbol = symbol
        self.module = module


#: Symbol prefix of the lowering's outlined loop kernels (kernels.Kernels.outline): the name is
#: a hash of the kernel's text, so two definitions of one name are the same code.
KERNEL_PREFIX = "noma.k."

_INIT_LOCK = threading.Lock()
_INITIALISED = False
#: Process-wide object cache: key (hash of IR text, dtype, opt level, CPU) -> object file bytes.
_OBJECT_CACHE: dict[str, bytes] = {}


def _init() -> None:
    global _INITIALISED
    with _INIT_LOCK:
        if _INITIALISED:
            return
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        llvm.initialize_native_asmparser()
        libm = ctypes.util.find_library("m")
        if libm:
            try:
                llvm.load_library_permanently(libm)
            except RuntimeError:
                pass
        _INITIALISED = True


def host_cpu() -> tuple[str, str]:
    """(CPU name, feature string) of the host.

    On AVX-512 hosts the tuning feature `prefer-256-bit` (LLVM's default for them, against the
    clock throttling of early AVX-512 parts) is turned off, so loops vectorize with 512-bit
    registers: the generated elementwise kernels (tanh, exp, softmax) are bound by FMA throughput
    and run about twice as fast per element. Vector width never changes results (no
    reassociation)."""
    _init()
    try:
        features = llvm.get_host_cpu_features().flatten()
    except RuntimeError:
        features = ""
    if "+avx512f" in features.split(","):
        features += ",-prefer-256-bit"
    return llvm.get_host_cpu_name(), features


def _target_machine(opt_level: int, cpu: str = "host", pic: bool = False, jit: bool = True):
    _init()
    target = llvm.Target.from_triple(llvm.get_process_triple())
    if cpu == "host":
        name, features = host_cpu()
    else:
        name, features = cpu, ""
    return target.create_target_machine(
        cpu=name, features=features, opt=max(0, min(3, opt_level)),
        reloc="pic" if pic else "default", codemodel="jitdefault" if jit else "default")


def _parse(text: str, name: str, tm) -> "llvm.ModuleRef":
    try:
        mod = llvm.parse_assembly(text)
    except RuntimeError as exc:
        raise JITError(f"LLVM could not parse module {name!r}: {exc}") from None
    mod.triple = tm.triple
    mod.data_layout = str(tm.target_data)
    try:
        mod.verify()
    except RuntimeError as exc:
        raise JITError(f"LLVM rejected module {name!r}: {exc}") from None
    return mod


def _optimize(mod, tm, opt_level: int) -> None:
    """Run LLVM's default per-module pipeline (new pass manager) at `opt_level`."""
    if opt_level <= 0:
        return
    pto = llvm.create_pipeline_tuning_options(speed_level=min(opt_level, 3))
    pto.loop_vectorization = opt_level >= 2
    # The SLP vectorizer (straight-line code) took ~5% of a training cell's compile time and
    # changed no step time measurably (W0, W1, W2: the hot loops are loop-vectorized): only at -O3.
    pto.slp_vectorization = opt_level >= 3
    # Unrolling and interleaving (several vector iterations per loop trip) cost about a third of
    # the compile time of a cell and gained nothing measurable on the generated loops (the
    # training kernels are bound by divides, BLAS and runtime calls): only at -O3.
    pto.loop_interleaving = opt_level >= 3
    pto.loop_unrolling = opt_level >= 3
    pb = llvm.create_pass_builder(tm, pto)
    mpm = pb.getModulePassManager()
    mpm.run(mod, pb)


#: A call of a function named noma_...: (the call up to the callee, the name)
_RUNTIME_CALL = re.compile(r'(call [^@\n]*?)@"(noma_\w+)"\(')
_DEFINE_LINE = re.compile(r"^define [^\n]*", re.M)
_FUNCTION_START = re.compile(r"^(?=define )", re.M)


def _optnone_define(part: str) -> bool:
    """Whether `part` (text from a `define` line on) defines an `optnone` function."""
    return part.startswith("define ") and " optnone" in part.split("\n", 1)[0].rsplit(")", 1)[-1]


def _all_optnone(text: str) -> bool:
    """Whether every function the module text defines is `optnone`: the lowering marks long
    straight-line scalar code so (lower_llvm_chunks). A module of such functions is compiled at
    -O0: LLVM's -O2 pipeline skips them, but its -O2 code generator took a third longer on them
    than -O0's for the same code."""
    defines = _DEFINE_LINE.findall(text)
    return bool(defines) and all(_optnone_define(line) for line in defines)


def _is_local(value) -> bool:
    return value.linkage in (llvm.Linkage.private, llvm.Linkage.internal)


class JIT:
    """One execution engine for a session; modules are added once and stay alive.

    `add_ir(text, name)`: parse, verify, bind the runtime, check every declared symbol is defined
    (an earlier module, the runtime, the C library), optimise, add and finalize. Identical IR
    text added twice is a no-op; identical IR in another JIT of the process reuses the object
    code (no optimisation or code generation).
    """

    def __init__(self, opt_level: int = 2, *, dtype: str = "f64"):
        _init()
        self.opt_level = opt_level
        self.dtype = dtype
        self.lib = native_lib.load_runtime(dtype)
        path = str(native_lib.runtime_library_path(dtype))
        llvm.load_library_permanently(path)
        self._runtime_names: dict[str, str] = {}
        self.tm = _target_machine(opt_level)
        self._tm_o0: Any = None  # (_unoptimising_tm)
        cpu, features = host_cpu()
        self._key_suffix = f"|{dtype}|O{opt_level}|{cpu}|{features}"
        base = _parse("", "noma.base", self.tm)
        self.engine = llvm.create_mcjit_compiler(base, self.tm)
        self.engine.set_object_cache(self._cache_notify, self._cache_get)
        self._modules = [base]
        self._defined: dict[str, str] = {}  # symbol -> module name that defines it
        self._keys: set[str] = set()
        self._lock = threading.Lock()
        #: seconds of the last add_ir that compiled: parsing and symbol checks, LLVM's
        #: optimisation pipeline, code generation and linking
        self.last_phases: dict[str, float] = {}

    # ------------------------------------------------------------------ object cache

    def _cache_notify(self, module, buffer: bytes) -> None:
        _OBJECT_CACHE[module.name] = bytes(buffer)

    def _cache_get(self, module) -> Optional[bytes]:
        return _OBJECT_CACHE.get(module.name)

    # ------------------------------------------------------------------ modules

    def _runtime_symbol(self, name: str) -> Optional[str]:
        """The dtype-qualified alias of runtime function `name` (registered on first use)."""
        alias = self._runtime_names.get(name)
        if alias is None:
            fn = getattr(self.lib, name, None)
            if fn is None:
                return None
            alias = f"{name}.{self.dtype}"
            llvm.add_symbol(alias, ctypes.cast(fn, ctypes.c_void_p).value)
            self._runtime_names[name] = alias
        return alias

    def add_ir(self, text: str, name: str) -> None:
        key = hashlib.sha256((text + self._key_suffix).encode()).hexdigest()
        with self._lock:
            if key in self._keys:
                return
            t0 = time.perf_counter()
            unoptimised = key not in _OBJECT_CACHE and _all_optnone(text)
            mod = _parse(self._runtime_calls_by_address(text), name, self.tm)
            mod.name = key
            defines = self._check_symbols(mod, name)
            t1 = time.perf_counter()
            if key not in _OBJECT_CACHE and not unoptimised:
                _optimize(mod, self.tm, self.opt_level)
            t2 = time.perf_counter()
            if unoptimised:  # finalize_object takes the object code from the cache
                _OBJECT_CACHE[key] = self._unoptimising_tm().emit_object(mod)
            self.engine.add_module(mod)
            self.engine.finalize_object()
            self.engine.run_static_constructors()
            self.last_phases = {"llvm_parse": t1 - t0, "llvm_optimise": t2 - t1,
                                "llvm_codegen": time.perf_counter() - t2}
            self._modules.append(mod)
            self._keys.add(key)
            for sym in defines:
                self._defined[sym] = name

    def _unoptimising_tm(self) -> Any:
        """The engine's target machine at -O0 (fast instruction selection and register
        allocation), for modules with nothing to optimise (_all_optnone)."""
        if self._tm_o0 is None:
            self._tm_o0 = _target_machine(0)
        return self._tm_o0

    def _runtime_calls_by_address(self, text: str) -> str:
        """`text` with the runtime calls of its `optnone` functions made through the function's
        address (an `inttoptr` constant) instead of its symbol. The same calls: LLVM's fast
        instruction selector (what `optnone` functions get) cannot lower a call of a symbol in
        the JIT's large code model, so each such call went to the slow selector (code generation
        of a 1 MB source of statements: 2.1 s at -O2, 1.4 s at -O0); through an address it lowers
        them itself (0.85 s, 0.38 s). Optimised functions keep the symbols (their declarations'
        attributes tell the optimiser what a call does). The declarations stay (_check_symbols
        binds them)."""
        def by_address(match: re.Match) -> str:
            alias = self._runtime_symbol(match.group(2))
            if alias is None:  # not a runtime function
                return match.group(0)
            address = ctypes.cast(getattr(self.lib, match.group(2)), ctypes.c_void_p).value
            return f"{match.group(1)}inttoptr (i64 {address} to ptr)("
        if " optnone" not in text:
            return text
        parts = _FUNCTION_START.split(text)
        return "".join(_RUNTIME_CALL.sub(by_address, part) if _optnone_define(part) else part
                       for part in parts)

    def _check_symbols(self, mod, name: str) -> list[str]:
        """Bind runtime declarations; raise on undefined or duplicate symbols; return the
        externally visible symbols the module defines."""
        defines: list[str] = []
        for fn in mod.functions:
            sym = fn.name
            if fn.is_declaration:
                if sym.startswith("llvm.") or sym in self._defined:
                    continue
                alias = self._runtime_symbol(sym) if sym.startswith("noma_") else None
                if alias is not None:
                    fn.name = alias
                elif not llvm.address_of_symbol(sym):
                    raise UndefinedSymbolError(sym, name)
            elif not _is_local(fn):
                if sym.startswith(KERNEL_PREFIX) and sym in self._defined:
                    # an outlined loop kernel (named by its text) that an earlier module defines:
                    # this module keeps a private copy (its lowering did not know it was there)
                    fn.linkage = llvm.Linkage.internal
                    continue
                defines.append(sym)
        for gv in mod.global_variables:
            sym = gv.name
            if gv.is_declaration:
                if sym not in self._defined and not llvm.address_of_symbol(sym):
                    raise UndefinedSymbolError(sym, name)
            elif not _is_local(gv):
                defines.append(sym)
        for sym in defines:
            if sym in self._defined:
                raise JITError(f"module {name!r} redefines {sym!r} (defined by {self._defined[sym]!r})")
        return defines

    # ------------------------------------------------------------------ addresses

    def function_address(self, symbol: str) -> int:
        addr = self.engine.get_function_address(symbol)
        if not addr:
            raise KeyError(f"no JIT-compiled function {symbol!r}")
        return addr

    def global_address(self, symbol: str) -> int:
        addr = self.engine.get_global_value_address(symbol)
        if not addr:
            raise KeyError(f"no JIT-compiled global {symbol!r}")
        return addr

    def defines(self, symbol: str) -> bool:
        return symbol in self._defined


# ----------------------------------------------------------------------------- noma build


def _compile_for_build(text: str, opt_level: int, cpu: str, pic: bool):
    tm = _target_machine(opt_level, cpu=cpu, pic=pic, jit=False)
    mod = _parse(text, "noma.build", tm)
    _optimize(mod, tm, opt_level)
    return tm, mod


def emit_object(text: str, *, opt_level: int = 2, cpu: str = "host", pic: bool = True) -> bytes:
    """An ELF/Mach-O object file of the IR (runtime calls keep their plain `noma_*` names)."""
    tm, mod = _compile_for_build(text, opt_level, cpu, pic)
    return tm.emit_object(mod)


def emit_assembly(text: str, *, opt_level: int = 2, cpu: str = "host", pic: bool = True) -> str:
    """The target assembly of the IR (for inspection and `noma build --asm`)."""
    tm, mod = _compile_for_build(text, opt_level, cpu, pic)
    return tm.emit_assembly(mod)
