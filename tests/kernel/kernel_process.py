"""A real NOMA kernel process driven by jupyter_client, started and shut down around a block
(the kernel tests' fixtures use it)."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
from run_notebooks import kernel_environment  # noqa: E402


@contextmanager
def running_kernel(env: Optional[dict] = None, timeout: float = 60) -> Iterator[tuple]:
    """A started NOMA kernel and its client (channels started, ready), shut down afterwards."""
    from jupyter_client import KernelManager

    kernel_environment()
    km = KernelManager(kernel_name="noma")
    km.start_kernel(**({"env": env} if env is not None else {}))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=timeout)
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
