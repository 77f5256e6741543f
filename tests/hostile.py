"""A hostile corpus, generated here (nothing copied): declarations whose view columns may
collide, settings out of range, and files that break importers (encodings, decimal commas,
dates from the future, lines exported twice). Seeded, so every run sees the same corpus."""

from __future__ import annotations

import datetime
import random

from segmentation import view_columns

#: category values that slug alike, to nothing, or too long, and values that look like names
HOSTILE_VALUES = (
    "東京", "大阪", "名古屋", "A-B", "a b", "A_B", "West", "East", "west side", "Ünïcödé", "Über", "ber",
    "x" * 70, "é", "1", "2", "value", "customer", "segment color", "share", "-", "  spaced  ", "NULL",
    "O'Brien", 'say "hi"', "a,b", "back\\slash", "100%", "emoji 🙂",
)
#: column names: the views' own, names whose generated columns collide, long names, keywords
HOSTILE_NAMES = (
    *sorted(set().union(*view_columns.FIXED.values())), "customer", "income", "income_k", "region", "region_west",
    "region_east", "gender", "avg_income", "median", "a_share", "a", "west_share", "limit", "select", "user",
    "x" * 50, "y" * 56, "z" * 57, "w" * 63, "q" * 52, "segment", "share", "index", "spending_index", "spending",
    "customer_count_share",
)
TYPES = ("number", "whole", "category", "boolean")

#: the issue's own examples, each a declaration that once passed validation and could never publish
ISSUE_EXAMPLES = {
    "japanese values": {"region": {"type": "category", "values": ["東京", "大阪", "名古屋"]}},
    "boolean named customer": {"customer": {"type": "boolean"}},
    "segment_color": {"segment_color": {"type": "number"}},
    "published_date": {"published_date": {"type": "number"}},
    "income and income_k": {"income": {"type": "number"}, "income_k": {"type": "number"}},
    "A-B and a b": {"grade": {"type": "category", "values": ["A-B", "a b"]}},
    "a 70-character value": {"grade": {"type": "category", "values": ["x" * 70, "short"]}},
    "region_west beside West": {"region_west": {"type": "boolean"},
                                "region": {"type": "category", "values": ["West", "East"]}},
}


def declaration(columns: dict[str, dict]) -> dict:
    """A `[dataset]` table of `columns` (name -> spec without `from`): each read from header `h<n>`."""
    return {"id_column": "id", "columns": {
        name: {"from": f"h{position}", **spec} for position, (name, spec) in enumerate(columns.items())
    }}


def hostile_declarations(count: int = 400, seed: int = 22) -> list[dict]:
    """`count` seeded declarations of one to five columns drawn from the hostile names, types and
    values, after the issue's own examples."""
    rng = random.Random(seed)
    found = [declaration(columns) for columns in ISSUE_EXAMPLES.values()]
    while len(found) < count:
        columns = {}
        for _ in range(rng.randint(1, 5)):
            kind = rng.choice(TYPES)
            spec: dict = {"type": kind}
            if kind == "category" and rng.random() < 0.85:
                spec["values"] = rng.sample(HOSTILE_VALUES, rng.randint(1, 5))
            columns[rng.choice(HOSTILE_NAMES)] = spec
        found.append(declaration(columns))
    return found


def sample_value(spec: dict, rng: random.Random) -> str:
    """A valid CSV field for a column of `spec`."""
    kind = spec["type"]
    if kind == "number":
        return f"{rng.uniform(0, 100):.2f}"
    if kind == "whole":
        return str(rng.randint(0, 100))
    if kind == "boolean":
        return rng.choice(("yes", "no"))
    value = rng.choice(spec.get("values") or ("North", "South"))
    return '"' + value.replace('"', '""') + '"'


def csv_for(declared: dict, rows: int = 60, seed: int = 5) -> str:
    """A customer CSV (header of `from` names) that `declared` reads without a reject."""
    rng = random.Random(seed)
    columns = declared["columns"]
    lines = [",".join([declared["id_column"], *(spec["from"] for spec in columns.values())])]
    for customer in range(1, rows + 1):
        lines.append(",".join([str(customer), *(sample_value(spec, rng) for spec in columns.values())]))
    return "\n".join(lines) + "\n"


#: settings out of range: (setting, value as TOML writes it); each must be refused before any work
HOSTILE_SETTINGS = (
    ("max_reject_share", "nan"), ("max_reject_share", "inf"), ("max_reject_share", "-0.1"),
    ("min_segment_share", "nan"), ("min_stability", "nan"), ("min_silhouette", "inf"), ("max_size_psi", "nan"),
    ("max_size_psi", "inf"), ("lock_wait_seconds", "1e10"), ("lock_wait_seconds", "inf"),
    ("lock_wait_seconds", "-1"), ("lock_wait_seconds", "nan"), ("db_retry_delay_seconds", "inf"),
    ("db_retry_delay_seconds", "1e300"), ("missed_run_grace_seconds", "inf"), ("random_state", "-1"),
    ("random_state", str(2**32)), ("random_state", str(2**40)), ("k", "0"), ("k", "1000000"),
    ("k_max", "100000000"), ("k_min", "1"), ("n_init", "0"), ("n_init", "100000000"), ("db_retries", "-1"),
    ("db_retries", "1000000"), ("workers", "0"), ("workers", "1000000"), ("silhouette_rows", "10000000"),
    ("selection_sample_size", "1"), ("fit_sample_size", "1000000000000"), ("keep_customer_rows_runs", "0"),
    ("gap_references", "-1"), ("stability_resamples", "1000000"), ("order_date_tolerance_days", "-1"),
    ("order_date_tolerance_days", "100000"), ("as_of", "2999-12-31"), ("as_of", "1000-01-01"),
    ("encoding", '"utf-16"'), ("encoding", '"no-such-codec"'), ("decimal_separator", '";"'),
    ("source", '"a.b.c"'), ("source", '"crm.cust feat"'), ("source", '"x; drop table y"'),
)
#: `[dataset.columns.x]` ranges that break a run: each refused naming the key
HOSTILE_RANGES = (
    {"min": float("nan")}, {"max": float("nan")}, {"min": float("inf")}, {"max": float("-inf")},
    {"min": 1e300}, {"max": -1e16}, {"min": 5, "max": 1},
)


def order_log(lines: list[str], header: str = "OrderID,CustomerID,OrderDate,Revenue") -> str:
    return "\n".join([header, *lines]) + "\n"


def planted_orders(customers: int = 60, today: datetime.date | None = None, seed: int = 9) -> list[str]:
    """Order lines (order id, customer, date, amount) of `customers` customers over the year
    before `today`, in three planted groups (recent and frequent, lapsed, one-off)."""
    rng = random.Random(seed)
    today = today or datetime.date.today()
    lines, order_id = [], 1000
    for customer in range(1, customers + 1):
        kind = customer % 3
        orders = (8, 2, 1)[kind]
        newest = (5, 200, 60)[kind]
        for _ in range(orders):
            day = today - datetime.timedelta(days=newest + rng.randint(0, 30 if kind else 120))
            order_id += 1
            lines.append(f"{order_id},{customer},{day.isoformat()},{rng.uniform(10, (300, 40, 20)[kind]):.2f}")
    return lines
