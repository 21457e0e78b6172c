"""Basic LLVM types and the runtime's error kinds, shared by the lower_llvm* modules.

Imports: llvmlite.ir only.
"""

from llvmlite import ir as ll

I1 = ll.IntType(1)
I8 = ll.IntType(8)
I32 = ll.IntType(32)
I64 = ll.IntType(64)
PTR = ll.PointerType()
VOID = ll.VoidType()

#: Error kinds of the runtime (docs/RUNTIME_ABI.md).
ERR_TYPE = 2
ERR_SHAPE = 3
ERR_RUNTIME = 4


class LoweringError(Exception):
    """The IR cannot be lowered (a compiler bug: verify() should have caught it)."""
