"""A JupyterLab server and a headless Chromium page driving it, for the browser tests.

Owns: starting JupyterLab on 127.0.0.1 (a free port, a random token, a temporary root holding
copies of the notebooks, temporary Jupyter config/data/runtime/workspace folders, the "noma"
kernelspec and the JupyterLab extension installed into a temporary prefix by
tools/run_notebooks.kernel_environment), launching Debian's Chromium through Playwright with
`executable_path` (never a downloaded browser), and the page helpers the tests share: open a
notebook, run cells, read the notebook model with its outputs (JupyterLab runs with
expose_app_in_browser, so `window.jupyterapp` is the application), the kernel's status,
screenshots. Where the browser or Playwright is missing, `browser_or_skip` skips (or fails, with
NOMA_REQUIRE_BROWSER_TESTS=1, as .ci/run sets).
Imports: playwright (lazily), nbformat, tools/run_notebooks.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
import run_notebooks  # noqa: E402

#: Where screenshots and timings go (NOMA_TEST_OUTPUT overrides).
OUTPUT = Path(os.environ.get("NOMA_TEST_OUTPUT", REPO / "test-output")) / "browser"
CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser")


def chromium_path() -> Optional[str]:
    """Debian's Chromium binary (NOMA_CHROMIUM overrides), or None."""
    for path in (os.environ.get("NOMA_CHROMIUM", ""), *CHROMIUM_CANDIDATES):
        if path and os.access(path, os.X_OK):
            return path
    return None


def browser_or_skip() -> str:
    """The Chromium path; skip when it or Playwright or JupyterLab is missing (fail if required)."""
    required = os.environ.get("NOMA_REQUIRE_BROWSER_TESTS") == "1"
    missing = []
    for module in ("playwright", "jupyterlab", "ipywidgets"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    path = chromium_path()
    if path is None:
        missing.append("chromium (apt-get install -y chromium)")
    if missing:
        message = "browser tests need: " + ", ".join(missing)
        if required:
            pytest.fail(message)
        pytest.skip(message)
    return str(path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Lab:
    """A running JupyterLab server (its URL, token and root folder)."""

    def __init__(self) -> None:
        run_notebooks.kernel_environment()
        self.tmp = tempfile.TemporaryDirectory(prefix="noma-lab-")
        base = Path(self.tmp.name)
        self.root = base / "root"
        (self.root / "notebooks").mkdir(parents=True)
        for nb in run_notebooks.NOTEBOOK_DIR.glob("*.ipynb"):  # copies: running them changes nothing here
            shutil.copy(nb, self.root / "notebooks" / nb.name)
        (self.root / "examples").symlink_to(REPO / "examples")  # the notebooks' ../examples/data
        self.port = _free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        for var, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"),
                         ("JUPYTER_RUNTIME_DIR", "runtime"), ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
                         ("JUPYTERLAB_SETTINGS_DIR", "settings")):
            env[var] = str(base / sub)
        news = base / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
        news.parent.mkdir(parents=True)
        news.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))  # no news toast
        self.log = open(base / "lab.log", "w")
        self.log_path = base / "lab.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
             f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
             "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=", "--LabApp.check_for_updates_class="
             "jupyterlab.NeverCheckForUpdate", "--ServerApp.disable_check_xsrf=True", "--allow-root",
             "--LabApp.extension_manager=readonly"],
            cwd=str(self.root), env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def api(self, path: str, method: str = "GET", body: Optional[dict] = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                         headers={"Authorization": f"token {self.token}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
        return json.loads(text) if text else None

    def _wait_ready(self, seconds: float = 90) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("JupyterLab exited:\n" + self.log_path.read_text()[-3000:])
            try:
                self.api("/api/status")
                return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("JupyterLab did not start:\n" + self.log_path.read_text()[-3000:])

    def write_notebook(self, name: str, cells: list[str], kernel: str = "noma") -> None:
        """A notebook of code cells in the root, for the NOMA kernel."""
        import nbformat

        nb = nbformat.v4.new_notebook(metadata={
            "kernelspec": {"name": kernel, "display_name": "NOMA", "language": "noma"},
            "language_info": {"name": "noma", "codemirror_mode": "noma", "mimetype": "text/x-noma",
                              "file_extension": ".noma", "pygments_lexer": "noma"}})
        nb.cells = [nbformat.v4.new_code_cell(text) for text in cells]
        nbformat.write(nb, str(self.root / name))

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        self.tmp.cleanup()


def wait_for(condition: Callable[[], Any], seconds: float, what: str, poll: float = 0.05) -> Any:
    """Poll until condition() is truthy (its value); fail naming `what` after `seconds`."""
    end = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out ({seconds:g} s) waiting for {what}")
        time.sleep(poll)


class NotebookPage:
    """One notebook open in JupyterLab in a Chromium page."""

    def __init__(self, page: Any, lab: Lab, name: str):
        self.page = page
        self.lab = lab
        self.name = name
        page.goto(f"{lab.url}/lab/tree/{name}?token={lab.token}&reset")
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
        wait_for(lambda: self.kernel_status() == "idle", 90, f"the kernel of {name} to start")

    def js(self, body: str, arg: Any = None) -> Any:
        """Run `body` (a function body; `app` is JupyterLab, `panel` the notebook, `arg` the argument)."""
        return self.page.evaluate(
            "([body, arg]) => { const app = window.jupyterapp; const panel = app.shell.currentWidget;"
            " return new Function('app', 'panel', 'arg', body)(app, panel, arg); }", [body, arg])

    def kernel_status(self) -> str:
        return str(self.js("const k = panel && panel.sessionContext && panel.sessionContext.session"
                           " && panel.sessionContext.session.kernel; return k ? k.status : '';"))

    def run_all(self) -> None:
        self.js("app.commands.execute('notebook:run-all-cells'); return null;")  # not awaited

    def run_cell(self, index: int) -> None:
        """Select cell `index` and run it (the notebook's run command, as Shift+Enter does)."""
        self.js("panel.content.activeCellIndex = arg; app.commands.execute('notebook:run-cell'); return null;",
                index)  # the command's promise ends with the cell: not awaited

    def wait_idle_after_run(self, seconds: float) -> None:
        """Until no cell waits or runs (no `[*]` prompt) and the kernel is idle."""
        def done() -> bool:
            pending = self.js("const cells = panel.content.model.cells; let n = 0;"
                              " for (let i = 0; i < cells.length; i++) { const c = cells.get(i);"
                              " if (c.type === 'code' && c.executionState === 'running') n++; } return n;")
            return pending == 0 and self.kernel_status() == "idle"
        time.sleep(0.5)
        wait_for(done, seconds, f"{self.name} to finish running", poll=0.25)

    def model(self) -> Any:
        """The notebook as JupyterLab holds it (with the outputs it received), as nbformat."""
        import nbformat

        data = self.js("return panel.context.model.toJSON();")
        return nbformat.from_dict(data)

    def screenshot(self, name: str, full_page: bool = False) -> Path:
        OUTPUT.mkdir(parents=True, exist_ok=True)
        path = OUTPUT / name
        self.page.screenshot(path=str(path), full_page=full_page)
        return path
