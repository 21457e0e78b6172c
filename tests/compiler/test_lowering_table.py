"""The lowering table is tied to the Op enum: every Op the IR defines has a lowering to LLVM (or is
listed in noma.compiler.llvm.function.NOT_LOWERED with why); the elementwise ops have scalar rules.
The autodiff and interpreter tables have coverage tests of their own."""

from noma.compiler.llvm import elementwise
from noma.compiler.llvm.function import LOWERINGS, NOT_LOWERED
from noma.compiler.middle import ir
from noma.compiler.middle.ir import Op


def test_every_op_has_a_lowering_or_a_reason():
    missing = [op.value for op in Op if op not in LOWERINGS and op not in NOT_LOWERED]
    assert missing == []


def test_not_lowered_ops_are_really_not_lowered_and_say_why():
    assert not LOWERINGS.keys() & NOT_LOWERED.keys()
    assert all(reason.strip() for reason in NOT_LOWERED.values())


def test_every_elementwise_op_has_a_scalar_rule():
    """CAST's scalar code depends on its target type (elementwise.cast_fn); every other
    elementwise op has a rule in SCALAR_RULES, and only those."""
    assert set(elementwise.SCALAR_RULES) == set(ir.ELEMENTWISE) - {Op.CAST}
    assert all(LOWERINGS[op] in (elementwise.lower_elementwise, elementwise.lower_cast)
               for op in ir.ELEMENTWISE)
