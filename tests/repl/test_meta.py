"""Every meta-command of noma.meta, run against a live Session (no terminal involved)."""

from __future__ import annotations

import numpy as np
import pytest

from noma.meta import (COMMANDS, MetaResult, event_text, is_meta, meta_names, render_result,
                       run_meta)

NET = """
seed(3);
dim hidden = 2;
let X = tensor [[0, 0], [0, 1], [1, 0], [1, 1]];
let Y = tensor [[0], [1], [1], [0]];
learn W1 = normal([2, hidden], 0, 1);
learn b1 = zeros([hidden]);
learn W2 = normal([hidden, 1], 0, 1);
fn fwd(x) {
    let h = sigmoid(matmul(x, W1) + b1);
    sigmoid(matmul(h, W2))
}
"""
TRAIN = """
optimize(W1, b1, W2) with adam(lr = 0.05) max 40 {
    let loss = mean((fwd(X) - Y) ^ 2);
    minimize loss;
}
"""


@pytest.fixture
def session():
    from noma.session.core import Session

    s = Session()
    r = s.execute(NET)
    assert r.ok, render_result(r)
    return s


@pytest.fixture
def trained(session):
    r = session.execute(TRAIN)
    assert r.status == "ok", render_result(r)
    assert r.steps == 40
    return session


def meta(session, line: str) -> MetaResult:
    result = run_meta(session, line)
    assert isinstance(result, MetaResult)
    assert isinstance(result.text, str)
    return result


def test_names_and_help(session):
    names = meta_names()
    assert ":help" in names and ":params" in names and ":plot" in names
    assert all(n.startswith(":") for n in names)
    assert is_meta("  :params") and not is_meta("print(1);")
    r = meta(session, ":help")
    assert r.ok
    for name in COMMANDS:
        assert f":{name}" in r.text


def test_unknown_command_lists_commands(session):
    r = meta(session, ":frobnicate")
    assert not r.ok
    assert "unknown command `:frobnicate`" in r.text
    assert ":params" in r.text and ":plot" in r.text


def test_params_shapes_optimizer_and_steps(trained):
    r = meta(trained, ":params")
    assert r.ok
    lines = {line.split()[0]: line for line in r.text.splitlines()[1:]}
    assert set(lines) == {"W1", "b1", "W2"}
    assert "[2, 2]" in lines["W1"] and "f64" in lines["W1"] and " 4 " in lines["W1"]
    assert "adam" in lines["W1"] and "step 40" in lines["W1"]
    assert r.html is not None and "<table>" in r.html


def test_params_after_realloc_show_new_shapes_and_step_ranges(trained):
    r = trained.execute("realloc hidden = 8;")
    assert r.ok, render_result(r)
    text = meta(trained, ":params").text
    lines = {line.split()[0]: line for line in text.splitlines()[1:]}
    assert "[2, 8]" in lines["W1"] and "16" in lines["W1"]
    assert "[8]" in lines["b1"] and "[8, 1]" in lines["W2"]
    assert "steps 0..40" in lines["W1"]  # new entries start at step 0


def test_params_before_training_and_empty_session():
    from noma.session.core import Session

    s = Session()
    assert "no parameters" in meta(s, ":params").text
    s.execute("learn w = zeros([3]);")
    line = meta(s, ":params").text.splitlines()[1]
    assert line.split()[:4] == ["w", "[3]", "f64", "3"]
    assert "none" in line


def test_dims(session):
    r = meta(session, ":dims")
    assert r.ok
    row = [line for line in r.text.splitlines() if line.startswith("hidden")][0]
    assert row.split()[1] == "2"
    assert "W1[axis 1]" in row and "b1[axis 0]" in row and "W2[axis 0]" in row


def test_who(trained):
    r = meta(trained, ":who")
    assert r.ok
    rows = {line.split()[0]: line for line in r.text.splitlines()[1:]}
    assert "[4, 2]" in rows["X"] and "let" in rows["X"]
    assert "learn" in rows["W1"]
    assert "fn fwd(x)" in rows["fwd"]
    assert "dim" in rows["hidden"]


def test_history_events_with_steps(trained):
    trained.execute("realloc hidden = 5;")
    r = meta(trained, ":history")
    assert r.ok
    assert r.text.startswith("40 training steps, last loss ")
    assert "dim hidden 2 -> 5" in r.text
    assert "step      40" in r.text


def test_ir_grad_llvm(trained):
    r = trained.execute("let probe = fwd(X);")
    assert r.ok, render_result(r)
    ir_text = meta(trained, ":ir fwd")
    assert ir_text.ok, ir_text.text
    assert "fn fwd" in ir_text.text
    whole = meta(trained, ":ir")
    assert "__cell" in whole.text and "fwd" in whole.text
    cell = meta(trained, ":ir cell")
    assert cell.ok and "__cell" in cell.text
    grad = meta(trained, ":grad fwd")
    assert grad.ok and "fn fwd" in grad.text
    llvm = meta(trained, ":llvm fwd")
    assert llvm.ok, llvm.text
    assert "define" in llvm.text and "noma_fwd" in llvm.text
    full = meta(trained, ":llvm")  # what the JIT compiled for the last cell: its top level (fwd was reused)
    assert full.ok and "define" in full.text and "noma___cell" in full.text


def test_grad_of_a_training_cell(session):
    session.execute(TRAIN)
    r = meta(session, ":grad cell")
    assert r.ok
    assert "optimize" in r.text.lower()
    plain = meta(session, ":ir cell")
    assert plain.ok
    assert len(r.text) > 0 and r.text != plain.text


def test_ir_errors(session):
    missing = meta(session, ":ir nosuchfn")
    assert not missing.ok and "no function `nosuchfn`" in missing.text
    from noma.session.core import Session

    fresh = Session()
    assert not meta(fresh, ":ir").ok
    assert "no cell" in meta(fresh, ":llvm").text


def test_plot_writes_png(trained, tmp_path):
    trained.execute("realloc hidden = 4;")
    target = tmp_path / "curve.png"
    r = meta(trained, f":plot {target}")
    assert r.ok, r.text
    assert r.path == str(target)
    assert str(target) in r.text
    data = target.read_bytes()
    assert data.startswith(b"\x89PNG") and r.png == data


def test_plot_default_name_and_bad_directory(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = meta(trained, ":plot")
    assert r.ok and (tmp_path / "noma_plot.png").exists()
    bad = meta(trained, f":plot {tmp_path}/no/such/dir/x.png")
    assert not bad.ok and "cannot write" in bad.text


def test_save_and_load(trained, tmp_path):
    path = tmp_path / "ck.safetensors"
    if not hasattr(trained, "save_checkpoint"):
        r = meta(trained, f":save {path}")
        assert not r.ok and "not available yet" in r.text
        assert "not available yet" in meta(trained, f":load {path}").text
        return
    before = trained.params["W1"].copy()
    r = meta(trained, f":save {path}")
    assert r.ok, r.text
    assert path.exists() and str(path) in r.text
    trained.execute(TRAIN)
    assert not np.allclose(trained.params["W1"], before)
    r = meta(trained, f":load {path}")
    assert r.ok, r.text
    np.testing.assert_allclose(trained.params["W1"], before)
    assert not meta(trained, f":load {tmp_path}/missing.ck").ok
    assert "usage" in meta(trained, ":save").text


def test_undo(trained):
    if not hasattr(trained, "undo"):
        r = meta(trained, ":undo")
        assert not r.ok and "not available yet" in r.text
        return
    before = trained.params["W1"].copy()
    trained.execute("realloc hidden = 6;")
    assert trained.params["W1"].shape == (2, 6)
    r = meta(trained, ":undo")
    assert r.ok, r.text
    np.testing.assert_allclose(trained.params["W1"], before)


def test_reset(trained):
    r = meta(trained, ":reset")
    assert r.ok
    session = r.session if r.session is not None else trained
    assert session.params == {}
    assert session.dims == {}
    assert session.execute("print(2 + 2);").output == "4\n"


def test_time(session):
    r = meta(session, ":time print(6 * 7);")
    assert r.ok
    assert r.text.splitlines()[0] == "42"
    assert "compile" in r.text and "run" in r.text and " ms" in r.text
    r = meta(session, ":time " + TRAIN.replace("\n", " "))
    assert r.ok and "40 steps" in r.text and "steps/s" in r.text
    assert r.result is not None and r.result.steps == 40
    bad = meta(session, ":time let = ;")
    assert not bad.ok and "error[syntax]" in bad.text
    assert "usage" in meta(session, ":time").text


def test_run_file(session, tmp_path):
    path = tmp_path / "extra.noma"
    path.write_text("let answer = 41 + 1;\nprint(\"ran\", answer);\n")
    r = meta(session, f":run {path}")
    assert r.ok, r.text
    assert r.text == "ran 42"
    assert session.globals()["answer"] == 42
    missing = meta(session, f":run {tmp_path}/nope.noma")
    assert not missing.ok and "cannot read" in missing.text
    broken = tmp_path / "broken.noma"
    broken.write_text("let x = ;\n")
    r = meta(session, f":run {broken}")
    assert not r.ok and "error[syntax]" in r.text and "broken.noma" in r.text


def test_render_result_and_event_text(session):
    r = session.execute("print(\"hi\"); 1.5;")
    assert render_result(r) == "hi\n1.5"
    bad = session.execute("let z = nothing_here;")
    assert render_result(bad).startswith("error[name]")
    assert "\x1b[" in render_result(bad, color=True)
    from noma.session.core import Event

    assert event_text(Event("dim_resize", 7, "hidden", (2,), (8,), "preserve")).endswith(
        "dim hidden 2 -> 8 (preserve)")
    assert "resize W [2, 2] -> [2, 8]" in event_text(Event("resize", 7, "W", (2, 2), (2, 8), "normal"))
    assert "free W [3]" in event_text(Event("param_free", 1, "W", (3,), (), "default"))


def _capture_jit(session) -> list[str]:
    """The LLVM IR texts the session's JIT is given from now on."""
    texts: list[str] = []
    add_ir = session.jit.add_ir

    def recording(text: str, name: str) -> None:
        texts.append(text)
        add_ir(text, name)

    session.jit.add_ir = recording
    return texts


def test_llvm_is_what_the_jit_compiled(session):
    compiled = _capture_jit(session)
    r = session.execute("fn sq(x) { x * x }\nlet q = sq(X) + b1;")
    assert r.ok, render_result(r)
    assert len(compiled) == 1
    assert meta(session, ":llvm").text == compiled[0].rstrip("\n")
    sq = meta(session, ":llvm sq").text
    assert sq.startswith("define") and sq + "\n" in compiled[0]


def test_stages_of_a_replayed_cell_are_those_compiled(trained):
    compiled = _capture_jit(trained)
    again = trained.execute(TRAIN)
    assert again.cache_hit and not compiled  # nothing compiled: the earlier code ran again
    llvm = meta(trained, ":llvm cell")
    assert llvm.ok and "define" in llvm.text
    grad = meta(trained, ":grad cell").text
    assert "optimize" in grad and "grad {" in grad


def test_a_reused_function_is_shown_from_the_cell_that_compiled_it(session):
    assert session.execute("fn sq(x) { x * x }\nlet a = sq(X);").ok
    first = meta(session, ":llvm sq").text
    assert session.execute("let c = sq(X) + 1;").ok  # sq for a rank-2 argument is reused
    again = meta(session, ":llvm sq")
    assert again.ok and again.text.startswith("; compiled by an earlier cell (<cell 2>)")
    assert again.text.split("\n", 1)[1] == first
    assert "fn sq" in meta(session, ":ir sq").text  # irgen of the last cell made it again


def test_stages_after_undo_show_the_cell_that_is_last_again(session):
    """`:undo` takes the last cell back: `:ir`, `:grad` and `:llvm` show the cell before it (they
    showed the undone cell's code, which no longer belongs to the session)."""
    assert session.execute("let first_value = 1;").ok
    shown = {stage: meta(session, f":{stage}").text for stage in ("ir", "grad", "llvm")}
    assert session.execute("let second_value = 2;").ok
    assert "second_value" in meta(session, ":ir").text
    assert meta(session, ":undo").ok
    for stage, text in shown.items():
        assert meta(session, f":{stage}").text == text
    assert "first_value" in shown["ir"]
    from noma.session.core import Session

    fresh = Session()
    assert fresh.execute("let only = 1;").ok
    assert meta(fresh, ":undo").ok
    r = meta(fresh, ":ir")
    assert not r.ok and "undone" in r.text


def test_history_of_a_metric_reported_only_as_nan(session):
    """min and max skip NaN reports; a metric of NaN reports only shows nan for them (it showed
    `min inf, max -inf`), and one with a number among them that number."""
    assert session.execute('report("bad", 0 / 0); report("mixed", 0 / 0); report("mixed", 2);').ok
    text = meta(session, ":history").text
    assert "metric bad: last nan at step 0, 1 reports, min nan, max nan, mean nan" in text, text
    assert "metric mixed: last 2 at step 0, 2 reports, min 2, max 2, mean nan" in text, text
