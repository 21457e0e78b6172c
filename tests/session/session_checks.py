"""Helpers shared by the session tests: tensor literals, running a cell that must succeed, and a
byte-level picture of a session's whole state."""

from __future__ import annotations

import dataclasses

import numpy as np

import noma


def lit(arr) -> str:
    """A NOMA tensor literal holding exactly the values of arr (repr round-trips doubles)."""

    def rec(a):
        return repr(float(a)) if a.ndim == 0 else "[" + ", ".join(rec(x) for x in a) + "]"

    return "tensor " + rec(np.asarray(arr, np.float64))


def run(s: noma.Session, src: str):
    r = s.execute(src)
    assert r.status == "ok", (src, [d.message for d in r.diagnostics])
    return r


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
