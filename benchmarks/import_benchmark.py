"""Import benchmark: our import against `psql \\copy` (the limit) and pandas `to_sql`.

Usage (needs `psql` on PATH and a server where the role may create databases):

    python benchmarks/import_benchmark.py --database-url postgresql://root@127.0.0.1:5432/postgres \\
        --rows 1000000 10000000

Two files per size, generated in --work-dir (kept for the next run):
- `mall`: the mall's five columns (`segmentation.sample.write_sample`, whole-number ids zero-padded);
- `declared`: ten columns read under the declaration `DECLARED` below (text id, five numbers,
  two whole numbers, a category and a Yes/No boolean), made by `write_declared`.

For each file, each in a fresh database and measured in this one run:
- `psql \\copy` of the file into a plain table with typed columns and a primary key (the
  physical limit): for the mall file both with a bigint key (the table of earlier versions)
  and with a text collate "C" key (the key `customers` has now); for the declared file with
  its text key;
- our import (`segmentation.ingest.import_file`, each in its own process, as a full export)
  of the file (first load), then again (re-import, every row unchanged: the file starts with
  the last import's file, so only its empty tail is read), then the file with 1% new
  customers appended (only they are read), then that file with 1% of its lines changed,
  spread over the file (the whole file is merged again), timed from the batch rows, with the
  import processes' peak memory;
- pandas `read_csv` + `DataFrame.to_sql` on the first --naive-rows rows (it is slow).
It prints rows per second and the ratios; the targets are a ratio to `\\copy` of at least 0.5
and peak memory under 300 MB. --shuffled also measures each file with its lines in random order.
--repeat N times each `\\copy` (each into a fresh database) and the re-import (N re-imports of
the same file) N times and keeps the fastest of each: on a machine shared with other work the
same measurement varies by 20-40% from one minute to the next.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import sqlalchemy as sa

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

from benchmarks.file_variants import appended, changed, first_lines  # noqa: E402
from segmentation import db  # noqa: E402
from segmentation.db import sqlalchemy_url  # noqa: E402
from segmentation.sample import write_sample  # noqa: E402

#: the ten-column file's declaration, as a user writes it under [dataset] in segment.toml
DECLARED = {
    "id_column": "ClientID",
    "id_type": "text",
    "columns": {
        "income": {"from": "Income", "type": "number", "unit": "k$", "min": 0},
        "balance": {"from": "Balance", "type": "number", "unit": "$", "min": 0},
        "credit_limit": {"from": "Credit Limit", "type": "number", "unit": "$", "min": 0},
        "monthly_spend": {"from": "Monthly Spend", "type": "number", "unit": "$", "min": 0},
        "utilisation": {"from": "Utilisation", "type": "number", "min": 0, "max": 1},
        "age": {"from": "Age", "type": "whole", "unit": "years", "min": 18, "max": 120},
        "cards": {"from": "Cards", "type": "whole", "min": 0, "max": 20},
        "region": {"from": "Region", "type": "category", "values": ["North", "South", "East", "West"]},
        "student": {"from": "Student", "type": "boolean"},
    },
}
DECLARED_HEADER = "ClientID,Income,Balance,Credit Limit,Monthly Spend,Utilisation,Age,Cards,Region,Student\n"

LIMIT_TABLES = {
    "mall, bigint key": (
        "create table plain (customer_id bigint primary key, gender text, age smallint,"
        " annual_income_k numeric, spending_score smallint)"
    ),
    "mall, text key": (
        'create table plain (customer_id text collate "C" primary key, gender text, age smallint,'
        " annual_income_k numeric, spending_score smallint)"
    ),
    "declared, text key": (
        'create table plain (customer_id text collate "C" primary key, income numeric, balance numeric,'
        " credit_limit numeric, monthly_spend numeric, utilisation numeric, age smallint, cards smallint,"
        " region text, student boolean)"
    ),
}

#: peak memory of this process alone (ru_maxrss would include the parent's peak before exec)
PEAK_MB = "int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) // 1024"

TO_SQL_CHILD = """
import sys, time
import pandas as pd, sqlalchemy as sa
path, url, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
engine = sa.create_engine(url)
started = time.monotonic()
frame = pd.read_csv(path, nrows=rows, dtype={0: str})
frame.columns = [f"c{i}" for i in range(len(frame.columns))]
frame.to_sql("naive", engine, index=False, chunksize=10000)
print(time.monotonic() - started, PEAK_MB)
""".replace("PEAK_MB", PEAK_MB)

IMPORT_CHILD = """
import json, sys
from pathlib import Path
from segmentation import db
from segmentation.ingest import import_file
from segmentation.settings import load_settings
path, url, dataset = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
settings = load_settings(database_url=url, dataset=dataset, export_mode="full")
engine = db.make_engine(db.sqlalchemy_url(url))
result = import_file(engine, path, settings)
print(result.method, result.rows_read, result.rows_inserted, result.rows_updated, result.rows_unchanged,
      result.rows_rejected)
print(PEAK_MB)
""".replace("PEAK_MB", PEAK_MB)


def write_declared(path: Path, rows: int, seed: int = 11) -> Path:
    """Write `rows` customers of the ten-column declared export (ids C00000001...)."""
    rng = np.random.default_rng(seed)
    regions = np.array(["North", "South", "East", "West"])
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(DECLARED_HEADER)
        for start in range(0, rows, 100_000):
            n = min(100_000, rows - start)
            columns = (
                [f"C{number:08d}" for number in range(start + 1, start + n + 1)],
                np.round(rng.gamma(4, 12, n), 2).tolist(),
                np.round(rng.gamma(2, 400, n), 2).tolist(),
                np.round(rng.normal(5000, 1500, n).clip(500), 0).astype(int).tolist(),
                np.round(rng.gamma(3, 100, n), 2).tolist(),
                np.round(rng.random(n), 3).tolist(),
                rng.integers(18, 90, n).tolist(),
                rng.integers(0, 9, n).tolist(),
                regions[rng.integers(0, 4, n)].tolist(),
                np.where(rng.random(n) < 0.1, "Yes", "No").tolist(),
            )
            handle.write("".join(",".join(map(str, fields)) + "\n" for fields in zip(*columns)))
    return path


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

    def drop(self, url: str) -> None:
        name = sa.make_url(url).database
        with self.admin.connect() as connection:
            connection.exec_driver_sql(f"drop database if exists {name} with (force)")
        self.names.remove(name)

    def drop_all(self) -> None:
        for name in list(self.names):
            self.drop(self.admin.url.set(database=name).render_as_string(hide_password=False))


def psql_copy(url: str, path: Path, table: str) -> float:
    subprocess.run(["psql", libpq(url), "-qc", table], check=True)
    subprocess.run(["psql", libpq(url), "-qc", "checkpoint"], check=True)
    started = time.monotonic()
    subprocess.run(
        ["psql", libpq(url), "-qc", f"\\copy plain from '{path}' with (format csv, header)"], check=True
    )
    return time.monotonic() - started


def variants(path: Path, kind: str, rows: int) -> tuple[Path, Path]:
    """(the file with 1% new customers appended, that file with 1% of its lines changed)."""
    extra = max(1, rows // 100)
    new_id = (lambda number: f"C{number:08d}") if kind == "declared" else str

    def new_customers():  # the file's first lines under ids after the file's
        return [f"{new_id(rows + offset)},{line.split(',', 1)[1]}"
                for offset, line in enumerate(first_lines(path, extra), start=1)]

    def change(line: str) -> str:  # the last value: mall spending score + 1 (within 1..100), declared Yes <-> No
        head, last = line.rstrip("\n").rsplit(",", 1)
        value = {"Yes": "No", "No": "Yes"}[last] if kind == "declared" else str(int(last) % 100 + 1)
        return f"{head},{value}\n"

    grown = appended(path, new_customers)
    return grown, changed(grown, change)


def our_import(url: str, path: Path, dataset: dict | None, repeat: int, kind: str,
               rows: int) -> tuple[float, float, float, float, int]:
    """Seconds of the first load, the fastest of `repeat` re-imports, the import of the file with 1%
    appended and of that file with 1% changed; peak RSS in MB of the import processes."""
    engine = db.make_engine(sqlalchemy_url(url))
    db.upgrade(engine)
    with engine.connect() as connection:
        connection.exec_driver_sql("checkpoint")
    peaks = []
    for imported in [path] * (1 + repeat) + list(variants(path, kind, rows)):
        child = subprocess.run(
            [sys.executable, "-c", IMPORT_CHILD, str(imported), url, json.dumps(dataset)],
            capture_output=True, text=True, cwd=REPOSITORY,
        )
        if child.returncode:
            raise SystemExit(f"import failed: {child.stderr[-3000:]}")
        counts, peak = child.stdout.strip().splitlines()[-2:]
        print(f"    import: {counts}", flush=True)
        peaks.append(int(peak))
    with engine.connect() as connection:
        seconds = connection.execute(
            sa.text(
                "select extract(epoch from finished_at - started_at) from segmentation_internal.import_batches"
                " order by batch_id"
            )
        ).scalars().all()
    engine.dispose()
    return float(seconds[0]), float(min(seconds[1:-2])), float(seconds[-2]), float(seconds[-1]), max(peaks)


def naive_to_sql(url: str, path: Path, rows: int) -> tuple[float, int]:
    child = subprocess.run(
        [sys.executable, "-c", TO_SQL_CHILD, str(path), sqlalchemy_url(url), str(rows)],
        capture_output=True, text=True, check=True,
    )
    seconds, peak = child.stdout.split()
    return float(seconds), int(peak)


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
    parser.add_argument("--files", nargs="+", choices=["mall", "declared"], default=["mall", "declared"])
    parser.add_argument("--naive-rows", type=int, default=200_000, help="rows given to to_sql (it is slow); 0: skip")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/segment-benchmark"))
    parser.add_argument("--shuffled", action="store_true", help="also measure files with lines in random order")
    parser.add_argument("--repeat", type=int, default=1, help="fastest of this many \\copy runs and re-imports")
    arguments = parser.parse_args()
    arguments.work_dir.mkdir(parents=True, exist_ok=True)
    databases = Databases(arguments.database_url)
    results = []
    try:
        for rows in arguments.rows:
            for kind in arguments.files:
                path = arguments.work_dir / f"{'customers' if kind == 'mall' else 'declared'}_{rows}.csv"
                if not path.exists():
                    print(f"generating {path} ...", flush=True)
                    (write_sample if kind == "mall" else write_declared)(path, rows)
                dataset = None if kind == "mall" else DECLARED
                orders = [("id order", path)] + ([("shuffled", shuffled_copy(path))] if arguments.shuffled else [])
                for order, source in orders:
                    limits = {}
                    for label, table in LIMIT_TABLES.items():
                        if label.startswith(kind):
                            timings = []
                            for _ in range(arguments.repeat):
                                url = databases.fresh()
                                timings.append(psql_copy(url, source, table))
                                databases.drop(url)
                            limits[label.split(", ")[1]] = min(timings)
                            print(f"  {rows:,} {kind} {order}: \\copy ({label}) {limits[label.split(', ')[1]]:.1f} s",
                                  flush=True)
                    url = databases.fresh()
                    first, again, grown, change, peak = our_import(url, source, dataset, arguments.repeat, kind, rows)
                    databases.drop(url)
                    print(f"  {rows:,} {kind} {order}: first load {first:.1f} s, re-import {again:.1f} s,"
                          f" 1% appended {grown:.1f} s, 1% changed {change:.1f} s, {peak} MB", flush=True)
                    results.append((rows, kind, order, source.stat().st_size, limits, first, again, grown, change,
                                    peak))
                    if arguments.naive_rows:
                        url = databases.fresh()
                        naive_rows = min(rows, arguments.naive_rows)
                        naive, _ = naive_to_sql(url, source, naive_rows)
                        databases.drop(url)
                        results[-1] += (naive_rows / naive,)
    finally:
        databases.drop_all()

    print()
    print("| rows | file | line order | file MB | \\copy rows/s (key) "
          "| our first load rows/s (ratio to each \\copy) | re-import, all unchanged rows/s (ratios) "
          "| re-import, 1% appended rows/s (ratios) | re-import, 1% changed rows/s (ratios) "
          "| to_sql rows/s | our peak RSS MB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for rows, kind, order, size, limits, first, again, grown, change, peak, *naive in results:
        limit_rates = {key: rows / seconds for key, seconds in limits.items()}
        grown_rows = rows + max(1, rows // 100)  # the appended and the changed file
        rates = [rows / first, rows / again, grown_rows / grown, grown_rows / change]
        print(
            f"| {rows:,} | {kind} | {order} | {size / 2**20:.0f}"
            f" | {', '.join(f'{rate:,.0f} ({key})' for key, rate in limit_rates.items())}"
            + "".join(f" | {ours:,.0f} ({', '.join(f'{ours / rate:.2f}' for rate in limit_rates.values())})"
                      for ours in rates)
            + f" | {f'{naive[0]:,.0f}' if naive else '-'} | {peak} |"
        )


if __name__ == "__main__":
    main()
