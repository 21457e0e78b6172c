"""Build steps of the JupyterLab extension that need Python (run by `npm run build`).

Owns: src/vocabulary.json (the words the `noma` CodeMirror mode highlights, generated from the
compiler's own tables by noma.lsp.vocabulary.editor_words(), never copied by hand) and the
source hash recorded in the built bundle (noma/kernel/labextension/build_info.json), which
tests/kernel/test_labextension.py compares with the current sources.
Usage: `python3 gen_vocabulary.py` (writes the JSON), `python3 gen_vocabulary.py --record-hash`
(after the bundle is built), `python3 gen_vocabulary.py --core-path` (for build-labextension).
Imports: noma (this checkout's).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from noma.kernel.labextension_info import BUILD_INFO, OUTPUT_DIR, source_hash  # noqa: E402
from noma.lsp.vocabulary import editor_words  # noqa: E402


def core_path() -> str:
    """JupyterLab's staging folder: the core packages the bundle shares (what the builder needs)."""
    import jupyterlab

    return str(Path(jupyterlab.__file__).resolve().parent / "staging")


def main(argv: list[str]) -> int:
    if "--core-path" in argv:
        print(core_path())
        return 0
    if "--record-hash" in argv:
        info = {"source_sha256": source_hash(editor_words()), "vocabulary": "src/vocabulary.json"}
        (OUTPUT_DIR / BUILD_INFO).write_text(json.dumps(info, indent=2) + "\n")
        print(f"recorded source hash in {OUTPUT_DIR / BUILD_INFO}")
        return 0
    target = HERE / "src" / "vocabulary.json"
    target.write_text(json.dumps(editor_words(), indent=2) + "\n")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
