"""noma.tune on a local Ray limited to 2 CPUs (one Ray start for this module): a 4-trial PBT
run finishes, an exploit crosses sizes, a dim mutation is a realloc reported as a resize, the
results files and the population plot exist; the `noma tune` command's argument errors."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from noma.tune.runner import TuneOptions, run  # noqa: E402
from noma.tune.space import parse_param  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = Path(__file__).parent / "xor_tune.noma"


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    try:
        yield
    finally:
        ray.shutdown()


def test_pbt_population_changes_sizes(local_ray, tmp_path: Path) -> None:
    opts = TuneOptions(str(PROGRAM), trials=4, scheduler="pbt", seed=3, out=str(tmp_path / "out"),
                       params=[parse_param("hidden=choice:1,2,3,4,5,6,7,8"), parse_param("lr=0.05")],
                       steps_per_report=20, max_steps=200, perturbation_interval=2, verbose=0)
    results = run(opts)
    assert not results.errors and len(results) == 4
    out = tmp_path / "out"
    for name in ("trials.csv", "trials.json", "best.json", "population.png"):
        assert (out / name).stat().st_size > 0
    with open(out / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert max(int(r["global_step"]) for r in rows) == 200
    events = [r["events"] for r in rows if r["events"]]
    crossing = [e for e in events if "exploit" in e and "→" in e.split("resize")[0]]
    assert crossing, f"no exploit crossed sizes: {events}"
    resizes = [r for r in rows if int(r["resizes"])]
    assert resizes, f"no dim mutation: {events}"
    for r in resizes:  # the mutation's target size is the size the trial reports
        target = int(r["events"].split("resize")[1].split("→")[-1].split(";")[0])
        assert int(r["dim_hidden"]) == target
    trials = json.loads((out / "trials.json").read_text())
    assert {t["trial"] for t in trials} == {0, 1, 2, 3}


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "noma", "tune", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=120)


def test_tune_command_reports_bad_parameters_before_starting_ray(tmp_path: Path) -> None:
    proc = _cli(str(PROGRAM), "--param", "widht=choice:1,2", cwd=tmp_path)
    assert proc.returncode == 1 and "error[name]" in proc.stderr and "widht" in proc.stderr
    proc = _cli(str(PROGRAM), "--param", "lr=loguniform:0:1", cwd=tmp_path)
    assert proc.returncode == 1 and "error[syntax]" in proc.stderr and "LOW > 0" in proc.stderr
    assert "Traceback" not in proc.stderr
