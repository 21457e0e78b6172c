"""The compiler's middle end: the IR, AST → IR (irgen), IR → IR passes, and reverse-mode autodiff as a pass."""
