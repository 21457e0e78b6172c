"""What the JupyterLab extension (editors/jupyterlab) is built from, and where its bundle ships.

Owns: the vocabulary the extension's `noma` CodeMirror mode highlights (taken from the compiler's
tables through noma.lsp.vocabulary and the meta-commands of noma.meta), the hash of the
extension's sources (its TypeScript, package.json, tsconfig.json and that vocabulary) that the
build records in the shipped bundle (noma/kernel/labextension/build_info.json), and the path of
that bundle. A test compares the recorded hash with the current sources, so a bundle that was not
rebuilt after a source change fails CI.
Imports: noma.lsp.vocabulary, noma.meta (lazily).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

#: The prebuilt bundle inside the Python package (the extension's `jupyterlab.outputDir`).
OUTPUT_DIR = Path(__file__).resolve().parent / "labextension"
BUILD_INFO = "build_info.json"
#: The extension's sources (present in a checkout, not in an installed wheel).
SOURCE_DIR = Path(__file__).resolve().parents[2] / "editors" / "jupyterlab"
EXTENSION_NAME = "jupyterlab-noma"


def vocabulary() -> dict[str, Any]:
    """The word lists of the `noma` mode, from the compiler's tables."""
    from noma.lsp import vocabulary as v
    from noma.meta import meta_names

    return {
        "keywords": list(v.KEYWORDS),
        "builtins": list(v.BUILTINS),
        "optimizers": list(v.OPTIMIZERS),
        "policies": list(v.POLICIES),
        "types": list(v.CAST_TYPES),
        "meta": [name.lstrip(":") for name in meta_names()],
    }


def source_files() -> list[Path]:
    """The extension's hand-written sources, sorted (generated files are left out)."""
    files = [SOURCE_DIR / "package.json", SOURCE_DIR / "tsconfig.json"]
    files += sorted(p for p in (SOURCE_DIR / "src").glob("*.ts"))
    return files


def source_hash() -> str:
    """sha256 over the sources' relative paths and bytes, and the vocabulary's canonical JSON."""
    digest = hashlib.sha256()
    for path in source_files():
        digest.update(path.relative_to(SOURCE_DIR).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    digest.update(json.dumps(vocabulary(), sort_keys=True).encode())
    return digest.hexdigest()


def recorded_hash() -> str:
    """The hash the shipped bundle was built from ('' when the bundle has none)."""
    path = OUTPUT_DIR / BUILD_INFO
    if not path.exists():
        return ""
    return str(json.loads(path.read_text()).get("source_sha256", ""))
