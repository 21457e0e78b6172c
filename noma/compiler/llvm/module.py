"""The llvmlite module under construction and its module-level declarations.

Owns: `ModuleContext` (one llvmlite module: the `%NomaTensor` type, lazily declared runtime
functions (RUNTIME_SIGS), libm functions and intrinsics, string and data constants,
function-pointer globals, the IR functions' LLVM signatures and symbols).
Input: built by lower_llvm.lower_module. Output: llvmlite.ir declarations.
Imports: llvmlite.ir, basics, noma.rt.abi (the runtime's declarations, read from noma_rt.h).
"""

from __future__ import annotations

import sys
from array import array
from typing import Callable, Optional, Sequence

from llvmlite import ir as ll

from noma.compiler.llvm.basics import I8, I32, I64, PTR, VOID
from noma.rt import abi

#: Runtime functions generated code may call: name -> signature "ret:args" with
#: r = real, p = pointer, l = int64, i = int32, v = void, generated from noma_rt.h (noma.rt.abi).
RUNTIME_SIGS = abi.llvm_signatures()
NORETURN = frozenset({"noma_fail", "noma_fail_shape", "noma_fail_index", "noma_fail_check"})


def _mangle(t: ll.Type) -> str:
    """The overload suffix of type t in an intrinsic name (f64, v8f64, i64, p0)."""
    if isinstance(t, ll.VectorType):
        return f"v{t.count}{_mangle(t.element)}"
    if isinstance(t, ll.DoubleType):
        return "f64"
    if isinstance(t, ll.FloatType):
        return "f32"
    if isinstance(t, ll.IntType):
        return f"i{t.width}"
    if isinstance(t, ll.PointerType):
        return "p0"
    raise TypeError(f"no intrinsic suffix for {t}")


class _Bytes(ll.Constant):
    """An i8 array constant written as LLVM's `c"\\xx..."` text in one C-level pass (llvmlite
    formats a bytearray byte by byte in Python: seconds for the 8 MB of a 10^6-entry literal)."""

    def __init__(self, typ: ll.ArrayType, raw: bytes):
        self.type = typ
        self.constant = raw
        self._text = 'c"\\' + raw.hex("\\") + '"'

    def _get_reference(self) -> str:
        return self._text


class ModuleContext:
    """One llvmlite module under construction and its module-level declarations."""

    def __init__(self, name: str, dtype: str):
        if dtype not in ("f64", "f32"):
            raise ValueError(f"unsupported dtype {dtype!r}")
        self.module = ll.Module(name=name)
        self.dtype = dtype
        self.real = ll.DoubleType() if dtype == "f64" else ll.FloatType()
        self.elem_size = 8 if dtype == "f64" else 4
        tensor = self.module.context.get_identified_type("NomaTensor")
        if tensor.is_opaque:
            tensor.set_body(PTR, I64, ll.ArrayType(I64, 4))
        self.tensor = tensor
        self._strings: dict[str, ll.GlobalVariable] = {}
        self._data: dict[bytes, ll.GlobalVariable] = {}
        self._fn_pointers: dict[str, ll.GlobalVariable] = {}
        #: IR function name -> (param ranks, result rank), for this module's and extern functions.
        self.signatures: dict[str, tuple[tuple[int, ...], Optional[int]]] = {}
        #: IR function name -> LLVM symbol name.
        self.symbols: dict[str, str] = {}
        #: IR function names whose pointer global this module defines.
        self.own_pointers: set[str] = set()
        #: whether an outlined kernel (kernels.Kernels.outline) is defined by an earlier module
        #: (then this module declares it instead of compiling it again)
        self.shared: Callable[[str], bool] = lambda symbol: False

    # ------------------------------------------------------------------ declarations

    def _type(self, code: str) -> ll.Type:
        return {"r": self.real, "p": PTR, "l": I64, "i": I32, "v": VOID}[code]

    def runtime(self, name: str) -> ll.Function:
        """The declaration of runtime function `name` (declared on first use)."""
        existing = self.module.globals.get(name)
        if existing is not None:
            return existing
        ret, args = RUNTIME_SIGS[name].split(":")
        fnty = ll.FunctionType(self._type(ret), [self._type(c) for c in args])
        fn = ll.Function(self.module, fnty, name)
        fn.attributes.add("nounwind")
        if name in NORETURN:
            fn.attributes.add("noreturn")
            fn.attributes.add("cold")
        if name in ("noma_alloc", "noma_alloc_at"):
            fn.return_value.add_attribute("noalias")
            fn.return_value.attributes.align = 64
        return fn

    def libm(self, base: str, nargs: int = 1) -> ll.Function:
        """A libm function (`tanh` / `tanhf` by dtype)."""
        name = base if self.dtype == "f64" else base + "f"
        existing = self.module.globals.get(name)
        if existing is not None:
            return existing
        fn = ll.Function(self.module, ll.FunctionType(self.real, [self.real] * nargs), name)
        fn.attributes.add("nounwind")
        return fn

    def intrinsic(self, name: str, ret: ll.Type, args: Sequence[ll.Type],
                  suffix_types: Sequence[ll.Type]) -> ll.Function:
        """Declare the overloaded intrinsic `name` mangled with `suffix_types`."""
        full = ".".join([name] + [_mangle(t) for t in suffix_types])
        existing = self.module.globals.get(full)
        if existing is not None:
            return existing
        return ll.Function(self.module, ll.FunctionType(ret, list(args)), full)

    def bytes_global(self, raw: bytes) -> ll.GlobalVariable:
        """A private constant array of raw bytes (names, native-endian integer arrays)."""
        gv = self._data.get(b"raw:" + raw)
        if gv is not None:
            return gv
        gv = ll.GlobalVariable(self.module, ll.ArrayType(I8, len(raw)), f"noma.bytes.{len(self._data)}")
        gv.global_constant = True
        gv.linkage = "private"
        gv.unnamed_addr = True
        gv.align = 8
        gv.initializer = _Bytes(gv.value_type, raw)
        self._data[b"raw:" + raw] = gv
        return gv

    def data_global(self, data: bytes) -> ll.GlobalVariable:
        """A private constant array holding the f64 values `data` (little-endian) in the module's
        dtype: a numeric tensor literal is data in the object file, copied once when it runs."""
        gv = self._data.get(data)
        if gv is None:
            raw = data if self.dtype == "f64" else array("f", array("d", data)).tobytes()
            if sys.byteorder != "little":
                swapped = array("d" if self.dtype == "f64" else "f", raw)
                swapped.byteswap()
                raw = swapped.tobytes()
            typ = ll.ArrayType(I8, len(raw))
            gv = ll.GlobalVariable(self.module, typ, f"noma.data.{len(self._data)}")
            gv.global_constant = True
            gv.linkage = "private"
            gv.unnamed_addr = True
            gv.align = 64
            gv.initializer = _Bytes(typ, raw)
            self._data[data] = gv
        return gv

    def cstring(self, text: str) -> ll.GlobalVariable:
        """A private NUL-terminated constant holding `text` (UTF-8)."""
        gv = self._strings.get(text)
        if gv is None:
            data = bytearray(text.encode("utf-8") + b"\0")
            typ = ll.ArrayType(I8, len(data))
            gv = ll.GlobalVariable(self.module, typ, f"noma.str.{len(self._strings)}")
            gv.global_constant = True
            gv.linkage = "private"
            gv.unnamed_addr = True
            gv.initializer = ll.Constant(typ, data)
            self._strings[text] = gv
        return gv

    def value_type(self, rank: Optional[int]) -> ll.Type:
        return VOID if rank is None else self.real if rank == 0 else self.tensor

    def fn_type(self, name: str) -> ll.FunctionType:
        """The LLVM type of IR function `name`: reals / %NomaTensor by value, void when no result."""
        if name not in self.signatures:
            raise KeyError(f"call to unknown function {name!r} (not in the module nor its externs)")
        params, result = self.signatures[name]
        return ll.FunctionType(self.value_type(result), [self.value_type(r) for r in params])

    def function(self, name: str) -> ll.Function:
        """The LLVM function of IR function `name` (declared here when defined elsewhere)."""
        sym = self.symbols.get(name, name)
        fn = self.module.globals.get(sym)
        if fn is None:
            fn = ll.Function(self.module, self.fn_type(name), sym)
        return fn

    def fn_pointer(self, callee: str) -> ll.GlobalVariable:
        """`@"noma.fp.<callee>"`: defined here (initialised to the callee) when callee is in
        own_pointers, else declared external."""
        gv = self._fn_pointers.get(callee)
        if gv is None:
            gv = ll.GlobalVariable(self.module, PTR, f"noma.fp.{callee}")
            gv.align = 8
            if callee in self.own_pointers:
                gv.initializer = self.function(callee)
            else:
                gv.linkage = "external"
            self._fn_pointers[callee] = gv
        return gv
