"""NOMA: a small language for training neural networks.

The compiler (noma.compiler: parse → check → IR → autodiff → LLVM) turns NOMA programs into
native code run by noma.rt. Importing this package is cheap: submodules (and their heavy
dependencies, lark and llvmlite) are imported only when used.
"""

__version__ = "0.1.0"

__all__ = ["Session", "__version__"]


def __getattr__(name: str):
    """Lazy access to `noma.Session` (importing it loads the JIT and the native runtime)."""
    if name == "Session":
        from noma.session.core import Session

        return Session
    raise AttributeError(f"module 'noma' has no attribute {name!r}")
