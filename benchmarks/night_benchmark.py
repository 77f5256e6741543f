"""The nightly run that follows a first run: a full export in which some customers changed.

Usage (needs `psql` on PATH and a server where the role may create databases):

    python benchmarks/night_benchmark.py --rows 1000000 3000000 10000000 --changed 0.01
    python benchmarks/night_benchmark.py --rows 10000000 --changed 0.001 0.01 0.1

For each size a mall-style file (`segmentation.sample.write_sample`) is generated in --work-dir
with, for each share, a variant in which that share of the lines (spread over the file) has a
new spending score. In one fresh database per size and share, measured in this one run:
- ours: `segment run --csv FILE` (the first run), then `segment run --csv VARIANT` (the night),
  each in its own process; the time of each stage from the job's log lines and the process's
  peak memory, and what the night wrote (customers reassigned, rows of the assignment written);
- the classic limits of the same night's work (`run_benchmark.limits`): `psql \\copy` of the file
  into a keyed table, `\\copy` of 3 columns out, one float32 K-Means fit and predict of every row,
  `\\copy` of (customer_id, segment_id) back into a keyed table;
- the naive route (pandas `read_sql` + `KMeans(n_init=10)` + `to_sql`), for sizes up to
  --naive-max-rows.
Targets (issue 20): the night at most 0.6x the sum of the limits and at least 10x faster than the
naive route; the first run within 2x the limits; peak memory under 1 GB and flat in the size.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import sqlalchemy as sa

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

from benchmarks.run_benchmark import (  # noqa: E402
    NAIVE_CHILD, STAGE_ENDS, drop_database, fresh_database, limits, our_run,
)
from segmentation.db import sqlalchemy_url  # noqa: E402
from segmentation.sample import write_sample  # noqa: E402


def variant(path: Path, share: float) -> Path:
    """`path` with one data line in round(1 / share) given a new spending score (100 - score), written once."""
    every = round(1 / share)
    target = path.with_name(f"{path.stem}_changed_{every}.csv")
    if not target.exists():
        partial = target.with_suffix(".partial")
        with partial.open("w", encoding="utf-8", newline="") as out, path.open(encoding="utf-8", newline="") as source:
            out.write(next(source))
            for number, line in enumerate(source):
                if number % every == every // 2:
                    *head, score = line.rstrip("\n").split(",")
                    line = ",".join([*head, str(101 - int(score))]) + "\n"
                out.write(line)
        partial.rename(target)
    return target


def written(url: str) -> tuple[int, int, str]:
    """What the latest run assigned, moved and how (kept or refit), from run_history."""
    engine = sa.create_engine(sqlalchemy_url(url))
    with engine.connect() as connection:
        row = connection.execute(sa.text(
            "select n_reassigned, n_moved, model from segmentation.run_history order by run_id desc limit 1")).one()
    engine.dispose()
    return int(row[0] or 0), int(row[1] or 0), str(row[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", "postgresql://root@127.0.0.1:5432/postgres"))
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 3_000_000, 10_000_000])
    parser.add_argument("--changed", type=float, nargs="+", default=[0.01], help="shares of customers changed")
    parser.add_argument("--naive-max-rows", type=int, default=10_000_000, help="largest size given to the naive route")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/segment-benchmark"))
    arguments = parser.parse_args()
    arguments.work_dir.mkdir(parents=True, exist_ok=True)
    admin = sa.create_engine(sqlalchemy_url(arguments.database_url), isolation_level="AUTOCOMMIT")

    def fresh() -> str:
        return fresh_database(admin, "segnight")

    def drop(url: str) -> None:
        drop_database(admin, url)

    stages = [name for name, _ in STAGE_ENDS] + ["whole run"]
    summary = ["| customers | changed | first run s | first / limits | night s | night / limits | naive s | naive / night"
               " | assigned | moved | model | peak MB first, night |", "| --- " * 12 + "|"]
    naive_by_rows: dict[int, list[float]] = {}
    print(f"load average at the start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)", flush=True)
    for rows in arguments.rows:
        path = arguments.work_dir / f"customers_{rows}.csv"
        if not path.exists():
            print(f"generating {path} ...", flush=True)
            write_sample(path, rows)
        for share in arguments.changed:
            changed = variant(path, share)
            url = fresh()
            try:
                with tempfile.TemporaryDirectory(prefix="segnight-") as data_dir:
                    first, _, first_peak = our_run(url, path, Path(data_dir))
                    night, night_peaks, night_peak = our_run(url, changed, Path(data_dir))
                assigned, moved, model = written(url)
                naive = naive_by_rows.get(rows)
                if naive is None and rows <= arguments.naive_max_rows:  # once per size: it reads every row anyway
                    child = subprocess.run([sys.executable, "-c", NAIVE_CHILD, sqlalchemy_url(url)],
                                           capture_output=True, text=True, check=True)
                    naive = naive_by_rows[rows] = [float(value) for value in child.stdout.split()]
                limit = limits(url, changed, rows, arguments.work_dir)
            finally:
                drop(url)
            print(f"\n{rows:,} customers, {share:.1%} changed ({model}: {assigned:,} assigned, {moved:,} moved)")
            print("| stage | first run s | night s | night peak MB | limit s | night / limit |")
            print("| --- | --- | --- | --- | --- | --- |")
            for stage in stages:
                limit_text = f"{limit[stage]:.1f}" if stage in limit else "-"
                ratio = f"{night[stage] / limit[stage]:.2f}x" if stage in limit and stage in night else "-"
                print(f"| {stage} | {first.get(stage, float('nan')):.1f} | {night.get(stage, float('nan')):.1f}"
                      f" | {night_peaks.get(stage, '-')} | {limit_text} | {ratio} |", flush=True)
            naive_text = f"{naive[0]:.1f} | {naive[0] / night['whole run']:.1f}x" if naive else "- | -"
            summary.append(
                f"| {rows:,} | {share:.1%} | {first['whole run']:.1f} | {first['whole run'] / limit['whole run']:.2f}x"
                f" | {night['whole run']:.1f} | {night['whole run'] / limit['whole run']:.2f}x | {naive_text}"
                f" | {assigned:,} | {moved:,} | {model} | {first_peak}, {night_peak} |"
            )
            print(f"limits (same run): {limit['whole run']:.1f} s", flush=True)
    print("\n" + "\n".join(summary))
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
