"""The teaching notebooks run top to bottom with the NOMA kernel and reach what they teach.

Each notebook is executed afresh with nbclient (tools/run_notebooks.py; nothing is written) and
its printed output is checked (tests/kernel/notebook_checks.py, shared with the JupyterLab tests
in tests/browser): the tour's values and error, XOR converging after growth, the digits network
growing to 128 units, pruned to 32, at >= 95% training accuracy, the population's trials, the
CNN growing from 4 to 16 filters and pruned to 8 at >= 97% test accuracy, and the live-controls
lesson growing its network from code.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("nbclient")
pytest.importorskip("nbformat")

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_notebooks  # noqa: E402
from notebook_checks import CHECKS  # noqa: E402

CELL_TIMEOUT = 120


def run(name: str):
    return run_notebooks.execute(run_notebooks.NOTEBOOK_DIR / name, timeout=CELL_TIMEOUT)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_notebook(name):
    if name == "04_population_tune.ipynb":
        pytest.importorskip("ray")
    CHECKS[name](run(name))
