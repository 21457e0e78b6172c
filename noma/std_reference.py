"""The standard library's reference, generated from its sources' doc comments.

Owns: reading noma/std/*.noma (a module's `//!` lines describe it, the `///` lines right above a
`fn` describe that function) into markdown, and rewriting the generated part of
docs/LANGUAGE.md between its markers (`python -m noma.std_reference docs/LANGUAGE.md`);
tests/test_std_reference.py checks that the file holds what this generates.
Imports: noma.compiler.front (modules, parse, ast), noma.diagnostics.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Optional, Sequence

BEGIN = "<!-- std reference: generated from noma/std/*.noma by `python -m noma.std_reference docs/LANGUAGE.md` -->"
END = "<!-- end of the std reference -->"

_FN = re.compile(r"^fn\s+([A-Za-z_][A-Za-z0-9_]*)\s*\(([^)]*)\)")


def module_reference(name: str, text: str) -> str:
    """The markdown of one module: its `//!` description, then each function with its doc."""
    lines = text.splitlines()
    about = [line[3:].strip() for line in lines if line.startswith("//!")]
    out = [f"### `std.{name}`", "", " ".join(a for a in about if a) if about else "", ""]
    doc: list[str] = []
    rows = ["| function | what it computes |", "|---|---|"]
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("///"):
            doc.append(stripped[3:].strip())
            continue
        m = _FN.match(stripped)
        if m:
            params = ", ".join(p.strip() for p in m.group(2).split(",") if p.strip())
            text_doc = " ".join(doc).replace("|", "\\|")
            rows.append(f"| `{m.group(1)}({params})` | {text_doc} |")
        doc = []
    return "\n".join(out + rows) + "\n"


def undocumented(text: str) -> list[str]:
    """Functions of a std module without a `///` doc comment right above them."""
    missing = []
    previous = ""
    for line in text.splitlines():
        m = _FN.match(line.strip())
        if m and not previous.startswith("///"):
            missing.append(m.group(1))
        previous = line.strip()
    return missing


def reference() -> str:
    """The whole generated section (markers included)."""
    from noma.compiler.front.modules import STD_DIR, std_modules

    parts = [module_reference(name, (STD_DIR / f"{name}.noma").read_text()) for name in std_modules()]
    return BEGIN + "\n\n" + "\n".join(parts) + "\n" + END


def replace_section(doc: str) -> Optional[str]:
    """`doc` with its generated section replaced by the current one; None without the markers."""
    start, end = doc.find(BEGIN), doc.find(END)
    if start < 0 or end < start:
        return None
    return doc[:start] + reference() + doc[end + len(END):]


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m noma.std_reference docs/LANGUAGE.md", file=sys.stderr)
        return 2
    path = Path(args[0])
    updated = replace_section(path.read_text())
    if updated is None:
        print(f"{path}: the markers of the generated section are missing", file=sys.stderr)
        return 1
    path.write_text(updated)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
