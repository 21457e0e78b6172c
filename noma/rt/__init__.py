"""The NOMA runtime: the native C library (parameters, optimizer state, arena, RNG, I/O) and its
Python views. Does not import noma.compiler."""
