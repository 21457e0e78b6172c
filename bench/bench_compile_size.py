"""NOMA benchmark: compile time against source size and nesting (issue 14).

Run: `python bench/bench_compile_size.py [--quick]` (prints a Markdown table).

Each case is a generated program run as `python -m noma run FILE` in a fresh process (wall time,
start-up included: what a user waits for) and also compiled in this process by a fresh Session
(its compile_seconds, split into the front end — parse, IR, autodiff, passes — the lowering to
LLVM IR and LLVM's own work). The result column says what the run printed or its diagnostic.
Cases: tensor literals of 10^4, 10^5 and 10^6 numbers (data: one constant array); 0.125, 0.25,
0.5 and 1 MB of statements (compile time should grow linearly); a safetensors file of 50,000
tiny tensors; 20,000 nested `if` blocks and 100,000 nested parentheses (rejected at the 257th
level); a function of 6,000 early returns (compiles: its IR nests 6,000 deep); a 200,000-term
`1+1+...` chain (compiles).
`--quick` leaves out the 10^6 literal, the 0.5 and 1 MB sources and the chain. `--only TEXT`
runs the cases whose name contains TEXT. The "CPU s" column is the process time of the
in-process execute (compile and run): on a shared machine it moves far less with the load than
the wall-clock columns.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def literal(n: int) -> str:
    return ("let t = tensor [" + ", ".join(str((i * 7919) % 1000 / 8) for i in range(n)) + "];\n"
            "print(sum(t));\n")


def statements(size: int = 1_000_000) -> str:
    lines, n, total = [], 0, 0
    while total < size:
        lines.append(f"let v{n} = {n} * 2 + 1;\n" if n % 2 == 0 else f"v{n - 1} = v{n - 1} - {n % 7};\n")
        total += len(lines[-1])
        n += 1
    return "".join(lines) + "print(v0);\n"


def early_returns(n: int) -> str:
    """A function of n `if ... { return ...; }`: each nests the rest of the function in IR."""
    body = "".join(f"  if x > {k} {{ return {k}; }}\n" for k in range(n))
    return f"fn f(x) {{\n{body}  return 0;\n}}\nprint(f(3));\n"


def tensors(workdir: Path, n: int = 50000) -> str:
    header = {f"t{i}": {"dtype": "F64", "shape": [1], "data_offsets": [8 * i, 8 * i + 8]} for i in range(n)}
    raw = json.dumps(header).encode()
    path = workdir / "many.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + struct.pack(f"<{n}d", *range(n)))
    return f'load_safetensors m = "{path}";\nprint(m.t0, m.t{n - 1});\n'


def cases(workdir: Path, quick: bool) -> list[tuple[str, str]]:
    out = [("literal of 10^4 numbers", literal(10**4)), ("literal of 10^5 numbers", literal(10**5))]
    out += [("0.125 MB of statements", statements(125_000)), ("0.25 MB of statements", statements(250_000))]
    if not quick:
        out += [("literal of 10^6 numbers", literal(10**6)), ("0.5 MB of statements", statements(500_000)),
                ("1 MB of statements", statements(1_000_000))]
    out += [("safetensors, 50,000 tensors", tensors(workdir)),
            ("20,000 nested if blocks", "let a = 0;\n" + "if 1 { " * 20000 + "a = 1;" + " }" * 20000 + "\n"),
            ("100,000 nested parentheses", "print(" + "(" * 100000 + "1" + ")" * 100000 + ");\n"),
            ("6,000 early returns in a function", early_returns(6000))]
    if not quick:
        out.append(("200,000-term 1+1+... chain", "print(" + "+".join(["1"] * 200000) + ");\n"))
    return out


def run_cli(path: Path, workdir: Path) -> tuple[float, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1")
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "noma", "run", str(path)], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - started
    first = (proc.stdout.strip().splitlines() or proc.stderr.strip().splitlines() or [""])[0]
    return wall, first[:60]


def compile_phases(text: str) -> tuple[float, dict[str, float], float]:
    import noma

    session = noma.Session()
    started = time.process_time()
    result = session.execute(text, name="bench.noma")
    return result.compile_seconds, result.compile_phases, time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="", help="run only the cases whose name contains this")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"load average (1 min) before: {load:.2f}; {os.cpu_count()} cores\n")
    print("| case | source | `noma run` wall s | compile s | front end s | lowering s | LLVM s | CPU s | result |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory(prefix="noma-bench-") as tmp:
        workdir = Path(tmp)
        for name, text in cases(workdir, args.quick):
            if args.only not in name:
                continue
            path = workdir / "case.noma"
            path.write_text(text)
            wall, shown = run_cli(path, workdir)
            seconds, phases, cpu = compile_phases(text)
            llvm = sum(v for k, v in phases.items() if k.startswith("llvm"))
            size = f"{len(text) / 1e6:.2f} MB" if len(text) >= 100_000 else f"{len(text) / 1e3:.0f} kB"
            cells = [f"{phases.get('front_end', seconds):.2f}", f"{phases.get('lowering', 0):.2f}", f"{llvm:.2f}"] \
                if phases else ["—", "—", "—"]
            print(f"| {name} | {size} | {wall:.2f} | {seconds:.2f} | " + " | ".join(cells) + f" | {cpu:.2f} | {shown} |",
                  flush=True)
    print(f"\nload average (1 min) after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
