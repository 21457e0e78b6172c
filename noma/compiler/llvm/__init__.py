"""The native backend: IR → textual LLVM IR (lowering) and LLVM IR → native code (the JIT, object files)."""
