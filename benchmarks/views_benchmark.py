"""What the BI views cost: each read in full against the least work that gives the same rows.

Usage (needs `psql` on PATH and a server where the role may create databases):

    python benchmarks/views_benchmark.py --database-url postgresql://root@127.0.0.1:5432/postgres --rows 1000000

In one fresh database, two runs (k = 5) segment two generated files of the same customer ids
with other attributes (seeds 7 and 8), so customers move between segments. Then `psql \\copy
(select * from <view>) to /dev/null` is timed for each view, and for the per-customer views
against the bare query they cannot beat (the limit), in the same run:
- current_customer_segments: the latest run's partition copied as it is;
- segment_transitions(_history): a full join of the two runs' partitions, grouped by segment pair.
It prints seconds and the ratio of the view's time to the limit's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

from segmentation import db  # noqa: E402
from segmentation.pipeline import run_once  # noqa: E402
from segmentation.sample import write_sample  # noqa: E402
from segmentation.settings import load_settings  # noqa: E402

PAIR_LIMIT = (
    "select previous.segment_id, current.segment_id, count(*)"
    " from segmentation_internal.customer_segments_r{first} as previous"
    " full join segmentation_internal.customer_segments_r{second} as current using (customer_id) group by 1, 2"
)


def copy_seconds(url: str, query: str) -> float:
    """Seconds psql takes to COPY the rows of `query` to /dev/null."""
    dsn = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    started = time.monotonic()
    subprocess.run(["psql", dsn, "-qc", f"\\copy ({query}) to /dev/null"], check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", "postgresql://root@127.0.0.1:5432/postgres"))
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/segment-benchmark"))
    arguments = parser.parse_args()
    arguments.work_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for seed in (7, 8):
        path = arguments.work_dir / f"customers_{arguments.rows}_seed{seed}.csv"
        if not path.exists():
            write_sample(path, arguments.rows, seed=seed)
        files.append(path)

    admin = sa.create_engine(db.sqlalchemy_url(arguments.database_url), isolation_level="AUTOCOMMIT")
    name = f"segbench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f"create database {name}")
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    engine = db.make_engine(url)
    try:
        settings = load_settings(database_url=url, k=5, write_report=False)
        first, second = (run_once(engine, settings, path).run_id for path in files)
        with engine.connect() as connection:
            connection.exec_driver_sql("analyze")
        pair = PAIR_LIMIT.format(first=first, second=second)
        measured = [
            ("current_customer_segments", f"select * from segmentation_internal.customer_segments_r{second}"),
            ("segment_transitions", pair),
            ("segment_transitions_history", pair),
            (f"segment_transitions_history where to_run_id = {second}", pair),
            ("current_segment_profiles", None),
            ("segment_profile_history", None),
            ("current_segment_features", None),
            ("run_history", None),
        ]
        print(f"| view ({arguments.rows:,} customers, 2 runs) | view s | limit s | view / limit |")
        print("| --- | --- | --- | --- |")
        for view, limit_query in measured:
            seconds = copy_seconds(url, f"select * from segmentation.{view}")
            if limit_query is None:
                print(f"| {view} | {seconds:.2f} | - | - |")
                continue
            limit = copy_seconds(url, limit_query)
            print(f"| {view} | {seconds:.2f} | {limit:.2f} | {seconds / limit:.2f} |")
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.exec_driver_sql(f"drop database if exists {name} with (force)")
        admin.dispose()


if __name__ == "__main__":
    main()
