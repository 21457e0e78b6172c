"""Named metrics (`report("name", x);`): recorded at the global step in bounded memory, listed by
:history, drawn by plots, limited to 32 names (a located runtime error beyond)."""
from __future__ import annotations

import numpy as np

from noma.meta import cmd_history
from noma.plots import history_png
from noma.session.core import Session

LOOP = """learn w = 0.0;
let step = 0;
optimize(w) with sgd(lr = 0.1) max 5000 {
    step = step + 1;
    report("w", w);
    if step % 1000 == 0 { report("every1000", step); }
    let loss = (w - 1) ^ 2;
    minimize loss;
}
"""


def test_metrics_are_bounded_and_summarised() -> None:
    s = Session()
    assert s.execute(LOOP).ok
    w, sparse = s.metrics["w"], s.metrics["every1000"]
    assert w.count == 5000 and len(w.steps) == 4096  # the last 4096 held exactly
    assert list(w.steps[[0, -1]]) == [5000 - 4096, 4999]
    assert w.min == 0.0 and 0.99 < w.max <= 1.0
    assert list(sparse.steps) == [999, 1999, 2999, 3999, 4999]
    np.testing.assert_array_equal(sparse.values, [1000, 2000, 3000, 4000, 5000])
    assert sparse.mean == 3000


def test_history_lists_and_plots_metrics() -> None:
    s = Session()
    s.execute(LOOP)
    text = cmd_history(s, "", False).text
    assert "metric every1000: last 5000 at step 4999, 5 reports, min 1000, max 5000, mean 3000" in text
    assert set(s.history.metrics) == {"w", "every1000"}
    assert history_png(s.history, s.dims).startswith(b"\x89PNG")


def test_more_than_32_names_is_a_runtime_error() -> None:
    s = Session()
    cells = "".join(f'report("m{i}", {i});\n' for i in range(33))
    result = s.execute(cells)
    error = result.errors[0]
    assert result.status == "error" and "more than 32 metric names" in error.message
    assert error.span is not None and error.span.line == 33  # the 33rd report
    assert len(s.metrics) == 32


def test_the_metrics_table_is_charged_to_the_memory_limit() -> None:
    s = Session()
    before = s.rt.memory_used
    assert s.execute('report("a", 1);').ok
    table = s.rt.memory_used - before
    assert table >= 32 * 4096 * 16  # 32 names, rings of 4096 (step, value) samples
    tight = Session(memory_limit=before + table // 2)
    result = tight.execute('let x = 1;\nreport("a", x);')
    error = result.errors[0]
    assert result.status == "error" and "named metrics" in error.message
    assert "over the memory limit" in error.message
    assert error.span is not None and error.span.line == 2
    assert tight.execute("print(2);").ok  # the session goes on


def test_undo_puts_the_metrics_back() -> None:
    s = Session()
    assert s.execute('report("a", 1);').ok
    assert s.execute('report("a", 2); report("b", 3);').ok
    assert s.metrics["a"].count == 2 and "b" in s.metrics
    s.undo()
    assert set(s.metrics) == {"a"}
    assert s.metrics["a"].count == 1 and list(s.metrics["a"].values) == [1.0]


SAVES = """learn w = 0.0;
optimize(w) with adam(lr = 0.1) max 50 {
    report("w", w);
    minimize (w - 1) ^ 2;
}
report("final", w);
save_checkpoint("ck.safetensors");
"""


def test_checkpoints_of_executables_and_statements_keep_the_metrics(tmp_path) -> None:
    import subprocess

    from noma.build import build_executable
    from noma.diagnostics import Source

    build_executable(Source("saves.noma", SAVES), str(tmp_path / "saves"))
    subprocess.run([str(tmp_path / "saves")], cwd=tmp_path, check=True, capture_output=True, timeout=120)
    writer = Session()
    assert writer.execute(SAVES.replace("ck.safetensors", str(tmp_path / "jit.safetensors"))).ok
    for name in ("ck.safetensors", "jit.safetensors"):
        s = Session()
        assert s.execute(f'learn w = 0.0;\nreport("stale", 1);\nload_checkpoint("{tmp_path / name}");').ok
        assert set(s.metrics) == {"w", "final"}  # the checkpoint's metrics replace the program's
        got, want = s.metrics["w"], writer.metrics["w"]
        assert (got.count, got.min, got.max, got.sum) == (want.count, want.min, want.max, want.sum)
        np.testing.assert_array_equal(got.steps, want.steps)
        np.testing.assert_array_equal(got.values, want.values)
        assert list(s.metrics["final"].steps) == [50]


def test_a_checkpoint_without_metrics_clears_them(tmp_path) -> None:
    s = Session()
    path = tmp_path / "plain.safetensors"
    assert s.execute(f'learn w = 1.0;\nsave_checkpoint("{path}");').ok
    assert s.execute(f'report("r", 2);\nload_checkpoint("{path}");').ok
    assert s.metrics == {}
