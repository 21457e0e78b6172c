"""NOMA in a real JupyterLab 4, driven in headless Chromium (Debian's, through Playwright).

One JupyterLab server (tests/browser/lab.py: 127.0.0.1, a temporary root and kernelspec, the
extension installed as `noma kernel install` does) serves the module. The tests:
- open every notebook in notebooks/, run all cells, and check what the notebook shows (the same
  checks as the nbclient tests, tests/kernel/notebook_checks.py, on the outputs JupyterLab
  received) and that no cell shows an error it should not;
- check that NOMA is highlighted by the jupyterlab-noma extension: CodeMirror token classes on
  `learn`, `optimize`, a builtin, a number and a comment, and indentation after `{`;
- run a long training cell, see its live plot change at least three times while it runs, then
  interrupt from the notebook toolbar and see the kernel idle again (within a generous bound;
  the time taken is written to test-output/browser/timings.json);
- show `:controls`, click grow while a loop runs, and see the dim change, the history event at a
  step inside that loop, and training go on in the same cell.
Screenshots go to test-output/browser/ (jupyterlab.png is the one the README shows, as
docs/jupyterlab.png).
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kernel"))
from lab import OUTPUT, Lab, NotebookPage, browser_or_skip, wait_for  # noqa: E402
from notebook_checks import CHECKS  # noqa: E402

pytestmark = pytest.mark.browser

#: Errors a notebook shows on purpose (the tour demonstrates a shape error).
EXPECTED_ERRORS = {"01_tour.ipynb": ["NomaShapeError"]}
#: Seconds a whole notebook may take in the browser.
NOTEBOOK_SECONDS = {"03_digits.ipynb": 300, "04_population_tune.ipynb": 420}

SETUP = """seed(2);
let X = rand_normal_tensor(0, 1, 128, 4);
let Y = rand_normal_tensor(0, 1, 128, 1);
dim hidden = 2;
learn W1 = normal([4, hidden], 0, 0.5); // first layer
learn W2 = normal([hidden, 1], 0, 0.5);"""
LONG = """optimize(W1, W2) with adam(lr = 0.001) until loss < 0 max 2000000000 {
    let loss = mean((matmul(tanh(matmul(X, W1)), W2) - Y) ^ 2);
    minimize loss;
}
print("hidden is now", rows(W2));"""
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def lab():
    path = browser_or_skip()
    from playwright.sync_api import sync_playwright

    server = Lab()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-gpu"])
            try:
                yield server, browser
            finally:
                browser.close()
    finally:
        server.close()
        if TIMINGS:
            OUTPUT.mkdir(parents=True, exist_ok=True)
            (OUTPUT / "timings.json").write_text(json.dumps(TIMINGS, indent=2) + "\n")


def open_page(lab, name: str) -> NotebookPage:
    server, browser = lab
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    return NotebookPage(page, server, name)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_notebook_runs_in_jupyterlab(lab, name):
    if name == "04_population_tune.ipynb":
        pytest.importorskip("ray")
    nb_page = open_page(lab, f"notebooks/{name}")
    try:
        nb_page.run_all()
        nb_page.wait_idle_after_run(NOTEBOOK_SECONDS.get(name, 180))
        nb = nb_page.model()
        errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert [e["ename"] for e in errors] == EXPECTED_ERRORS.get(name, []), \
            [f"{e['ename']}: {e['evalue']}" for e in errors]
        CHECKS[name](nb)
        nb_page.screenshot(f"{Path(name).stem}.png")
    finally:
        nb_page.page.close()


def token_texts(nb_page: NotebookPage, css: str) -> list[str]:
    return nb_page.page.eval_on_selector_all(f".jp-Cell .cm-content {css}", "els => els.map(e => e.textContent)")


def test_noma_is_highlighted_and_indented(lab):
    server, _ = lab
    server.write_notebook("highlight.ipynb", [SETUP, ":params", ""])
    nb_page = open_page(lab, "highlight.ipynb")
    try:
        wait_for(lambda: token_texts(nb_page, ".tok-keyword"), 30, "highlighted tokens")
        keywords = token_texts(nb_page, ".tok-keyword")
        assert "learn" in keywords and "dim" in keywords and "let" in keywords
        assert "seed" in token_texts(nb_page, ".noma-builtin") and "normal" in token_texts(nb_page, ".noma-builtin")
        assert "0.5" in token_texts(nb_page, ".tok-number")
        assert "// first layer" in token_texts(nb_page, ".tok-comment")
        assert ":params" in token_texts(nb_page, ".noma-meta")
        # a keyword is drawn in another colour than a plain name
        colors = nb_page.page.evaluate(
            "() => { const k = document.querySelector('.jp-Cell .cm-content .tok-keyword');"
            " const v = [...document.querySelectorAll('.jp-Cell .cm-content .tok-variableName')]"
            ".find(e => !e.classList.contains('noma-builtin'));"
            " return [getComputedStyle(k).color, v ? getComputedStyle(v).color : ''] }")
        assert colors[0] and colors[0] != colors[1], colors
        # typing in the empty third cell: `optimize` and a builtin are highlighted as typed, a
        # line after `{` is indented, a one-line `if { }` does not indent the next line
        editor = nb_page.page.locator(".jp-Cell").nth(2).locator(".cm-content")
        editor.click()
        nb_page.page.keyboard.type("if 1 > 0 { print(1); }")
        nb_page.page.keyboard.press("Enter")
        nb_page.page.keyboard.type("optimize(W1) until loss < 1 max 3 {")
        nb_page.page.keyboard.press("Enter")
        nb_page.page.keyboard.type("let loss = sigmoid(sum(W1));")
        text = nb_page.js("return panel.content.widgets[2].model.sharedModel.getSource();")
        lines = text.split("\n")
        assert lines[0] == "if 1 > 0 { print(1); }" and lines[1].startswith("optimize")
        assert lines[2] == "    let loss = sigmoid(sum(W1));" and lines[3] == "}"  # `}` closed for us
        assert "optimize" in token_texts(nb_page, ".tok-keyword")
        assert "sigmoid" in token_texts(nb_page, ".noma-builtin")
        nb_page.screenshot("highlighting.png")
    finally:
        nb_page.page.close()


def plot_sources(nb_page: NotebookPage, cell: int) -> list[str]:
    return nb_page.page.locator(".jp-Cell").nth(cell).locator(".jp-OutputArea-output img").evaluate_all(
        "els => els.map(e => e.src)")


def test_live_plot_then_interrupt_from_the_toolbar(lab):
    server, _ = lab
    server.write_notebook("live.ipynb", [SETUP, LONG])
    nb_page = open_page(lab, "live.ipynb")
    try:
        nb_page.run_cell(0)
        nb_page.wait_idle_after_run(60)
        nb_page.run_cell(1)
        wait_for(lambda: nb_page.kernel_status() == "busy", 30, "the training cell to start")
        seen: list[str] = []

        def changed_three_times() -> bool:
            sources = plot_sources(nb_page, 1)
            if sources and (not seen or sources[-1] != seen[-1]):
                seen.append(sources[-1])
            return len(seen) >= 4  # the first frame and three changes

        wait_for(changed_three_times, 240, "the live plot to change three times", poll=0.05)
        assert nb_page.kernel_status() == "busy"  # all while the cell runs (it would for 2e9 steps)
        nb_page.screenshot("jupyterlab.png")  # the README's picture: a highlighted cell and its live plot
        button = nb_page.page.locator('.jp-NotebookPanel-toolbar [data-command="notebook:interrupt-kernel"]')
        clicked = time.monotonic()
        button.click()
        wait_for(lambda: nb_page.kernel_status() == "idle", 10, "the kernel to be idle after the interrupt",
                 poll=0.01)
        TIMINGS["interrupt_to_idle_seconds"] = round(time.monotonic() - clicked, 3)
        nb = nb_page.model()
        (error,) = [o for o in nb.cells[1].outputs if o.get("output_type") == "error"]
        assert error["ename"] == "KeyboardInterrupt" and "interrupted at step" in error["evalue"]
        nb_page.screenshot("interrupted.png")
    finally:
        nb_page.page.close()


def test_grow_from_the_controls_while_a_loop_runs(lab):
    server, _ = lab
    server.write_notebook("controls.ipynb", [SETUP + "\n:controls", LONG, ":history"])
    nb_page = open_page(lab, "controls.ipynb")
    page = nb_page.page
    try:
        nb_page.run_cell(0)
        nb_page.wait_idle_after_run(60)
        page.wait_for_selector("button.noma-grow-hidden", timeout=30_000)
        assert "size 2" in page.locator(".noma-size-hidden").inner_text()
        nb_page.run_cell(1)
        wait_for(lambda: plot_sources(nb_page, 1), 180, "the training cell's live plot")
        assert nb_page.kernel_status() == "busy"
        page.locator("button.noma-grow-hidden").click()
        wait_for(lambda: "size 4" in page.locator(".noma-size-hidden").inner_text(), 30,
                 "the dim to grow while the cell runs")
        status = wait_for(lambda: re.search(r"grow hidden 2 → 4</b> at step ([\d,]+)",
                                            page.locator(".noma-controls-status").inner_html()),
                          30, "the status to name the applied grow")
        assert nb_page.kernel_status() == "busy"  # the same cell goes on training
        grown_at = int(status.group(1).replace(",", ""))
        sources_after = len(plot_sources(nb_page, 1))
        assert sources_after >= 1
        nb_page.screenshot("controls.png")
        page.locator("button.noma-stop").click()  # the loop ends, the cell goes on
        nb_page.wait_idle_after_run(30)
        nb_page.run_cell(2)
        nb_page.wait_idle_after_run(30)
        nb = nb_page.model()
        printed = "".join(o.get("text", "") for o in nb.cells[1].outputs if o.get("output_type") == "stream")
        assert "hidden is now 4" in printed
        assert not [o for o in nb.cells[1].outputs if o.get("output_type") == "error"]
        history = "".join(o.get("text", "") for o in nb.cells[2].outputs if o.get("output_type") == "stream")
        total = int(re.match(r"(\d+) training steps", history).group(1))
        controls = [x for x in history.splitlines() if "from the controls" in x]
        (line,) = [x for x in controls if "dim hidden" in x]
        assert any("stopped from the controls" in x for x in controls)  # the stop is an event too
        step = int(line.split()[1])
        assert "dim hidden 2 -> 4" in line and step == grown_at
        assert 0 < step < total  # inside the loop (the only one: steps 1..total), which went on after it
    finally:
        page.close()
