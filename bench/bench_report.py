"""Report of the NOMA benchmark (bench/bench.py): result tables, target verdicts, the extras section."""

from __future__ import annotations

import re

NOMA = "NOMA"


def fmt_us(x: float) -> str:
    return f"{x:,.2f}" if x < 1000 else f"{x:,.0f}"


def table(rows: list[tuple], res_by_key: dict) -> list[str]:
    out = ["| workload | implementation | µs/step | NOMA/peer | loss | rel. diff | cpu/wall | warm-up s |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]
    for key, title in rows:
        res = res_by_key.get(key)
        if not res or NOMA not in res:
            continue
        noma_us = res[NOMA]["us"]
        for name, r in res.items():
            ratio = "—" if name == NOMA else f"{noma_us / r['us']:.3f}"
            out.append(f"| {title} | {name} | {fmt_us(r['us'])} | {ratio} | {r['loss']:.12g} | "
                       f"{r.get('rel', 0):.1e} | {r['cpu_ratio']:.2f} | {r['warmup_s']:.1f} |")
            title = ""
    return out


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


#: Why a target can miss, from measurements outside the table (printed only when it is missed).
WHY_MISSED = {
    "W1-C": "a W1 step is about 0.5 µs; NOMA's step keeps a few runtime calls that the C loop, inlined "
            "whole, does not make (one call updating every parameter's Adam state, the arena mark and "
            "release, the interrupt check, the loss log), and the ratio moved between 1.07 and 1.10 over "
            "runs on this machine.",
    "compile": "the slowest cells compile training loops, or a session's first functions and loop kernels "
               "({slowest}). Compile time summed over the cells: LLVM's optimisation pipeline {llvm_optimise}, "
               "its code generation {llvm_codegen}, NOMA's lowering to LLVM IR (llvmlite building and "
               "printing the IR) {lowering}, LLVM parsing the IR {llvm_parse}, NOMA's front end (parse, IR, "
               "autodiff, IR passes) {front_end}. A training cell holds the step's forward pass, its "
               "backward pass and an unoptimised copy of the forward pass (the replay that measures the "
               "output change of a later resize: 3-10% of such a cell's compile time), and every "
               "elementwise op carries its shape checks and a broadcasting fallback. Switching LLVM's "
               "loop vectorizer off saved 12% of compile time but slowed the f32 W2/W3 steps by 11%; two "
               "threads compiling two halves of a cell took as long as one, because llvmlite runs every "
               "LLVM call under one process-wide lock.",
    "realloc": "the grow is bound by writing memory: at H = 1024 it makes about 36 MB of new state "
               "(weights drawn from the normal distribution, zeroed Adam moments, gradient buffers), "
               "whose first touch also faults the pages in; the shrink (0.1 ms) and the average in a "
               "native loop stay under 1 ms, and the grow measured 0.80-1.07 ms over runs.",
}


def why(key: str, **figures: str) -> str:
    return f" Why: {WHY_MISSED[key].format(**figures)}"


def phase_shares(c: dict) -> dict[str, str]:
    """Each compile phase's share of the summed compile time (bench_extras.compile_latency)."""
    total = sum(c["phases_ms"].values()) or 1.0
    return {k: f"{100 * v / total:.0f}%" for k, v in c["phases_ms"].items()}


class Targets:
    """Target lines `- desc: peer/NOMA = 4.96× — met` against one result set."""

    def __init__(self, res: dict, lines: list[str] | None = None):
        self.res = res
        self.lines: list[str] = [] if lines is None else lines

    def ratio(self, key: str, peer: str) -> float | None:
        r = self.res.get(key)
        if not r or peer not in r or NOMA not in r:
            return None
        return r[NOMA]["us"] / r[peer]["us"]

    def add(self, desc: str, key: str, peer: str, limit: float | None, faster_by: float | None = None,
            why_key: str | None = None) -> None:
        q = self.ratio(key, peer)
        if q is None:
            reason = "workload not run" if key not in self.res else f"{peer} unavailable"
            self.lines.append(f"- {desc}: not measured ({reason})")
            return
        if faster_by is not None:
            self.lines.append(f"- {desc}: {peer}/NOMA = {1 / q:.2f}× — {verdict(1 / q >= faster_by)}")
        else:
            gap = "" if q <= limit or why_key is None else f" ({(q / limit - 1) * 100:.0f}% over).{why(why_key)}"
            self.lines.append(f"- {desc}: NOMA/{peer} = {q:.3f} — {verdict(q <= limit)}{gap}")

    def mlp_targets(self, label: str, key: str) -> None:
        """The W2 / W3 minibatch targets of issue 7."""
        self.add(f"{label}: at least as fast as JAX lax.scan", key, "JAX lax.scan", 1.0)
        self.add(f"{label}: ≥ 4× faster than PyTorch eager", key, "PyTorch eager", None, 4)
        self.add(f"{label}: ≥ 1.5× faster than NumPy", key, "NumPy", None, 1.5)


def extras_targets(extras: dict) -> list[str]:
    out = []
    if "compile" in extras:
        c = extras["compile"]
        out.append(f"- compile latency: median {c['median_ms']:.0f} ms (≤ 100), p90 {c['p90_ms']:.0f} ms "
                   f"(≤ 300) over {c['cells']} cells — {verdict(c['median_ms'] <= 100 and c['p90_ms'] <= 300)}"
                   + ("" if c['median_ms'] <= 100 and c['p90_ms'] <= 300 else
                      f" (median {c['median_ms'] - 100:+.0f} ms, p90 {c['p90_ms'] - 300:+.0f} ms from the "
                      f"target).{why('compile', slowest=', '.join(c['slowest']), **phase_shares(c))}"))
        out.append(f"- re-run of an unchanged cell compiles nothing: re-running the first notebook's cells "
                   f"still takes {c['rerun_median_ms']:.1f} ms of compile time (median) — "
                   f"{verdict(c['rerun_median_ms'] < 1)}")
    for ln in extras.get("realloc", []):
        if "3-layer MLP" in ln:  # the case: judged on the grow and the shrink, not only their average
            m = re.search(r"([0-9.]+) ms per resize \(grow ([0-9.]+) ms and shrink ([0-9.]+) ms as runtime calls", ln)
            ok = m is not None and max(float(x) for x in m.groups()) <= 1 and "no recompilation" in ln
            out.append(f"- realloc of a hidden layer 16↔1024 on a 3-layer MLP ≤ 1 ms, no recompilation: {ln} — "
                       f"{verdict(ok)} (each of grow, shrink and their native-loop average; bench/bench_realloc.py)"
                       + ("" if ok or m is None else why("realloc")))
    return out


def extras_section(extras: dict) -> list[str]:
    lines = ["", "## Compile latency, start-up, realloc", ""]
    if "compile" in extras:
        c = extras["compile"]
        lines.append(f"- Compile time per notebook cell ({c['cells']} cells of notebooks/*.ipynb, in order, one "
                     f"session per notebook, in a fresh process not pinned to one CPU): "
                     f"median {c['median_ms']:.0f} ms, p90 {c['p90_ms']:.0f} ms, max {c['max_ms']:.0f} ms; "
                     f"re-running the first notebook's cells unchanged: median {c['rerun_median_ms']:.1f} ms. "
                     f"Summed over the cells ({c['total_ms']:,.0f} ms): "
                     + ", ".join(f"{k.replace('_', ' ')} {v:,.0f} ms" for k, v in c["phases_ms"].items())
                     + f". Slowest: {', '.join(c['slowest'])}.")
    if "cold" in extras:
        c = extras["cold"]
        lines.append(f"- Cold start of `noma run` on a one-line program: {c['noma_run_ms']:.0f} ms "
                     f"(a bare `python -c pass`: {c['python_ms']:.0f} ms).")
    if "kernel" in extras:
        k = extras["kernel"]
        if "error" in k:
            lines.append(f"- Cold start of the Jupyter kernel: not measured ({k['error']}).")
        else:
            lines.append(f"- Cold start of the Jupyter kernel (jupyter_client `KernelManager`, kernelspec `noma`): "
                         f"{k['first_reply_ms']:.0f} ms from `start_kernel()` to the first completed "
                         f"execute_reply of a trivial cell (`1 + 1`), of which {k['ready_ms']:.0f} ms until "
                         f"the kernel answers kernel_info (ready); median of {k['reps']} starts "
                         f"({', '.join(str(x) for x in k['all_ms'])} ms) after one unmeasured start.")
    if "cold" in extras and extras["cold"]["exe_bytes"]:
        c = extras["cold"]
        lines.append(f"- `noma build` executable of that program: {c['exe_bytes']:,} bytes, "
                     f"runs in {c['exe_run_ms']:.1f} ms.")
    for ln in extras.get("realloc", []):
        lines.append(f"- Realloc: {ln}")
    return lines


def compile_counted_note(key: str, title: str, res: dict) -> str | None:
    """Per-step time of the warm-up run (compilation of every hidden size included)."""
    if not res or NOMA not in res:
        return None
    steps = res[NOMA]["steps"]
    parts = [f"{name} {fmt_us(r['warmup_s'] / steps * 1e6)}" for name, r in res.items()
             if name in (NOMA, "torch.compile", "JAX jit", "JAX lax.scan")]
    return (f"{title}: torch.compile and JAX compile one program per hidden size (8 sizes: torch.compile "
            "with dynamic=False, JAX per input shape), in their warm-up run; the timed rounds reuse them. "
            "NOMA compiles its training loop once and resizes without recompiling. With compilation "
            "counted (the warm-up run's wall time / steps, µs/step; NOMA's includes its session and "
            f"setup cell): {', '.join(parts)}. The table and the targets use the timed rounds.")
