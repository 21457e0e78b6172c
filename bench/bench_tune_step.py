"""Overhead of noma.tune: one Trainable.step() of 1000 training steps in a Ray actor against the
same 1000 steps in a plain Session (the training cell run with a stop at +1000 steps).

    PYTHONPATH=. nice python bench/bench_tune_step.py [--program tests/tune/xor_tune.noma] [--repeat 7]

Prints the median seconds per 1000 steps of each and the difference (the Ray actor round trip,
Ray's result handling, the report's metrics copy). Each side is warmed up first (compilation is
not timed). Starts a local Ray with 1 CPU and no dashboard. BLAS and OpenMP use one thread on
both sides (Ray sets OMP_NUM_THREADS=1 in its workers; this script sets it for the plain side too).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # as in a Ray worker of 1 CPU (before NumPy loads)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

STEPS = 1000


def plain(text: str, name: str, config: dict, repeat: int) -> list[float]:
    from noma.diagnostics import Source
    from noma.session.core import Session
    from noma.tune.program import split_program

    program = split_program(Source(name, text))
    s = Session(defines=config)
    s.measure_output_change = False
    s.execute(program.setup)
    times = []
    for _ in range(repeat + 1):
        s.rt.set_stop_at(s.rt.global_step() + STEPS)
        started = time.perf_counter()
        result = s.execute(program.train)
        times.append(time.perf_counter() - started)
        assert result.status == "interrupted" and result.steps == STEPS, result.diagnostics
    return times[1:]


def in_actor(text: str, name: str, config: dict, repeat: int) -> list[float]:
    import ray

    from noma.tune.trainable import make_trainable

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}})
    try:
        actor = ray.remote(num_cpus=1)(make_trainable(text, name, STEPS, workdir=os.getcwd())).remote(config=config)
        times = []
        for _ in range(repeat + 1):
            started = time.perf_counter()
            result = ray.get(actor.train.remote())
            times.append(time.perf_counter() - started)
            assert result["steps"] == STEPS
        return times[1:]
    finally:
        ray.shutdown()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--program", default="tests/tune/xor_tune.noma")
    p.add_argument("--define", action="append", default=["hidden=8"], help="NAME=VALUE (repeatable)")
    p.add_argument("--repeat", type=int, default=7)
    args = p.parse_args()
    with open(args.program) as f:
        text = f.read()
    config = {}
    for d in args.define:
        k, _, v = d.partition("=")
        config[k] = int(v) if v.isdigit() else float(v)
    a = statistics.median(plain(text, args.program, config, args.repeat))
    b = statistics.median(in_actor(text, args.program, config, args.repeat))
    print(f"| {args.program} {config} | plain Session | Ray actor step() | overhead |")
    print(f"| 1000 steps (median of {args.repeat}) | {a * 1e3:.1f} ms | {b * 1e3:.1f} ms | "
          f"{(b - a) * 1e3:+.1f} ms ({(b / a - 1) * 100:+.0f}%) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
