"""Safe to run every night: real processes killed, overlapped and cut off against a real server."""

import signal
import subprocess
import sys
import threading
import time

import pytest
import sqlalchemy as sa

from tests.e2e.test_cli import environment, query, segment

pytestmark = pytest.mark.e2e


class Job:
    """`segment ARGS` in the background, its stderr collected line by line."""

    def __init__(self, *args, env):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jobs.nightly", *args], env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.process.stderr:
            self.lines.append(line)

    def wait_for_line(self, text, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"never logged {text!r}; got:\n{''.join(self.lines)}")

    def finish(self, timeout=120):
        code = self.process.wait(timeout=timeout)
        self.reader.join(timeout=5)
        return code

    def output(self):
        return self.process.stdout.read() + "".join(self.lines)


def wait_until_blocked(url, timeout=60):
    """Wait until a `segment` backend of this test's database is waiting for a lock; return its pid.

    Only this database's: tests running beside this one (another pytest process on the same
    server) have `segment` backends too, and must neither be taken for ours nor terminated.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = query(url, "select pid from pg_stat_activity where application_name = 'segment'"
                          " and datname = current_database()"
                          " and wait_event_type = 'Lock'")
        if rows:
            return rows[0][0]
        time.sleep(0.05)
    raise AssertionError("the run never blocked on the lock")


def current_state(url):
    return (
        query(url, "select * from segmentation.current_segment_profiles order by segment_id"),
        query(url, "select customer_id, segment_id, run_id from segmentation.current_customer_segments order by 1"),
    )


@pytest.fixture
def published(database_url, customers_csv):
    """A database with one published run of the packaged sample; returns its environment."""
    env = environment(DATABASE_URL=database_url, SEGMENT_DB_RETRY_DELAY_SECONDS="0.2")
    first = segment("run", "--csv", str(customers_csv), env=env)
    assert first.returncode == 0, first.stderr
    return env


def test_two_runs_started_together_publish_exactly_once(database_url, customers_csv):
    env = environment(DATABASE_URL=database_url)
    jobs = [Job("run", "--csv", str(customers_csv), env=env) for _ in range(2)]
    codes = sorted(job.finish() for job in jobs)
    assert codes == [0, 4], [job.output() for job in jobs]
    refused = [job for job in jobs if job.process.returncode == 4][0]
    assert "another segmentation run is in progress" in refused.lines[-1]
    assert query(database_url, "select count(*) from segmentation_internal.runs where status = 'published'") == [(1,)]


def test_a_second_run_can_wait_for_the_first_instead(database_url, customers_csv):
    env = environment(DATABASE_URL=database_url, SEGMENT_LOCK_WAIT_SECONDS="120")
    jobs = [Job("run", "--csv", str(customers_csv), env=env) for _ in range(2)]
    assert [job.finish() for job in jobs] == [0, 0]
    assert query(database_url, "select count(*) from segmentation_internal.runs where status = 'published'") == [(2,)]


@pytest.mark.parametrize(
    ("stage", "locked_table"),
    [
        ("import", "segmentation_internal.customers"),
        ("publish", "segmentation_internal.k_evaluations"),
        ("changes", "segmentation_internal.segment_stretches"),  # a night that keeps the model writes changes
        ("generation", "segmentation_internal.current_segments"),  # a refit writes every customer anew
        ("transitions", "segmentation_internal.segment_transitions"),
    ],
)
def test_a_run_killed_while_writing_leaves_the_views_as_they_were(
    database_url, customers_csv, published, stage, locked_table, tmp_path,
):
    before = current_state(database_url)
    lines = customers_csv.read_text().splitlines()
    changed = tmp_path / "changed.csv"  # a few customers changed: the night has something to write
    changed.write_text("\n".join([lines[0], *lines[1:], "90001,Female,30,90,90"]) + "\n")
    env = {**published, "SEGMENT_MODEL_TOLERANCE": "0"} if stage == "generation" else published
    blocker = sa.create_engine(database_url)
    with blocker.connect() as connection:
        connection.execute(sa.text("begin"))
        connection.execute(sa.text(f"lock table {locked_table} in access exclusive mode"))
        job = Job("run", "--csv", str(changed if stage != "import" else customers_csv), env=env)
        wait_until_blocked(database_url)  # the run is inside its import / publish transaction
        job.process.send_signal(signal.SIGKILL)
        job.finish()
        connection.execute(sa.text("rollback"))
    blocker.dispose()
    assert current_state(database_url) == before
    again = segment("run", env=published)
    assert again.returncode == 0, again.stderr
    statuses = query(database_url, "select status from segmentation_internal.runs order by run_id")
    assert [row[0] for row in statuses] == ["published", "abandoned", "published"]
    if stage == "import":
        batches = query(database_url, "select status from segmentation_internal.import_batches order by batch_id")
        assert [row[0] for row in batches] == ["succeeded", "abandoned"]


def test_a_run_killed_while_fitting_leaves_the_views_as_they_were(database_url, customers_csv, published):
    before = current_state(database_url)
    job = Job("run", env=published)
    job.wait_for_line("active customers")  # the fit (several seconds) starts right after this line
    job.process.send_signal(signal.SIGKILL)
    job.finish()
    assert current_state(database_url) == before
    assert segment("run", env=published).returncode == 0
    statuses = [row[0] for row in query(database_url, "select status from segmentation_internal.runs order by run_id")]
    assert statuses == ["published", "abandoned", "published"]


def test_sigterm_stops_a_run_cleanly_and_marks_it_cancelled(database_url, published):
    before = current_state(database_url)
    job = Job("run", env=published)
    job.wait_for_line("active customers")
    job.process.send_signal(signal.SIGTERM)
    assert job.finish() == 143
    assert "stopped by SIGTERM" in job.lines[-1]
    assert current_state(database_url) == before
    statuses = [row[0] for row in query(database_url, "select status from segmentation_internal.runs order by run_id")]
    assert statuses == ["published", "cancelled"]


def run_and_cut_its_connections(database_url, customers_csv, env):
    """Start a run, wait until it is inside its import, terminate every one of its backends."""
    blocker = sa.create_engine(database_url)
    with blocker.connect() as connection:
        connection.execute(sa.text("begin"))
        connection.execute(sa.text("lock table segmentation_internal.customers in access exclusive mode"))
        job = Job("run", "--csv", str(customers_csv), env=env)
        wait_until_blocked(database_url)
        connection.execute(sa.text(
            "select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'segment'"
            " and datname = current_database()"))
        connection.execute(sa.text("rollback"))
    blocker.dispose()
    return job


def test_a_run_whose_connection_is_cut_retries_and_succeeds(database_url, customers_csv, published):
    job = run_and_cut_its_connections(database_url, customers_csv, published)
    assert job.finish() == 0, job.output()
    assert any("lost the database connection" in line and "retry 1 of 3" in line for line in job.lines), job.output()
    statuses = [row[0] for row in query(database_url, "select status from segmentation_internal.runs order by run_id")]
    assert statuses[0] == "published" and statuses[-1] == "published"
    assert statuses[1] in ("failed", "abandoned") and len(statuses) == 3


def test_a_run_whose_connection_stays_cut_fails_with_one_clear_line(database_url, customers_csv, published):
    before = current_state(database_url)
    job = run_and_cut_its_connections(database_url, customers_csv, {**published, "SEGMENT_DB_RETRIES": "0"})
    assert job.finish() == 7
    assert job.lines[-1].startswith("error: lost the database connection 1 time(s), giving up")
    assert current_state(database_url) == before


def test_a_password_in_the_url_never_appears_in_any_output(database_url, customers_csv):
    url = sa.make_url(database_url)
    secret = url.password or "pa55-Secret-42"
    env = environment(DATABASE_URL=url.set(password=secret).render_as_string(hide_password=False))
    outputs = [segment("run", "--csv", str(customers_csv), env=env), segment("runs", env=env),
               segment("import", "/nonexistent.csv", env=env)]
    assert [result.returncode for result in outputs] == [0, 0, 3]
    for result in outputs:
        assert secret not in result.stdout + result.stderr


def test_two_first_runs_on_an_empty_database_do_not_race_on_the_migrations(empty_database_url, customers_csv):
    env = environment(DATABASE_URL=empty_database_url, SEGMENT_LOCK_WAIT_SECONDS="120", SEGMENT_WRITE_REPORT="false")
    jobs = [Job("run", "--csv", str(customers_csv), env=env) for _ in range(2)]
    assert [job.finish() for job in jobs] == [0, 0], [job.output() for job in jobs]
    assert query(empty_database_url, "select count(*) from segmentation_internal.runs where status = 'published'") == [(2,)]
