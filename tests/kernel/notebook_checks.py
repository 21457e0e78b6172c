"""What the teaching notebooks must show once run top to bottom (shared by the nbclient tests in
tests/kernel/test_notebooks.py and the JupyterLab tests in tests/browser): each check takes the
executed notebook (nbformat) and asserts its key outputs.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
import run_notebooks  # noqa: E402

NUMBER = r"([-+]?[0-9.]+(?:e[-+]?\d+)?|nan|inf)"


def numbers(pattern: str, text: str) -> list[float]:
    """Every number captured by the groups of `pattern`, in order."""
    found = re.findall(pattern, text)
    return [float(x) for m in found for x in (m if isinstance(m, tuple) else (m,))]


def check_tour(nb) -> None:
    out = run_notebooks.stream_text(nb)
    assert "a + row = [[11, 22, 33], [14, 25, 36]]" in out
    (w,) = numbers(r"w = \[" + NUMBER + r"\]", out)
    assert abs(w - 3) < 1e-3
    slope, bias = numbers(r"slope \[\[" + NUMBER + r"\]\] bias \[" + NUMBER + r"\]", out)[:2]
    assert abs(slope - 2) < 0.1 and abs(bias - 1) < 0.1
    (error,) = run_notebooks.outputs_of_type(nb, "error")
    assert error["ename"] == "NomaShapeError"
    assert "^" in "\n".join(error["traceback"])
    results = [o["data"]["text/plain"] for o in run_notebooks.outputs_of_type(nb, "execute_result")]
    assert any("slope" in r and "adam" in r for r in results)  # :params
    assert results[0].startswith("tensor[2, 3] f64")
    assert any("image/png" in o["data"] for o in run_notebooks.outputs_of_type(nb, "display_data"))


def check_growing_xor(nb) -> None:
    out = run_notebooks.stream_text(nb)
    (plateau,) = numbers(r"hidden = 2 \| after \d+ steps the loss is " + NUMBER, out)
    assert plateau > 0.1  # stuck with two hidden units
    assert "hidden = 16 | W1 [2, 16] W2 [16, 1]" in out
    (after_growth,) = numbers(r"loss right after growing " + NUMBER, out)
    assert abs(after_growth - plateau) < 1e-9  # init preserve keeps the function
    (grown_steps, converged), = re.findall(r"hidden = 16 \| converged after (\d+) more steps: loss " + NUMBER, out)
    assert float(converged) < 0.002
    (fresh,) = numbers(r"fresh network:\s+(\d+)", out)
    assert int(grown_steps) < fresh
    assert "dim hidden 2 -> 16" in out  # :history
    diagrams = [o for o in run_notebooks.outputs_of_type(nb, "display_data")
                if o["data"]["text/plain"] == "<network diagram>"]
    assert diagrams


def check_digits(nb) -> None:
    out = run_notebooks.stream_text(nb)
    sizes = [int(h) for h in re.findall(r"hidden (\d+) \| train loss", out)]
    assert {16, 32, 128} <= set(sizes)
    assert sizes.index(128) < len(sizes) - 1 and 32 in sizes[sizes.index(128):]  # pruned after growing
    (accuracy, hidden), = re.findall(r"final train accuracy " + NUMBER + r" with hidden = (\d+)", out)
    assert float(accuracy) >= 0.95 and int(hidden) == 32
    preserve, copy = numbers(r"init (?:preserve|copy)\s+\| right after " + NUMBER, out)
    (before,) = numbers(r"before growing \(16 units\): " + NUMBER, out)
    assert abs(preserve - before) < 1e-6 and abs(copy - before) < 1e-6
    assert not run_notebooks.outputs_of_type(nb, "error")


def check_population_tune(nb) -> None:
    """04 (a Python notebook): a 4-trial PBT population of digits networks on a 2-CPU Ray."""
    out = run_notebooks.stream_text(nb)
    trials = re.findall(r"trial \d: hidden (\d+) \| val accuracy " + NUMBER + r" \| test accuracy " + NUMBER, out)
    assert len(trials) == 4
    assert all(int(h) in (4, 8, 16, 32) and 0.5 < float(v) <= 1 for h, v, _ in trials)
    assert any("image/png" in o["data"] for o in run_notebooks.outputs_of_type(nb, "execute_result"))
    assert not run_notebooks.outputs_of_type(nb, "error")


def check_grow_cnn(nb) -> None:
    out = run_notebooks.stream_text(nb)
    found = re.findall(r"channels (\d+) \| test accuracy " + NUMBER, out)
    assert [int(c) for c, _ in found] == [4, 16, 16, 8, 8], out
    acc = [float(a) for _, a in found]
    assert acc[1] == acc[0]  # preserve keeps the function: the same predictions right after the grow
    assert acc[-1] >= 0.97, acc
    assert re.search(r"dim channels 16 -> 8 \(keep \[(\d+, ){7}\d+\]\)", out), out  # :history


def check_live_controls(nb) -> None:
    """06: the `:controls` panel is a widget; without clicks, the loop grows itself on the plateau."""
    out = run_notebooks.stream_text(nb)
    (plateau,) = numbers(r"hidden = 2 \| plateau: loss " + NUMBER, out)
    assert plateau > 0.1
    (converged,) = numbers(r"hidden = 8 \| converged after \d+ steps: loss " + NUMBER, out)
    assert converged < 0.002
    assert "dim hidden 2 -> 8 (preserve)" in out  # :history
    views = [o for o in run_notebooks.outputs_of_type(nb, "display_data")
             if "application/vnd.jupyter.widget-view+json" in o["data"]]
    assert len(views) == 1
    assert not run_notebooks.outputs_of_type(nb, "error")


#: notebook file -> its check
CHECKS = {"01_tour.ipynb": check_tour, "02_growing_xor.ipynb": check_growing_xor,
          "03_digits.ipynb": check_digits, "04_population_tune.ipynb": check_population_tune,
          "05_grow_cnn.ipynb": check_grow_cnn, "06_live_controls.ipynb": check_live_controls}
