"""lower_llvm_chunks: where long straight-line code is cut into chunk functions.

The programs are compiled by the front end; what they print is checked by the corpus program
252_long_straight_line_chunks (run, JIT, interpreter and executable)."""

from __future__ import annotations

from noma.compiler import pipeline
from noma.compiler.front.symbols import SymbolTable
from noma.compiler.llvm.lower_llvm import lower_module
from noma.compiler.llvm.lower_llvm_chunks import plan_chunks
from noma.compiler.middle import ir
from noma.diagnostics import Source


def _main(text: str) -> tuple[ir.Module, ir.Function]:
    module = pipeline.compile(Source("t.noma", text), SymbolTable(), cell="__cell0", stop="grad").module
    assert module is not None
    return module, module.functions["__cell0"]


def _statements(n: int) -> str:
    return "let s = 0;\n" + "".join(f"s = s + {i % 5};\n" for i in range(n)) + "print(s);\n"


def test_short_code_is_one_chunk() -> None:
    _, fn = _main(_statements(10))
    assert [(c.start, c.end) for c in plan_chunks(fn)] == [(0, len(fn.body.ops))]


def test_long_code_is_cut_into_bounded_chunks_that_recreate_constants() -> None:
    _, fn = _main(_statements(3000))
    chunks = plan_chunks(fn, limit=500)
    assert len(chunks) > 10
    assert chunks[0].start == 0 and chunks[-1].end == len(fn.body.ops)
    assert all(a.end == b.start for a, b in zip(chunks, chunks[1:]))
    assert all(c.end - c.start < 520 for c in chunks)
    # `s + 3` in a later chunk reads the constant 3 defined once at the top (CSE): re-created
    later = chunks[5]
    assert later.consts and all(ins.op is ir.Op.CONST for ins in later.consts)
    assert all(ins.result.id not in {r.id for op in fn.body.ops[later.start:later.end] for r in ir.results(op)}
               for ins in later.consts)


def test_no_cut_while_a_computed_value_is_live() -> None:
    # ones([3]) is computed once (CSE) and read again at the end: no cut may separate them
    text = "let t = ones([3]);\n" + _statements(2000) + "t = t + ones([3]);\nprint(t);\n"
    _, fn = _main(text)
    ops = fn.body.ops
    fill = next(i for i, op in enumerate(ops) if isinstance(op, ir.Instr) and op.op is ir.Op.FILL)
    value = ops[fill].result.id
    last = max(i for i, op in enumerate(ops) if value in {v.id for v in ir.operands(op)})
    assert last > fill + 1000
    starts = [c.start for c in plan_chunks(fn, limit=500)]
    assert not any(fill < s <= last for s in starts)


def test_functions_with_parameters_are_not_cut() -> None:
    body = "".join(f"s = s + x * {i % 5};\n" for i in range(2000))
    module, _ = _main(f"fn f(x) {{ let s = 0; {body} return s; }}\nprint(f(1));\n")
    assert len(plan_chunks(module.functions["f.s"], limit=500)) == 1


def test_chunks_become_internal_functions_called_in_order() -> None:
    module, fn = _main(_statements(3000))
    names = {name: f"noma_{name}" for name in module.functions}
    text = lower_module(module, symbols=names, own_pointers=set(), name="t")
    parts = [line for line in text.splitlines() if line.startswith("define internal void") and ".part" in line]
    assert len(parts) == len(plan_chunks(fn)) - 1 > 0
    assert all("noinline" in line for line in parts)


def _lowered(text: str) -> str:
    module, _ = _main(text)
    return lower_module(module, symbols={name: f"noma_{name}" for name in module.functions},
                        own_pointers=set(), name="t")


def test_all_scalar_chunks_make_the_entry_optnone_and_the_module_unoptimised() -> None:
    from noma.compiler.llvm.jit import _all_optnone

    text = _lowered(_statements(3000))
    defines = [line for line in text.splitlines() if line.startswith("define")]
    assert len(defines) > 2 and all("optnone" in line and "noinline" in line for line in defines)
    assert _all_optnone(text)
    # a tensor operation among them: the entry function is optimised as before
    mixed = _lowered("let t = ones([3]);\n" + _statements(3000) + "t = t + ones([3]);\nprint(t);\n")
    entry = next(line for line in mixed.splitlines() if line.startswith("define void"))
    assert "optnone" not in entry and not _all_optnone(mixed)
    assert not _all_optnone(_lowered(_statements(10)))  # short code: one ordinary function


def test_runtime_calls_of_optnone_functions_go_through_addresses() -> None:
    from noma.compiler.llvm.jit import JIT

    jit = JIT()
    text = _lowered("fn f(x) { return sqrt(x) + 1; }\n" + _statements(3000) + "print(f(s));\n")
    rewritten = jit._runtime_calls_by_address(text)
    for part in rewritten.split("\ndefine ")[1:]:
        header, body = part.split("\n", 1)
        calls = [line for line in body.splitlines() if "call " in line and "@\"noma_" in line]
        if "optnone" in header:  # only chunk calls (internal functions) keep a symbol
            assert all(".part" in line for line in calls), calls[:3]
        elif "noma_f" in header:  # optimised: its runtime calls keep their symbols
            assert "inttoptr" not in body
    assert "inttoptr (i64 " in rewritten
