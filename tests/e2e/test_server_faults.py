"""Faults of the server itself, on a private PostgreSQL (see conftest.py): a disk that fills up, a restart mid-run."""

import re
import signal

import psycopg
import pytest

from segmentation.sample import write_sample
from tests.e2e.conftest import private_server_in_temporary_folder
from tests.e2e.test_cli import environment, query, segment
from tests.e2e.test_robustness import Job, current_state, wait_until_blocked

pytestmark = pytest.mark.e2e

#: Above 16, a WAL segment's size: a WAL write that fails would stop the whole server (PANIC).
DISK_MB = 20
#: One OpenMP thread: on a busy 2-core machine spinning OpenMP threads made a 1 s fit take 10-17 s.
SERIAL = {"OMP_NUM_THREADS": "1", "SEGMENT_WRITE_REPORT": "false"}
#: What these tests are about is the server, not the choice of k.
QUICK_FIT = {**SERIAL, "SEGMENT_K": "5", "SEGMENT_GAP_REFERENCES": "0", "SEGMENT_STABILITY_RESAMPLES": "0"}


@pytest.fixture(params=["tmpfs", "file size limit"])
def small_disk(request):
    """(URL of a migrated database that cannot grow much beyond DISK_MB, the server's error, its SQLSTATE).

    tmpfs: the database lives in a tablespace on a DISK_MB tmpfs (as root, where mounting is
    permitted); WAL stays on the main disk, so the server itself keeps running. file size
    limit: the server runs under RLIMIT_FSIZE = DISK_MB, so no table file can grow beyond it.
    """
    if request.param == "tmpfs":
        with private_server_in_temporary_folder() as server:
            if not server.mount_small_disk("small", DISK_MB):
                pytest.skip("mounting a tmpfs is not permitted here (needs root with CAP_SYS_ADMIN);"
                            " the 'file size limit' case fills a real server all the same")
            yield server.create_database("fill", tablespace="small"), "No space left on device", "53100"
    else:
        with private_server_in_temporary_folder(file_size_limit=DISK_MB * 2**20) as server:
            yield server.create_database("fill"), "File too large", "XX000"


def customers(url):
    return query(url, "select customer_id, attributes, is_active, last_batch_id from segmentation_internal.customers order by 1")


def test_a_full_disk_fails_the_run_once_with_the_servers_message_and_changes_nothing(small_disk, customers_csv, tmp_path):
    url, message, sqlstate = small_disk
    env = environment(DATABASE_URL=url, SEGMENT_DB_RETRY_DELAY_SECONDS="0", **QUICK_FIT)
    first = segment("run", "--csv", str(customers_csv), env=env)
    assert first.returncode == 0, first.stderr
    before = current_state(url), customers(url)
    big = write_sample(tmp_path / "big.csv", 400_000)  # about 40 MB once staged: twice what fits

    second = segment("run", "--csv", str(big), env=env)

    assert second.returncode == 1, second.stderr
    last = second.stderr.splitlines()[-1]
    assert re.fullmatch(rf"error: database error: could not extend file .*{message}.* \(SQLSTATE {sqlstate}\)", last), last
    assert "lost the database connection" not in second.stderr  # not retried
    assert (current_state(url), customers(url)) == before
    runs = query(url, "select status, error from segmentation_internal.runs order by run_id")
    assert [row.status for row in runs] == ["published", "failed"] and message in runs[1].error
    batches = query(url, "select status, error from segmentation_internal.import_batches order by batch_id")
    assert [row.status for row in batches] == ["succeeded", "failed"] and message in batches[1].error


@pytest.mark.parametrize(
    ("lock", "waiting_statement"),
    [
        # the import's COPY of the file's rejected line into import_rejects waits (after the
        # customers were copied into their empty table): the restart cuts a COPY
        ("lock table segmentation_internal.import_rejects in share mode", "copy segmentation_internal.import_rejects"),
        # the publish transaction waits on its first write
        ("lock table segmentation_internal.k_evaluations in access exclusive mode", "insert into segmentation_internal.k_evaluations"),
    ],
    ids=["import", "publish"],
)
def test_a_server_restart_mid_run_is_retried_and_publishes_once(
    private_server, customers_csv, tmp_path, lock, waiting_statement
):
    csv = tmp_path / "customers.csv"
    csv.write_text(customers_csv.read_text() + "9999,Male,not an age,50,50\n")
    url = private_server.create_database("restart")
    env = environment(DATABASE_URL=url, SEGMENT_DB_RETRY_DELAY_SECONDS="1", **QUICK_FIT)
    blocker = psycopg.connect(url.replace("+psycopg", ""))
    blocker.execute(lock)  # held in an open transaction until the restart ends it
    job = Job("run", "--csv", str(csv), env=env)
    pid = wait_until_blocked(url)
    [(statement,)] = query(url, "select query from pg_stat_activity where pid = :pid", pid=pid)
    assert statement.lower().startswith(waiting_statement), statement

    private_server.restart()
    blocker.close()

    assert job.finish() == 0, job.output()
    assert any("lost the database connection" in line and "retry 1 of 3" in line for line in job.lines), job.output()
    runs = query(url, "select run_id, status from segmentation_internal.runs order by run_id")
    assert [row.status for row in runs][1:] == ["published"] and runs[0].status in ("failed", "abandoned"), runs
    shown = query(url, "select run_id, count(*) from segmentation.current_customer_segments group by run_id")
    assert shown == [(runs[1].run_id, 300)]


def test_a_restart_while_fitting_ends_the_runs_lock_and_it_publishes_nothing(private_server, customers_csv):
    url = private_server.create_database("restart")
    env = environment(DATABASE_URL=url, **SERIAL)  # choosing k among 2..10 takes about a second
    job = Job("run", "--csv", str(customers_csv), env=env)
    job.wait_for_line("active customers")  # the fit starts: only the lock's session is open, idle in its transaction
    job.process.send_signal(signal.SIGSTOP)  # a fit as long as the restart, whatever the machine's speed

    private_server.restart()
    job.process.send_signal(signal.SIGCONT)

    assert job.finish() == 8, job.output()
    assert job.lines[-1].startswith("error: lost the run lock"), job.output()
    assert query(url, "select status from segmentation_internal.runs") == [("failed",)]
    assert query(url, "select count(*) from segmentation.current_customer_segments") == [(0,)]
