"""Would a stored 8-byte key per order line speed up a re-import? A probe in plain SQL (issue 11).

Usage (needs `psql` on PATH; wrap it in `flock /tmp/segment-bench.lock` on a shared machine):

    python benchmarks/orders_key_probe.py --database-url postgresql://root@127.0.0.1:5432/postgres \\
        --file /tmp/orders-speed/orders_1000000.csv --repeat 2

In one fresh database, the file (an order log of `orders_benchmark.py`: OrderID, CustomerID,
date, Revenue) is copied by psql into a plain table with the typed columns of `orders` and into
one that also stores the key as a generated column (the first load's cost of the key). Then,
like a re-import of the same file, each variant copies the file into a temporary stage,
analyzes it and pairs it with the stored lines by one hash full join:
- today: plain stage, the four content columns;
- keyed stage (the key generated during its COPY), a join on the keys;
- plain stage, its key computed in the join, against the stored keys.
It prints the seconds of each step (psql's timing of each statement, one session per variant).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from orders_benchmark import Database  # noqa: E402

COLUMNS = 'order_id text, customer_id text collate "C", ordered_at timestamp, amount numeric'
#: customer, order id, time and amount as canonical text (1.50 is 1.5), hashed to 8 bytes
KEY = ("hashtextextended(customer_id || ',' || coalesce(order_id, '') || ',' || extract(epoch from ordered_at)"
       " || ',' || trim_scale(amount), 0)")
FOUR_COLUMNS = ("stored.customer_id = stage.customer_id and coalesce(stored.order_id, '') = coalesce(stage.order_id, '')"
                " and stored.ordered_at = stage.ordered_at and stored.amount = stage.amount")
VARIANTS = {
    "today: plain stage, four-column join": (
        f"create temporary table stage ({COLUMNS})",
        "select count(*) filter (where stage.customer_id is null), count(*) filter (where stored.customer_id is null)"
        f" from stage full join plain as stored on {FOUR_COLUMNS}"),
    "keyed stage, join on the keys": (
        f"create temporary table stage ({COLUMNS}, line_key bigint generated always as ({KEY}) stored)",
        "select count(*) filter (where stage.line_key is null), count(*) filter (where stored.line_key is null)"
        " from stage full join keyed as stored on stored.line_key = stage.line_key"),
    "plain stage, its key computed in the join": (
        f"create temporary table stage ({COLUMNS})",
        "select count(*) filter (where stage.line_key is null), count(*) filter (where stored.line_key is null)"
        f" from (select {KEY} as line_key from stage) as stage full join keyed as stored"
        " on stored.line_key = stage.line_key"),
}


def timed(database: Database, *commands: str) -> list[float]:
    """Seconds of each command, as psql's \\timing reports them (one session)."""
    arguments = ["psql", database.psql_url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", "\\timing on"]
    for command in commands:
        arguments += ["-c", command]
    output = subprocess.run(arguments, check=True, capture_output=True, text=True).stdout
    return [float(ms) / 1000 for ms in re.findall(r"^Time: ([0-9.]+) ms", output, flags=re.M)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--file", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=2)
    arguments = parser.parse_args()
    copy = f"from '{arguments.file}' with (format csv, header)"
    with Database(arguments.database_url) as database:
        database.psql(f"create table plain ({COLUMNS})",
                      f"create table keyed ({COLUMNS}, line_key bigint generated always as ({KEY}) stored)")
        plain_s, keyed_s = timed(database, f"\\copy plain {copy}", f"\\copy keyed {copy}")
        database.psql("vacuum analyze plain", "vacuum analyze keyed")
        print(f"first load: \\copy {plain_s:.2f} s, with the key generated {keyed_s:.2f} s")
        print("| re-import in SQL | stage s | analyze s | join s | total s |")
        print("| --- | --- | --- | --- | --- |")
        for _ in range(arguments.repeat):
            for label, (stage, join) in VARIANTS.items():
                seconds = timed(database, stage, "set work_mem = '1GB'", f"\\copy stage {copy}", "analyze stage", join)
                stage_s, analyze_s, join_s = seconds[-3:]
                print(f"| {label} | {stage_s:.2f} | {analyze_s:.2f} | {join_s:.2f} | {stage_s + analyze_s + join_s:.2f} |",
                      flush=True)


if __name__ == "__main__":
    main()
