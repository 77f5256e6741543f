"""Per-stage benchmark after the import: read features back, fit, write assignments.

Usage (needs `psql` on PATH and a server where the role may create databases):

    python benchmarks/stages_benchmark.py --database-url postgresql://root@127.0.0.1:5432/postgres --rows 1000000

In one fresh database loaded with a generated file, each stage is measured against the same
work done by `psql \\copy` (the physical limit) and by the naive pandas route:
- read: `\\copy (select ... from customers) to /dev/null`, our COPY reader
  (`features.read_active_customers`), pandas `read_sql`;
- fit: K-Means k = 5 on the scaled features, float32, one initialisation (our fit runs
  `n_init` of these), and the chunked nearest-centre assignment;
- write: `\\copy` of the per-customer rows from a CSV into a plain table, our publish path
  (the assignment in SQL over the centroids into a new partition, primary key, attach; it
  assigns as well as writes), pandas `to_sql` (on --naive-rows rows).
It prints seconds, rows/s and the ratio of ours to each reference.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import types
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

from segmentation import clustering, db, features, publish, staging  # noqa: E402
from segmentation.dataset import MALL  # noqa: E402
from segmentation.ingest import ensure_dataset, import_file  # noqa: E402
from segmentation.sample import write_sample  # noqa: E402
from segmentation.settings import load_settings  # noqa: E402

READ_QUERY = (
    "select customer_id, attributes[1], attributes[2], attributes[3], attributes[4]"
    " from segmentation_internal.customers where is_active order by customer_id"
)


def timed(function, *args, **kwargs):
    started = time.monotonic()
    result = function(*args, **kwargs)
    return time.monotonic() - started, result


def psql(url: str, command: str) -> float:
    dsn = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    started = time.monotonic()
    subprocess.run(["psql", dsn, "-qc", command], check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", "postgresql://root@127.0.0.1:5432/postgres"))
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--naive-rows", type=int, default=200_000, help="rows given to to_sql (it is slow)")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/segment-benchmark"))
    arguments = parser.parse_args()
    arguments.work_dir.mkdir(parents=True, exist_ok=True)
    source = arguments.work_dir / f"customers_{arguments.rows}.csv"
    if not source.exists():
        write_sample(source, arguments.rows)

    admin = sa.create_engine(db.sqlalchemy_url(arguments.database_url), isolation_level="AUTOCOMMIT")
    name = f"segbench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f"create database {name}")
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    engine = db.make_engine(url)
    rows = []
    try:
        db.upgrade(engine)
        import_file(engine, source, load_settings(database_url=url))
        n = arguments.rows

        # read
        limit = psql(url, f"\\copy ({READ_QUERY}) to '/dev/null' with (format csv)")
        with engine.begin() as connection:
            dataset_id = ensure_dataset(connection, MALL)
            ours, customers = timed(features.read_active_customers, connection, MALL, dataset_id)
        naive_engine = sa.create_engine(db.sqlalchemy_url(url))
        naive, _ = timed(pd.read_sql_query, sa.text(READ_QUERY), naive_engine)
        rows.append(("read features", n, limit, ours, naive, n))

        # fit
        encoder = features.fit_encoder(customers, MALL, ["annual_income_k", "spending_score"], "standard")
        scaled = encoder.transform(customers, MALL).matrix
        fit_seconds, model = timed(clustering.fit_kmeans, scaled.astype(np.float32), 5, random_state=42, n_init=1)
        assign_seconds, assignment = timed(clustering.assign, model, scaled, np.arange(1, 6))
        rows.append(("fit k = 5 (one init, float32)", n, None, fit_seconds, None, None))
        rows.append(("assign to nearest centre", n, None, assign_seconds, None, None))

        # write
        assignments = pd.DataFrame({
            "customer_id": customers["customer_id"], "segment_id": assignment.segment_ids,
            "distance_to_centroid": assignment.distances,
            "second_segment_id": assignment.second_ids, "margin_to_second": assignment.margins,
            "is_outlier": assignment.is_outlier,
            "attributes": staging.array_literals(customers[MALL.names]),
        })
        csv_path = arguments.work_dir / f"assignments_{n}.csv"
        assignments.to_csv(csv_path, header=False, index=False)
        psql(url, "create table plain_assignments (customer_id text collate \"C\" primary key, segment_id int,"
                  " distance_to_centroid float8, second_segment_id int, margin_to_second float8, is_outlier boolean,"
                  " attributes text[])")
        limit = psql(url, f"\\copy plain_assignments from '{csv_path}' with (format csv)")
        with engine.begin() as connection:
            run_id = connection.execute(sa.text("insert into segmentation_internal.runs default values returning run_id")).scalar()
        fitted = types.SimpleNamespace(model=model, encoder=encoder, ids_by_label=np.arange(1, 6), fences=np.full(5, np.inf))

        def write_partition(connection) -> None:  # as the run does: assign in SQL into a new table, key, attach
            assignment.assign(connection, fitted, MALL, features.imported_customers(dataset_id), run_id)
            publish._attach_partition(connection, run_id)

        with engine.begin() as connection:
            ours, _ = timed(write_partition, connection)
        naive_rows = min(n, arguments.naive_rows)
        naive, _ = timed(assignments.head(naive_rows).to_sql, "naive_assignments", naive_engine, index=False,
                         chunksize=10_000)
        rows.append(("assign (SQL) + write assignments", n, limit, ours, naive, naive_rows))
        naive_engine.dispose()
        csv_path.unlink()
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.exec_driver_sql(f"drop database if exists {name} with (force)")

    print()
    print("| stage | rows | psql \\copy s | ours s | ours rows/s | ratio to \\copy | pandas s (rows) | ours / pandas |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for stage, count, limit, ours, naive, naive_rows in rows:
        ratio = f"{limit / ours:.2f}" if limit else "–"
        pandas_text = f"{naive:.1f} ({naive_rows:,})" if naive else "–"
        speedup = f"{(count / ours) / (naive_rows / naive):.1f}x" if naive else "–"
        limit_text = f"{limit:.1f}" if limit else "–"
        print(f"| {stage} | {count:,} | {limit_text} | {ours:.1f} | {count / ours:,.0f} | {ratio} | {pandas_text} | {speedup} |")


if __name__ == "__main__":
    main()
