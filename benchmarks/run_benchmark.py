"""Whole-run benchmark: `segment run --csv` per stage, against the physical limits and the naive route.

Usage (needs `psql` on PATH and a server where the role may create databases):

    python benchmarks/run_benchmark.py --database-url postgresql://root@127.0.0.1:5432/postgres \\
        --rows 1000000 3000000 10000000 --naive-max-rows 1000000

For each size a mall-style file (`segmentation.sample.write_sample`) is generated in --work-dir
(kept for the next run), and in one fresh database, measured in this one run:
- ours: `segment run --csv FILE` twice in its own process (the first run, then the nightly
  steady state: the same full export again); the time of each stage (import, read, choose k
  and fit, publish, report) from the job's log lines, and the process's peak memory (VmHWM);
- the physical limits of the same work: `psql \\copy` of the file into a keyed table
  (import), `\\copy (select id and 3 columns) to /dev/null` (read), one float32
  `KMeans(k=5, n_init=1)` fit and predict on every row (fit), `\\copy` of (customer_id,
  segment_id) into a keyed table (publish);
- the naive route (pandas `read_sql` + `KMeans(n_init=10)` on every row + `to_sql`), for sizes
  up to --naive-max-rows (it is slow).
It prints one table per size with ratios (ours / limit; targets: whole run within 1.5x the sum
of the limits, at least 10x faster than the naive route, peak memory under 1 GB and flat), each
stage's peak resident memory (sampled every 0.2 s), and a summary table of all sizes (--out)
and its plot (--plot), as the README shows them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

from segmentation.db import sqlalchemy_url  # noqa: E402
from segmentation.sample import write_sample  # noqa: E402

PEAK_MB = "int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) // 1024"

#: the job in a child process that prints its peak memory when it exits, and its resident
#: memory every 0.2 s (epoch seconds, MB) so that each stage's peak can be told apart
JOB_CHILD = f"""
import atexit, sys, threading, time
samples = []
def watch():
    while True:
        rss = int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1]) // 1024
        samples.append((time.time(), rss))
        time.sleep(0.2)
threading.Thread(target=watch, daemon=True).start()
atexit.register(lambda: print('rss-samples', ' '.join(f'{{t:.2f}}:{{m}}' for t, m in samples), file=sys.stderr))
atexit.register(lambda: print('peak-mb', {PEAK_MB}, file=sys.stderr))
from jobs.cli import main
sys.argv = ['segment', *sys.argv[1:]]
main()
"""

FIT_LIMIT_CHILD = f"""
import sys, time
import numpy as np, pandas as pd, sqlalchemy as sa
from sklearn.cluster import KMeans
rows = int(sys.argv[1])
rng = np.random.default_rng(0)
values = rng.normal(size=(rows, 2)).astype(np.float32)
started = time.monotonic()
model = KMeans(n_clusters=5, n_init=1, random_state=0).fit(values)
model.predict(values)
print(time.monotonic() - started, {PEAK_MB})
"""

NAIVE_CHILD = f"""
import sys, time
import pandas as pd, sqlalchemy as sa
from sklearn.cluster import KMeans
from sklearn.preprocessing import StandardScaler
url = sys.argv[1]
engine = sa.create_engine(url)
started = time.monotonic()
frame = pd.read_sql("select customer_id, attributes[3]::numeric as income, attributes[4]::numeric as spending"
                    " from segmentation_internal.customers where is_active", engine)
scaled = StandardScaler().fit_transform(frame[["income", "spending"]])
frame["segment_id"] = KMeans(n_clusters=5, n_init=10, random_state=0).fit_predict(scaled) + 1
frame[["customer_id", "segment_id"]].to_sql("naive_segments", engine, index=False, chunksize=10000)
print(time.monotonic() - started, {PEAK_MB})
"""

#: log line (after the timestamp) that ends each stage of a run, in order
STAGE_ENDS = [
    ("import", re.compile(r"run \d+: import ")),
    ("read", re.compile(r"run \d+: read \d+ active customers")),
    ("choose k + fit", re.compile(r"run \d+: fit ")),
    ("assign + publish", re.compile(r"run \d+: published ")),
    ("report", re.compile(r"run \d+: report written")),
]
TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def libpq(url: str) -> str:
    return sa.make_url(sqlalchemy_url(url)).set(drivername="postgresql").render_as_string(hide_password=False)


def psql(url: str, *commands: str) -> float:
    started = time.monotonic()
    for command in commands:
        subprocess.run(["psql", libpq(url), "-qc", command], check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def stage_seconds(log: str) -> tuple[dict[str, float], dict[str, int]]:
    """Seconds and peak resident MB of each stage, from the timestamps of the lines that start
    and end them and the child's memory samples."""
    times = []
    for line in log.splitlines():
        found = TIMESTAMP.match(line)
        if found:
            times.append((dt.datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f"), line))
    found = re.search(r"rss-samples (.*)", log)
    samples = [tuple(map(float, pair.split(":"))) for pair in found.group(1).split()] if found else []
    started = next(moment for moment, line in times if re.search(r"run \d+ started", line))
    seconds, peaks, previous = {}, {}, started
    for stage, pattern in STAGE_ENDS:
        moment = next((moment for moment, line in times if pattern.search(line)), None)
        if moment is not None:
            seconds[stage] = (moment - previous).total_seconds()
            window = [mb for at, mb in samples if previous.timestamp() - 0.2 <= at <= moment.timestamp()]
            peaks[stage] = int(max(window, default=0))
            previous = moment
    seconds["whole run"] = (previous - started).total_seconds()
    peaks["whole run"] = int(max((mb for _, mb in samples), default=0))
    return seconds, peaks


def fresh_database(admin: sa.Engine, prefix: str) -> str:
    """A new empty database (named PREFIX_ and a random suffix) on `admin`'s server; its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f"create database {name}")
    return admin.url.set(database=name).render_as_string(hide_password=False)


def drop_database(admin: sa.Engine, url: str) -> None:
    with admin.connect() as connection:
        connection.exec_driver_sql(f"drop database if exists {sa.make_url(url).database} with (force)")


def our_run(url: str, path: Path, data_dir: Path) -> tuple[dict[str, float], dict[str, int], int]:
    env = {**os.environ, "DATABASE_URL": url, "SEGMENT_DATA_DIR": str(data_dir)}
    child = subprocess.run(
        [sys.executable, "-c", JOB_CHILD, "run", "--csv", str(path)],
        capture_output=True, text=True, cwd=REPOSITORY, env=env,
    )
    if child.returncode:
        raise SystemExit(f"segment run failed ({child.returncode}): {child.stderr[-3000:]}")
    peak = int(re.search(r"peak-mb (\d+)", child.stderr).group(1))
    return (*stage_seconds(child.stderr), peak)


def limits(url: str, path: Path, rows: int, work_dir: Path) -> dict[str, float]:
    seconds = {}
    seconds["import"] = psql(
        url,
        "create table plain (customer_id bigint primary key, gender text, age smallint,"
        " annual_income_k numeric, spending_score smallint)",
        f"\\copy plain from '{path}' with (format csv, header)",
    )
    seconds["read"] = psql(url, "\\copy (select customer_id, age, annual_income_k, spending_score from plain) to '/dev/null'")
    child = subprocess.run([sys.executable, "-c", FIT_LIMIT_CHILD, str(rows)], capture_output=True, text=True, check=True)
    seconds["choose k + fit"] = float(child.stdout.split()[0])
    assignments = work_dir / f"assignments_{rows}.csv"
    if not assignments.exists():
        with assignments.open("w") as handle:
            for start in range(1, rows + 1, 100_000):
                handle.write("".join(f"{number},{number % 5 + 1}\n" for number in range(start, min(rows, start + 99_999) + 1)))
    seconds["assign + publish"] = psql(
        url,
        "create table plain_segments (customer_id bigint primary key, segment_id int)",
        f"\\copy plain_segments from '{assignments}' with (format csv)",
    )
    seconds["whole run"] = sum(seconds.values())
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", "postgresql://root@127.0.0.1:5432/postgres"))
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 3_000_000, 10_000_000])
    parser.add_argument("--naive-max-rows", type=int, default=1_000_000, help="largest size given to the naive route")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/segment-benchmark"))
    parser.add_argument("--out", type=Path, help="write the summary table (markdown) to this file")
    parser.add_argument("--plot", type=Path, help="write the plot of time and memory per size (PNG) here")
    arguments = parser.parse_args()
    arguments.work_dir.mkdir(parents=True, exist_ok=True)
    admin = sa.create_engine(sqlalchemy_url(arguments.database_url), isolation_level="AUTOCOMMIT")

    def fresh() -> str:
        return fresh_database(admin, "segrun")

    def drop(url: str) -> None:
        drop_database(admin, url)

    curve = []
    for rows in arguments.rows:
        path = arguments.work_dir / f"customers_{rows}.csv"
        if not path.exists():
            print(f"generating {path} ...", flush=True)
            write_sample(path, rows)
        url = fresh()
        try:
            with tempfile.TemporaryDirectory(prefix="segrun-") as data_dir:
                first, _, first_peak = our_run(url, path, Path(data_dir))
                steady, steady_peaks, steady_peak = our_run(url, path, Path(data_dir))
            naive = None
            if rows <= arguments.naive_max_rows:
                child = subprocess.run([sys.executable, "-c", NAIVE_CHILD, sqlalchemy_url(url)],
                                       capture_output=True, text=True, check=True)
                naive = [float(value) for value in child.stdout.split()]
            limit = limits(url, path, rows, arguments.work_dir)
        finally:
            drop(url)
        curve.append((rows, steady, steady_peaks, limit, naive))
        print(f"\n{rows:,} customers: peak memory {first_peak} MB (first run), {steady_peak} MB (steady state)")
        print("| stage | first run s | steady state s | steady peak MB | limit s | steady / limit |")
        print("| --- | --- | --- | --- | --- | --- |")
        for stage in [name for name, _ in STAGE_ENDS] + ["whole run"]:
            limit_text = f"{limit[stage]:.1f}" if stage in limit else "-"
            ratio = f"{steady[stage] / limit[stage]:.1f}x" if stage in limit and stage in steady else "-"
            print(f"| {stage} | {first.get(stage, float('nan')):.1f} | {steady.get(stage, float('nan')):.1f}"
                  f" | {steady_peaks.get(stage, '-')} | {limit_text} | {ratio} |", flush=True)
        if naive:
            print(f"naive route (read_sql + KMeans n_init=10 + to_sql): {naive[0]:.1f} s, {naive[1]:.0f} MB;"
                  f" ours (steady) is {naive[0] / steady['whole run']:.1f}x faster", flush=True)
    table = curve_table(curve)
    print("\n" + table)
    if arguments.out:
        arguments.out.write_text(table + "\n")
    if arguments.plot:
        plot_curve(curve, arguments.plot)


def curve_table(curve: list) -> str:
    """The README's table: per size, each stage's steady-state seconds and peak MB, the limits and the ratios."""
    stages = [name for name, _ in STAGE_ENDS]
    lines = [
        "| customers | " + " | ".join(f"{stage} s (MB)" for stage in stages)
        + " | whole run s | peak MB | sum of limits s | ratio | naive route s (MB) | naive / ours |",
        "| --- " * (len(stages) + 7) + "|",
    ]
    for rows, steady, peaks, limit, naive in curve:
        cells = [f"{steady.get(stage, float('nan')):.1f} ({peaks.get(stage, '-')})" for stage in stages]
        naive_cells = [f"{naive[0]:.1f} ({naive[1]:.0f})", f"{naive[0] / steady['whole run']:.1f}x"] if naive else ["-", "-"]
        lines.append(
            f"| {rows:,} | " + " | ".join(cells)
            + f" | {steady['whole run']:.1f} | {peaks['whole run']} | {limit['whole run']:.1f}"
            f" | {steady['whole run'] / limit['whole run']:.2f}x | " + " | ".join(naive_cells) + " |"
        )
    return "\n".join(lines)


def plot_curve(curve: list, path: Path) -> None:
    """Seconds per stage (stacked) and peak memory against the number of customers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [rows / 1e6 for rows, *_ in curve]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    bottom = [0.0] * len(curve)
    for stage, _ in STAGE_ENDS:
        heights = [steady.get(stage, 0.0) for _, steady, *_ in curve]
        left.bar([str(size) for size in sizes], heights, bottom=bottom, label=stage)
        bottom = [below + height for below, height in zip(bottom, heights)]
    left.plot([str(size) for size in sizes], [limit["whole run"] for *_, limit, _ in curve], "k--o", label="sum of limits")
    left.set(xlabel="million customers", ylabel="seconds (steady-state nightly run)")
    left.legend(fontsize=8)
    right.plot(sizes, [peaks["whole run"] for _, _, peaks, *_ in curve], "o-")
    right.set(xlabel="million customers", ylabel="peak resident memory, MB", ylim=(0, None))
    figure.tight_layout()
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
