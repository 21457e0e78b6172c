"""The per-op tables cannot fail silently: autodiff's rules and the interpreter's rules cover the
Op enum (every op has a rule or is listed as not applicable, with why), an op without a rule
raises, and the builtin table and the optimizer registry agree with everything that reads them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from noma import optimizers
from noma.compiler.interp import interp_elementwise, interp_optimizers
from noma.compiler.interp.interp import Interpreter, InterpState
from noma.compiler.interp.interp_elementwise import MissingRule
from noma.compiler.middle import autodiff_rules, ir, ops
from noma.compiler.middle.ir import Block, Builder, Op
from noma.compiler.middle.irgen_builtins import BuiltinContext

ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- autodiff


def test_autodiff_tables_cover_the_op_enum():
    tables = {"RULES": set(autodiff_rules.RULES), "ZERO_GRADIENT": set(autodiff_rules.ZERO_GRADIENT),
              "DIFFERENTIATED_ELSEWHERE": set(autodiff_rules.DIFFERENTIATED_ELSEWHERE)}
    for op in Op:
        homes = [name for name, table in tables.items() if op in table]
        assert len(homes) == 1, f"{op} is in {homes or 'no autodiff table'}"
    for why in [*autodiff_rules.ZERO_GRADIENT.values(), *autodiff_rules.DIFFERENTIATED_ELSEWHERE.values()]:
        assert len(why.split()) >= 2, why  # a reason, not a placeholder


def test_autodiff_raises_for_an_op_without_a_rule(monkeypatch):
    ins = ir.Instr(Op.SIGN, (ir.Value(0, 0),), ir.Value(1, 0))
    assert autodiff_rules.differentiable_args(ins) == []
    monkeypatch.delitem(autodiff_rules.ZERO_GRADIENT, Op.SIGN)
    with pytest.raises(NotImplementedError, match="autodiff has no rule for op `sign`"):
        autodiff_rules.differentiable_args(ins)


# ----------------------------------------------------------------------------- interpreter


def _exp_module() -> ir.Module:
    """main() = exp(2)."""
    m = ir.Module()
    body = Block()
    m.functions["main"] = ir.Function("main", [], body, 0)
    b = Builder(m, body)
    body.yields = [b.value(Op.EXP, b.const(2.0))]
    ir.verify(m)
    return m


def test_interpreter_has_a_rule_for_every_op():
    rules = Interpreter(_exp_module(), InterpState())._ops
    assert [op for op in Op if op not in rules] == []
    assert ir.UNARY_ELEMENTWISE - {Op.CAST} <= set(interp_elementwise.UNARY)
    assert ir.BINARY_ELEMENTWISE <= set(interp_elementwise.BINARY)


def test_interpreter_raises_for_an_elementwise_op_without_a_rule(monkeypatch):
    assert Interpreter(_exp_module(), InterpState()).call("main") == pytest.approx(np.exp(2.0))
    monkeypatch.delitem(interp_elementwise.UNARY, Op.EXP)
    with pytest.raises(MissingRule, match="no rule for op `exp`"):  # never exp's input unchanged
        Interpreter(_exp_module(), InterpState()).call("main")


def test_interpreter_raises_for_an_op_without_a_method():
    it = Interpreter(_exp_module(), InterpState())
    del it._ops[Op.EXP]
    with pytest.raises(MissingRule):
        it.call("main")


# ----------------------------------------------------------------------------- builtin table


def test_builtin_table_entries_are_complete():
    for b in ops.BUILTINS.values():
        assert b.doc.startswith(b.name), b.name
        assert 0 <= b.low <= b.high, b.name
        if b.op is not None:
            assert b.op in ir.UNARY_ELEMENTWISE and (b.low, b.high) == (1, 1), b.name
        else:
            assert callable(getattr(BuiltinContext, "b_" + b.name, None)), f"irgen has no b_{b.name}"


def test_readers_of_the_builtin_table_see_every_builtin():
    from noma import lexer
    from noma.compiler.middle import irgen_builtins
    from noma.kernel import introspect
    from noma.lsp import vocabulary

    names = set(ops.BUILTINS)
    assert set(irgen_builtins.BUILTINS) == names
    assert set(lexer.BUILTINS) == names
    assert set(vocabulary.BUILTINS) == names
    assert set(introspect.builtin_names()) == names
    assert all(introspect.BUILTIN_DOCS[n] == ops.BUILTINS[n].doc for n in names)


def test_language_md_documents_every_builtin():
    """The Builtins section of docs/LANGUAGE.md names every builtin of the table (the reverse,
    that it names only known builtins, is tests/lsp/test_vscode_extension.py's)."""
    text = (ROOT / "docs" / "LANGUAGE.md").read_text()
    section = text.split("## Builtins", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`([a-z_][a-z_0-9]*)\(", section))
    named |= {w for cell in re.findall(r"`([a-z_ ]+)`", section) for w in cell.split()}
    assert set(ops.BUILTINS) <= named, set(ops.BUILTINS) - named


# ----------------------------------------------------------------------------- optimizer registry


def test_every_optimizer_has_an_interpreter_update_and_defaults():
    assert set(interp_optimizers.UPDATES) == set(optimizers.OPTIMIZERS)
    for opt in optimizers.OPTIMIZERS.values():
        assert set(opt.defaults()) == set(optimizers.HYPER_NAMES)
        assert {k for k, _ in opt.hyper} <= set(optimizers.HYPER_NAMES)


def test_the_c_runtime_names_every_optimizer_kind():
    source = (ROOT / "noma/rt/native/noma_rt_params.c").read_text()
    found = re.search(r"noma__opt_names\[\] = \{([^}]*)\}", source)
    assert found is not None
    names = re.findall(r'"(\w+)"', found.group(1))
    assert names == ["none"] + [optimizers.BY_KIND[k].name for k in range(1, len(names))]
    assert len(names) == len(optimizers.OPTIMIZERS) + 1


def test_readers_of_the_registry_see_every_optimizer():
    from noma import lexer
    from noma.kernel import introspect
    from noma.lsp import vocabulary

    names = set(optimizers.OPTIMIZERS)
    assert set(lexer.OPTIMIZERS) == names and set(vocabulary.OPTIMIZERS) == names
    assert set(ir.OPTIMIZERS) == names
    for name in names:
        assert introspect.BUILTIN_DOCS[name] == optimizers.OPTIMIZERS[name].doc()
        tokens = [t for t in lexer.NomaLexer().get_tokens(f"optimize(w) with {name}(lr = 1)") if t[1] == name]
        assert tokens and "Builtin" in str(tokens[0][0]), name


def test_language_md_lists_every_optimizer_with_its_defaults():
    text = " ".join((ROOT / "docs/LANGUAGE.md").read_text().split())
    for opt in optimizers.OPTIMIZERS.values():
        assert f"`{opt.signature()}`" in text, opt.signature()


def test_vscode_grammar_word_lists_are_generated_from_the_tables():
    """editors/vscode's grammar lists builtins and optimizers (JSON cannot import the tables):
    tools/sync_vscode_grammar.py rewrites the lists, and they must be current."""
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "sync_vscode_grammar.py"), "--check"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
