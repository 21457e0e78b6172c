"""Workload definitions shared by every implementation in the benchmark (bench/bench.py).

A workload fixes the network, the data, the initial weights, the batch schedule, the optimizer
and the number of steps; every peer receives the same arrays and must perform the same updates.

Adam, as NOMA does it (PyTorch's formulas, docs/RUNTIME_ABI.md):
    m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g;  pow1 *= b1;  pow2 *= b2
    denom = sqrt(v)/sqrt(1-pow2) + eps;  p -= (lr/(1-pow1)) * (m/denom)
with per-entry step counts: after a resize the new entries start at step 0 (pow1 = pow2 = 1) while
the old ones keep theirs (W1 and W3 grow, so their peers keep per-entry or per-unit powers).

The initial weights are the ones NOMA's seeded generator draws (read back from a session), so the
NOMA program needs no file for them and every peer gets bit-identical start values (also in f32).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DIGITS_X = ROOT / "examples" / "data" / "digits_X.csv"
DIGITS_Y = ROOT / "examples" / "data" / "digits_Y.csv"

B1, B2, EPS = 0.9, 0.999, 1e-8


@dataclass
class XorGrow:
    """W1: 2->2->1 sigmoid MLP, MSE; Adam lr1 for steps1; grow hidden to `grown` (new entries
    drawn by NOMA's generator, init normal(0, 1)); Adam lr2 until loss < target or max2 steps."""

    key: str = "W1"
    name: str = "W1 growing XOR 2-2-1 -> 2-16-1, sigmoid, MSE, Adam"
    dtype: str = "f64"
    seed: int = 7
    hidden: int = 2
    grown: int = 16
    lr1: float = 0.05
    steps1: int = 200
    lr2: float = 0.12
    target: float = 0.002
    max2: int = 400
    X: np.ndarray = field(default_factory=lambda: np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float))
    Y: np.ndarray = field(default_factory=lambda: np.array([[0], [1], [1], [0]], float))
    init: dict = field(default_factory=dict)   # W1 b1 W2 b2 at hidden = 2
    grow: dict = field(default_factory=dict)   # W1 b1 W2 b2 right after `realloc hidden = 16`

    @property
    def grows(self) -> bool:
        """False: a static network trained for steps1 steps (no second phase)."""
        return self.max2 > 0

    def setup_source(self) -> str:
        return f"""seed({self.seed});
dim hidden = {self.hidden};
learn W1 = normal([2, hidden], 0, 1);
learn b1 = zeros([hidden]);
learn W2 = normal([hidden, 1], 0, 1);
learn b2 = zeros([1]);
let X = tensor [[0, 0], [0, 1], [1, 0], [1, 1]];
let Y = tensor [[0], [1], [1], [0]];
"""

    def train_source(self) -> str:
        body = """    let h = sigmoid(matmul(X, W1) + b1);
    let loss = mean((sigmoid(matmul(h, W2) + b2) - Y) ^ 2);
    minimize loss;"""
        first = f"""optimize(W1, b1, W2, b2) with adam(lr = {self.lr1}) max {self.steps1} {{
{body}
}}
"""
        if not self.grows:
            return first + "loss\n"
        return first + f"""realloc hidden = {self.grown} init normal(0, 1);
optimize(W1, b1, W2, b2) with adam(lr = {self.lr2}) until loss < {self.target} max {self.max2} {{
{body}
}}
loss
"""


@dataclass
class Mlp:
    """W2 / W4: tanh MLP, softmax cross-entropy, Adam; minibatches taken in order from the first
    `rows` rows (batch == rows: full batch)."""

    key: str
    name: str
    sizes: tuple
    batch: int
    rows: int
    steps: int
    lr: float = 1e-3
    dtype: str = "f64"
    seed: int = 3
    std: float = 0.1
    X: Optional[np.ndarray] = None
    Y: Optional[np.ndarray] = None
    init: dict = field(default_factory=dict)  # W1 b1 W2 b2 ... (NOMA's draws)
    data_dir: str = ""                        # CSV files of X / Y for the NOMA program
    x_gen: tuple = ()                          # (rows, cols): X drawn by NOMA (rand_tensor), no CSV

    @property
    def layers(self) -> int:
        return len(self.sizes) - 1

    @property
    def np_dtype(self):
        return np.float64 if self.dtype == "f64" else np.float32

    def batch_starts(self, steps: int) -> np.ndarray:
        nb = self.rows // self.batch
        return (np.arange(steps) % nb) * self.batch

    def setup_source(self) -> str:
        xsrc = (f"let Xall = rand_tensor({self.x_gen[0]}, {self.x_gen[1]});" if self.x_gen
                else f'load_csv Xall = "{self.data_dir}/X.csv";')
        lines = [f"seed({self.seed});", xsrc,
                 f'load_csv Yall = "{self.data_dir}/Y.csv";',
                 f"let X = slice(Xall, 0, {self.rows});",
                 f"let Y = slice(Yall, 0, {self.rows});",
                 "let start = 0;"]
        for i in range(self.layers):
            a, b = self.sizes[i], self.sizes[i + 1]
            lines.append(f"learn W{i + 1} = normal([{a}, {b}], 0, {self.std});")
            lines.append(f"learn b{i + 1} = zeros([{b}]);")
        return "\n".join(lines) + "\n"

    def train_source(self, steps: int) -> str:
        params = ", ".join(f"W{i + 1}, b{i + 1}" for i in range(self.layers))
        if self.batch == self.rows:
            head = "    let xb = X;\n    let yb = Y;\n"
        else:
            head = (f"    let xb = slice(X, start, start + {self.batch});\n"
                    f"    let yb = slice(Y, start, start + {self.batch});\n"
                    f"    start = start + {self.batch};\n"
                    f"    if start >= {self.rows // self.batch * self.batch} {{ start = 0; }}\n")
        h = "xb"
        body = ""
        for i in range(self.layers - 1):
            body += f"    let h{i + 1} = tanh(matmul({h}, W{i + 1}) + b{i + 1});\n"
            h = f"h{i + 1}"
        L = self.layers
        body += f"    let loss = cross_entropy(matmul({h}, W{L}) + b{L}, yb);\n    minimize loss;\n"
        return (f"start = 0;\noptimize({params}) with adam(lr = {self.lr}) max {steps} {{\n"
                f"{head}{body}}}\nloss\n")


@dataclass
class GrowMlp:
    """W3: W2's digits network 64-H-10 (tanh, softmax CE, Adam, minibatch 64 taken in order from the
    first `rows` rows) whose hidden layer grows h0 -> h_max by h_step every `epochs` epochs, keeping
    the optimizer state (new entries start at step 0). The growth is NOMA's default dim policy
    (preserve): the new units' incoming weights (new columns of W1) are normal(0, std of W1's
    entries before the resize), their outgoing weights (new rows of W2) and biases 0, so the
    network's function is unchanged. The standard normal draws `z` (in NOMA's consumption order:
    row-major over W1's new columns, growth after growth) are read back from a NOMA session; every
    implementation computes the std from its own trained W1 and multiplies (in double, then rounds
    to the working precision, as NOMA's runtime does)."""

    key: str = "W3"
    dtype: str = "f64"
    epochs: int = 20
    h0: int = 16
    h_max: int = 128
    h_step: int = 16
    batch: int = 64
    rows: int = 1792
    lr: float = 1e-3
    seed: int = 3
    std: float = 0.1
    data_dir: str = ""
    X: Optional[np.ndarray] = None
    Y: Optional[np.ndarray] = None
    init: dict = field(default_factory=dict)  # W1 b1 W2 b2 at hidden = h0 (NOMA's draws)
    z: Optional[np.ndarray] = None             # standard normal draws for the new W1 columns

    @property
    def np_dtype(self):
        return np.float64 if self.dtype == "f64" else np.float32

    @property
    def sizes(self) -> list[int]:
        return list(range(self.h0, self.h_max + 1, self.h_step))

    @property
    def steps_per_size(self) -> int:
        return self.epochs * (self.rows // self.batch)

    @property
    def steps(self) -> int:
        return len(self.sizes) * self.steps_per_size

    @property
    def n_in(self) -> int:
        return self.X.shape[1]

    def batch_starts(self, steps: int) -> np.ndarray:
        return (np.arange(steps) % (self.rows // self.batch)) * self.batch

    def setup_source(self) -> str:
        return f"""seed({self.seed});
load_csv Xall = "{self.data_dir}/X.csv";
load_csv Yall = "{self.data_dir}/Y.csv";
let X = slice(Xall, 0, {self.rows});
let Y = slice(Yall, 0, {self.rows});
let start = 0;
let step = 0;
dim hidden = {self.h0};
learn W1 = normal([64, hidden], 0, {self.std});
learn b1 = zeros([hidden]);
learn W2 = normal([hidden, 10], 0, {self.std});
learn b2 = zeros([10]);
"""

    def train_source(self) -> str:
        nb = self.rows // self.batch * self.batch
        return f"""start = 0;
step = 0;
optimize(W1, b1, W2, b2) with adam(lr = {self.lr}) max {self.steps} {{
    let xb = slice(X, start, start + {self.batch});
    let yb = slice(Y, start, start + {self.batch});
    start = start + {self.batch};
    if start >= {nb} {{ start = 0; }}
    step = step + 1;
    if step % {self.steps_per_size} == 0 && hidden < {self.h_max} {{ realloc hidden = hidden + {self.h_step}; }}
    let h1 = tanh(matmul(xb, W1) + b1);
    let loss = cross_entropy(matmul(h1, W2) + b2, yb);
    minimize loss;
}}
loss
"""

    def new_columns(self, W1: np.ndarray, growth: int) -> np.ndarray:
        """W1's new columns (n_in x h_step) at growth number `growth` (0-based), given W1 (any
        array type convertible to NumPy) just before it: std (population, in double) times NOMA's
        standard normal draws, rounded to the working precision."""
        a = np.asarray(W1, dtype=np.float64).ravel()
        # the runtime's sums run in order (cumsum does too; np.sum would sum pairwise)
        mean = np.cumsum(a)[-1] / a.size
        std = float(np.sqrt(np.cumsum((a - mean) ** 2)[-1] / a.size)) if a.size >= 2 else 0.1
        if not (std > 0) or not np.isfinite(std):
            std = 0.1
        n = self.n_in * self.h_step
        z = self.z[growth * n:(growth + 1) * n].reshape(self.n_in, self.h_step)
        return (std * z).astype(self.np_dtype)


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    X = np.loadtxt(DIGITS_X, delimiter=",")
    Y = np.loadtxt(DIGITS_Y, delimiter=",")
    return X, Y


def noma_params(setup: str, dtype: str, extra: str = "") -> dict[str, np.ndarray]:
    """Parameters of a fresh session after `setup` (and `extra`), as the session stores them."""
    import noma

    s = noma.Session(dtype=dtype)
    for src in (setup, extra):
        if not src:
            continue
        r = s.execute(src)
        if not r.ok:
            raise RuntimeError("\n".join(d.render() for d in r.diagnostics))
    return {k: v.copy() for k, v in s.params.items()}


def make_w1() -> XorGrow:
    w = XorGrow()
    w.init = noma_params(w.setup_source(), "f64")
    w.grow = noma_params(w.setup_source(), "f64", f"realloc hidden = {w.grown} init normal(0, 1);")
    return w


def make_w0(steps: int) -> XorGrow:
    """The static XOR 2-16-1 network (batch 4) trained `steps` steps: the per-step overhead."""
    w = XorGrow(key="W0", name="W0 XOR 2-16-1 sigmoid, MSE, Adam lr 0.05, batch 4", hidden=16, grown=16,
                steps1=steps, max2=0)
    w.init = noma_params(w.setup_source(), "f64")
    w.grow = dict(w.init)
    return w


def make_mlp(key: str, name: str, sizes: tuple, batch: int, rows: int, steps: int, dtype: str,
             X: np.ndarray, Y: np.ndarray, data_dir: str, lr: float = 1e-3) -> Mlp:
    w = Mlp(key=key, name=name, sizes=sizes, batch=batch, rows=rows, steps=steps, lr=lr, dtype=dtype,
            data_dir=data_dir)
    dt = w.np_dtype
    w.X = np.ascontiguousarray(X[:rows], dtype=dt)
    w.Y = np.ascontiguousarray(Y[:rows], dtype=dt)
    w.init = {k: v.astype(dt) for k, v in noma_params(w.setup_source(), dtype).items()}
    return w


def make_w4(steps: int, data_dir: str, rows: int = 1024, width: int = 1024) -> Mlp:
    """W4: 1024-1024-1024-10 tanh MLP, batch 256, f32 (matmul bound). X is drawn by NOMA
    (uniform [0, 1)), the labels by NumPy (one-hot, written as CSV)."""
    import noma

    rng = np.random.default_rng(11)
    Y = np.eye(10)[rng.integers(0, 10, rows)]
    np.savetxt(f"{data_dir}/Y.csv", Y, delimiter=",", fmt="%.17g")
    w = Mlp(key="W4", name=f"W4 {width}-{width}-{width}-10 tanh MLP, softmax CE, Adam, batch 256, f32",
            sizes=(width, width, width, 10), batch=256, rows=rows, steps=steps, dtype="f32",
            data_dir=data_dir, x_gen=(rows, width), std=0.03)
    s = noma.Session(dtype="f32")
    r = s.execute(w.setup_source())
    if not r.ok:
        raise RuntimeError("\n".join(d.render() for d in r.diagnostics))
    w.X = np.ascontiguousarray(s.globals()["Xall"], dtype=np.float32)
    w.Y = np.ascontiguousarray(Y, dtype=np.float32)
    w.init = {k: v.astype(np.float32) for k, v in s.params.items()}
    return w


def make_w3(dtype: str, X: np.ndarray, Y: np.ndarray, data_dir: str, epochs: int = 20) -> GrowMlp:
    import noma

    w = GrowMlp(dtype=dtype, epochs=epochs, data_dir=data_dir)
    dt = w.np_dtype
    w.X = np.ascontiguousarray(X[:w.rows], dtype=dt)
    w.Y = np.ascontiguousarray(Y[:w.rows], dtype=dt)
    w.init = {k: v.astype(dt) for k, v in noma_params(w.setup_source(), dtype).items()}
    # the generator's state after the setup does not depend on the precision; f64 reads the
    # draws exactly (rand_normal_tensor(0, 1, n) is 0 + 1 * z)
    n = (len(w.sizes) - 1) * w.n_in * w.h_step
    s = noma.Session(dtype="f64")
    for src in (w.setup_source(), f"let Zdraws = rand_normal_tensor(0, 1, {max(n, 1)});"):
        r = s.execute(src)
        if not r.ok:
            raise RuntimeError("\n".join(d.render() for d in r.diagnostics))
    w.z = np.asarray(s.globals()["Zdraws"], dtype=np.float64)
    return w


def write_csv_data(X: np.ndarray, Y: np.ndarray, directory: str) -> None:
    np.savetxt(f"{directory}/X.csv", X, delimiter=",", fmt="%.17g")
    np.savetxt(f"{directory}/Y.csv", Y, delimiter=",", fmt="%.17g")
