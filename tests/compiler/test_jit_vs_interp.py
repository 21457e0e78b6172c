"""The JIT and the NumPy interpreter (the executable spec) agree on the same IR.

Each program is compiled once by the session's pipeline (parse, irgen, autodiff, passes); the
module runs natively through the session and in the interpreter, and every parameter, global,
printed line and logged loss must agree (≤ 1e-12 relative in f64). The whole corpus is compared
the same way (and with executables) in tests/test_three_ways.py, random programs in
tests/test_generated_programs.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import noma
from noma.compiler.interp.interp import InterpState, Interpreter
from noma.diagnostics import Source

PROGRAMS = {
    "arithmetic_and_broadcasting": """
        let A = tensor [[1, 2, 3], [4, 5, 6]];
        let v = tensor [0.5, -1, 2];
        let c = tensor [[2], [3]];
        let r = (A * v + c) / (1 + A) - A ^ 2 % 3;
        let s = sum(r, 0) + mean(r) - max(r) + min(A, 2.5)[1];
        print(r, s);
    """,
    "control_flow_and_functions": """
        fn fact(n) { if n <= 1 { return 1; } return n * fact(n - 1); }
        fn collatz(n) { let k = 0; while n != 1 { if n % 2 == 0 { n = n / 2; } else { n = 3 * n + 1; } k = k + 1; } k }
        let total = 0;
        for i in 1..8 { if i == 6 { continue; } total = total + fact(i) + collatz(i); }
        print(total);
    """,
    "mlp_softmax_adam": """
        let X = tensor [[0.1, 0.2, 0.3], [0.4, 0.1, -0.2], [-0.3, 0.5, 0.2], [0.9, -0.4, 0.1]];
        let Y = tensor [[1, 0], [0, 1], [1, 0], [0, 1]];
        learn W1 = tensor [[0.1, -0.2, 0.3, 0.05], [0.2, 0.1, -0.1, 0.3], [-0.3, 0.2, 0.1, -0.05]];
        learn b1 = zeros([4]);
        learn W2 = tensor [[0.3, -0.1], [0.2, 0.4], [-0.5, 0.1], [0.1, 0.2]];
        optimize(W1, b1, W2) with adam(lr = 0.05) max 200 {
            let h = tanh(matmul(X, W1) + b1);
            let loss = cross_entropy(matmul(h, W2), Y) + 0.001 * sum(W1 * W1);
            minimize loss;
        }
        print(loss, accuracy(matmul(tanh(matmul(X, W1) + b1), W2), Y));
    """,
    "control_flow_inside_training": """
        learn w = tensor [1.0, -2.0, 0.5];
        let target = tensor [0.3, 0.2, -0.1];
        optimize(w) with sgd(lr = 0.1, momentum = 0.9) until loss < 1e-8 max 300 {
            let x = w;
            let i = 0;
            while i < 3 { x = sigmoid(x) * 2 - 1 + 0.1 * x; i = i + 1; }
            let loss = 0;
            if sum(x) > 0 { loss = mean((x - target) ^ 2); } else { loss = mean(abs(x - target)); }
            minimize loss;
        }
        print(w, loss);
    """,
    "rmsprop_slices_concat_index": """
        let X = tensor [[1, 2], [3, 4], [5, 6], [7, 8]];
        learn W = tensor [[0.1], [0.2]];
        let k = 0;
        optimize(W) with rmsprop(lr = 0.01) max 150 {
            let xb = slice(X, k % 3, k % 3 + 2);
            let z = concat(matmul(xb, W), W * 2);
            let loss = sum(z ^ 2) + z[0][0];
            k = k + 1;
            minimize loss;
        }
        print(W);
    """,
    "reset_optimizer_in_loop_and_literal_data": """
        let X = tensor [[1, 2], [3, -4.5], [0.25, 6]];
        learn W = tensor [[0.1], [-0.2]];
        let k = 0;
        optimize(W) with adam(lr = 0.05) max 6 {
            k = k + 1;
            if k % 3 == 0 { reset_optimizer(); }
            let loss = mean((matmul(X, W) - tensor [[1], [0], [2]]) ^ 2);
            minimize loss;
        }
        print(W, sum(X, -1), mean(X, -2));
    """,
    "globals_through_loops_and_calls": """
        learn w = tensor [0.4, -0.3];
        let acc = tensor [0, 0];
        let n = 0;
        fn grow(x) { acc = acc * x + 1; n = n + 1; return sum(acc); }
        optimize(w) with adam(lr = 0.05) max 40 {
            acc = w;
            let total = 0;
            for i in 0..3 { if i == 1 { total = total + grow(w); } else { acc = tanh(acc + w); } }
            while n % 4 != 0 { total = total + grow(w * 0.5); }
            let loss = sum(acc * acc) + 0.1 * total * total;
            minimize loss;
        }
        print(w, acc, n);
    """,
}


def run_both(source: str) -> tuple[noma.Session, InterpState, object]:
    session = noma.Session()
    module, cell, _, symbols = session.compile(Source("<test>", source))
    state = InterpState()
    Interpreter(module, state).call(cell)
    result = session.execute(source)
    assert result.ok, [d.render() for d in result.diagnostics]
    return session, state, result


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_jit_equals_interpreter(name: str) -> None:
    session, state, result = run_both(PROGRAMS[name])
    assert result.output.splitlines() == state.output
    for pname, var in session.symbols.params.items():
        np.testing.assert_allclose(session.params[pname], state.params[var.slot], rtol=1e-12, atol=1e-300)
    for gname, var in session.symbols.globals.items():
        if var.slot in state.globals:
            np.testing.assert_allclose(np.asarray(session.globals()[gname], float),
                                       np.asarray(state.globals[var.slot], float), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(session.history.losses, np.asarray(state.loss_log), rtol=1e-12, atol=1e-300)
