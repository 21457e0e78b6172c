"""The NOMA Jupyter kernel: `python -m noma.kernel` runs it, `noma kernel install` installs it.

Owns: nothing itself; `NomaKernel` (noma.kernel.kernel) is imported lazily so that
`python -m noma.kernel install` does not load ipykernel or the compiler.
"""

__all__ = ["NomaKernel"]


def __getattr__(name: str):
    if name == "NomaKernel":
        from noma.kernel.kernel import NomaKernel

        return NomaKernel
    raise AttributeError(f"module 'noma.kernel' has no attribute {name!r}")
