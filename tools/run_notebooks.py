"""Execute the teaching notebooks with the NOMA kernel (04: Python) (nbclient) and save them with outputs.

    python tools/run_notebooks.py                 # run notebooks/*.ipynb, write outputs in place
    python tools/run_notebooks.py --check 02      # run, do not write (exit 1 on an error)

Owns: a temporary "noma" kernelspec (installed with noma.kernel.install into a temp prefix and
put first on JUPYTER_PATH, so nothing is installed for the user), running notebooks top to
bottom with nbclient, and the helpers the kernel tests share (kernel_environment, execute,
stream_text).
Imports: nbclient, nbformat, noma.kernel.install.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOKS = ("01_tour.ipynb", "02_growing_xor.ipynb", "03_digits.ipynb", "04_population_tune.ipynb",
             "05_grow_cnn.ipynb", "06_live_controls.ipynb")

_prefix: Optional[tempfile.TemporaryDirectory] = None


def kernel_environment() -> str:
    """Install the "noma" kernelspec into a temporary prefix and make Jupyter (and the kernel
    process, through PYTHONPATH) find it and this checkout. Idempotent; the kernels dir."""
    global _prefix
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(REPO) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), *paths])
    if _prefix is None:
        from noma.kernel.install import install

        _prefix = tempfile.TemporaryDirectory(prefix="noma-kernelspec-")
        data = os.path.join(_prefix.name, "share", "jupyter")
        jupyter_path = [p for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p]
        os.environ["JUPYTER_PATH"] = os.pathsep.join([data, *jupyter_path])
        install(prefix=_prefix.name)
    return os.path.join(_prefix.name, "share", "jupyter", "kernels")


def execute(path: Path, timeout: int = 300, write: bool = False, startup_timeout: int = 60):
    """Run one notebook top to bottom with its kernel (the noma kernel unless the notebook names
    another, as 04 does: a Python notebook driving noma.tune); the executed notebook."""
    import nbformat
    from nbclient import NotebookClient

    kernel_environment()
    nb = nbformat.read(str(path), as_version=4)
    kernel = nb.metadata.get("kernelspec", {}).get("name", "noma")
    client = NotebookClient(nb, timeout=timeout, startup_timeout=startup_timeout, kernel_name=kernel,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    if write:
        for cell in nb.cells:  # keep the committed files free of per-run noise
            cell.get("metadata", {}).pop("execution", None)
        nbformat.write(nb, str(path))
    return nb


def stream_text(nb, name: str = "stdout") -> str:
    """All text a notebook printed on one stream, in cell order."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == name:
                parts.append(out.get("text", ""))
    return "".join(parts)


def outputs_of_type(nb, output_type: str) -> list:
    return [out for cell in nb.cells for out in cell.get("outputs", []) if out.get("output_type") == output_type]


def select(names: Sequence[str]) -> list[Path]:
    """Notebook paths matching the given prefixes (all of them when none are given)."""
    chosen = [NOTEBOOK_DIR / n for n in NOTEBOOKS if not names or any(n.startswith(p) for p in names)]
    if not chosen:
        raise SystemExit(f"no notebook matches {list(names)}; known: {', '.join(NOTEBOOKS)}")
    return chosen


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("notebooks", nargs="*", help="name prefixes (01, 02_growing, ...); default all")
    p.add_argument("--check", action="store_true", help="execute only; do not write outputs")
    p.add_argument("--timeout", type=int, default=300, help="seconds per cell (default 300)")
    args = p.parse_args(argv)
    from nbclient.exceptions import CellExecutionError

    status = 0
    for path in select(args.notebooks):
        print(f"running {path.relative_to(REPO)} ...", flush=True)
        try:
            execute(path, timeout=args.timeout, write=not args.check)
        except CellExecutionError as exc:
            print(f"  FAILED: {str(exc)[:2000]}", file=sys.stderr)
            status = 1
            continue
        print("  ok" + ("" if args.check else " (outputs written)"), flush=True)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
