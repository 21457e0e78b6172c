"""The compiler's front end: source text → AST (parse) → checked program, with the names a session knows."""
