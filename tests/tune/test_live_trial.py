"""noma.tune without Ray: a LiveTrial advances training by N steps at a step boundary without
recompiling, a checkpoint with other dims resizes the live network to the checkpoint's values and
optimizer state, a mutated dim is a realloc (a resize event, no recompilation), defines and
configurations are checked with located errors, named metrics survive checkpoints."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from noma.diagnostics import NomaError
from noma.tune.live import LiveTrial, check_program

PROGRAM = (Path(__file__).parent / "xor_tune.noma").read_text()


def _trial(hidden: int, lr: float = 0.05) -> LiveTrial:
    return LiveTrial(PROGRAM, "xor_tune.noma", {"hidden": hidden, "lr": lr})


def test_advance_stops_at_the_step_boundary_and_resumes_without_recompiling() -> None:
    t = _trial(4)
    first = t.advance(30)
    compiled = t.session.compilations
    second = t.advance(25)
    assert (first["global_step"], second["global_step"]) == (30, 55)
    assert second["steps"] == 25 and t.session.globals()["step"] == 55
    assert t.session.compilations == compiled  # the training cell ran from the cell cache
    assert t.session.cache_hits >= 1
    assert second["dim_hidden"] == 4 and "err" in second and "loss" in second


def test_advance_matches_one_uninterrupted_run() -> None:
    stepped, whole = _trial(4), _trial(4)
    for _ in range(4):
        stepped.advance(10)
    whole.advance(40)
    for name, value in whole.session.params.items():
        np.testing.assert_array_equal(stepped.session.params[name], value)


def test_exploit_across_sizes_loads_the_checkpoints_values_and_optimizer_state(tmp_path: Path) -> None:
    donor = _trial(8)
    donor.advance(40)
    donor.save(str(tmp_path), owner="donor")
    saved_params = donor.session.params
    saved_state = {n: donor.session.optimizer_state(n) for n in saved_params}
    receiver = _trial(2, lr=0.01)
    receiver.advance(10)
    receiver.load(str(tmp_path), owner="receiver")
    assert receiver.session.dims == {"hidden": 8}
    assert [(e.kind, e.detail) for e in receiver.events] == [("exploit", "hidden 2→8")]
    for name, value in saved_params.items():
        np.testing.assert_array_equal(receiver.session.params[name], value)
        for key, moment in saved_state[name].items():
            np.testing.assert_array_equal(receiver.session.optimizer_state(name)[key], moment)
    assert receiver.session.globals()["step"] == 40 and receiver.session.globals()["lr"] == 0.05
    # training goes on from the checkpoint's optimizer state: the same as the donor's next steps
    receiver.advance(10)
    donor.advance(10)
    for name, value in donor.session.params.items():
        np.testing.assert_array_equal(receiver.session.params[name], value)
    assert receiver.session.metrics["err"].count == donor.session.metrics["err"].count


def test_own_checkpoint_is_a_restore_not_an_exploit(tmp_path: Path) -> None:
    t = _trial(4)
    t.advance(10)
    t.save(str(tmp_path), owner="me")
    t.load(str(tmp_path), owner="me")
    assert t.events == []


def test_dim_mutation_is_a_realloc_of_the_live_network() -> None:
    t = _trial(4)
    t.advance(20)
    w1 = t.session.params["W1"]
    events_before = len(t.session.events())
    t.apply_config({"hidden": 6, "lr": 0.05})
    assert t.session.dims == {"hidden": 6}
    np.testing.assert_array_equal(t.session.params["W1"][:, :4], w1)  # policy preserve
    resizes = [e for e in t.session.events()[events_before:] if e.kind == "dim_resize"]
    assert len(resizes) == 1 and resizes[0].new_shape == (6,)
    compiled = t.session.compilations
    t.advance(10)
    assert t.session.compilations == compiled  # the training cell is not compiled again
    assert [e.kind for e in t.events] == ["resize"]


def test_unknown_configuration_name_is_a_located_error() -> None:
    with pytest.raises(NomaError) as info:
        check_program(PROGRAM, "xor_tune.noma", {"widht": 4})
    diag = info.value.diagnostics[0]
    assert diag.kind.value == "name" and diag.span.source.name == "-D" and "widht" in diag.message


def test_program_without_training_loop_is_a_located_error() -> None:
    with pytest.raises(NomaError) as info:
        LiveTrial("let x = 1;\n", "plain.noma", {})
    assert "optimize" in info.value.diagnostics[0].message


def test_metrics_survive_a_session_checkpoint(tmp_path: Path) -> None:
    from noma.session.core import Session

    t = _trial(4)
    t.advance(30)
    path = str(tmp_path / "m.safetensors")
    t.session.save_checkpoint(path)
    fresh = Session()
    fresh.load_checkpoint(path)
    got, want = fresh.metrics["err"], t.session.metrics["err"]
    assert list(got.steps) == list(want.steps) == [9, 19, 29]
    np.testing.assert_array_equal(got.values, want.values)
    assert (got.count, got.min, got.max) == (want.count, want.min, want.max)


def test_a_reused_trial_with_a_new_configuration_keeps_the_compiled_training_loop() -> None:
    t = _trial(4)
    t.advance(20)
    compiled = t.session.compilations
    t.config = {"hidden": 8, "lr": 0.02}  # what reset_config does for the next trial (reuse_actors)
    t.start()
    setup_compilations = t.session.compilations - compiled  # the setup, whose values are constants
    first = t.advance(20)
    assert t.session.compilations - compiled == setup_compilations  # the loop came from the cache
    assert first["dim_hidden"] == 8 and first["global_step"] == 20
    assert t.session.globals()["lr"] == 0.02
    fresh = _trial(8, 0.02)
    np.testing.assert_allclose(fresh.advance(20)["loss"], first["loss"], rtol=1e-12)
