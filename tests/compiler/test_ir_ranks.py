"""ir_ranks.expected_rank (what verify expects of an instruction) answers as ops.result_rank does,
whatever instructions were asked about before: attributes that decide the rank (axis, keepdims,
rank, result_rank, shape) are told apart, and RankError still comes through.
"""

from __future__ import annotations

import random
from typing import Any, Optional

import pytest

from noma.compiler.middle import ir_ranks
from noma.compiler.middle.ops import Op, RankError, result_rank

CASES: list[tuple[Op, tuple[int, ...], dict[str, Any]]] = [
    (Op.SUM, (2,), {"axis": None, "keepdims": False}),
    (Op.SUM, (2,), {"axis": 1, "keepdims": False}),
    (Op.SUM, (2,), {"axis": 1, "keepdims": True}),
    (Op.SUM, (2,), {"axis": 0, "keepdims": 1}),
    (Op.SUM, (3,), {"axis": 0, "keepdims": False}),
    (Op.GLOBAL_LOAD, (), {"slot": 1, "name": "a", "rank": 0}),
    (Op.GLOBAL_LOAD, (), {"slot": 2, "name": "b", "rank": 3}),
    (Op.GLOBAL_LOAD, (), {"slot": 1, "name": "a", "rank": True}),
    (Op.CALL, (0,), {"callee": "f", "result_rank": None}),
    (Op.CALL, (0,), {"callee": "f", "result_rank": 2}),
    (Op.CALL, (0,), {"callee": "g"}),
    (Op.PACK, (0, 0), {"shape": (2,)}),
    (Op.PACK, (0, 0, 0, 0), {"shape": (2, 2)}),
    (Op.ADD, (0, 2), {}),
    (Op.ADD, (1, 0), {}),
    (Op.CONST, (), {"value": 1.0}),
    (Op.CONST, (), {"value": float("nan")}),
    (Op.PRINT, (0,), {"parts": (None,)}),
    (Op.GLOBAL_STORE, (2,), {"slot": 1, "name": "a"}),
]


def _frozen(attrs: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(attrs.items()))


def _forget() -> None:
    ir_ranks._NAMES.clear()
    ir_ranks._WHOLE.clear()
    ir_ranks._RANKS.clear()


@pytest.mark.parametrize("seed", range(20))
def test_same_answers_as_result_rank_in_any_order(seed: int) -> None:
    _forget()
    cases = CASES * 3
    random.Random(seed).shuffle(cases)
    for op, ranks, attrs in cases:
        want: Optional[int] = result_rank(op, ranks, dict(attrs))
        assert ir_ranks.expected_rank(op, ranks, _frozen(attrs)) == want, (op, ranks, attrs)


def test_rank_errors_come_through() -> None:
    _forget()
    for _ in range(2):
        with pytest.raises(RankError):
            ir_ranks.expected_rank(Op.MATMUL, (1, 2), ())
        with pytest.raises(RankError):
            ir_ranks.expected_rank(Op.INDEX, (0, 0), ())
    assert ir_ranks.expected_rank(Op.MATMUL, (2, 2), (("ta", False), ("tb", False))) == 2


def test_a_missing_attribute_raises_as_result_rank_does() -> None:
    _forget()
    assert ir_ranks.expected_rank(Op.GLOBAL_LOAD, (), (("rank", 1),)) == 1
    with pytest.raises(KeyError):
        ir_ranks.expected_rank(Op.GLOBAL_LOAD, (), (("slot", 1),))
