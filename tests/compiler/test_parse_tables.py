"""The parser tables' on-disk cache (noma/compiler/front/parse_tables.py)."""

from __future__ import annotations

import subprocess
import sys

from noma.compiler.front import parse_tables


def test_cached_tables_equal_the_build_they_store(tmp_path, monkeypatch):
    monkeypatch.setenv("NOMA_CACHE_DIR", str(tmp_path))
    first = parse_tables.load()  # builds and stores (lark numbers states differently per process)
    files = list(tmp_path.glob("parse-tables-*.marshal"))
    assert len(files) == 1
    assert parse_tables.load() == first  # reads the file


def test_a_corrupt_cache_file_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("NOMA_CACHE_DIR", str(tmp_path))
    parse_tables.load()
    (path,) = tmp_path.glob("parse-tables-*.marshal")
    path.write_bytes(b"not marshal data")
    rebuilt = parse_tables.load()
    assert rebuilt.states and parse_tables.load() == rebuilt


def test_an_unwritable_cache_dir_still_parses(tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setenv("NOMA_CACHE_DIR", str(blocked / "sub"))
    assert parse_tables.load().states


def test_parsing_with_cached_tables_does_not_import_lark(tmp_path):
    env_code = ("import os, sys; os.environ['NOMA_CACHE_DIR'] = sys.argv[1]\n"
                "from noma.compiler.front.parse import parse\nfrom noma.diagnostics import Source\n"
                "parse(Source('c', 'let x = 1 + 2;'))\nprint('lark' in sys.modules)")
    outs = [subprocess.run([sys.executable, "-c", env_code, str(tmp_path)], capture_output=True, text=True,
                           check=True).stdout.strip() for _ in range(2)]
    assert outs == ["True", "False"]  # the first process builds (lark), the second reads the cache
