"""Shared fixtures of the kernel tests: a real NOMA kernel process driven by jupyter_client."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kernel_process import running_kernel  # noqa: E402


@pytest.fixture(scope="module")
def kernel() -> Iterator[tuple]:
    """One kernel (manager, client) per test module."""
    pytest.importorskip("jupyter_client")
    with running_kernel() as pair:
        yield pair
