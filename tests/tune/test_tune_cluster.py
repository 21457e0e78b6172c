"""`noma tune --address` on a 2-node Ray cluster on this machine: a head node started with
`ray start --head` on 127.0.0.1 and a second node joining it with `ray start --address`, 1 CPU
each (both stopped at the end with `ray stop`). Trials run on both nodes; checkpoints are files
in the shared results directory; each node compiles its own code."""
from __future__ import annotations

import csv
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = Path(__file__).parent / "xor_tune.noma"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray(*args: str, env: dict) -> subprocess.CompletedProcess:
    ray_cli = shutil.which("ray", path=os.path.dirname(sys.executable)) or shutil.which("ray")
    assert ray_cli, "the ray command is not installed"
    return subprocess.run([ray_cli, *args], env=env, text=True, capture_output=True, timeout=120)


def test_two_node_cluster_runs_the_same_command(tmp_path: Path) -> None:
    port = _free_port()
    # a throwaway cluster on 127.0.0.1: no auth token to share between the nodes and the driver
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1", RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    address = f"127.0.0.1:{port}"
    try:
        head = _ray("start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
                    "--include-dashboard=false", "--disable-usage-stats", env=env)
        assert head.returncode == 0, head.stderr
        worker = _ray("start", f"--address={address}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
                      "--disable-usage-stats", env=env)
        assert worker.returncode == 0, worker.stderr
        out = tmp_path / "out"
        proc = subprocess.run(
            [sys.executable, "-m", "noma", "tune", str(PROGRAM), "--address", address, "--trials", "2",
             "--param", "hidden=choice:2,4", "--steps-per-report", "20", "--max-steps", "60",
             "--out", str(out)], cwd=tmp_path, env=env, text=True, capture_output=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        with open(out / "trials.csv") as f:
            rows = list(csv.DictReader(f))
        assert {r["trial"] for r in rows} == {"0", "1"}
        assert all(int(r["global_step"]) == 60 for r in rows if r["training_iteration"] == "3")
        assert (out / "population.png").stat().st_size > 0
        assert "best trial" in proc.stderr
    finally:
        _ray("stop", "--force", env=env)
