"""Tests for noma.compiler.front.parse: every form of docs/LANGUAGE.md, spans, precedence, errors."""

import array
import math
import sys

import pytest

from noma.compiler.front import ast
from noma.compiler.front.parse import completeness, is_complete, parse
from noma.diagnostics import Kind, NomaError, Source


def prog(text: str) -> ast.Program:
    return parse(Source("t.noma", text))


def one(text: str):
    """The single top-level item of text."""
    items = prog(text).items
    assert len(items) == 1, items
    return items[0]


def expr(text: str):
    """The expression of `let _e = TEXT;`."""
    return one(f"let _e = {text};").value


def show(e) -> str:
    """A compact s-expression of an expression, for precedence tests."""
    if isinstance(e, ast.Num):
        return f"{e.value:g}"
    if isinstance(e, ast.Name):
        return e.id
    if isinstance(e, ast.Binary):
        return f"({e.op} {show(e.left)} {show(e.right)})"
    if isinstance(e, ast.Unary):
        return f"({e.op} {show(e.operand)})"
    if isinstance(e, ast.Cast):
        return f"(as {show(e.operand)} {e.to})"
    if isinstance(e, ast.Call):
        return f"{e.func}(" + " ".join(show(a) for a in e.args) + ")"
    if isinstance(e, ast.Index):
        return f"{show(e.target)}[{show(e.index)}]"
    if isinstance(e, ast.Field):
        return f"{show(e.target)}.{e.name}"
    if isinstance(e, ast.ListLit):
        return "[" + " ".join(show(a) for a in e.items) + "]"
    raise AssertionError(e)


def syntax_error(text: str) -> tuple:
    with pytest.raises(NomaError) as info:
        prog(text)
    diag = info.value.diagnostics[0]
    assert diag.kind is Kind.SYNTAX
    assert diag.span is not None
    return diag.message, diag.span.line, diag.span.column


# ----------------------------------------------------------------------------- statements


def test_let_learn_assign_dim():
    let, learn, assign, dim = prog("let x = 1;\nlearn w = zeros([2]);\nx = 2;\ndim hidden = 16;").items
    assert isinstance(let, ast.Let) and let.name == "x" and let.value.value == 1.0
    assert isinstance(learn, ast.Learn) and learn.name == "w" and learn.value.func == "zeros"
    assert isinstance(assign, ast.Assign) and assign.name == "x"
    assert isinstance(dim, ast.DimDecl) and dim.name == "hidden" and dim.value.value == 16.0


def test_alloc_and_free():
    alloc, free = prog("alloc b = [rows, cols];\nfree b;").items
    assert isinstance(alloc, ast.Alloc) and alloc.name == "b"
    assert isinstance(alloc.dims, ast.ListLit) and show(alloc.dims) == "[rows cols]"
    assert isinstance(free, ast.Free) and free.name == "b"
    assert free.name_span.text() == "b"


def test_realloc_forms():
    r1, r2, r3, r4 = prog(
        "realloc W = [2, 16] init normal(0, 0.1);\n"
        "realloc hidden = 16 init preserve;\n"
        "realloc hidden = 16;\n"
        "realloc w = [d1, d2];"
    ).items
    assert isinstance(r1.dims, ast.ListLit) and show(r1.dims) == "[2 16]"
    assert r1.policy.name == "normal" and [a.value for a in r1.policy.args] == [0.0, 0.1]
    assert r1.policy.span.text() == "init normal(0, 0.1)"
    assert isinstance(r2.dims, ast.Num) and r2.policy.name == "preserve" and r2.policy.args == ()
    assert r3.policy is None and r3.dims.value == 16.0
    assert r4.policy is None and isinstance(r4.dims, ast.ListLit)


def test_return_break_continue():
    fn = one("fn f(x) { while 1 { break; continue; } return x; return; }")
    loop, ret, bare = fn.body.stmts
    assert [type(s) for s in loop.body.stmts] == [ast.Break, ast.Continue]
    assert isinstance(ret, ast.Return) and ret.value.id == "x"
    assert bare.value is None


def test_if_else_if_chain():
    stmt = one("if a { x = 1; } else if b { x = 2; } else { x = 3; }")
    assert isinstance(stmt, ast.If) and stmt.cond.id == "a"
    nested = stmt.else_.stmts[0]
    assert isinstance(nested, ast.If) and nested.cond.id == "b"
    assert stmt.else_.span == nested.span
    assert nested.else_.stmts[0].value.value == 3.0
    assert one("if a { }").else_ is None


def test_while_and_for():
    w, f = prog("while i < 10 { i = i + 1; }\nfor i in 0..n { print(i); }").items
    assert isinstance(w, ast.While) and show(w.cond) == "(< i 10)"
    assert isinstance(f, ast.For) and f.var == "i" and f.start.value == 0 and f.stop.id == "n"
    assert f.var_span.text() == "i"
    g = one("for j in a + 1..b * 2 { }")
    assert show(g.start) == "(+ a 1)" and show(g.stop) == "(* b 2)"


def test_minimize_and_compatible_optimize():
    opt = one("optimize(w) until loss < 0.0001 { let loss = w * w; minimize loss; }")
    assert isinstance(opt, ast.Optimize)
    assert [p.id for p in opt.params] == ["w"] and opt.optimizer is None and opt.max_iter is None
    assert show(opt.until) == "(< loss 0.0001)"
    assert isinstance(opt.body.stmts[1], ast.Minimize) and opt.body.stmts[1].value.id == "loss"


def test_explicit_optimize_header():
    opt = one("optimize(W1, b1, W2) with adam(lr = 0.05) until loss < 0.002 max 400 { minimize loss; }")
    assert [p.id for p in opt.params] == ["W1", "b1", "W2"]
    assert opt.optimizer.name == "adam" and opt.optimizer.span.text() == "adam(lr = 0.05)"
    assert [(k.name, k.value.value) for k in opt.optimizer.kwargs] == [("lr", 0.05)]
    assert show(opt.until) == "(< loss 0.002)" and opt.max_iter.value == 400.0


@pytest.mark.parametrize("header, has_with, has_until, has_max", [
    ("", False, False, False),
    ("with sgd(lr = 0.1, momentum = 0.9)", True, False, False),
    ("until l < 1", False, True, False),
    ("max 10", False, False, True),
    ("with rmsprop() max 10", True, False, True),
    ("with sgd until l < 1", True, True, False),
    ("until l < 1 max n * 2", False, True, True),
])
def test_optimize_clause_subsets(header, has_with, has_until, has_max):
    opt = one(f"optimize(w) {header} {{ minimize l; }}")
    assert (opt.optimizer is not None, opt.until is not None, opt.max_iter is not None) == (
        has_with, has_until, has_max)


def test_max_is_a_name_outside_the_optimize_header():
    assert show(expr("max(a, b) + max(c)")) == "(+ max(a b) max(c))"
    opt = one("optimize(w) until max(a, b) < 1 max max(n, 5) { }")
    assert show(opt.until) == "(< max(a b) 1)" and show(opt.max_iter) == "max(n 5)"
    assert one("let max = 3;").name == "max"


def test_batch_forms():
    b1, b2 = prog("batch xb in X with 32 { }\nbatch item, idx in data with batch_size { }").items
    assert isinstance(b1, ast.Batch) and b1.var == "xb" and b1.index_var is None
    assert b1.data.id == "X" and b1.size.value == 32.0
    assert b2.var == "item" and b2.index_var == "idx" and b2.size.id == "batch_size"
    assert b2.var_span.text() == "item"


def test_csv_and_safetensors_io():
    lc, sc, ls, ss = prog(
        'load_csv x = "f.csv";\nsave_csv x * 2, "g.csv";\n'
        'load_safetensors m = "m.safetensors";\n'
        'save_safetensors { weights: W, bias: b }, "m.safetensors";'
    ).items
    assert isinstance(lc, ast.LoadCsv) and lc.name == "x" and lc.path.value == "f.csv"
    assert isinstance(sc, ast.SaveCsv) and show(sc.value) == "(* x 2)" and sc.path.value == "g.csv"
    assert isinstance(ls, ast.LoadSafetensors) and ls.name == "m"
    assert isinstance(ss, ast.SaveSafetensors) and ss.path.value == "m.safetensors"
    assert [(k, show(v)) for k, v in ss.entries] == [("weights", "W"), ("bias", "b")]


def test_calls_seed_reset_print():
    seed, reset, pr = prog('seed(42);\nreset_optimizer();\nprint("loss", loss);').items
    assert isinstance(seed.value, ast.Call) and seed.value.func == "seed"
    assert reset.value.func == "reset_optimizer" and reset.value.args == ()
    assert pr.value.args[0].value == "loss"


def test_call_kwargs_and_compat_rand():
    call = expr("adam(lr = 0.05, beta1 = 0.9)")
    assert call.args == () and [k.name for k in call.kwargs] == ["lr", "beta1"]
    assert call.kwargs[1].span.text() == "beta1 = 0.9"
    mixed = expr("sum(x, axis = 1)")
    assert show(mixed.args[0]) == "x" and mixed.kwargs[0].name == "axis"
    rand = expr("rand_normal_tensor(0.0, 1.0, 3.0, 2.0)")
    assert [a.value for a in rand.args] == [0.0, 1.0, 3.0, 2.0]


def test_compat_let_optimizer():
    assert one("let optimizer = 2.0;").value.value == 2.0


def test_top_level_functions_and_statements_in_order():
    items = prog("let a = 1;\nfn f(x, y) { return x + y; }\nprint(f(a, 2));").items
    assert [type(i) for i in items] == [ast.Let, ast.FnDef, ast.ExprStmt]
    fn = items[1]
    assert fn.name == "f" and fn.params == ("x", "y")
    assert [s.text() for s in fn.param_spans] == ["x", "y"] and fn.name_span.text() == "f"
    assert one("fn main() { }").params == ()


def test_expression_bodied_functions_and_tails():
    tail = one("fn sq(x) { x * x }").body.stmts[-1]
    assert isinstance(tail, ast.ExprStmt) and tail.is_tail and show(tail.value) == "(* x x)"
    plain = one("fn sq(x) { x * x; }").body.stmts[-1]
    assert not plain.is_tail
    two = one("fn g(x) { let y = x + 1; y * 2 }").body.stmts
    assert isinstance(two[0], ast.Let) and two[1].is_tail
    assert prog("x + 1").items[0].is_tail  # a cell's last expression may omit `;`


def test_strings_and_numbers():
    s = expr(r'"a \"q\" \\ b\n"')
    assert isinstance(s, ast.Str) and s.value == 'a "q" \\ b\n'
    for text, value in [("1", 1.0), ("1.5", 1.5), ("1e-3", 0.001), ("2.5E4", 25000.0), ("0", 0.0)]:
        assert expr(text).value == value


def test_field_index_and_cast():
    assert show(expr("m.weights")) == "m.weights"
    assert show(expr("m[i][j]")) == "m[i][j]"
    assert show(expr("load(a).w[0]")) == "load(a).w[0]"
    for t in ("f64", "f32", "i32", "i64"):
        assert expr(f"x as {t}").to == t


def test_list_literals():
    assert show(expr("zeros([2, 3])")) == "zeros([2 3])"
    assert show(expr("reshape(x, [2, 3])")) == "reshape(x [2 3])"
    assert expr("[]").items == ()


# ----------------------------------------------------------------------------- tensor literals


@pytest.mark.parametrize("text, shape", [
    ("tensor [1, 2, 3]", (3,)),
    ("tensor [[1.0, 2.0], [3.0, 4.0]]", (2, 2)),
    ("tensor [[0], [1], [1], [0]]", (4, 1)),
    ("tensor [[[1, 2]], [[3, 4]], [[5, 6]]]", (3, 1, 2)),
    ("tensor [[[[1]], [[2]]]]", (1, 2, 1, 1)),
])
def test_tensor_shapes(text, shape):
    lit = expr(text)  # numbers only: data (one token), not expressions
    assert isinstance(lit, ast.TensorData) and lit.shape == shape
    count = 1
    for d in shape:
        count *= d
    assert len(lit.data) == 8 * count
    assert lit.span.text() == text


@pytest.mark.parametrize("text, values", [
    ("tensor [1, -2.5, 3e2, 1E-1, 2e+1, 007, -0]", [1, -2.5, 300, 0.1, 20, 7, -0.0]),
    ("tensor [ [ 1 ,2 ] ,\n [3, 4,], ]", [1, 2, 3, 4]),
    ("tensor [1e400]", [float("inf")]),
])
def test_numeric_tensor_literal_values(text, values):
    lit = expr(text)
    assert isinstance(lit, ast.TensorData)
    got = list(array.array("d", lit.data))
    assert got == values and [math.copysign(1, v) for v in got] == [math.copysign(1, v) for v in values]


@pytest.mark.parametrize("text", [
    "tensor [- 1, 2]", "tensor [1, // note\n 2]", "tensor [x, 1]", "tensor [--1]", "tensor []",
])
def test_tensor_literals_that_are_not_plain_numbers_take_the_grammar(text):
    assert isinstance(expr(text), ast.TensorLit)


@pytest.mark.parametrize("text", ["tensor [.5]", "tensor [5.]", "tensor [+1]", "tensor [1 2]",
                                  "tensor [1,,2]", "tensor [1e]", "tensor [1.2.3]"])
def test_malformed_numbers_in_a_tensor_literal_are_syntax_errors(text):
    syntax_error(f"let t = {text};")


def test_a_literal_of_a_million_numbers_is_one_token():
    text = "tensor [" + ", ".join(str(i % 97) for i in range(10**6)) + "]"
    lit = expr(text)
    assert isinstance(lit, ast.TensorData) and lit.shape == (10**6,)
    data = array.array("d", lit.data)
    assert data[0] == 0 and data[-1] == (10**6 - 1) % 97 and sum(data) == sum(i % 97 for i in range(10**6))


def test_tensor_items_row_major_with_expressions():
    lit = expr("tensor [[-1.0, 2 * x], [3, 4]]")
    assert [show(i) for i in lit.items] == ["(- 1)", "(* 2 x)", "3", "4"]
    assert lit.span.text() == "tensor [[-1.0, 2 * x], [3, 4]]"


def test_tensor_ragged_and_rank_errors():
    message, line, col = syntax_error("let t = tensor [[1, 2],\n               [3]];")
    assert "ragged" in message and (line, col) == (2, 16)
    message, line, col = syntax_error("let t = tensor [[1, 2], 3];")
    assert "ragged" in message and (line, col) == (1, 25)
    message, line, col = syntax_error("let t = tensor [[[[[1]]]]];")
    assert "at most 4" in message and (line, col) == (1, 9)


# ----------------------------------------------------------------------------- precedence


@pytest.mark.parametrize("text, tree", [
    ("2 ** 3 ** 2", "(^ 2 (^ 3 2))"),
    ("2 ^ 3 ^ 2", "(^ 2 (^ 3 2))"),
    ("-2 ^ 2", "(- (^ 2 2))"),
    ("2 ^ -1", "(^ 2 (- 1))"),
    ("a + b * c", "(+ a (* b c))"),
    ("a * b + c", "(+ (* a b) c)"),
    ("a - b - c", "(- (- a b) c)"),
    ("a / b % c", "(% (/ a b) c)"),
    ("a < b && c || !d", "(|| (&& (< a b) c) (! d))"),
    ("a == b != c", "(!= (== a b) c)"),
    ("a + 1 >= b * 2", "(>= (+ a 1) (* b 2))"),
    ("x as i32 + 1", "(+ (as x i32) 1)"),
    ("-x as i32", "(- (as x i32))"),
    ("x as f32 ^ 2", "(^ (as x f32) 2)"),
    ("-m[0] ^ 2", "(- (^ m[0] 2))"),
    ("(a + b) * c", "(* (+ a b) c)"),
    ("!!a", "(! (! a))"),
    ("--a", "(- (- a))"),
])
def test_precedence(text, tree):
    assert show(expr(text)) == tree


def test_star_star_arrives_as_caret():
    assert expr("a ** b").op == "^"


# ----------------------------------------------------------------------------- spans


def test_spans_line_and_column():
    source = "let a = 1;\nfn f(x) {\n    return x * 2;\n}\n  optimize(w) max 3 { minimize w ^ 2; }\n"
    let, fn, opt = prog(source).items
    assert (let.span.line, let.span.column) == (1, 1) and let.span.text() == "let a = 1;"
    assert (let.name_span.line, let.name_span.column) == (1, 5)
    assert (fn.span.line, fn.span.column) == (2, 1) and fn.span.text().endswith("}")
    ret = fn.body.stmts[0]
    assert (ret.span.line, ret.span.column) == (3, 5) and ret.span.text() == "return x * 2;"
    assert (ret.value.span.line, ret.value.span.column) == (3, 12)
    assert ret.value.right.span.column == 16
    assert (opt.span.line, opt.span.column) == (5, 3)
    minimize = opt.body.stmts[0]
    assert minimize.value.span.text() == "w ^ 2" and minimize.value.span.column == 32
    assert opt.max_iter.span.column == 19
    assert opt.params[0].span.text() == "w"


def test_call_and_block_spans():
    stmt = one("x = f(a, g(b)) + 1;")
    call = stmt.value.left
    assert call.span.text() == "f(a, g(b))" and call.name_span.text() == "f"
    assert call.args[1].span.text() == "g(b)"
    assert stmt.value.span.text() == "f(a, g(b)) + 1"
    blk = one("while c {\n  x = 1;\n}").body
    assert blk.span.text() == "{\n  x = 1;\n}"
    assert expr("(a + b)").span.text() == "(a + b)"


def test_program_span_and_empty_inputs():
    p = prog("let a = 1;")
    assert p.span.text() == "let a = 1;"
    assert prog("").items == () and prog("// only a comment").items == ()


def test_comments_including_last_line_without_newline():
    p = prog("// head\nlet a = 1; // trailing\n// last line")
    assert len(p.items) == 1
    assert len(prog("let a = 1; // end").items) == 1


def test_keywords_prefixing_names_are_names():
    assert show(expr("letter + format + asdf + index + maximum + init_w")) == (
        "(+ (+ (+ (+ (+ letter format) asdf) index) maximum) init_w)")


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("text, words, line, col", [
    ("let x = 5\nlet y = 6;", "expected `;` after the statement, found `let`", 2, 1),
    ("fn f() {\n  let x = 1;\n", "unexpected end of input: a `}` is missing", 2, 13),
    ("let x = (1 + 2;", "unexpected `;`: expected `)`", 1, 15),
    ("let x = }", "unexpected `}`: expected an expression", 1, 9),
    ("}", "unexpected `}`", 1, 1),
    ('print("abc);', "unterminated string", 1, 7),
    ('let a = 1;\n  print("abc\n);', "unterminated string", 2, 9),
    ("let x = 3 @ 2;", "unexpected character `@`", 1, 11),
    ("fn f() { fn g() { } }", "functions are defined at the top level", 1, 10),
    ("let let = 2;", "unexpected `let`: expected a name", 1, 5),
    ("let y = x as int;", "unknown type `int`", 1, 14),
    ("f(a = 1, 2);", "positional argument cannot follow a keyword argument", 1, 10),
    ("optimize(w) with adam(0.1) { }", "optimizer settings are given by name", 1, 23),
    ("optimize(w) max 10 until l < 1 { }", "unexpected `until`", 1, 20),
    ("if x > 0 let y = 1;", "unexpected `let`: expected `{`", 1, 10),
    ("let x = [1, 2;", "unexpected `;`: expected `,` or `]`", 1, 14),
    ("1 + ;", "unexpected `;`: expected an expression", 1, 5),
    ("for i in 0.. { }", "unexpected `{`: expected an expression", 1, 14),
    ("let s = \"a\\qb\";", "unknown escape `\\q`", 1, 11),
    ("let x = .5;", "unexpected `.`", 1, 9),
    ("if x { } else", "unexpected end of input: expected `if` or `{`", 1, 14),
    ("realloc w = [2] init normal(mean = 0);", "positional arguments only", 1, 29),
    ("while x {\n  y = 1\n}", "expected `;` after the statement, found `}`", 3, 1),
    ("let a = 1;\nlet b = (2 + 3));", "expected `;` after the statement, found `)`", 2, 16),
])
def test_syntax_errors(text, words, line, col):
    message, got_line, got_col = syntax_error(text)
    assert words in message
    assert (got_line, got_col) == (line, col)
    assert "RBRACE" not in message and "SEMI" not in message and "NAME" not in message


def test_errors_never_leak_lark_exceptions():
    for text in ["let", "((((", "]]]", "tensor", "fn", "x as", "optimize", 'load_csv x = 3;',
                 "batch x in y { }", "let x = 1 2;", "\"", "@", "fn f(,) { }", "{ }", "a.1"]:
        try:
            prog(text)
        except NomaError as exc:
            assert exc.diagnostics[0].kind is Kind.SYNTAX
        # any other exception type fails the test


def test_missing_brace_note_points_at_the_opener():
    with pytest.raises(NomaError) as info:
        prog("if x {\n  while y {\n    z = 1;\n  }\n")
    diag = info.value.diagnostics[0]
    assert "`}` is missing" in diag.message
    assert "line 1, column 6" in diag.note


def test_error_renders_with_caret():
    with pytest.raises(NomaError) as info:
        prog("let a = 1;\nlet b = 2 +;\n")
    text = str(info.value)
    assert "error[syntax]" in text and "t.noma:2:12" in text and "^" in text


# ----------------------------------------------------------------------------- is_complete


@pytest.mark.parametrize("text, complete", [
    ("let x = 1;", True),
    ("print(x)", True),
    ("", True),
    ("// just a comment", True),
    ("fn f(x) {", False),
    ("fn f(x) {\n  x * x\n}", True),
    ("let x = (1 +", False),
    ("let x = [1, 2,", False),
    ('print("abc', False),
    ('print("abc\n', True),  # a string cannot span lines: more text will not help
    ('print("{")', True),
    ("x = 1 +", False),
    ("let x =", False),
    ("x = a &&", False),
    ("f(a,", False),
    ("let x = 5", True),
    ("if x > 0", False),
    ("if x > 0 { }", True),
    ("if x { } else", False),
    ("if x { } else if y", False),
    ("optimize(w) with adam(lr = 0.1)", False),
    ("optimize(w) until l < 1 max", False),
    ("for i in 0..", False),
    ("let t = tensor", False),
    ("x as", False),
    ("break", True),
    ("}", True),  # a stray closer is an error more text cannot fix
    ("let x = (1 + 2));", True),
    ("save_safetensors { a: b },", False),
])
def test_is_complete(text, complete):
    assert is_complete(text) is complete


@pytest.mark.parametrize("text, status", [
    ("let y = (1.0 + ;", "invalid"),  # the parser stopped before the end: no line can fix it
    ("let y = (1.0 +", "incomplete"),
    ("let a = 1 $", "invalid"),
    ("x)", "invalid"),
    ("let x = 5\nlet y = 6;", "invalid"),
    ("let x = 5", "complete"),
    ("fn f(x)", "incomplete"),
    ('print("a', "incomplete"),
])
def test_completeness(text, status):
    assert completeness(text) == status


def test_the_last_statement_may_omit_its_semicolon():
    program = parse(Source("<cell>", "let a = 1;\nlearn w = 2"))
    assert len(program.items) == 2
    with pytest.raises(NomaError):  # only the last one
        parse(Source("<cell>", "let a = 1\nlet b = 2"))
    with pytest.raises(NomaError):  # and only at the end of the input, not of a block
        parse(Source("<cell>", "while a { a = 1 }"))


# ----------------------------------------------------------------------------- speed, layering


def test_parsing_100_lines_repeats_the_statements():
    block = (
        "learn W1 = normal([2, hidden], 0, 1);\n"
        "optimize(W1, b1) with adam(lr = 0.05) until loss < 0.002 max 2000 {\n"
        "    let h = sigmoid(matmul(X, W1) + b1);\n"
        "    let loss = mean((h - Y) ^ 2);\n"
        "    minimize loss;\n"
        "}\n"
        "print(\"final loss\", loss); // done\n"
        "\n"
    )
    text = block * 13  # 104 lines
    one = prog(block)
    many = prog(text)
    # Speed is measured in bench/ (compile phases, bench_compile_size.py), not asserted here:
    # this checks the repeated program parses into the repeated statements.
    assert len(many.items) == 13 * len(one.items)


def test_importing_noma_stays_light():
    import subprocess

    code = "import noma, sys; assert 'lark' not in sys.modules and 'llvmlite' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
