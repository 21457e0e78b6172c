"""Basic LLVM types, the runtime's error kinds, the tensor descriptor's construction and
LoweringError, shared by the modules of the LLVM lowering (noma/compiler/llvm).

Imports: llvmlite.ir only.
"""

from typing import Sequence

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


def descriptor(b: ll.IRBuilder, typ: ll.Type, data: ll.Value, dims: Sequence[ll.Value]) -> ll.Value:
    """A NomaTensor value {data, rank, dims[4]} (unused dims 0) built with builder b."""
    t = b.insert_value(ll.Constant(typ, ll.Undefined), data, 0)
    t = b.insert_value(t, ll.Constant(I64, len(dims)), 1)
    for i in range(4):
        t = b.insert_value(t, dims[i] if i < len(dims) else ll.Constant(I64, 0), [2, i])
    return t


class LoweringError(Exception):
    """The IR cannot be lowered (a compiler bug: verify() should have caught it)."""
