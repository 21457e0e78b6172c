"""The population plot of a noma tune run: loss over global steps for every trial, with each
trial's exploits (a checkpoint of another trial loaded: ×) and resizes (a dim mutated by a
realloc: ▲) marked, and the dims over steps below it when the program has any.
Input: the rows of every report (noma.tune.runner). Imports matplotlib (Agg) lazily.
"""
from __future__ import annotations

from typing import Any


def save_population_png(path: str, rows: list[dict[str, Any]], metric: str = "loss") -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trials = sorted({r["trial"] for r in rows})
    dim_keys = sorted({k for r in rows for k in r if k.startswith("dim_")})
    panels = ["loss"] + ([metric] if metric != "loss" else []) + (["dims"] if dim_keys else [])
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.6 * len(panels)), sharex=True, squeeze=False)
    for t in trials:
        mine = sorted((r for r in rows if r["trial"] == t), key=lambda r: (r.get("global_step", 0),
                                                                           r.get("training_iteration", 0)))
        steps = [r.get("global_step", 0) for r in mine]
        for ax, panel in zip(axes[:, 0], panels):
            if panel == "dims":
                for k in dim_keys:
                    line, = ax.step(steps, [r.get(k, float("nan")) for r in mine], where="post", lw=1)
                ax.set_ylabel("size (" + ", ".join(k[4:] for k in dim_keys) + ")")
                continue
            line, = ax.plot(steps, [r.get(panel, float("nan")) for r in mine], lw=1, label=f"trial {t}")
            for key, marker in (("exploits", "x"), ("resizes", "^")):
                hits = [(s, r.get(panel)) for s, r in zip(steps, mine) if r.get(key)]
                if hits:
                    ax.plot(*zip(*hits), marker, color=line.get_color(), ms=7)
            ax.set_ylabel(panel)
    if all(r.get("loss", 1) > 0 for r in rows):  # (NaN compares False: linear)
        axes[0, 0].set_yscale("log")
    axes[0, 0].set_title("population: loss per trial (× exploit, ▲ resize)")
    if len(trials) <= 10:
        axes[0, 0].legend(fontsize=7, ncol=2)
    axes[-1, 0].set_xlabel("global step")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
