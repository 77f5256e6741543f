"""The same nightly run on one server and on a Citus cluster: time per stage, how the rows and
the disk split over the workers, and whether both published the same segments.

Usage (a server where the role may create databases, and a running cluster, e.g.
`../shared/citus/cluster.sh start /tmp/cluster 6440 2`):

    python benchmarks/citus_benchmark.py --single postgresql://root@127.0.0.1:5432/postgres \\
        --cluster postgresql://postgres@127.0.0.1:6440/postgres \\
        --customers /tmp/customers10m.csv --orders /tmp/orders20m.csv --out /tmp/citus-benchmark.json

Each input (a customer export, an order log) gets a fresh database on each target (on the cluster:
one on every node, the workers registered) and one `segment run` (first load, fit, publish) in
this process; the stage times come from the run's log lines. On this 2-core machine the
coordinator and both workers share the cores: the cluster numbers show correctness and the
split of the work, not a speed-up.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import resource
import sys
import time
from pathlib import Path

import psycopg
import sqlalchemy as sa

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

from segmentation import db  # noqa: E402
from segmentation.pipeline import run_once  # noqa: E402
from segmentation.settings import Settings  # noqa: E402
from tests import citus_cluster  # noqa: E402


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((time.monotonic(), record.getMessage()))


def stage_times(lines: list[tuple[float, str]], started: float) -> dict[str, float]:
    """Seconds per stage from the run's log: import, read (count and sample), fit, assign and publish."""
    found = {}
    for at, message in lines:
        for stage, pattern in (("read", r"read \d+ active customers.*\(([0-9.]+) s\)"), ("fit", r": fit \(([0-9.]+) s\)"),
                               ("assign_publish", r"(?:published|held) \d+ customers.*\(([0-9.]+) s\)")):
            match = re.search(pattern, message)
            if match:
                found[stage] = float(match.group(1))
        if re.search(r"^run \d+: import ", message):
            found["import"] = round(at - started, 1)
    return found


def fresh(target: str, url: str, name: str) -> str:
    """A fresh database `name` on the single server, or on every node of the cluster; its URL."""
    if target == "single":
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(f"drop database if exists {name} with (force)")
            connection.execute(f"create database {name}")
        return str(sa.make_url(url).set(database=name).render_as_string(hide_password=False))
    nodes = citus_cluster.nodes_of(url)
    for host, port in nodes:
        with psycopg.connect(f"postgresql://postgres@{host}:{port}/postgres", autocommit=True) as connection:
            connection.execute("set client_min_messages = warning")
            connection.execute(f"drop database if exists {name} with (force)")
            connection.execute(f"create database {name}")
        with psycopg.connect(f"postgresql://postgres@{host}:{port}/{name}", autocommit=True) as connection:
            connection.execute("create extension citus")
    (host, port), workers = nodes[0], nodes[1:]
    with psycopg.connect(f"postgresql://postgres@{host}:{port}/{name}", autocommit=True) as connection:
        connection.execute("select citus_set_coordinator_host(%s, %s)", (host, port))
        for worker_host, worker_port in workers:
            connection.execute("select citus_add_node(%s, %s)", (worker_host, worker_port))
    return f"postgresql://postgres@{host}:{port}/{name}"


def split(engine: sa.Engine) -> dict:
    """Rows per node of each distributed table, and each node's database size (MB)."""
    with engine.connect() as connection:
        tables = connection.exec_driver_sql(
            "select cast(logicalrelid as regclass)::text from pg_dist_partition where partmethod = 'h'"
            " and not exists (select 1 from pg_inherits where inhrelid = logicalrelid) order by 1").scalars().all()
        rows = {table: {node: int(count) for node, count in connection.exec_driver_sql(
            "select nodename || ':' || nodeport, sum(result::bigint) from run_command_on_placements("
            f"'{table}', 'select count(*) from %%s') group by 1 order by 1")} for table in tables}
        sizes = {f"{node}": round(int(size) / 2**20) for node, size in connection.exec_driver_sql(
            "select nodename || ':' || nodeport, result from run_command_on_all_nodes("
            "'select pg_database_size(current_database())') join pg_dist_node using (nodeid) order by 1")}
    return {"rows": rows, "database_mb": sizes}


def published(engine: sa.Engine, schema: str) -> dict:
    with engine.connect() as connection:
        run = connection.execute(sa.text(f"select k, n_customers, silhouette from {schema}.run_history"
                                         " where status = 'published' order by run_id desc limit 1")).one()
        sizes = connection.execute(sa.text(f"select segment_id, customer_count from {schema}.current_segment_profiles"
                                           " order by 1")).all()
    return {"k": run.k, "n_customers": run.n_customers, "silhouette": run.silhouette,
            "sizes": {int(segment): int(count) for segment, count in sizes}}


def measure(target: str, url: str, kind: str, path: Path) -> dict:
    name = f"bench_{kind}_{target}_{int(time.time())}"
    database = fresh(target, url, name)
    engine = db.make_engine(db.sqlalchemy_url(database))
    handler = Lines()
    logging.getLogger("segmentation").addHandler(handler)
    logging.getLogger("segmentation").setLevel(logging.INFO)
    started = time.monotonic()
    if kind == "orders":
        run_once(engine, Settings(write_report=False, segmentation="shop"), orders_path=path)
        schema = "segments_shop"
    else:
        run_once(engine, Settings(write_report=False), csv_path=path)
        schema = "segmentation"
    seconds = time.monotonic() - started
    logging.getLogger("segmentation").removeHandler(handler)
    result = {"target": target, "input": kind, "file": str(path), "seconds": round(seconds, 1),
              "stages": stage_times(handler.lines, started), "published": published(engine, schema),
              "client_peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    if target == "cluster":
        result["split"] = split(engine)
    else:
        with engine.connect() as connection:
            result["database_mb"] = round(connection.exec_driver_sql(
                "select pg_database_size(current_database())").scalar() / 2**20)
    engine.dispose()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--single", required=True)
    parser.add_argument("--cluster", required=True)
    parser.add_argument("--customers", type=Path)
    parser.add_argument("--orders", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--targets", nargs="+", default=["single", "cluster"], choices=["single", "cluster"])
    arguments = parser.parse_args()
    results = []
    for kind, path in (("customers", arguments.customers), ("orders", arguments.orders)):
        if path is None:
            continue
        for target, url in (("single", arguments.single), ("cluster", arguments.cluster)):
            if target not in arguments.targets:
                continue
            results.append(measure(target, url, kind, path))
            print(json.dumps(results[-1]), flush=True)
            arguments.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
