"""The demos of the README run as a new user runs them, and do what they say."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_example(name: str, tmp_path: Path) -> subprocess.CompletedProcess:
    plot = tmp_path / "plot.png"
    proc = subprocess.run([sys.executable, "-m", "noma", "run", f"examples/{name}", "--plot", str(plot)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return proc


def test_grow_xor_plateaus_grows_and_converges(tmp_path: Path) -> None:
    out = run_example("grow_xor.noma", tmp_path).stdout
    grow = re.search(r"plateau at step (\d+) loss ([\d.e-]+) -> growing hidden from 1 to 16", out)
    assert grow, out
    assert float(grow.group(2)) > 0.1  # one hidden unit cannot represent XOR
    done = re.search(r"converged: loss ([\d.e-]+) after (\d+) steps with hidden = 16", out)
    assert done, out
    assert float(done.group(1)) < 0.002 and int(done.group(2)) > int(grow.group(1))


def test_grow_digits_grows_prunes_and_reaches_95_percent(tmp_path: Path) -> None:
    out = run_example("grow_digits.noma", tmp_path).stdout
    sizes = [int(h) for h in re.findall(r"hidden (\d+) \|", out)]
    assert sizes == [128, 32, 32], out
    accuracies = [float(a) for a in re.findall(r"train accuracy ([\d.]+)", out)]
    assert min(accuracies) >= 0.95, out


def test_grow_cnn_grows_prunes_and_reaches_97_percent(tmp_path: Path) -> None:
    out = run_example("grow_cnn.noma", tmp_path).stdout
    found = re.findall(r"channels (\d+) \| test accuracy ([\d.]+)", out)
    assert [int(c) for c, _ in found] == [4, 16, 16, 8, 8], out
    acc = [float(a) for _, a in found]
    assert acc[1] == acc[0] and acc[-1] >= 0.97, out  # preserve keeps the function; pruned and tuned
    kept = re.search(r"keeping filters \[([\d, ]+)\]", out)
    assert kept and len(set(kept.group(1).split(", "))) == 8, out
