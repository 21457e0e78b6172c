"""Session(defines=...): top-level let/dim values replaced in every cell; the cell cache keeps
code per set of defines (the same text with other defines is other code)."""
from __future__ import annotations

import pytest

from noma.diagnostics import NomaError
from noma.session.core import Session

CELL = "dim hidden = 2;\nlet lr = 0.5;\nlearn w = zeros([hidden]);\n"


def test_defines_replace_top_level_values() -> None:
    s = Session(defines={"hidden": 5, "lr": 0.125})
    assert s.execute(CELL).ok
    assert s.dims == {"hidden": 5} and s.globals()["lr"] == 0.125 and s.params["w"].shape == (5,)
    assert s.defines_used == {"hidden", "lr"}


def test_other_defines_do_not_replay_cached_code() -> None:
    s = Session(defines={"hidden": 3})
    s.execute(CELL)
    s.defines = {"hidden": 4}
    s.execute(CELL)
    assert s.dims == {"hidden": 4} and s.cache_hits == 0
    s.defines = {"hidden": 3}
    s.execute(CELL)
    assert s.dims == {"hidden": 3} and s.cache_hits == 1


def test_malformed_define_is_a_located_error() -> None:
    with pytest.raises(NomaError) as info:
        Session(defines=["hidden"])
    assert info.value.diagnostics[0].span.source.name == "-D"


def test_wrong_kind_is_an_error_and_changes_nothing() -> None:
    s = Session(defines={"hidden": 2.5})
    result = s.execute(CELL)
    assert result.status == "error" and "positive integer" in result.errors[0].message
    assert s.dims == {}


def test_noma_check_takes_defines(tmp_path) -> None:
    """`noma check FILE -D NAME=VALUE` checks the program as `noma run -D` would run it: a define
    naming nothing or of the wrong kind is a located error (check had no -D at all)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    program = tmp_path / "p.noma"
    program.write_text("dim h = 2;\nlet lr = 0.1;\nprint(zeros([h]) + lr);\n")
    env = dict(os.environ, PYTHONPATH=str(root))

    def check(*defines: str) -> subprocess.CompletedProcess:
        args = [sys.executable, "-m", "noma", "check", str(program)]
        for d in defines:
            args += ["-D", d]
        return subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)

    ok = check("h=5", "lr=0.5")
    assert ok.returncode == 0 and ok.stdout.strip().endswith("p.noma: ok"), ok.stderr
    for define, kind in (("zz=1", "name"), ("h=0.5", "type"), ("h", "syntax")):
        bad = check(define)
        assert bad.returncode == 1 and f"error[{kind}]" in bad.stderr and "--> -D:1:" in bad.stderr, bad.stderr
