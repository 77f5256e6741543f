"""Notifications of a night: a webhook (a real HTTP server on 127.0.0.1, started here) and a command.

A notification never fails or blocks the night: a dead, slow or failing receiver is logged and
given up after notify_timeout_seconds.
"""

import json
import logging
import socket
import time

import pytest

from jobs import notify
from segmentation.errors import Cancelled, ImportRefused, RunHeld, RunLocked
from segmentation.settings import load_settings

OUTCOME = notify.Outcome("failed", 3, 12, "the file is empty", "analytics", "dbhost:5432")


def url_of(server, path="/hooks/T0KEN"):
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


@pytest.fixture
def receiver(webhook_receiver):
    return webhook_receiver


def test_the_webhook_receives_the_outcome_as_json(receiver, caplog):
    settings = load_settings(notify_url=url_of(receiver), notify_timeout_seconds=5)
    with caplog.at_level(logging.INFO):
        notify.notify(settings, OUTCOME)
    ((path, content_type, body),) = receiver.received
    assert path == "/hooks/T0KEN" and content_type == "application/json"
    assert body["event"] == "segment.night"
    assert {key: body[key] for key in ("status", "exit_code", "run_id", "reason", "database", "server")} == {
        "status": "failed", "exit_code": 3, "run_id": 12, "reason": "the file is empty", "database": "analytics",
        "server": "dbhost:5432",
    }
    assert body["host"] == socket.gethostname() and body["finished_at"].endswith("+00:00")
    assert body["text"] == (f"segment night failed (exit 3, run 12, analytics on dbhost:5432, {socket.gethostname()}):"
                            " the file is empty")
    assert "T0KEN" not in caplog.text and "HTTP 204" in caplog.text  # a webhook's path is its secret


def test_a_published_night_is_told_only_when_asked_for(receiver):
    published = notify.Outcome("published", 0, 13, None, "analytics", "dbhost:5432")
    notify.notify(load_settings(notify_url=url_of(receiver)), published)
    assert receiver.received == []
    notify.notify(load_settings(notify_url=url_of(receiver), notify_on="always"), published)
    assert [body["status"] for _, _, body in receiver.received] == ["published"]


def test_a_slow_webhook_is_given_up_after_the_timeout(receiver, caplog):
    receiver.delay = 2
    settings = load_settings(notify_url=url_of(receiver), notify_timeout_seconds=0.5)
    started = time.monotonic()
    notify.notify(settings, OUTCOME)
    assert time.monotonic() - started < 2
    assert "no answer within 0.5 s" in caplog.text and "T0KEN" not in caplog.text


def test_a_dead_or_failing_webhook_is_logged_and_nothing_is_raised(receiver, caplog):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/hook"
    notify.notify(load_settings(notify_url=dead, notify_timeout_seconds=2), OUTCOME)
    assert "Connection refused" in caplog.text
    receiver.status = 500
    notify.notify(load_settings(notify_url=url_of(receiver), notify_timeout_seconds=2), OUTCOME)
    assert "answered HTTP 500" in caplog.text


def test_the_command_gets_the_outcome_in_its_environment_and_on_its_standard_input(tmp_path):
    told = tmp_path / "told"
    command = f'printf "%s|%s|%s|%s\\n" "$SEGMENT_RUN_STATUS" "$SEGMENT_RUN_ID" "$SEGMENT_RUN_EXIT_CODE" "$SEGMENT_RUN_REASON" > {told}; cat >> {told}'
    notify.notify(load_settings(notify_command=command), OUTCOME)
    first, payload = told.read_text().split("\n", 1)
    assert first == "failed|12|3|the file is empty"
    assert json.loads(payload)["run_id"] == 12


def test_a_hanging_command_is_killed_with_what_it_started(tmp_path, caplog):
    marker = tmp_path / "still running"
    started = time.monotonic()
    notify.notify(load_settings(notify_command=f"sleep 1.5 && touch '{marker}'", notify_timeout_seconds=0.3), OUTCOME)
    assert time.monotonic() - started < 1.2
    time.sleep(2)
    assert not marker.exists()  # the shell's child was killed too, not left to finish
    assert "gave up after 0.3 s" in caplog.text


def test_a_failing_command_is_logged_with_its_last_line(caplog):
    notify.notify(load_settings(notify_command="echo first >&2; echo 'no route to pager' >&2; exit 3"), OUTCOME)
    assert "exited with code 3: no route to pager" in caplog.text


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (ImportRefused("empty file"), "failed", 3),
        (RunLocked("another run"), "failed", 4),
        (RunHeld("held: PSI"), "held", 6),
        (Cancelled(), "cancelled", 143),
        (KeyboardInterrupt(), "cancelled", 130),
        (ValueError("boom"), "failed", 1),
    ],
)
def test_each_failure_has_the_status_and_exit_code_the_command_line_ends_with(error, status, code):
    assert (notify.status_of(error), notify.exit_code_of(error)) == (status, code)


def test_the_database_is_named_without_user_or_password():
    settings = load_settings(database_url="postgresql://etl:s3cret@dbhost:6432/analytics")
    assert notify.where(settings) == ("analytics", "dbhost:6432")
    assert notify.where(load_settings(database_url=None)) == ("postgres", "embedded")


def test_a_sigterm_behind_a_failed_rollback_still_ends_the_night_as_cancelled():
    # SIGTERM landing mid-COPY: the rollback then fails, and that error surfaces with the stop as its context
    from segmentation.errors import stop_in

    try:
        try:
            raise Cancelled()
        except Cancelled:
            raise RuntimeError("sending query failed: another command is already in progress")  # noqa: B904
    except RuntimeError as error:
        surfaced = error
    assert isinstance(stop_in(surfaced), Cancelled)
    assert stop_in(RuntimeError("a plain failure")) is None
    assert (notify.exit_code_of(surfaced), notify.status_of(surfaced), notify.reason_of(surfaced)) == (
        143, "cancelled", "stopped by SIGTERM")
