"""The NOMA compiler: source text → AST (parse) → checked program → IR → autodiff → LLVM."""
