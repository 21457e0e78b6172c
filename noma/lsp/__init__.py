"""The NOMA language server (`noma lsp`): diagnostics, completion, hover, definitions, symbols
and rename over stdio, on pygls, using the compiler's own front end (nothing is executed).

Modules: vocabulary (keywords, builtins, optimizers from the compiler's tables), analysis (one
checked document: diagnostics and its scope index), scopes (definitions and references from the
AST), positions (offsets ↔ LSP positions), server (the pygls wiring).
"""
