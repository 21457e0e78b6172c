"""Install the NOMA kernelspec: `noma kernel install [--user|--sys-prefix|--prefix P]`.

Owns: the kernelspec (kernel.json: display name "NOMA", argv running `python -m noma.kernel`,
language "noma", interrupt_mode "signal") with its logos, installed through
jupyter_client's KernelSpecManager; linking the prebuilt JupyterLab extension (the `noma`
language for CodeMirror, noma/kernel/labextension) into the same Jupyter data directory's
labextensions/ (a wheel also installs it there as data files; an editable install does not, so
this link is what makes JupyterLab find it there); and drawing the logos (committed in
resources/, redrawn by `make_logos` when missing).
Imports: jupyter_client (lazily), matplotlib (only to redraw logos), noma.kernel.labextension_info.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from typing import Optional, Sequence

KERNEL_NAME = "noma"
RESOURCES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "resources")
LOGO_SIZES = (32, 64)


def kernel_json(python: Optional[str] = None) -> dict:
    """The kernelspec dictionary (argv uses this interpreter unless told otherwise)."""
    return {
        "argv": [python or sys.executable, "-m", "noma.kernel", "-f", "{connection_file}"],
        "display_name": "NOMA",
        "language": "noma",
        "interrupt_mode": "signal",
        "metadata": {"debugger": False},
    }


def draw_logo(size: int) -> bytes:
    """A `size`×`size` PNG: a dark tile with a tiny network whose last unit is green (growth)."""
    import io

    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyBboxPatch

    fig = Figure(figsize=(1, 1), dpi=size)
    fig.patch.set_alpha(0.0)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.add_patch(FancyBboxPatch((0.04, 0.04), 0.92, 0.92, boxstyle="round,pad=0,rounding_size=0.18",
                                color="#1b2a4a"))
    layers = [[0.35, 0.65], [0.2, 0.4, 0.6, 0.8], [0.5]]
    xs = [0.24, 0.5, 0.76]
    for (x0, left), (x1, right) in zip(zip(xs, layers), zip(xs[1:], layers[1:])):
        for y0 in left:
            for y1 in right:
                ax.plot([x0, x1], [y0, y1], color="#8fb3d9", lw=0.35 * size / 32, alpha=0.8)
    radius = 0.065
    for x, column in zip(xs, layers):
        for k, y in enumerate(column):
            grown = x == xs[1] and k == len(column) - 1
            ax.add_patch(matplotlib.patches.Circle((x, y), radius, color="#2ca02c" if grown else "#ffffff"))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", transparent=True)
    return buf.getvalue()


def make_logos(directory: str = RESOURCES) -> list[str]:
    """Write logo-32x32.png and logo-64x64.png into `directory`; their paths."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for size in LOGO_SIZES:
        path = os.path.join(directory, f"logo-{size}x{size}.png")
        with open(path, "wb") as f:
            f.write(draw_logo(size))
        paths.append(path)
    return paths


def write_spec(directory: str, python: Optional[str] = None) -> str:
    """kernel.json and the logos in `directory` (a kernelspec folder ready to install)."""
    with open(os.path.join(directory, "kernel.json"), "w") as f:
        json.dump(kernel_json(python), f, indent=1)
    for size in LOGO_SIZES:
        name = f"logo-{size}x{size}.png"
        source = os.path.join(RESOURCES, name)
        if os.path.exists(source):
            shutil.copy(source, os.path.join(directory, name))
        else:
            with open(os.path.join(directory, name), "wb") as f:
                f.write(draw_logo(size))
    return directory


def install(user: bool = False, prefix: Optional[str] = None, python: Optional[str] = None) -> str:
    """Install the "noma" kernelspec (system-wide, per user, or under `prefix`) and link the
    JupyterLab extension beside it (install_labextension); the kernelspec's path."""
    from jupyter_client.kernelspec import KernelSpecManager

    with tempfile.TemporaryDirectory() as tmp:
        spec_dir = os.path.join(tmp, KERNEL_NAME)
        os.makedirs(spec_dir)
        write_spec(spec_dir, python)
        path = KernelSpecManager().install_kernel_spec(spec_dir, kernel_name=KERNEL_NAME, user=user,
                                                       prefix=prefix)
    install_labextension(os.path.dirname(os.path.dirname(path)))
    return path


def install_labextension(data_dir: str) -> Optional[str]:
    """Link the prebuilt JupyterLab extension as DATA_DIR/labextensions/jupyterlab-noma (what
    `jupyter labextension develop` does); its path, or None when the package has no bundle.
    A link or folder already there is replaced (an older copy of the same extension)."""
    from noma.kernel.labextension_info import EXTENSION_NAME, OUTPUT_DIR

    if not (OUTPUT_DIR / "package.json").exists():
        return None
    target = os.path.join(data_dir, "labextensions", EXTENSION_NAME)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.islink(target) or os.path.isfile(target):
        os.unlink(target)
    elif os.path.isdir(target):
        shutil.rmtree(target)
    os.symlink(OUTPUT_DIR, target, target_is_directory=True)
    return target


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="noma kernel", description="The NOMA Jupyter kernel.")
    sub = p.add_subparsers(dest="command")
    inst = sub.add_parser("install", help="install the kernelspec named 'noma'")
    where = inst.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="into the user's Jupyter data directory")
    where.add_argument("--sys-prefix", action="store_true", help=f"into {sys.prefix} (this environment)")
    where.add_argument("--prefix", metavar="P", help="into P/share/jupyter/kernels")
    logos = sub.add_parser("logos", help="redraw the logos in noma/kernel/resources")
    logos.add_argument("--dir", default=RESOURCES)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`noma kernel install [...]` / `python -m noma.kernel install [...]`; an exit code."""
    args = parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.command == "logos":
        for path in make_logos(args.dir):
            print(path)
        return 0
    if args.command != "install":
        parser().print_usage(sys.stderr)
        return 2
    prefix = sys.prefix if args.sys_prefix else args.prefix
    try:
        path = install(user=args.user, prefix=prefix)
    except OSError as exc:
        print(f"error[io]: cannot install the kernelspec: {exc}", file=sys.stderr)
        if not args.user and prefix is None:
            print("(try `noma kernel install --user` or `--sys-prefix`)", file=sys.stderr)
        return 1
    print(f"installed the NOMA kernelspec in {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
