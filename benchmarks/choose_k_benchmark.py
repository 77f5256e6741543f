"""Choosing k, now against an earlier revision: seconds and criteria, side by side in one run.

Usage (needs `git` and a server where the role may create databases):

    python benchmarks/choose_k_benchmark.py --baseline 725e1f9 --csv ../shared/data/Mall_Customers.csv \\
        --csv /tmp/customers_1000000.csv --repeat 3

For each file and each revision (the baseline, checked out into a temporary git worktree, and
this checkout), `segment run --csv FILE` runs --repeat times, each into a fresh database. The
job logs how long evaluating the candidates k took ("evaluated k ... in X s") and the fit stage
around it ("fit (X s)"); the benchmark prints their medians, the ratio baseline / now, the k
chosen and, per candidate, the largest difference of each criterion between the two revisions
(`k_evaluations` of the last run of each).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

from segmentation.db import sqlalchemy_url  # noqa: E402

#: the job of the checkout on sys.argv[1], with the remaining arguments
JOB_CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
from jobs.cli import main
sys.argv = ['segment', *sys.argv[2:]]
main()
"""
EVALUATED = re.compile(r"evaluated k in \[[\d, ]+\] on (\d+) rows in ([\d.]+) s")
FIT = re.compile(r"run \d+: fit \(([\d.]+) s\): k = (\d+)")
CRITERIA = ["inertia", "silhouette", "davies_bouldin", "calinski_harabasz", "gap", "stability_ari"]


def run(checkout: Path, csv: Path, url: str) -> tuple[float, float, int, int, pd.DataFrame]:
    """One `segment run --csv` of `checkout`: evaluation seconds, fit seconds, rows evaluated, k, criteria."""
    with tempfile.TemporaryDirectory(prefix="choose-k-") as data_dir:
        env = {**os.environ, "DATABASE_URL": url, "SEGMENT_DATA_DIR": data_dir, "SEGMENT_WRITE_REPORT": "false"}
        child = subprocess.run(
            [sys.executable, "-c", JOB_CHILD, str(checkout), "run", "--csv", str(csv)],
            capture_output=True, text=True, cwd=data_dir, env=env,
        )
    if child.returncode:
        raise SystemExit(f"{checkout}: segment run failed ({child.returncode}): {child.stderr[-2000:]}")
    evaluated, fit = EVALUATED.search(child.stderr), FIT.search(child.stderr)
    engine = sa.create_engine(sqlalchemy_url(url))
    with engine.connect() as connection:
        schema = connection.execute(
            sa.text("select table_schema from information_schema.tables where table_name = 'k_evaluations'")
        ).scalar_one()
        table = pd.read_sql(f"select k, {', '.join(CRITERIA)} from {schema}.k_evaluations order by k", connection)
    engine.dispose()
    return float(evaluated.group(2)), float(fit.group(1)), int(evaluated.group(1)), int(fit.group(2)), table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", "postgresql://root@127.0.0.1:5432/postgres"))
    parser.add_argument("--baseline", required=True, help="git revision to compare with")
    parser.add_argument("--csv", type=Path, action="append", required=True, help="customer file (repeatable)")
    parser.add_argument("--repeat", type=int, default=3)
    arguments = parser.parse_args()
    admin = sa.create_engine(sqlalchemy_url(arguments.database_url), isolation_level="AUTOCOMMIT")

    def measured(checkout: Path, csv: Path) -> tuple[list, list, int, int, pd.DataFrame]:
        evaluations, fits = [], []
        for _ in range(arguments.repeat):
            name = f"choosek_{uuid.uuid4().hex[:10]}"
            with admin.connect() as connection:
                connection.exec_driver_sql(f"create database {name}")
            try:
                evaluation, fit, rows, k, table = run(checkout, csv, admin.url.set(database=name).render_as_string(False))
            finally:
                with admin.connect() as connection:
                    connection.exec_driver_sql(f"drop database if exists {name} with (force)")
            evaluations.append(evaluation)
            fits.append(fit)
        return evaluations, fits, rows, k, table

    with tempfile.TemporaryDirectory(prefix="choose-k-baseline-") as folder:
        baseline = Path(folder) / "checkout"
        subprocess.run(["git", "-C", str(REPOSITORY), "worktree", "add", "--detach", "--quiet", str(baseline),
                        arguments.baseline], check=True)
        try:
            for csv in arguments.csv:
                before = measured(baseline, csv)
                now = measured(REPOSITORY, csv)
                print(f"\n{csv.name}: {arguments.repeat} runs each, medians")
                print("| revision | rows evaluated | evaluate candidates s | fit stage s | k |")
                print("| --- | --- | --- | --- | --- |")
                for label, (evaluations, fits, rows, k, _) in ((arguments.baseline, before), ("now", now)):
                    print(f"| {label} | {rows:,} | {statistics.median(evaluations):.1f} | {statistics.median(fits):.1f} | {k} |")
                print(f"baseline / now: evaluating {statistics.median(before[0]) / statistics.median(now[0]):.1f}x,"
                      f" fit stage {statistics.median(before[1]) / statistics.median(now[1]):.1f}x")
                both = before[4].set_index("k")[CRITERIA].join(now[4].set_index("k")[CRITERIA].add_suffix(" now"))
                print("criteria per candidate k, the baseline's then now's:")
                print(both[[column for name in CRITERIA for column in (name, f"{name} now")]].round(3).to_string(), flush=True)
        finally:
            subprocess.run(["git", "-C", str(REPOSITORY), "worktree", "remove", "--force", str(baseline)], check=False)


if __name__ == "__main__":
    main()
