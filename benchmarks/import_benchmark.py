"""Import benchmark: our `segment import` against `psql \\copy` (the limit) and pandas `to_sql`.

Usage (needs `psql` on PATH and a server where the role may create databases):

    python benchmarks/import_benchmark.py --database-url postgresql://root@127.0.0.1:5432/postgres \\
        --rows 1000000 10000000

For each size it generates a sample file with the project's generator (kept in --work-dir),
then, each in a fresh database and measured in this one run:
- `psql \\copy` of the file into a plain table with a primary key (the physical limit);
- `segment import` of the file (first load), then again (re-import, every row unchanged),
  timed from the batch row and with the child process's peak memory;
- pandas `read_csv` + `DataFrame.to_sql` on the first --naive-rows rows (it is slow).
It prints rows per second and the ratios; the targets are a ratio to `\\copy` of at least 0.5
and peak memory under 300 MB. The generator writes ids in order, as exports usually are;
--shuffled also measures each size with its lines in random order (both `\\copy` and our
import then insert into the key at random places).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

from segmentation.db import sqlalchemy_url  # noqa: E402
from segmentation.sample import write_sample  # noqa: E402

PLAIN_TABLE = (
    "create table plain (customer_id bigint primary key, gender text, age smallint,"
    " annual_income_k numeric, spending_score smallint)"
)

TO_SQL_CHILD = """
import sys, time, resource
import pandas as pd, sqlalchemy as sa
path, url, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
engine = sa.create_engine(url)
started = time.monotonic()
frame = pd.read_csv(path, nrows=rows, dtype={"CustomerID": "int64"})
frame.columns = ["customer_id", "gender", "age", "annual_income_k", "spending_score"]
frame.to_sql("naive", engine, index=False, chunksize=10000)
print(time.monotonic() - started, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

IMPORT_CHILD = """
import os, resource, subprocess, sys
result = subprocess.run([sys.executable, "-m", "jobs.nightly", "import", sys.argv[1]],
                        capture_output=True, text=True)
if result.returncode:
    sys.exit(result.stderr)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def libpq(url: str) -> str:
    return sa.make_url(sqlalchemy_url(url)).set(drivername="postgresql").render_as_string(hide_password=False)


class Databases:
    def __init__(self, admin_url: str) -> None:
        self.admin = sa.create_engine(sqlalchemy_url(admin_url), isolation_level="AUTOCOMMIT")
        self.names: list[str] = []

    def fresh(self) -> str:
        name = f"segbench_{uuid.uuid4().hex[:10]}"
        with self.admin.connect() as connection:
            connection.exec_driver_sql(f"create database {name}")
        self.names.append(name)
        return self.admin.url.set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        with self.admin.connect() as connection:
            for name in self.names:
                connection.exec_driver_sql(f"drop database if exists {name} with (force)")


def psql_copy(url: str, path: Path) -> float:
    subprocess.run(["psql", libpq(url), "-qc", PLAIN_TABLE], check=True)
    started = time.monotonic()
    subprocess.run(
        ["psql", libpq(url), "-qc", f"\\copy plain from '{path}' with (format csv, header)"], check=True
    )
    return time.monotonic() - started


def our_import(url: str, path: Path) -> tuple[float, float, int]:
    """(first load seconds, re-import seconds, peak RSS in MB of the import process)."""
    env = {**os.environ, "DATABASE_URL": url}
    peaks = []
    for _ in range(2):
        child = subprocess.run(
            [sys.executable, "-c", IMPORT_CHILD, str(path)],
            capture_output=True, text=True, env=env, cwd=REPOSITORY, check=True,
        )
        peaks.append(int(child.stdout.split()[-1]) // 1024)
    engine = sa.create_engine(sqlalchemy_url(url))
    with engine.connect() as connection:
        seconds = connection.execute(
            sa.text(
                "select extract(epoch from finished_at - started_at) from segmentation.import_batches"
                " order by batch_id"
            )
        ).scalars().all()
    engine.dispose()
    return float(seconds[0]), float(seconds[1]), max(peaks)


def naive_to_sql(url: str, path: Path, rows: int) -> tuple[float, int]:
    child = subprocess.run(
        [sys.executable, "-c", TO_SQL_CHILD, str(path), sqlalchemy_url(url), str(rows)],
        capture_output=True, text=True, check=True,
    )
    seconds, peak_kb = child.stdout.split()
    return float(seconds), int(peak_kb) // 1024


def shuffled_copy(path: Path) -> Path:
    """The same file with its data lines in a fixed random order."""
    target = path.with_name(path.stem + "_shuffled.csv")
    if not target.exists():
        print(f"shuffling into {target} ...", flush=True)
        header, *lines = path.read_text().splitlines(keepends=True)
        random.Random(0).shuffle(lines)
        target.write_text(header + "".join(lines))
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", "postgresql://root@127.0.0.1:5432/postgres"))
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--naive-rows", type=int, default=200_000, help="rows given to to_sql (it is slow)")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/segment-benchmark"))
    parser.add_argument("--shuffled", action="store_true", help="also measure files with lines in random order")
    arguments = parser.parse_args()
    arguments.work_dir.mkdir(parents=True, exist_ok=True)
    databases = Databases(arguments.database_url)
    results = []
    try:
        for rows in arguments.rows:
            path = arguments.work_dir / f"customers_{rows}.csv"
            if not path.exists():
                print(f"generating {path} ...", flush=True)
                write_sample(path, rows)
            for order, source in [("id order", path)] + ([("shuffled", shuffled_copy(path))] if arguments.shuffled else []):
                limit = psql_copy(databases.fresh(), source)
                first, again, peak = our_import(databases.fresh(), source)
                naive_rows = min(rows, arguments.naive_rows)
                naive, naive_peak = naive_to_sql(databases.fresh(), source, naive_rows)
                results.append((rows, order, source.stat().st_size, limit, first, again, peak, naive_rows, naive))
                print(f"done {rows} rows, {order}", flush=True)
    finally:
        databases.drop_all()

    print()
    print("| rows | line order | file MB | psql \\copy rows/s | our import rows/s (ratio to \\copy) "
          "| re-import, all unchanged rows/s (ratio) | to_sql rows/s | ours / to_sql | our peak RSS MB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for rows, order, size, limit, first, again, peak, naive_rows, naive in results:
        limit_rate, first_rate, again_rate, naive_rate = rows / limit, rows / first, rows / again, naive_rows / naive
        print(
            f"| {rows:,} | {order} | {size / 2**20:.0f} | {limit_rate:,.0f} | {first_rate:,.0f} ({first_rate / limit_rate:.2f})"
            f" | {again_rate:,.0f} ({again_rate / limit_rate:.2f}) | {naive_rate:,.0f} | {first_rate / naive_rate:.1f}x"
            f" | {peak} |"
        )


if __name__ == "__main__":
    main()
