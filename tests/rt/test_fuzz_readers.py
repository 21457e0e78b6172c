"""The file readers' fuzz targets (tests/rt/fuzz_readers.py) in a child process: a crash of the
native code, a hang or a huge allocation there fails this test instead of killing pytest.

The child runs under an address-space limit (RLIMIT_AS, 4 GiB) with NOMA_MEMORY_LIMIT=256M and a
time bound; NOMA_FUZZ_EXAMPLES=N (examples per target, default 150: about 30 s) runs longer.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("hypothesis")

ROOT = Path(__file__).resolve().parents[2]
TARGETS = Path(__file__).resolve().parent / "fuzz_readers.py"
ADDRESS_SPACE = 4 << 30


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def test_file_readers_fuzz() -> None:
    examples = int(os.environ.get("NOMA_FUZZ_EXAMPLES", "150"))
    env = dict(os.environ, PYTHONPATH=str(ROOT), NOMA_MEMORY_LIMIT="256M", NOMA_THREADS="1",
               OPENBLAS_NUM_THREADS="1", NOMA_FUZZ_EXAMPLES=str(examples))
    timeout = 120 + examples  # generous: a hang is minutes, not a slow example
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                               str(TARGETS)], env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout, preexec_fn=_limit_memory)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the fuzz targets hung (no result in {timeout} s)\n{e.stdout}\n{e.stderr}")
    if proc.returncode < 0:
        pytest.fail(f"the fuzz child died of signal {signal.Signals(-proc.returncode).name}\n"
                    f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    assert proc.returncode == 0, f"a fuzz target failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
