"""The standard library's reference in docs/LANGUAGE.md is what noma.std_reference generates from
noma/std/*.noma (regenerate: `python -m noma.std_reference docs/LANGUAGE.md`), every std function
has a doc comment, and every std module imports cleanly (with and without an alias)."""
from __future__ import annotations

from pathlib import Path

import pytest

from noma.compiler.front.modules import STD_DIR, std_modules
from noma.session.core import Session
from noma.std_reference import replace_section, undocumented

ROOT = Path(__file__).resolve().parent.parent


def test_language_md_holds_the_generated_reference() -> None:
    doc = (ROOT / "docs" / "LANGUAGE.md").read_text()
    updated = replace_section(doc)
    assert updated is not None, "docs/LANGUAGE.md lacks the std reference markers"
    assert updated == doc, "the std reference is stale: run `python -m noma.std_reference docs/LANGUAGE.md`"


@pytest.mark.parametrize("name", std_modules())
def test_std_module_is_documented_and_imports(name: str) -> None:
    assert (STD_DIR / f"{name}.noma").is_file()
    assert undocumented((STD_DIR / f"{name}.noma").read_text()) == []
    s = Session()
    for cell in (f"import std.{name};", f"import std.{name} as m;"):
        result = s.execute(cell)
        assert result.ok, [d.render() for d in result.diagnostics]


def test_std_ships_with_the_package() -> None:
    """setup.cfg's package data names the std sources (an installed NOMA has them)."""
    cfg = (ROOT / "setup.cfg").read_text()
    assert "std/*.noma" in cfg and std_modules() == ["data", "nn"]
