"""Order benchmark: our order import against `psql \\copy`, and the RFM view against a plain `group by`.

Usage (needs `psql` on PATH and a server where the role may create databases):

    python benchmarks/orders_benchmark.py --database-url postgresql://root@127.0.0.1:5432/postgres \\
        --rows 1000000 10000000

For each size an order log is generated in --work-dir (`segmentation.sample.write_order_sample`,
kept for the next run: OrderID, CustomerID, ISO OrderDate, Revenue; about 5.5 lines per
customer) and measured in this one run, each in a fresh database:
- `psql \\copy` of the file into a plain table with the same typed columns as `orders`
  (text order and customer ids, timestamp, numeric; no key: an order log has none), the limit;
- our import (`segmentation.orders.ingest.import_orders`, each in its own process) into the
  empty table (first load), then the same file again (every line unchanged), then the nightly
  case: the same file with 1% more lines appended (new orders of existing and new customers,
  order ids after the file's; both re-imports find the last import's file at the start and read
  only the rest), then that file with the amount of 1% of its lines changed, spread over the
  file (each restates its order: the whole file is read and merged), timed from the batch rows,
  with the processes' peak memory;
- `segmentation.customer_rfm` materialised (`create temporary table ... as select * from` the
  view: recency, frequency, monetary value, scores) against a plain `group by customer_id`
  of the same orders (last order, count, sum) materialised the same way, both by psql with the
  work_mem a run reads the view with (`segmentation.orders.rfm.RFM_WORK_MEM`).
The target: an import at least 0.5x `\\copy`'s rate (lines of the file per second), first load
and re-imports alike.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

from benchmarks.file_variants import changed  # noqa: E402
from segmentation import db  # noqa: E402
from segmentation.db import sqlalchemy_url  # noqa: E402
from segmentation.orders.rfm import RFM_WORK_MEM  # noqa: E402
from segmentation.sample import write_order_sample  # noqa: E402

LIMIT_TABLE = 'create table plain (order_id text, customer_id text collate "C", ordered_at timestamp, amount numeric)'
RFM_QUERY = "create temporary table measured as select * from segmentation.customer_rfm"
GROUP_BY_QUERY = (
    "create temporary table measured as select customer_id, max(ordered_at) as last_order_at,"
    " count(*) as frequency, sum(amount) as monetary from segmentation_internal.orders group by customer_id"
)
IMPORT_CHILD = """
import json, sys
from pathlib import Path
from segmentation import db
from segmentation.orders.ingest import import_orders
from segmentation.orders import OrdersSpec
def peak_mb():  # of this process alone (ru_maxrss would include the parent's peak before exec)
    return int(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1]) / 1024
engine = db.make_engine(sys.argv[1])
result = import_orders(engine, Path(sys.argv[2]), OrdersSpec(), "whole")
print(json.dumps({"batch_id": result.batch_id, "seconds": result.seconds, "method": result.method,
                  "inserted": result.rows_inserted, "removed": result.rows_removed,
                  "unchanged": result.rows_unchanged, "peak_mb": peak_mb()}))
"""


class Database:
    """A fresh database on the server, dropped at exit."""

    def __init__(self, server_url: str) -> None:
        self.server = sa.create_engine(sqlalchemy_url(server_url), isolation_level="AUTOCOMMIT")
        self.name = f"orderbench_{uuid.uuid4().hex[:8]}"
        url = sa.make_url(sqlalchemy_url(server_url)).set(database=self.name)
        self.url = url.render_as_string(hide_password=False)
        self.psql_url = url.set(drivername="postgresql").render_as_string(hide_password=False)

    def __enter__(self) -> Database:
        with self.server.connect() as connection:
            connection.exec_driver_sql(f"create database {self.name}")
        return self

    def __exit__(self, *_) -> None:
        with self.server.connect() as connection:
            connection.exec_driver_sql(f"drop database if exists {self.name} with (force)")
        self.server.dispose()

    def psql(self, *commands: str) -> float:
        """Seconds psql took to run `commands` (one session, stopping on the first error)."""
        arguments = ["psql", self.psql_url, "-X", "-q", "-v", "ON_ERROR_STOP=1"]
        for command in commands:
            arguments += ["-c", command]
        started = time.perf_counter()
        subprocess.run(arguments, check=True)
        return time.perf_counter() - started


def write_appended(path: Path, rows: int) -> tuple[Path, int]:
    """`path` with 1% more lines appended: a sample of another seed, its order ids renumbered after
    the file's (so they are new orders, not restatements of the file's). Returns (path, lines)."""
    appended = path.with_name(f"{path.stem}_appended.csv")
    extra = max(1, rows // 100)
    if not appended.exists():
        more = path.with_name(f"{path.stem}_more.csv")
        write_order_sample(more, extra, seed=12)
        with appended.open("w", encoding="utf-8") as out, path.open(encoding="utf-8") as base, \
                more.open(encoding="utf-8") as tail:
            while block := base.read(1 << 24):
                out.write(block)
            next(tail)  # its header
            for number, line in enumerate(tail, start=100_001 + rows):
                out.write(f"{number},{line.split(',', 1)[1]}")
        more.unlink()
    return appended, rows + extra


def measure(server_url: str, path: Path, rows: int, rfm: bool = True) -> dict:
    result = {"rows": rows, "file_mb": path.stat().st_size / 2**20}
    appended, appended_rows = write_appended(path, rows)
    result["appended_rows"] = appended_rows
    with Database(server_url) as database:
        database.psql(LIMIT_TABLE)
        result["copy_s"] = database.psql(f"\\copy plain from '{path}' with (format csv, header)")
    with Database(server_url) as database:
        engine = db.make_engine(database.url)
        db.upgrade(engine)
        engine.dispose()
        # the amount of 1% of the lines one cent higher ("78.59" -> "78.591"): each restates its order
        change = changed(appended, lambda line: line.rstrip("\n") + "1\n")
        for label, imported in (("first", path), ("again", path), ("appended", appended), ("changed", change)):
            child = subprocess.run([sys.executable, "-c", IMPORT_CHILD, database.url, str(imported)], check=True,
                                   capture_output=True, text=True, cwd=REPOSITORY)
            result[label] = json.loads(child.stdout.strip().splitlines()[-1])
        if result["appended"]["inserted"] != appended_rows - rows:  # the benchmark measures what it claims
            raise RuntimeError(f"appended file: {result['appended']} but {appended_rows - rows} new lines")
        if result["changed"]["method"] != "merge" or not result["changed"]["removed"]:
            raise RuntimeError(f"changed file: {result['changed']}, expected a merge that restates orders")
        result["rfm_s"] = result["group_by_s"] = float("nan")
        if not rfm:
            return result
        database.psql("vacuum analyze segmentation_internal.orders")
        memory = f"set work_mem = '{RFM_WORK_MEM}'"  # as a run reads the view
        result["rfm_s"] = min(database.psql(memory, RFM_QUERY) for _ in range(2))
        result["group_by_s"] = min(database.psql(memory, GROUP_BY_QUERY) for _ in range(2))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/segment-orders-benchmark"))
    parser.add_argument("--no-rfm", action="store_true", help="skip the customer_rfm measurement")
    arguments = parser.parse_args()
    arguments.work_dir.mkdir(parents=True, exist_ok=True)
    print("| order lines | file MB | psql \\copy lines/s | our first load lines/s (ratio) | re-import, all unchanged"
          " lines/s (ratio) | re-import with 1% appended lines/s (ratio) | re-import with 1% changed lines/s (ratio)"
          " | our peak MB | customer_rfm s | plain group by s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for rows in arguments.rows:
        path = arguments.work_dir / f"orders_{rows}.csv"
        if not path.exists():
            write_order_sample(path, rows, seed=11)
        found = measure(arguments.database_url, path, rows, rfm=not arguments.no_rfm)
        print(json.dumps(found), file=sys.stderr)  # each import's seconds, counts and peak memory
        copy_rate = rows / found["copy_s"]
        first_rate, again_rate = rows / found["first"]["seconds"], rows / found["again"]["seconds"]
        appended_rate = found["appended_rows"] / found["appended"]["seconds"]
        changed_rate = found["appended_rows"] / found["changed"]["seconds"]
        print(f"| {rows:,} | {found['file_mb']:.0f} | {copy_rate:,.0f} | {first_rate:,.0f} ({first_rate / copy_rate:.2f})"
              f" | {again_rate:,.0f} ({again_rate / copy_rate:.2f})"
              f" | {appended_rate:,.0f} ({appended_rate / copy_rate:.2f})"
              f" | {changed_rate:,.0f} ({changed_rate / copy_rate:.2f})"
              f" | {max(found[label]['peak_mb'] for label in ('first', 'again', 'appended', 'changed')):.0f}"
              f" | {found['rfm_s']:.1f} | {found['group_by_s']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
