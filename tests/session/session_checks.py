"""Helpers shared by the session tests: a byte-level picture of a session's whole state (lit and
run are in tests/conftest.py)."""

from __future__ import annotations

import dataclasses

import numpy as np

import noma


def state(s: noma.Session) -> dict:
    """Everything observable about a session's state, as bytes (for byte-identity checks)."""
    out: dict = {}
    for name, value in s.params.items():
        out[f"param/{name}"] = (np.shape(value), np.asarray(value).tobytes())
        for key, arr in s.optimizer_state(name).items():
            out[f"opt/{name}/{key}"] = (arr.shape, arr.tobytes())
    out["dims"] = dict(s.dims)
    for name, value in s.globals().items():
        out[f"global/{name}"] = None if value is None else (np.shape(value), np.asarray(value).tobytes())
    h = s.history
    out["losses"] = h.losses.tobytes()
    out["events"] = [dataclasses.astuple(e) for e in h.events]
    out["functions"] = sorted(s.symbols.functions)
    out["global_step"] = s.rt.global_step()
    return out


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == b[k], k
