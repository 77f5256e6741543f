"""The `segment` command as a user runs it: real processes, a real server, the packaged sample and the mall file."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa

from tests.conftest import TEST_DATA

pytestmark = pytest.mark.e2e


def segment(*args, env=None, timeout=300):
    """Run `python -m jobs.nightly ARGS` (the same entry point as the `segment` script)."""
    return subprocess.run(
        [sys.executable, "-m", "jobs.nightly", *args],
        capture_output=True, text=True, env=env, timeout=timeout,
    )


def environment(**variables):
    """The user's environment without our settings, plus `variables`; data in the test's folder."""
    data_dir = os.environ["SEGMENT_DATA_DIR"]  # set per test by conftest
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("SEGMENT_") and key not in ("DATABASE_URL", "TEST_DATABASE_URL")}
    env["SEGMENT_DATA_DIR"] = data_dir
    env.update(variables)
    return env


def query(url, sql, **params):
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text(sql), params).all()
    finally:
        engine.dispose()


@pytest.mark.quick
def test_console_script_is_installed():
    script = Path(sys.executable).parent / "segment"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "run" in result.stdout and "schedule" in result.stdout


def test_two_nightly_runs_on_the_mall_file_publish_the_reference_segments(database_url, mall_csv):
    env = environment(DATABASE_URL=database_url, COLUMNS="250")  # wide enough that no name is folded
    first = segment("run", "--csv", str(mall_csv), env=env)
    assert first.returncode == 0, first.stderr
    assert "High income, high spending" in first.stdout and "5 segments" in first.stdout
    second = segment("run", "--csv", str(mall_csv), env=env)
    assert second.returncode == 0, second.stderr

    profiles = query(database_url, "select * from segmentation.current_segment_profiles order by customer_count desc")
    assert [row.customer_count for row in profiles] == [81, 39, 35, 23, 22]
    shown = re.findall(r"│ +(\d+) +│ ([^│]+?) +│ +(\d+) +│ +([\d.]+)% +│", second.stdout)
    assert {(int(id_), name, int(count), pct) for id_, name, count, pct in shown} == {
        (row.segment_id, row.segment_name, row.customer_count, str(row.customer_share_pct)) for row in profiles
    }  # the command line prints the view's percentages
    premium = [row for row in profiles if row.customer_count == 39][0]
    assert premium.segment_name == "High income, high spending" and "Premium" in premium.recommendation
    budget = [row for row in profiles if row.segment_name == "Low income, low spending"][0]
    assert budget.customer_count == 23 and "Budget" in budget.recommendation
    runs = query(database_url, "select run_id, status, k, silhouette, n_customers from segmentation.run_history")
    assert [(row.status, row.k, row.n_customers) for row in runs] == [("published", 5, 200)] * 2
    assert all(row.silhouette >= 0.55 for row in runs)
    moved = query(database_url, "select count(*) from segmentation.segment_movers")
    assert moved == [(0,)]
    assert query(database_url, "select count(*) from segmentation.customer_segment_history") == [(200,)]

    listed = segment("runs", env=env)
    assert listed.returncode == 0 and len(re.findall(r"│ published +│", listed.stdout)) == 2


def test_a_file_missing_a_column_fails_with_one_line_naming_file_and_column(database_url):
    path = TEST_DATA / "defects" / "missing_column.csv"
    result = segment("import", str(path), env=environment(DATABASE_URL=database_url))
    assert result.returncode == 3
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and str(path) in last and "spending_score" in last
    assert query(database_url, "select count(*) from segmentation_internal.customers") == [(0,)]


def test_import_reports_rejected_lines_and_where_to_find_them(database_url):
    result = segment("import", str(TEST_DATA / "defects" / "bad_ids.csv"), env=environment(DATABASE_URL=database_url))
    assert result.returncode == 0, result.stderr
    assert "4 rejected" in result.stdout and "import_rejects" in result.stdout


def test_a_password_in_database_url_never_appears_in_output(tmp_path):
    url = "postgresql://root:pa55-Secret@127.0.0.1:1/nowhere"  # nothing listens on port 1
    result = segment("run", env=environment(DATABASE_URL=url, SEGMENT_DB_RETRY_DELAY_SECONDS="0.1"))
    assert result.returncode != 0
    assert "pa55-Secret" not in result.stdout + result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error:")


def test_invalid_settings_fail_before_any_work(database_url):
    result = segment("run", "--features", "shoe_size", env=environment(DATABASE_URL=database_url))
    assert result.returncode == 2
    assert "'shoe_size' is not a declared column" in result.stderr
    assert query(database_url, "select count(*) from segmentation_internal.runs") == [(0,)]


def test_db_downgrade_to_base_and_upgrade_again(database_url):
    env = environment(DATABASE_URL=database_url)
    down = segment("db", "downgrade", "base", env=env)
    assert down.returncode == 0, down.stderr
    assert query(database_url, "select to_regclass('segmentation.current_segment_profiles')") == [(None,)]
    up = segment("db", "upgrade", env=env)
    from alembic.script import ScriptDirectory

    from segmentation.db import alembic_config

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert up.returncode == 0 and f"schema at revision {head}" in up.stdout


def test_schedule_starts_logs_its_next_run_and_stops_cleanly_on_sigterm(database_url):
    process = subprocess.Popen(
        [sys.executable, "-m", "jobs.nightly", "schedule", "--cron", "30 3 * * *", "--timezone", "Europe/Paris"],
        env=environment(DATABASE_URL=database_url), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        lines = []
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            lines.append(line)
            if "scheduler started" in line:
                break
        assert "cron '30 3 * * *' in Europe/Paris" in lines[-1]
        assert "03:30:00+01:00" in lines[-1] or "03:30:00+02:00" in lines[-1]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()


def _servers_using(folder: Path):
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if any(str(folder) in part for part in process.info["cmdline"] or []):
                found.append(process)
        except psutil.Error:
            continue
    return found


def test_without_database_url_an_embedded_server_keeps_data_between_runs_and_stops(tmp_path, customers_csv):
    env = environment(SEGMENT_DATA_DIR=str(tmp_path / "data"))
    for _ in range(2):
        result = segment("run", "--csv", str(customers_csv), env=env)
        assert result.returncode == 0, result.stderr
        assert _servers_using(tmp_path) == []  # no server left running after a one-shot command
    listed = segment("runs", env=env)
    assert listed.returncode == 0, listed.stderr
    assert len(re.findall(r"│ published +│", listed.stdout)) == 2
    assert (tmp_path / "data" / "pgdata" / "PG_VERSION").is_file()


def test_bi_superset_writes_an_import_bundle_of_the_views(database_url, customers_csv, tmp_path):
    import zipfile

    env = environment(DATABASE_URL=database_url)
    assert segment("run", "--csv", str(customers_csv), env=env).returncode == 0
    out = tmp_path / "bundle.zip"
    result = segment("bi", "superset", "--out", str(out), "--user", "bi_reader", env=env)
    assert result.returncode == 0, result.stderr
    assert "8 charts" in result.stdout and "superset import-dashboards" in result.stdout
    with zipfile.ZipFile(out) as bundle:
        names = [name.split("/", 1)[1] for name in bundle.namelist()]
    assert "metadata.yaml" in names and "dashboards/Customer_segments.yaml" in names
    assert sum(name.startswith("charts/") for name in names) == 8
    assert any(name.startswith("datasets/") and name.endswith("/current_segment_profiles.yaml") for name in names)


def test_bi_superset_into_a_missing_folder_is_one_error_line(database_url, tmp_path):
    result = segment("bi", "superset", "--out", str(tmp_path / "missing" / "bundle.zip"),
                     env=environment(DATABASE_URL=database_url))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: cannot write the bundle to {tmp_path / 'missing' / 'bundle.zip'}: No such file or directory")


def test_report_of_a_segmentation_takes_its_latest_published_run_not_the_newest_of_any(database_url, tmp_path):
    env = environment(DATABASE_URL=database_url)
    customers, orders = tmp_path / "customers.csv", tmp_path / "orders.csv"
    assert segment("sample", "--rows", "400", "--out", str(customers), env=env).returncode == 0
    assert segment("sample", "--orders", "--rows", "2000", "--out", str(orders), env=env).returncode == 0
    assert segment("run", "--csv", str(customers), env=env).returncode == 0
    assert segment("run", "--orders", str(orders), "--segmentation", "rfm", env=env).returncode == 0
    runs = dict(query(database_url, "select segmentation, max(run_id) from segmentation.run_history"
                                    " where status = 'published' group by 1"))
    assert set(runs) == {"default", "rfm"} and runs["rfm"] > runs["default"]
    default = segment("report", "--segmentation", "default", "--out", str(tmp_path / "d.html"), env=env)
    assert default.returncode == 0, default.stderr
    assert f"report of run {runs['default']}:" in default.stdout
    newest = segment("report", "--out", str(tmp_path / "n.html"), env=env)
    assert f"report of run {runs['rfm']}:" in newest.stdout
    missing = segment("report", "--segmentation", "nobody", env=env)
    assert missing.returncode != 0 and "no published run yet in segmentation 'nobody'" in missing.stderr + missing.stdout
