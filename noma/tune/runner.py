"""`noma tune FILE`: a Ray Tune run of a NOMA program, its results files and population plot.

`TuneOptions` holds the command's options; `run(options)` checks the program and the search
space (located diagnostics, before Ray starts), starts or joins Ray (`--address`: an existing
cluster; default: a local one with this machine's CPUs, no dashboard), runs the trials with the
chosen scheduler (fifo, asha, or synchronous pbt whose mutations are the same search spaces: a
mutated dim is a `realloc` of the live network), and writes to OUT: trials.csv (every report of every trial),
trials.json (each trial's configuration and last report), best.json, population.png (loss over
steps per trial, exploits and resizes marked). Imports Ray lazily.
"""
from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Optional

from noma.tune.space import Param

SCHEDULERS = ("fifo", "asha", "pbt")


@dataclass
class TuneOptions:
    file: str
    trials: int = 4
    scheduler: str = "fifo"
    params: list[Param] = field(default_factory=list)
    metric: str = "loss"
    mode: str = "min"
    steps_per_report: int = 100
    max_steps: int = 1000
    address: Optional[str] = None
    out: str = "noma_tune_out"
    perturbation_interval: int = 2
    seed: Optional[int] = None
    dtype: str = "f64"
    verbose: int = 1
    #: pbt: the spaces its explore draws from (default: `params`), e.g. start small, grow large
    mutations: Optional[list[Param]] = None


def _scheduler(opts: TuneOptions, max_reports: int) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining

    if opts.scheduler == "asha":
        return ASHAScheduler(time_attr="training_iteration", max_t=max_reports, grace_period=1)
    if opts.scheduler == "pbt":
        return PopulationBasedTraining(
            time_attr="training_iteration", perturbation_interval=opts.perturbation_interval,
            hyperparam_mutations={p.name: p.mutation() for p in (opts.mutations or opts.params)
                                  if p.kind != "const"},
            quantile_fraction=0.25, resample_probability=0.25,
            # synchronous: trials exploit donors at the same report, so no trial skips the steps a
            # donor trained ahead (every trial computes exactly --max-steps, as with fifo)
            synch=True)
    return FIFOScheduler()


def _init_ray(address: Optional[str]) -> None:
    import ray

    env = {"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {}
    runtime_env = {"env_vars": env} if env else None
    if address:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
    else:
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, runtime_env=runtime_env,
                 log_to_driver=False)


def run(opts: TuneOptions) -> Any:
    """Run the trials; returns Ray's ResultGrid (the files are written to opts.out)."""
    import ray
    from ray import tune

    from noma.tune.live import check_program
    from noma.tune.space import example_config
    from noma.tune.trainable import make_trainable

    with open(opts.file) as f:
        text = f.read()
    check_program(text, opts.file, example_config(opts.params))
    out = os.path.abspath(opts.out)
    os.makedirs(out, exist_ok=True)
    max_reports = max(1, math.ceil(opts.max_steps / opts.steps_per_report))
    trainable = make_trainable(text, opts.file, opts.steps_per_report, opts.dtype, os.getcwd())
    if opts.seed is not None:  # PBT's and the search spaces' draws use these generators
        import random

        import numpy as np

        random.seed(opts.seed)
        np.random.seed(opts.seed)
    started = not ray.is_initialized()
    if started:
        _init_ray(opts.address)
    try:
        tuner = tune.Tuner(
            trainable,
            param_space={p.name: p.domain() for p in opts.params},
            tune_config=tune.TuneConfig(num_samples=opts.trials, scheduler=_scheduler(opts, max_reports),
                                        metric=opts.metric, mode=opts.mode, reuse_actors=True),
            run_config=tune.RunConfig(storage_path=out, name="trials", verbose=opts.verbose,
                                      stop={"training_iteration": max_reports},
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=4)),
        )
        results = tuner.fit()
    finally:
        if started:
            ray.shutdown()
    write_results(results, opts, out)
    return results


def report_rows(results: Any) -> list[dict[str, Any]]:
    """Every report of every trial (key `trial`: its index), from each trial's progress.csv when
    the results are on this machine (Ray's metrics_dataframe leaves out reports of a trial that
    was restored from a checkpoint), else from metrics_dataframe."""
    import pandas as pd

    rows = []
    for i, r in enumerate(results):
        progress = os.path.join(r.path, "progress.csv") if r.path else ""
        df = pd.read_csv(progress) if progress and os.path.exists(progress) else r.metrics_dataframe
        if df is None:
            continue
        for rec in df.to_dict("records"):
            rec = {k: v for k, v in rec.items() if not k.startswith("config/") and k not in ("date", "hostname")}
            rec["trial"] = i
            rows.append(rec)
    return rows


def write_results(results: Any, opts: TuneOptions, out: str) -> dict[str, Any]:
    """trials.csv, trials.json, best.json, population.png in `out`; prints the best trial."""
    import csv

    from noma.tune.population import save_population_png

    rows = report_rows(results)
    keys = sorted({k for r in rows for k in r})
    with open(os.path.join(out, "trials.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    trials = []
    for i, r in enumerate(results):
        last = {k: v for k, v in (r.metrics or {}).items() if isinstance(v, (int, float, str)) and k != "config"}
        trials.append({"trial": i, "config": r.config, "last": last,
                       "error": None if r.error is None else str(r.error)})
    with open(os.path.join(out, "trials.json"), "w") as f:
        json.dump(trials, f, indent=1, default=str)
    best = results.get_best_result(metric=opts.metric, mode=opts.mode, scope="last")
    summary = {"metric": opts.metric, "mode": opts.mode, "config": best.config,
               "last": {k: v for k, v in best.metrics.items() if isinstance(v, (int, float, str))}}
    with open(os.path.join(out, "best.json"), "w") as f:
        json.dump(summary, f, indent=1, default=str)
    save_population_png(os.path.join(out, "population.png"), rows, opts.metric)
    value = best.metrics.get(opts.metric)
    print(f"best trial: {opts.metric} = {value} with {best.config} "
          f"(dims: { {k[4:]: v for k, v in best.metrics.items() if k.startswith('dim_')} })", file=sys.stderr)
    print(f"results: {out}/trials.csv, trials.json, best.json, population.png", file=sys.stderr)
    return summary
