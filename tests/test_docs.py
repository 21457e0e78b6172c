"""Every code block of README.md and docs/LANGUAGE.md runs, and does what the text around it says.

Blocks are found by their fences. `noma` blocks of one file run in order in one Session (as cells
of a notebook: a later block may use what an earlier one defined) and must give no error; the
checks below hold them to what the text states (converging examples converge, stated outputs are
printed). `python` blocks run with exec; the REPL transcript (lines after `noma> `) runs through
a Session and the meta-commands as the REPL runs them; the `json` block (jupyterlab-lsp's server
declaration) is parsed and its command run; `bash` lines are run when they are safe to run in a
test (`noma run`, `noma build`, the kernelspec installer into a temporary Jupyter data
directory), and otherwise checked for what they rely on (`pip install`: the `noma` console script
and the `test` extra, whose `python -m pytest -q` would run this suite again; `npm ci`, `vsce`,
`code`: the extension's package files; `jupyter lab`, which starts a server: the notebooks). A
block or shell command without a check here fails the test, so new documentation gets one.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

import noma

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "docs" / "LANGUAGE.md"]
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)


@dataclass
class CodeBlock:
    path: Path
    line: int
    lang: str
    text: str


def blocks(path: Path) -> list[CodeBlock]:
    source = path.read_text()
    return [CodeBlock(path, source.count("\n", 0, m.start()) + 1, m.group(1), m.group(2))
            for m in _FENCE.finditer(source)]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["NO_COLOR"] = "1"
    return env


def _noma(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "noma", *args], cwd=cwd, env={**_env(), **env},
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)


# ----------------------------------------------------------------------------- noma blocks


def _run_noma_blocks(path: Path, tmp_path: Path) -> list[tuple[CodeBlock, noma.Session, Any, int]]:
    """Each noma block of the file in one session, in order (in tmp_path); every one must succeed.
    Returns (block, session, result, training steps before the block) per block."""
    session = noma.Session()
    results = []
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        for block in blocks(path):
            if block.lang == "noma":
                steps = len(session.history.losses)
                result = session.execute(block.text, name=f"{path.name}:{block.line}", run_main=True)
                assert result.ok, f"{path.name}:{block.line}: " + "\n".join(d.render() for d in result.diagnostics)
                results.append((block, session, result, steps))
    finally:
        os.chdir(old)
    return results


def test_readme_noma_block_grows_and_converges(tmp_path: Path) -> None:
    """The opening example trains XOR with 2 hidden units, grows them to 16 while the loss is above
    0.1 and stops when `loss < 0.002` holds (no iteration-bound warning)."""
    [(block, session, result, _)] = _run_noma_blocks(ROOT / "README.md", tmp_path)
    assert not result.warnings, [d.message for d in result.warnings]
    assert session.history.losses[-1] < 0.002
    assert session.dims["hidden"] == 16


def test_language_noma_blocks_do_what_the_text_says(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "LANGUAGE.md").read_text()
    first, second, modules = _run_noma_blocks(ROOT / "docs" / "LANGUAGE.md", tmp_path)
    # the opening example: "... stops after N steps, when the loss first drops below 0.002, and prints `LINE`"
    stated = re.search(r"stops after (\d+) steps, when the loss first drops below 0\.002, and prints\s+`([^`]*)`",
                       text)
    assert stated, "LANGUAGE.md no longer states what its opening example prints"
    block, session, result, _ = first
    assert not result.warnings, [d.message for d in result.warnings]
    assert second[3] == int(stated.group(1))  # the steps before the second block: the first one's
    assert result.output.splitlines() == [stated.group(2)]
    # the explicit form of `optimize` continues training the same network: the condition holds at once
    block, session, result, steps_before = second
    assert not result.warnings and len(session.history.losses) == steps_before + 1
    # the modules example: "... ``` prints `LINE`."
    block, session, result, _ = modules
    after = text[text.index(block.text) + len(block.text):]
    stated_modules = re.match(r"```\nprints `([^`]*)`", after)
    assert stated_modules and result.output.splitlines() == [stated_modules.group(1)]


# ----------------------------------------------------------------------------- the other README blocks


def _check_python(block: CodeBlock, tmp_path: Path) -> None:
    out = io.StringIO()
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(block.text, f"README.md:{block.line}", "exec"), {})
    finally:
        os.chdir(old)
    value, w, last = out.getvalue().split()  # r.output is "" (the cell prints nothing), then 3 numbers
    assert float(value) == float(w) and float(last) < 1e-4


def _check_tune(block: CodeBlock, tmp_path: Path) -> None:
    """`noma tune` starts Ray trials (tests/tune runs them): here, the file it names exists and
    every option the command line uses is one `noma tune --help` lists."""
    args = block.text.replace("\\\n", " ").split()
    assert args[:2] == ["noma", "tune"] and (ROOT / args[2]).exists(), args
    helptext = _noma(["tune", "--help"], tmp_path).stdout
    for option in (a for a in args if a.startswith("--")):
        assert option in helptext, option


def _check_repl(block: CodeBlock, tmp_path: Path) -> None:
    from noma.meta import is_meta, run_meta

    session = noma.Session()
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        for line in block.text.splitlines():
            assert line.startswith("noma> "), line
            entry = line[len("noma> "):]
            if is_meta(entry):
                result = run_meta(session, entry)
                assert not getattr(result, "error", False), (entry, result)
            else:
                r = session.execute(entry)
                assert r.ok, (entry, [d.render() for d in r.diagnostics])
    finally:
        os.chdir(old)
    assert session.dims["hidden"] == 8 and session.params["W"].shape == (3, 8)
    assert (tmp_path / "training.png").stat().st_size > 0


def _bash_noma_run(cmd: str, tmp_path: Path) -> None:
    proc = _noma(["run", str(ROOT / "examples" / "grow_xor.noma"), "--plot", "grow_xor.png"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    # "trains XOR with 1 hidden unit, detects the plateau, grows to 16 units ..., converges"
    assert "growing hidden from 1 to 16" in proc.stdout and "converged" in proc.stdout, proc.stdout
    assert "warning" not in proc.stderr, proc.stderr
    assert (tmp_path / "grow_xor.png").stat().st_size > 0


def _bash_test_extra(cmd: str, tmp_path: Path) -> None:
    setup = (ROOT / "setup.cfg").read_text()
    assert re.search(r"^test\s*=", setup, re.MULTILINE), "setup.cfg has no `test` extra"
    assert "pytest" in setup.split("test", 1)[1]


def _bash_kernel_install(cmd: str, tmp_path: Path) -> None:
    args = cmd.split("#")[0].split()
    assert args[:3] == ["python", "-m", "noma.kernel"], args
    proc = subprocess.run([sys.executable, *args[1:]], cwd=tmp_path, env={**_env(), "JUPYTER_DATA_DIR": str(tmp_path)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "kernels" / "noma" / "kernel.json").exists()
    assert (tmp_path / "labextensions" / "jupyterlab-noma" / "package.json").exists()  # the README says so


def _bash_jupyter_lab(cmd: str, tmp_path: Path) -> None:
    assert len(list((ROOT / "notebooks").glob("*.ipynb"))) == 6  # "notebooks/ has six tours"


def _bash_build(cmd: str, tmp_path: Path) -> None:
    if not shutil.which(os.environ.get("CC", "cc").split()[0]):
        pytest.skip("no C compiler")
    proc = _noma(["build", str(ROOT / "examples" / "grow_xor.noma"), "-o", "grow_xor"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = subprocess.run([str(tmp_path / "grow_xor")], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "converged" in run.stdout, run.stderr


def _bash_pip_install(cmd: str, tmp_path: Path) -> None:
    assert re.search(r"console_scripts\s*=\s*\n\s*noma = noma\.cli:main", (ROOT / "setup.cfg").read_text())


def _bash_vscode_package(cmd: str, tmp_path: Path) -> None:
    """npm and VS Code are not run here (tests/lsp/test_vscode_extension.py builds the .vsix when
    Node is installed): the package `npm ci` and `vsce package` read must be there."""
    package = json.loads((ROOT / "editors" / "vscode" / "package.json").read_text())
    assert (ROOT / "editors" / "vscode" / "package-lock.json").exists()
    assert any(lang["id"] == "noma" for lang in package["contributes"]["languages"])


def _check_json(block: CodeBlock, tmp_path: Path) -> None:
    """The jupyterlab-lsp server declaration: valid JSON whose command is `noma lsp`, the language
    and MIME type the kernel declares."""
    server = json.loads(block.text)["LanguageServerManager"]["language_servers"]["noma"]
    assert server["argv"] == ["noma", "lsp"] and server["languages"] == ["noma"]
    proc = _noma(["lsp", "--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    from noma.kernel.kernel import NomaKernel

    assert NomaKernel.language_info["mimetype"] in server["mime_types"]


BASH: dict[str, Callable[[str, Path], None]] = {
    "pip install -e .                      # NOMA itself: puts `noma` on PATH": _bash_pip_install,
    "cd editors/vscode && npm ci && npx vsce package --skip-license --out noma-language.vsix": _bash_vscode_package,
    "code --install-extension noma-language.vsix": _bash_vscode_package,
    "pip install -e . && noma run examples/grow_xor.noma --plot grow_xor.png": _bash_noma_run,
    'pip install -e ".[test]" && python -m pytest -q': _bash_test_extra,
    "python -m noma.kernel install --user     # or: noma kernel install --user": _bash_kernel_install,
    'jupyter lab                              # pick the "NOMA" kernel; notebooks/ has six tours': _bash_jupyter_lab,
    "noma build examples/grow_xor.noma -o grow_xor && ./grow_xor": _bash_build,
}

OTHER = [b for path in DOCS for b in blocks(path) if b.lang != "noma"]


@pytest.mark.parametrize("block", OTHER, ids=[f"{b.path.name}:{b.line}" for b in OTHER])
def test_other_blocks(block: CodeBlock, tmp_path: Path) -> None:
    if block.lang == "python":
        _check_python(block, tmp_path)
    elif block.lang == "" and block.text.startswith("noma> "):
        _check_repl(block, tmp_path)
    elif block.lang == "" and block.text.startswith("noma tune "):
        _check_tune(block, tmp_path)
    elif block.lang == "json":
        _check_json(block, tmp_path)
    elif block.lang == "bash":
        for cmd in block.text.strip().splitlines():
            assert cmd in BASH, f"{block.path.name}:{block.line}: no check for the shell command {cmd!r}"
            BASH[cmd](cmd, tmp_path)
    else:
        pytest.fail(f"{block.path.name}:{block.line}: a `{block.lang}` block without a check")
