"""The `noma` command: run, check, emit, build, repl, lsp, kernel install.

Owns: argument parsing, exit codes (0 success, 1 a diagnostic, 2 usage) and printing results.
Imports: noma.session, noma.diagnostics, compiler stages for `emit`, noma.repl / noma.kernel lazily.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from noma.diagnostics import Kind, NomaError, Source


def _read(path: str) -> Source:
    from noma import source_file

    try:
        return source_file.read(path)
    except NomaError as exc:
        _print_diagnostics(exc)
        raise SystemExit(1) from None


def _color() -> bool:
    return sys.stderr.isatty()


def _print_diagnostics(exc: NomaError) -> int:
    """Render a user error on stderr; the exit code for it."""
    for diag in exc.diagnostics:
        print(diag.render(color=_color()), file=sys.stderr)
    return 1


def _format_value(value: object) -> str:
    from noma.display import format_value

    return format_value(value)


def _print_live(kind: str, payload: Any) -> None:
    """Session.output_sink of `noma run`: printed text to stdout, warnings to stderr, as they come."""
    if kind == "warning":
        sys.stdout.flush()
        print(payload.render(color=_color()), file=sys.stderr, flush=True)
    else:
        sys.stdout.write(payload)
        sys.stdout.flush()


def _bad_defines(source: Source, defines: list[str]) -> Optional[NomaError]:
    """The error of a malformed define, one naming nothing or of the wrong kind (None when they
    are fine, or when the program's own syntax error comes first: the compilation reports it)."""
    from noma.compiler.front.defines import make_defines, parse_with_defines

    if not defines:  # nothing to check (the check parses the program: 0.7 s of a 1 MB file)
        return None
    try:
        parse_with_defines(source, make_defines(defines))
    except NomaError as exc:
        if any(d.span is not None and d.span.source.name == "-D" for d in exc.diagnostics):
            return exc
    return None


def cmd_run(args: argparse.Namespace) -> int:
    from noma.session.core import Session

    source = _read(args.file)
    bad = _bad_defines(source, args.define)  # stops before anything runs
    if bad is not None:
        return _print_diagnostics(bad)
    session = Session(dtype=args.dtype, defines=args.define)
    session.output_sink = _print_live  # `print` inside training loops shows as it happens
    result = session.execute(source.text, name=source.name, run_main=True)
    if result.value is not None and result.ok:
        print(_format_value(result.value))
    sys.stdout.flush()
    for diag in result.diagnostics:
        if not (result.streamed and diag.kind is Kind.WARNING):
            print(diag.render(color=_color()), file=sys.stderr)
    if args.plot:
        from noma.plots import save_history_png

        try:
            save_history_png(args.plot, session.history, session.dims)
            print(f"plot written to {args.plot}", file=sys.stderr)
        except OSError as exc:
            print(f"error[io]: cannot write the plot {args.plot}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    if result.status == "interrupted":
        return 130
    return 0 if result.ok else 1


def cmd_check(args: argparse.Namespace) -> int:
    from noma.session.core import Session

    source = _read(args.file)
    bad = _bad_defines(source, args.define)
    if bad is not None:
        return _print_diagnostics(bad)
    try:
        Session(dtype=args.dtype, defines=args.define).compile(source, run_main=True)
    except NomaError as exc:
        return _print_diagnostics(exc)
    print(f"{args.file}: ok")
    return 0


def cmd_emit(args: argparse.Namespace) -> int:
    from noma.emit import emit_object, emit_stage

    source = _read(args.file)
    try:
        if args.stage == "obj":  # binary: to a file (-o, else FILE's name with .o), never to the terminal
            data = emit_object(source, dtype=args.dtype)
        else:
            text = emit_stage(source, args.stage, dtype=args.dtype, function=args.function)
    except NomaError as exc:
        return _print_diagnostics(exc)
    output = args.output
    if args.stage == "obj" and output is None:
        output = Path(args.file).with_suffix(".o").name
    if output is None:
        sys.stdout.write(text)
        return 0
    try:
        if args.stage == "obj":
            Path(output).write_bytes(data)
        else:
            Path(output).write_text(text)
    except OSError as exc:
        print(f"error[io]: cannot write {output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if args.stage == "obj":
        print(f"object file written to {output} ({len(data)} bytes; `noma build` links executables)",
              file=sys.stderr)
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from noma.build import build_executable

    source = _read(args.file)
    try:
        build_executable(source, args.output, dtype=args.dtype, opt_level=args.opt, cpu=args.cpu,
                         defines=args.define)
    except NomaError as exc:
        return _print_diagnostics(exc)
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    try:
        import ray  # noqa: F401
    except ImportError:
        print("error: noma tune needs Ray Tune: pip install 'noma[ray]' (or: pip install 'ray[tune]')",
              file=sys.stderr)
        return 2
    from noma.tune.runner import TuneOptions, run
    from noma.tune.space import parse_param

    try:
        params = [parse_param(p) for p in args.param]
        opts = TuneOptions(args.file, trials=args.trials, scheduler=args.scheduler, params=params,
                           metric=args.metric, mode=args.mode, steps_per_report=args.steps_per_report,
                           max_steps=args.max_steps, address=args.address, out=args.out,
                           perturbation_interval=args.perturbation_interval, seed=args.seed, dtype=args.dtype)
        results = run(opts)
    except NomaError as exc:
        return _print_diagnostics(exc)
    except OSError as exc:
        print(f"error[io]: {exc}", file=sys.stderr)
        return 1
    return 1 if results.errors else 0


def cmd_repl(args: argparse.Namespace) -> int:
    from noma.repl import main as repl_main

    return repl_main(dtype=args.dtype)


def cmd_lsp(args: argparse.Namespace) -> int:
    try:
        from noma.lsp.server import main as lsp_main
    except ImportError as exc:  # an install without its dependencies (pygls is in install_requires)
        print(f"error[io]: `noma lsp` needs pygls (pip install pygls): {exc}", file=sys.stderr)
        return 1
    return lsp_main(dtype=args.dtype)


def cmd_kernel(args: argparse.Namespace) -> int:
    from noma.kernel.install import main as install_main

    return install_main(args.kernel_args)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="noma", description="NOMA: train neural networks with a compiled language.")
    p.add_argument("--dtype", choices=("f64", "f32"), default="f64", help="scalar type (default f64)")
    sub = p.add_subparsers(dest="command")
    run = sub.add_parser("run", help="compile and run a program")
    run.add_argument("file")
    run.add_argument("--plot", metavar="PNG", help="write the loss and layer-size plot to this file")
    run.add_argument("-D", "--define", action="append", default=[], metavar="NAME=VALUE",
                     help="replace the value of the top-level `let` or `dim` NAME (repeatable)")
    run.set_defaults(func=cmd_run)
    check = sub.add_parser("check", help="compile a program without running it")
    check.add_argument("file")
    check.add_argument("-D", "--define", action="append", default=[], metavar="NAME=VALUE",
                       help="check with the top-level `let` or `dim` NAME replaced, as `run -D` does")
    check.set_defaults(func=cmd_check)
    emit = sub.add_parser("emit", help="print a compiler stage")
    emit.add_argument("--stage", choices=("ast", "ir", "grad", "llvm", "asm", "obj"), default="ir")
    emit.add_argument("--function", default=None, help="only this function (IR stages)")
    emit.add_argument("-o", "--output", default=None,
                      help="write to this file (default: stdout; for obj: FILE's name with .o)")
    emit.add_argument("file")
    emit.set_defaults(func=cmd_emit)
    build = sub.add_parser("build", help="build a standalone native executable")
    build.add_argument("file")
    build.add_argument("-o", "--output", required=True)
    build.add_argument("-O", "--opt", type=int, default=2, choices=(0, 1, 2, 3))
    build.add_argument("--cpu", default="host", help="host (default) or a portable target such as x86-64-v3")
    build.add_argument("-D", "--define", action="append", default=[], metavar="NAME=VALUE",
                       help="replace the value of the top-level `let` or `dim` NAME (repeatable)")
    build.set_defaults(func=cmd_build)
    tune = sub.add_parser("tune", help="train a population of a program's networks on Ray Tune")
    tune.add_argument("file")
    tune.add_argument("--trials", type=int, default=4, help="number of trials (default 4)")
    tune.add_argument("--scheduler", choices=("fifo", "asha", "pbt"), default="fifo")
    tune.add_argument("--param", action="append", default=[], metavar="NAME=SPEC",
                      help="search space of a top-level let or dim: loguniform:LOW:HIGH, uniform:LOW:HIGH, "
                           "randint:LOW:HIGH, choice:A,B,C or a number (repeatable)")
    tune.add_argument("--metric", default="loss", help="loss or a `report`ed metric (default loss)")
    tune.add_argument("--mode", choices=("min", "max"), default="min")
    tune.add_argument("--steps-per-report", type=int, default=100, help="training steps per report")
    tune.add_argument("--max-steps", type=int, default=1000, help="training steps per trial")
    tune.add_argument("--perturbation-interval", type=int, default=2, help="pbt: reports between exploits")
    tune.add_argument("--seed", type=int, default=None, help="pbt: seed of its random choices")
    tune.add_argument("--address", default=None,
                      help="an existing Ray cluster (HOST:PORT); default: a local one with this machine's CPUs")
    tune.add_argument("--out", default="noma_tune_out", help="results directory (default noma_tune_out)")
    tune.set_defaults(func=cmd_tune)
    repl = sub.add_parser("repl", help="start the interactive REPL (also: noma with no arguments)")
    repl.set_defaults(func=cmd_repl)
    lsp = sub.add_parser("lsp", help="the language server (LSP over stdin/stdout) for editors")
    lsp.add_argument("--stdio", action="store_true",
                     help="accepted for editors that pass it (stdio is the only transport)")
    lsp.set_defaults(func=cmd_lsp)
    kernel = sub.add_parser("kernel", help="Jupyter kernel: `noma kernel install [--user]`")
    kernel.add_argument("kernel_args", nargs=argparse.REMAINDER)
    kernel.set_defaults(func=cmd_kernel)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The `noma` command (argv None: this process's arguments, and `noma run` ends the process
    when it is done: see _end_process)."""
    args = parser().parse_args(argv)
    if args.command is None:
        args.func = cmd_repl
    try:
        rc = int(args.func(args))
        if argv is None and args.command == "run":
            _end_process(rc)
        return rc
    except SystemExit as exc:
        return int(exc.code or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a compiler bug: say so plainly, without a traceback
        from noma.diagnostics import Diagnostic

        msg = f"internal compiler error ({type(exc).__name__}: {exc}); please report this program"
        print(Diagnostic(Kind.RUNTIME, msg).render(), file=sys.stderr)
        if "NOMA_DEBUG" in __import__("os").environ:
            raise
        return 3


def _end_process(rc: int) -> None:
    """Exit at once with `rc`, everything written: output flushed (Python's and the C
    library's), without tearing down the interpreter. Freeing a large program's compiled state
    one object at a time (its IR, LLVM's module, the cell cache) took ~0.9 s after a 1 MB
    program had run; the process ends anyway."""
    import ctypes
    import os

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:  # a reader that went away (`noma run F | head`): nothing more to write
            pass
    ctypes.CDLL(None).fflush(None)
    os._exit(rc)


if __name__ == "__main__":
    raise SystemExit(main())
