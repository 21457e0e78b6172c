"""Export scikit-learn's 8×8 digits as CSV files for NOMA: features in [0, 1], one-hot labels.

    python tools/export_digits.py [--out examples/data]

Writes digits_X.csv (1797 rows × 64 pixel intensities / 16, 4 decimals) and digits_Y.csv
(1797 rows × 10 one-hot columns), no header, in the order scikit-learn ships them.
Used by notebooks/03_digits.ipynb (`load_csv X = "../examples/data/digits_X.csv";`).
Imports: numpy, scikit-learn (only here).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(X scaled to [0, 1], one-hot Y) of the digits data set."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = data.data.astype(np.float64) / 16.0
    y = np.zeros((len(data.target), 10))
    y[np.arange(len(data.target)), data.target] = 1.0
    return x, y


def export(out_dir: Path) -> tuple[Path, Path]:
    x, y = digits_arrays()
    out_dir.mkdir(parents=True, exist_ok=True)
    x_path, y_path = out_dir / "digits_X.csv", out_dir / "digits_Y.csv"
    np.savetxt(x_path, x, fmt="%.4g", delimiter=",")
    np.savetxt(y_path, y, fmt="%d", delimiter=",")
    return x_path, y_path


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "examples" / "data"), help="output folder")
    args = p.parse_args(argv)
    for path in export(Path(args.out)):
        print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
