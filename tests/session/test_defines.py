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
