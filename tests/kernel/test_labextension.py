"""The JupyterLab extension (editors/jupyterlab) as shipped in the Python package.

The bundle in noma/kernel/labextension must be built from the current sources: the build records
a hash of the TypeScript, package.json, tsconfig.json and the vocabulary generated from the
compiler's tables (noma.kernel.labextension_info), compared here without Node. Also: a wheel's
data files name every file of the bundle, `noma kernel install` links it where JupyterLab looks,
and nbconvert's HTML highlights NOMA cells with the Pygments lexer.
"""

from __future__ import annotations

import configparser
import json
from pathlib import Path

import pytest

from noma.kernel import labextension_info as info
from noma.lsp.vocabulary import editor_words

REPO = Path(__file__).resolve().parents[2]
REBUILD = "rebuild it: `cd editors/jupyterlab && npm ci && npm run build`, then commit noma/kernel/labextension"


def test_bundle_is_built_from_the_current_sources():
    assert info.recorded_hash(), f"no build_info.json in {info.OUTPUT_DIR}: {REBUILD}"
    stale = f"the shipped JupyterLab bundle is stale: {REBUILD}"
    assert info.recorded_hash() == info.source_hash(editor_words()), stale


def test_the_vocabulary_comes_from_the_compiler_tables():
    from noma.lsp import vocabulary

    words = editor_words()
    assert words["keywords"] == list(vocabulary.KEYWORDS) and "optimize" in words["keywords"]
    assert words["builtins"] == list(vocabulary.BUILTINS) and "sigmoid" in words["builtins"]
    assert "params" in words["meta"]


def test_bundle_is_a_federated_extension():
    package = json.loads((info.OUTPUT_DIR / "package.json").read_text())
    assert package["name"] == info.EXTENSION_NAME
    load = package["jupyterlab"]["_build"]["load"]
    assert (info.OUTPUT_DIR / load).is_file()


def test_wheel_data_files_name_every_file_of_the_bundle():
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    listed: set[str] = set()
    for target, sources in config["options.data_files"].items():
        assert target.startswith("share/jupyter/labextensions/jupyterlab-noma")
        for pattern in sources.replace("\n", ",").split(","):
            if pattern.strip():
                listed |= {p.relative_to(REPO).as_posix() for p in REPO.glob(pattern.strip())}
    bundle = {p.relative_to(REPO).as_posix() for p in info.OUTPUT_DIR.rglob("*") if p.is_file()}
    assert bundle and bundle == listed
    package_data = config["options.package_data"]["noma.kernel"]
    assert "labextension/static/*" in package_data


def test_kernel_install_links_the_extension(tmp_path):
    pytest.importorskip("jupyter_client")
    from noma.kernel.install import install

    install(prefix=str(tmp_path))
    link = tmp_path / "share" / "jupyter" / "labextensions" / info.EXTENSION_NAME
    assert (link / "package.json").is_file() and link.resolve() == info.OUTPUT_DIR
    install(prefix=str(tmp_path))  # again: the link is replaced, not an error
    assert link.resolve() == info.OUTPUT_DIR


def test_nbconvert_html_highlights_noma_cells():
    nbformat = pytest.importorskip("nbformat")
    nbconvert = pytest.importorskip("nbconvert")
    nb = nbformat.v4.new_notebook(metadata={"language_info": {"name": "noma", "pygments_lexer": "noma"}})
    nb.cells.append(nbformat.v4.new_code_cell("learn w = 1.5; // weight\noptimize(w) until w < 0 max 3 {\n"
                                              "    let loss = sigmoid(w);\n    minimize loss;\n}"))
    html, _ = nbconvert.HTMLExporter().from_notebook_node(nb)
    assert '<span class="kd">learn</span>' in html
    assert '<span class="k">optimize</span>' in html
    assert '<span class="nb">sigmoid</span>' in html
    assert '<span class="c1">// weight</span>' in html
