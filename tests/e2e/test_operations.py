"""Nights nobody watches: the generated systemd service and cron line run as shipped, a failed or
held night reaches a webhook, the scheduler runs order logs and catches up only a real miss, and
`segment db reset` starts over."""

import datetime
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from jobs.ops import SYSTEMD_PATH
from segmentation.sample import write_order_sample
from tests.e2e.test_cli import environment, query, segment
from tests.e2e.test_orders_cli import FAST

pytestmark = pytest.mark.e2e
NO_REPORT = {"SEGMENT_WRITE_REPORT": "false"}  # these tests are about the night, not its report


def systemd_service(text: str) -> tuple[list[str], dict[str, str], Path]:
    """ExecStart's words, the Environment= variables and WorkingDirectory= of a service, as systemd reads them."""
    entries = [line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#")]
    environment_ = dict(shlex.split(value)[0].split("=", 1) for key, value in entries if key == "Environment")
    (command,) = [value for key, value in entries if key == "ExecStart"]
    (folder,) = [value for key, value in entries if key == "WorkingDirectory"]
    words = [word.replace("$$", "$").replace("%%", "%") for word in shlex.split(command)]
    return words, {key: value.replace("%%", "%") for key, value in environment_.items()}, Path(folder.replace("%%", "%"))


def test_the_generated_systemd_service_runs_a_night_as_systemd_would(database_url, customers_csv, tmp_path):
    units = tmp_path / "units"
    made = segment("ops", "systemd", "--csv", str(customers_csv), "--out-dir", str(units),
                   env=environment(DATABASE_URL=database_url, SEGMENT_K="5", **FAST))
    assert made.returncode == 0, made.stderr
    assert "systemctl daemon-reload && systemctl enable --now segment-nightly.timer" in made.stdout
    words, variables, folder = systemd_service((units / "segment-nightly.service").read_text())
    assert Path(words[0]).is_absolute() and words[1:] == ["run", "--csv", str(customers_csv.absolute())]
    # systemd starts the service with its own bare environment, none of the shell's
    night = subprocess.run(words, cwd=folder, env={"PATH": SYSTEMD_PATH, **variables}, capture_output=True,
                           text=True, timeout=300)
    assert night.returncode == 0, night.stderr
    assert query(database_url, "select status, k, n_customers from segmentation.run_history") == [("published", 5, 300)]
    assert "OnCalendar=*-*-* 02:00:00 UTC" in (units / "segment-nightly.timer").read_text()


def test_the_generated_cron_line_runs_a_night_in_crons_bare_environment(database_url, customers_csv, tmp_path):
    made = segment("ops", "cron", "--csv", str(customers_csv),
                   env=environment(DATABASE_URL=database_url, SEGMENT_SCHEDULE_CRON="15 4 * * 1-5", **FAST))
    assert made.returncode == 0, made.stderr
    line = made.stdout.splitlines()[-1]
    fields = line.split(" ", 5)
    assert fields[:5] == ["15", "4", "*", "*", "1-5"]
    command = fields[5].replace("\\%", "%")  # as cron hands it to /bin/sh
    night = subprocess.run(["/bin/sh", "-c", command], cwd="/", capture_output=True, text=True, timeout=300,
                           env={"HOME": str(tmp_path), "LOGNAME": "root", "PATH": "/usr/bin:/bin", "SHELL": "/bin/sh"})
    assert night.returncode == 0, night.stderr
    assert night.stdout == "" and night.stderr == ""  # a good night mails nothing
    log_file = Path(re.search(r"SEGMENT_LOG_FILE=(\S+)", command).group(1))
    assert "run 1: published 300 customers" in log_file.read_text()
    assert query(database_url, "select status from segmentation.run_history") == [("published",)]


def with_password(url: str) -> str:
    """The test server trusts every connection, so a password is accepted and ignored."""
    return sa.make_url(url).set(password="s3cretpw").render_as_string(hide_password=False)


def test_a_failed_night_reaches_the_webhook_with_its_run_id_and_no_password(database_url, webhook_receiver, tmp_path):
    bad = tmp_path / "customers.csv"
    bad.write_text("Client,Income\n1,20\n")
    hook = f"http://127.0.0.1:{webhook_receiver.server_address[1]}/hook"
    failed = segment("run", "--csv", str(bad),
                     env=environment(DATABASE_URL=with_password(database_url), SEGMENT_NOTIFY_URL=hook))
    assert failed.returncode == 3, failed.stderr
    ((_, _, told),) = webhook_receiver.received
    ((run_id, error),) = query(database_url, "select run_id, error from segmentation_internal.runs")
    assert told["status"] == "failed" and told["exit_code"] == 3 and told["run_id"] == run_id
    (error_line,) = [line for line in failed.stderr.splitlines() if line.startswith("error: ")]
    assert told["reason"] == error_line.removeprefix("error: ") and "header has no column" in told["reason"]
    url = sa.make_url(database_url)  # the machine's server, or the embedded one's socket folder on a fresh clone
    server = f"{url.host}:{url.port}" if url.port else url.host or url.query.get("host")
    assert told["database"] == url.database and told["server"] == server
    assert "s3cretpw" not in str(told) and "s3cretpw" not in failed.stderr


def test_a_held_night_is_told_and_a_dead_webhook_never_fails_a_night(database_url, customers_csv, webhook_receiver):
    hook = f"http://127.0.0.1:{webhook_receiver.server_address[1]}/hook"
    env = environment(DATABASE_URL=database_url, SEGMENT_NOTIFY_URL=hook, **FAST, **NO_REPORT)
    assert segment("run", "--csv", str(customers_csv), env=env).returncode == 0
    assert webhook_receiver.received == []  # notify_on = problems: a published night is quiet
    held = segment("run", "--k", "12", env=env)
    assert held.returncode == 6, held.stderr
    ((_, _, told),) = webhook_receiver.received
    assert told["status"] == "held" and told["exit_code"] == 6 and told["run_id"] == 2
    assert told["reason"].startswith("run 2 held, not published")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/hook"
    started = time.monotonic()
    night = segment("run", env={**env, "SEGMENT_NOTIFY_URL": dead, "SEGMENT_NOTIFY_ON": "always"})
    assert night.returncode == 0 and "run 3 published" in night.stdout
    assert "notify_url http://127.0.0.1" in night.stderr and "Connection refused" in night.stderr
    assert time.monotonic() - started < 120


def test_the_notify_command_hears_of_a_night_stopped_by_sigterm(database_url, tmp_path):
    told = tmp_path / "told"
    env = environment(DATABASE_URL=database_url, **FAST,
                      SEGMENT_NOTIFY_COMMAND=f'echo "$SEGMENT_RUN_STATUS $SEGMENT_RUN_EXIT_CODE $SEGMENT_RUN_ID" > {told}')
    orders = write_order_sample(tmp_path / "orders.csv", 200_000)
    process = subprocess.Popen([sys.executable, "-m", "jobs.nightly", "run", "--orders", str(orders)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stderr:  # stop it once its run row exists, inside the run (its import)
            if "run 1 started" in line:
                break
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, rest
    assert told.read_text() == "cancelled 143 1\n"
    assert query(database_url, "select status from segmentation_internal.runs") == [("cancelled",)]


def scheduler_lines(env: dict, *args: str, until: str, timeout: float = 180) -> list[str]:
    """Start `segment schedule ARGS`, read its log until a line holds `until`, stop it with SIGTERM."""
    process = subprocess.Popen([sys.executable, "-m", "jobs.nightly", "schedule", *args], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            lines.append(line)
            if until in line:
                break
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert any(until in line for line in lines), "".join(lines)
    return lines


def test_the_scheduler_runs_order_logs_and_catches_up_only_a_night_really_missed(database_url, tmp_path):
    env = environment(DATABASE_URL=database_url, SEGMENT_MISSED_RUN_GRACE_SECONDS="300", **FAST)
    orders = write_order_sample(tmp_path / "orders.csv", 4000)
    # a daily cron whose time was a few minutes ago: due within the grace, and not due again while
    # the test runs (a minute cron could start a night just as the test stops the scheduler, which
    # then waits for that night to end)
    def daily_at(minutes_ago):
        due = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=minutes_ago)
        return f"{due.minute} {due.hour} * * *"

    # never run on this database: nothing was missed, whatever the cron says was due
    first = scheduler_lines(env, "--orders", str(orders), "--cron", daily_at(2), until="scheduler started")
    assert not any("no run has started since" in line for line in first), "".join(first)
    with sa.create_engine(database_url).begin() as connection:  # a night ran, then the scheduler was down
        connection.execute(sa.text(
            "insert into segmentation_internal.runs (segmentation_id, status, started_at, finished_at, error)"
            " select segmentation_id, 'failed', now() - interval '3 minutes', now() - interval '3 minutes',"
            " 'a night before' from segmentation_internal.segmentations where name = 'default'"))
    caught_up = scheduler_lines(env, "--orders", str(orders), "--cron", daily_at(1), until="catch-up run")
    said = "".join(caught_up)
    assert "no run has started since the one due at" in said
    assert re.search(r"catch-up run \d+ published", said), said
    runs = query(database_url, "select orders_batch_id, status from segmentation_internal.runs where orders_batch_id is not null")
    assert runs and runs[0].status == "published"
    features = query(database_url, "select distinct feature from segmentation.current_segment_features")
    assert {"recency_days", "frequency", "monetary"} <= {row.feature for row in features}


def test_db_reset_asks_first_then_deletes_everything_and_the_next_run_starts_afresh(database_url, customers_csv):
    env = environment(DATABASE_URL=database_url, **FAST, **NO_REPORT)
    assert segment("run", "--csv", str(customers_csv), env=env).returncode == 0
    refused = subprocess.run([sys.executable, "-m", "jobs.nightly", "db", "reset"], env=env, capture_output=True,
                             text=True, stdin=subprocess.DEVNULL)
    assert refused.returncode == 2 and "add --yes to confirm" in refused.stderr
    assert query(database_url, "select count(*) from segmentation.run_history") == [(1,)]
    reset = segment("db", "reset", "--yes", env=env)
    assert reset.returncode == 0, reset.stderr
    assert "dropped schema(s) segmentation, segmentation_internal" in reset.stdout
    # the shared test server's other databases still grant the reader role something
    assert "kept role segmentation_reader" in reset.stdout
    schemas = query(database_url, "select nspname from pg_namespace where nspname like 'segmentation%'")
    assert schemas == []
    again = segment("run", "--csv", str(customers_csv), env=env)
    assert again.returncode == 0 and "run 1 published" in again.stdout, again.stderr


def test_db_reset_drops_the_reader_role_when_no_other_database_uses_it(private_server, customers_csv):
    url = private_server.create_database("only_one")
    env = environment(DATABASE_URL=url, **FAST)
    reset = segment("db", "reset", "--yes", env=env)
    assert reset.returncode == 0, reset.stderr
    assert "dropped role segmentation_reader" in reset.stdout
    assert query(url, "select count(*) from pg_roles where rolname = 'segmentation_reader'") == [(0,)]
    assert segment("run", "--csv", str(customers_csv), env=env).returncode == 0  # the role comes back with the schema
    assert query(url, "select count(*) from pg_roles where rolname = 'segmentation_reader'") == [(1,)]
