"""Log lines: to a rotating file, as text or JSON lines, never with a password."""

import json
import logging

import pytest

from jobs import logs
from segmentation.settings import load_settings


@pytest.fixture(autouse=True)
def restore_logging():
    yield
    logs.configure()  # back to stderr; closes the test's file handlers


def test_json_lines_carry_time_level_logger_and_message_without_the_password(tmp_path):
    log_file = tmp_path / "logs" / "segment.log"
    logs.configure(load_settings(log_file=log_file, log_format="json"))
    logging.getLogger("segmentation.pipeline").info("run %d: connecting to %s", 7, "postgresql://etl:s3cret@db/analytics")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("jobs").exception("failed")
    first, second = (json.loads(line) for line in log_file.read_text().splitlines())
    assert first["level"] == "INFO" and first["logger"] == "segmentation.pipeline"
    assert first["message"] == "run 7: connecting to postgresql://etl:***@db/analytics"
    assert first["time"].endswith("+00:00")
    assert second["level"] == "ERROR" and "ValueError: boom" in second["exception"]


def test_the_log_file_rotates_by_size_and_keeps_the_backups_asked_for(tmp_path):
    log_file = tmp_path / "segment.log"
    logs.configure(load_settings(log_file=log_file, log_file_max_bytes=2_000, log_file_backups=2))
    for line in range(200):
        logging.getLogger("segment").info("line %03d %s", line, "x" * 40)
    kept = sorted(path.name for path in tmp_path.iterdir())
    assert kept == ["segment.log", "segment.log.1", "segment.log.2"]
    assert all(path.stat().st_size <= 2_000 for path in tmp_path.iterdir())
    assert "line 199" in log_file.read_text()  # the newest lines are in the file itself


def test_with_a_log_file_stderr_keeps_only_warnings_and_errors(tmp_path, capfd):
    logs.configure(load_settings(log_file=tmp_path / "segment.log"))
    logging.getLogger("segment").info("routine")
    logging.getLogger("segment").warning("worth a mail")
    stderr = capfd.readouterr().err
    assert "worth a mail" in stderr and "routine" not in stderr
    assert "routine" in (tmp_path / "segment.log").read_text()
