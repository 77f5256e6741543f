"""Synthetic customer exports shaped like a mall's (five income/spending groups).

Deterministic for a seed, streamed in blocks, so it also makes the 10M-row benchmark files:
`segment sample --rows 10000000 --out big.csv`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HEADER = "CustomerID,Gender,Age,Annual Income (k$),Spending Score (1-100)\n"

#: (share, income mean k$, income sd, spending mean, spending sd, age mean, age sd)
GROUPS = (
    (0.40, 55, 8, 50, 6, 43, 13),
    (0.20, 87, 14, 82, 9, 33, 4),
    (0.18, 88, 14, 17, 10, 41, 11),
    (0.11, 26, 7, 21, 13, 45, 13),
    (0.11, 26, 7, 79, 10, 25, 5),
)
BLOCK_ROWS = 500_000


def write_sample(path: Path, rows: int, seed: int = 7) -> Path:
    """Write `rows` synthetic customers (ids 1..rows, zero-padded to 4 digits) to `path`."""
    rng = np.random.default_rng(seed)
    shares = np.array([group[0] for group in GROUPS])
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(HEADER)
        for start in range(0, rows, BLOCK_ROWS):
            n = min(BLOCK_ROWS, rows - start)
            group = rng.choice(len(GROUPS), size=n, p=shares / shares.sum())
            params = np.array([group_params[1:] for group_params in GROUPS])[group]
            income = np.clip(np.round(rng.normal(params[:, 0], params[:, 1])), 10, 150).astype(int)
            spending = np.clip(np.round(rng.normal(params[:, 2], params[:, 3])), 1, 100).astype(int)
            age = np.clip(np.round(rng.normal(params[:, 4], params[:, 5])), 18, 80).astype(int)
            female = rng.random(n) < 0.56
            ids = np.arange(start + 1, start + n + 1)
            lines = [
                f"{customer_id:04d},{'Female' if is_female else 'Male'},{a},{i},{s}\n"
                for customer_id, is_female, a, i, s in zip(
                    ids.tolist(), female.tolist(), age.tolist(), income.tolist(), spending.tolist()
                )
            ]
            handle.write("".join(lines))
    return path


def packaged_sample() -> Path:
    """The 300-customer sample CSV shipped with the package (made by `write_sample`)."""
    return Path(__file__).parent / "data" / "sample_customers.csv"
