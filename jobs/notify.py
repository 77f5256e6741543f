"""Telling someone how a night went: a command and/or a webhook, when it fails or is held.

Settings: `notify_command` (a shell command; the outcome is in SEGMENT_RUN_* environment
variables and, as JSON, on its standard input), `notify_url` (receives the same JSON as a POST),
`notify_on` (`problems`: failed, held or cancelled nights; `always`: published ones too) and
`notify_timeout_seconds`. A notification never fails or blocks the night: a command or URL that
errs or hangs is given up after the timeout and logged, and the night's exit code stays its own.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import signal
import socket
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request

from segmentation import db
from segmentation.display import printable
from segmentation.errors import Cancelled, RunHeld, SegmentationError, describe, stop_in
from segmentation.settings import Settings

log = logging.getLogger(__name__)
#: how much of a failure's reason a notification carries
REASON_CHARACTERS = 2000


def exit_code_of(error: BaseException) -> int:
    """The exit code `segment` ends with after `error` (see docs/operations.md, "Exit codes")."""
    error = stop_in(error) or error
    if isinstance(error, SegmentationError):
        return error.exit_code
    if isinstance(error, KeyboardInterrupt):
        return 130
    if isinstance(error, Cancelled):
        return 143
    return 1


def status_of(error: BaseException) -> str:
    """held, cancelled (SIGTERM, Ctrl-C) or failed."""
    error = stop_in(error) or error
    if isinstance(error, RunHeld):
        return "held"
    if isinstance(error, (Cancelled, KeyboardInterrupt)):
        return "cancelled"
    return "failed"


def reason_of(error: BaseException) -> str:
    """The failure in one line, as `segment` prints it after `error:`; no password."""
    error = stop_in(error) or error
    if isinstance(error, Cancelled):
        return "stopped by SIGTERM"
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    if isinstance(error, SegmentationError):
        text = str(error)
    elif isinstance(error, db.DATABASE_ERRORS):  # a server error that is not a lost connection
        text = f"database error: {db.server_message(error)}"
    else:  # anything unexpected still gets one readable line (no class names)
        text = describe(error)
    return printable(db.redact(" ".join(text.split())))


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How one night ended, as a notification tells it (no password anywhere)."""

    status: str  # published | held | failed | cancelled
    exit_code: int
    run_id: int | None
    reason: str | None
    database: str  # the database's name
    server: str  # host:port, or "embedded" for the embedded server
    host: str = dataclasses.field(default_factory=socket.gethostname)
    finished_at: str = dataclasses.field(
        default_factory=lambda: datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    )

    def as_json(self) -> dict:
        """The fields, plus `text`: one line for people, which chat webhooks (Slack, Mattermost) show as it is."""
        return {"event": "segment.night", "text": self.summary(), **dataclasses.asdict(self)}

    def summary(self) -> str:
        run = f"run {self.run_id}" if self.run_id is not None else "no run started"
        reason = f": {self.reason}" if self.reason else ""
        return f"segment night {self.status} (exit {self.exit_code}, {run}, {self.database} on {self.server}, {self.host}){reason}"

    def environment(self) -> dict[str, str]:
        """SEGMENT_RUN_STATUS, SEGMENT_RUN_EXIT_CODE, SEGMENT_RUN_ID (empty when no run row was
        made), SEGMENT_RUN_REASON, SEGMENT_RUN_DATABASE, SEGMENT_RUN_SERVER, SEGMENT_RUN_HOST,
        SEGMENT_RUN_FINISHED_AT."""
        names = {"run_id": "SEGMENT_RUN_ID"}
        return {
            names.get(name, f"SEGMENT_RUN_{name.upper()}"): "" if value is None else str(value)
            for name, value in dataclasses.asdict(self).items()
        }


def where(settings: Settings, url=None) -> tuple[str, str]:
    """(database name, server) of the night's database, without user or password.

    `url` is the engine's URL when the database was reached; otherwise the configured one.
    """
    if url is None and settings.database_url:
        from sqlalchemy.engine import make_url

        url = make_url(db.sqlalchemy_url(settings.database_url))
    if url is None:
        return "postgres", "embedded"
    host = url.host or (url.query.get("host") if url.query else None) or "local socket"
    return url.database or "", f"{host}:{url.port}" if url.port else host


def notify(settings: Settings, outcome: Outcome) -> None:
    """Run `notify_command` and POST to `notify_url` (those set) unless the night published and
    `notify_on` is `problems`. Never raises."""
    if outcome.status == "published" and settings.notify_on != "always":
        return
    payload = json.dumps(outcome.as_json()).encode()
    for name, send in (("notify_command", _run_command), ("notify_url", _post)):
        target = getattr(settings, name)
        if not target:
            continue
        try:
            send(target, outcome, payload, settings.notify_timeout_seconds)
        except Exception as error:  # a notification must never fail the night
            log.warning("%s: could not notify: %s", name, db.redact(" ".join(str(error).split())))


def _run_command(command: str, outcome: Outcome, payload: bytes, timeout: float) -> None:
    # a session of its own, so that a timeout kills whatever the shell started too
    process = subprocess.Popen(
        command, shell=True, env={**os.environ, **outcome.environment()}, stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    try:
        _, stderr = process.communicate(payload, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        log.warning("notify_command: gave up after %g s (notify_timeout_seconds); it was killed", timeout)
        return
    if process.returncode != 0:
        last = stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        log.warning("notify_command: exited with code %d: %s", process.returncode, db.redact(last[0])[:500])
    else:
        log.info("notify_command: told it the night was %s", outcome.status)


def _post(url: str, outcome: Outcome, payload: bytes, timeout: float) -> None:
    # Only scheme, host and port are ever logged: a webhook's path often holds its token.
    parts = urllib.parse.urlsplit(url)
    shown = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    request = urllib.request.Request(
        url, data=payload, method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "pg-customer-segments"},
    )
    answer: list[object] = []

    def send() -> None:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                answer.append(response.status)
        except Exception as error:  # reported below, in the night's thread
            answer.append(error)

    # The socket timeout bounds each read; the thread bounds the whole exchange (a server
    # that trickles its answer), and as a daemon it never keeps the process alive.
    thread = threading.Thread(target=send, name="notify_url", daemon=True)
    thread.start()
    thread.join(timeout)
    result = answer[0] if answer else TimeoutError()
    if isinstance(result, int):
        log.info("notify_url %s: told it the night was %s (HTTP %d)", shown, outcome.status, result)
    elif isinstance(result, urllib.error.HTTPError):
        log.warning("notify_url %s: answered HTTP %d", shown, result.code)
    elif isinstance(getattr(result, "reason", result), TimeoutError):
        log.warning("notify_url %s: no answer within %g s (notify_timeout_seconds); given up", shown, timeout)
    else:
        log.warning("notify_url %s: %s", shown, getattr(result, "reason", None) or result)
