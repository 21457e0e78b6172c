"""Demo: population-based training of 8 digits networks that start small and may grow, against
random search with the same step budget, on this machine's CPUs (examples/tune/digits.noma).

    PYTHONPATH=. nice python examples/tune/digits_demo.py [--steps 1500] [--out demo_out]

PBT: 8 trials start with hidden 4 or 8 and lr in [1e-3, 3e-2]; every 2 reports (of 100 steps)
the worst quarter loads a checkpoint of the best quarter (sizes, values, optimizer state) and
explores: hidden moves to a neighbouring size of 4, 8, 16, 32, 64 (a `realloc` of the live
network) and lr is perturbed. Random search: 8 trials with hidden drawn from 4..64 and lr from
the same range, trained for the same number of steps each, no exploits. Both select the trial with
the best final validation accuracy and print its test accuracy, the wall time, and the sizes the
population ended with. Writes each run's results (CSV, JSON, population.png) under --out.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter

from noma.tune.runner import TuneOptions, report_rows, run
from noma.tune.space import parse_param

PROGRAM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "digits.noma")


def one(name: str, scheduler: str, params: list[str], mutations: list[str] | None, args) -> dict:
    opts = TuneOptions(PROGRAM, trials=8, scheduler=scheduler, params=[parse_param(p) for p in params],
                       mutations=[parse_param(p) for p in mutations] if mutations else None,
                       metric="val_accuracy", mode="max", steps_per_report=100, max_steps=args.steps,
                       out=os.path.join(args.out, name), perturbation_interval=2, seed=args.seed, verbose=0)
    started = time.perf_counter()
    results = run(opts)
    wall = time.perf_counter() - started
    best = results.get_best_result(metric="val_accuracy", mode="max", scope="last")
    sizes = Counter(int(r.metrics["dim_hidden"]) for r in results if r.metrics)
    return {"run": name, "wall_s": round(wall, 1), "best_val_accuracy": best.metrics["val_accuracy"],
            "best_test_accuracy": best.metrics["test_accuracy"], "best_hidden": best.metrics["dim_hidden"],
            "best_lr": best.config["lr"], "final_sizes": dict(sorted(sizes.items())),
            "steps_computed": sum(int(row["steps"]) for row in report_rows(results)),
            "exploits": sum(int(row["exploits"]) for row in report_rows(results)),
            "resizes": sum(int(row["resizes"]) for row in report_rows(results))}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1500, help="training steps per trial")
    p.add_argument("--out", default="demo_out")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    lr = "lr=loguniform:1e-3:3e-2"
    rows = [one("pbt", "pbt", ["hidden=choice:4,8", lr], ["hidden=choice:4,8,16,32,64", lr], args),
            one("random", "fifo", ["hidden=choice:4,8,16,32,64", lr], None, args)]
    print(json.dumps(rows, indent=1))
    for r in rows:
        print(f"{r['run']:>6}: test accuracy {r['best_test_accuracy']:.4f} (val {r['best_val_accuracy']:.4f}, "
              f"hidden {r['best_hidden']}, lr {r['best_lr']:.4g}), wall {r['wall_s']} s, "
              f"{r['steps_computed']} steps computed, {r['exploits']} exploits, {r['resizes']} resizes, "
              f"final sizes {r['final_sizes']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
