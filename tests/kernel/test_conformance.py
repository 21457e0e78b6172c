"""Jupyter protocol conformance of the NOMA kernel (jupyter_kernel_test.KernelTests).

The kernelspec "noma" is installed into a temporary prefix found through JUPYTER_PATH.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

jkt = pytest.importorskip("jupyter_kernel_test")

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
from run_notebooks import kernel_environment  # noqa: E402


class NomaKernelTests(jkt.KernelTests):
    kernel_name = "noma"
    language_name = "noma"
    file_extension = ".noma"

    code_hello_world = 'print("hello, world");'
    # a training loop that reaches its bound prints a warning on stderr
    code_stderr = ("learn w = tensor [1.0];\n"
                   "optimize(w) with sgd(lr = 0.1) max 2 { let loss = sum(w * w); minimize loss; }")

    completion_samples = [
        {"text": "sigmo", "matches": {"sigmoid"}},
        {"text": "realloc_", "matches": set()},
        {"text": ":hel", "matches": {":help"}},
    ]
    complete_code_samples = ["1 + 2;", "let x = 1;", "fn f(x) { x * 2 }", ":params", ""]
    incomplete_code_samples = ["fn f(x) {", "let x = (1 +", "optimize(w) with adam(lr = 0.1) {"]

    code_execute_result = [
        {"code": "1 + 2;", "result": "3"},
        {"code": "2 ^ 10;", "result": "1024"},
        {"code": "tensor [1, 2] * 2;", "mime": "text/html"},
    ]
    code_history_pattern = "1 ?*"
    supported_history_operations = ("tail", "range", "search")

    code_display_data = [{"code": "dim h = 2;\nlearn W = zeros([3, h]);\nrealloc h = 4;", "mime": "image/png"}]
    code_inspect_sample = "zeros"
    code_generate_error = "let a = tensor [1, 2, 3] + tensor [1, 2];"

    @classmethod
    def setUpClass(cls) -> None:
        kernel_environment()
        super().setUpClass()

