"""What the JupyterLab extension (editors/jupyterlab) is built from, and where its bundle ships.

Owns: the hash of the extension's sources (its TypeScript, package.json, tsconfig.json and the
vocabulary its `noma` CodeMirror mode highlights, noma.lsp.vocabulary.editor_words(), passed in)
that the build records in the shipped bundle (noma/kernel/labextension/build_info.json), and the
path of that bundle. A test compares the recorded hash with the current sources, so a bundle that
was not rebuilt after a source change fails CI.
Imports: the standard library only.
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


def source_files() -> list[Path]:
    """The extension's hand-written sources, sorted (generated files are left out)."""
    files = [SOURCE_DIR / "package.json", SOURCE_DIR / "tsconfig.json"]
    files += sorted(p for p in (SOURCE_DIR / "src").glob("*.ts"))
    return files


def source_hash(words: dict[str, Any]) -> str:
    """sha256 over the sources' relative paths and bytes, and the vocabulary's canonical JSON
    (`words`: noma.lsp.vocabulary.editor_words())."""
    digest = hashlib.sha256()
    for path in source_files():
        digest.update(path.relative_to(SOURCE_DIR).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    digest.update(json.dumps(words, sort_keys=True).encode())
    return digest.hexdigest()


def recorded_hash() -> str:
    """The hash the shipped bundle was built from ('' when the bundle has none)."""
    path = OUTPUT_DIR / BUILD_INFO
    if not path.exists():
        return ""
    return str(json.loads(path.read_text()).get("source_sha256", ""))
