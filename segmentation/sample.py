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


# --- order logs ---------------------------------------------------------------------------------

ORDER_HEADER = "OrderID,CustomerID,OrderDate,Revenue\n"
#: the day after the last possible order: a replayed log's default as_of
ORDER_LOG_END = np.datetime64("2024-12-31")
#: planted groups: (name, share of customers, orders min..max, days from the last order to
#: ORDER_LOG_END lo..hi, days over which earlier orders spread, mean order value)
ORDER_GROUPS = (
    ("champions", 0.15, (8, 20), (1, 30), 700, 180.0),
    ("loyal", 0.20, (4, 10), (20, 120), 700, 60.0),
    ("new", 0.15, (1, 1), (1, 30), 0, 50.0),
    ("at risk", 0.15, (5, 12), (250, 400), 500, 70.0),
    ("lost", 0.35, (1, 2), (450, 720), 60, 25.0),
)
RETURN_SHARE = 0.02  # of the orders of customers with more than one order: refunded, a negative line


def write_order_sample(path: Path, rows: int, seed: int = 7) -> Path:
    """Write `rows` synthetic order lines of customers in five planted RFM groups to `path`.

    One line per order (OrderID, CustomerID, OrderDate as ISO date, Revenue); a few orders of
    repeat customers are refunded by a later line with the negative amount and its own
    order id. Customers come in id order, their orders in date order; the last order is the
    day before ORDER_LOG_END. Deterministic for a seed, streamed in blocks of customers.
    """
    rng = np.random.default_rng(seed)
    shares = np.array([group[1] for group in ORDER_GROUPS])
    written, next_customer, next_order = 0, 1, 100_001
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(ORDER_HEADER)
        while written < rows:
            n = 100_000
            group = rng.choice(len(ORDER_GROUPS), size=n, p=shares / shares.sum())
            low = np.array([g[2][0] for g in ORDER_GROUPS])[group]
            high = np.array([g[2][1] for g in ORDER_GROUPS])[group]
            n_orders = rng.integers(low, high + 1)
            last = rng.integers(np.array([g[3][0] for g in ORDER_GROUPS])[group],
                                np.array([g[3][1] for g in ORDER_GROUPS])[group] + 1)
            spread = np.array([g[4] for g in ORDER_GROUPS])[group]
            mean_value = np.array([g[5] for g in ORDER_GROUPS])[group]
            customer = np.repeat(np.arange(next_customer, next_customer + n), n_orders)
            first_of_customer = np.r_[True, customer[1:] != customer[:-1]]
            days_ago = np.repeat(last, n_orders) + np.where(
                first_of_customer, 0, rng.integers(0, np.repeat(spread, n_orders) + 1))
            amount = np.round(rng.lognormal(np.log(np.repeat(mean_value, n_orders)), 0.4), 2)
            refunded = (~first_of_customer) & (rng.random(len(customer)) < RETURN_SHARE)
            # a refund is an extra line right after its order, on the same day or later
            line_customer = np.concatenate([customer, customer[refunded]])
            line_days = np.concatenate([days_ago, np.maximum(days_ago[refunded] - 3, 1)])
            line_amount = np.concatenate([amount, -amount[refunded]])
            order = np.lexsort((-line_days, line_customer))
            dates = (ORDER_LOG_END - line_days[order].astype("timedelta64[D]")).astype(str)
            count = min(len(order), rows - written)
            ids = np.arange(next_order, next_order + count)
            handle.write("".join(
                f"{order_id},{customer_id},{day},{value:.2f}\n"
                for order_id, customer_id, day, value in zip(
                    ids.tolist(), line_customer[order][:count].tolist(), dates[:count].tolist(),
                    line_amount[order][:count].tolist())
            ))
            written += count
            next_order += count
            next_customer += n
    return path
