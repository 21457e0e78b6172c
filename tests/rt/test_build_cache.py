"""The runtime's one build cache (noma.rt.native_build): keys, atomic writes, both builds in it."""

from __future__ import annotations

from pathlib import Path

import pytest

from noma.rt import native_build


def test_cached_builds_once_and_atomically(tmp_path: Path) -> None:
    target = tmp_path / "cache" / "thing.o"
    calls: list[Path] = []

    def build(out: Path) -> None:
        assert out.parent == target.parent and out != target  # a temporary file beside the target
        calls.append(out)
        out.write_bytes(b"object")

    assert native_build.cached(target, build) == target
    assert native_build.cached(target, build) == target  # kept: not built again
    assert len(calls) == 1 and target.read_bytes() == b"object"
    assert sorted(p.name for p in target.parent.iterdir()) == ["thing.o"]  # no temporary left


def test_a_failed_build_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "lib.so"

    def build(out: Path) -> None:
        out.write_bytes(b"half")
        raise native_build.RuntimeBuildError("cc failed")

    with pytest.raises(native_build.RuntimeBuildError):
        native_build.cached(target, build)
    assert list(tmp_path.iterdir()) == []


def test_keys_follow_the_recipe_and_the_sources() -> None:
    assert native_build.source_key(["a"]) == native_build.source_key(["a"])
    assert native_build.source_key(["a"]) != native_build.source_key(["b"])
    assert native_build._build_key("f64") != native_build._build_key("f32")


def test_both_runtime_builds_live_in_the_one_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The JIT's library and `noma build`'s object are named in native_build.cache_dir()."""
    from noma import build

    monkeypatch.setenv("NOMA_CACHE_DIR", str(tmp_path))
    made: list[Path] = []
    monkeypatch.setattr(native_build, "cached", lambda path, _build: made.append(path) or path)
    monkeypatch.setattr(build, "_compiler", lambda: ["cc"])
    native_build.runtime_library_path("f64")
    build.runtime_object("f64", "x86-64")
    assert [p.parent for p in made] == [tmp_path, tmp_path]
    assert made[0].name.startswith("libnoma_rt_f64_") and made[1].name.startswith("noma_rt_exe_f64_x86-64_")
