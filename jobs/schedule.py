"""The APScheduler loop behind `segment schedule`: the same job as `segment run`, on a cron.

`schedule_cron` is read as crontab(5) reads it, so that `segment schedule`, the cron line and
the systemd timer of `segment ops` run on the same days: APScheduler's own crontab reading
counts the day of the week from Monday = 0, where cron counts from Sunday = 0 (and 7).
"""

from __future__ import annotations

import datetime
import logging
import signal
import threading
import time
from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from segmentation.errors import ConfigurationError, RunHeld
from segmentation.settings import Settings

log = logging.getLogger(__name__)
JOB_ID = "nightly-segmentation"

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab(5): 0 (and 7) is Sunday
#: the five crontab fields: name, lowest, highest value, names of the values from the lowest on
CRON_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day", 1, 31, ()),
    ("month", 1, 12, MONTHS),
    ("day_of_week", 0, 7, DAYS),
)


def cron_values(expression: str) -> dict[str, list[int]]:
    """The values each crontab field of `expression` allows (day_of_week: 0 = Sunday ... 6).

    Understands what crontab(5) does: `*`, numbers, names (jan, mon), ranges `a-b`, steps
    `*/n` and `a-b/n`, and lists. Raises ConfigurationError naming the field otherwise.
    """
    parts = expression.split()
    if len(parts) != len(CRON_FIELDS):
        raise ConfigurationError(f"schedule_cron {expression!r}: expected five fields (minute hour day month weekday)")
    values = {}
    for part, (name, low, high, names) in zip(parts, CRON_FIELDS):
        allowed: set[int] = set()
        for item in part.split(","):
            body, slash, step = item.partition("/")
            if body == "*":
                first, last = low, high
            else:
                first, _, last = body.partition("-")
                first = _cron_number(first, expression, name)
                last = _cron_number(last, expression, name) if last else first
            if slash and (not step.isdigit() or int(step) == 0):
                raise ConfigurationError(f"schedule_cron {expression!r}: {name} step {step!r} is not a positive number")
            if first > last:
                raise ConfigurationError(f"schedule_cron {expression!r}: {name} range {body!r} runs backwards")
            allowed.update(range(first, last + 1, int(step) if slash else 1))
        values[name] = sorted({value % 7 for value in allowed} if name == "day_of_week" else allowed)
    return values


def _cron_number(text: str, expression: str, field: str) -> int:
    """One value of a crontab field: a number in the field's range, or a name (jan, mon)."""
    _, low, high, names = next(spec for spec in CRON_FIELDS if spec[0] == field)
    if text.lower() in names:
        return low + names.index(text.lower())
    if not text.isdigit() or not low <= int(text) <= high:
        named = f" or a name ({names[0]}, {names[1]}, ...)" if names else ""
        raise ConfigurationError(f"schedule_cron {expression!r}: {field} {text!r} is not a number from {low} to {high}{named}")
    return int(text)


def is_every(values: dict[str, list[int]], name: str) -> bool:
    """True when the field `name` allows every value (`*`)."""
    low, high = next((low, high) for field, low, high, _ in CRON_FIELDS if field == name)
    if name == "day_of_week":
        high = 6
    return values[name] == list(range(low, high + 1))


def cron_trigger(expression: str, timezone: str) -> CronTrigger:
    """An APScheduler trigger that fires when crontab(5) would run `expression` in `timezone`
    (both the day of the month and the day of the week must match when both are restricted)."""
    values = cron_values(expression)
    minute, hour, day, month, _ = expression.split()
    day_of_week = "*" if is_every(values, "day_of_week") else ",".join(DAYS[day] for day in values["day_of_week"])
    return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=day_of_week, timezone=timezone)


def missed_fire_time(
    trigger: CronTrigger, now: datetime.datetime, grace_seconds: float, last_started: datetime.datetime | None
) -> datetime.datetime | None:
    """The scheduled time within the last `grace_seconds` that no run started after, if any.

    A database on which no run ever started (`last_started` None) missed nothing: the job was
    not running there yet.
    """
    if last_started is None:
        return None
    due = trigger.get_next_fire_time(None, now - datetime.timedelta(seconds=grace_seconds))
    latest_due = None
    while due is not None and due <= now:
        latest_due = due
        due = trigger.get_next_fire_time(due, due + datetime.timedelta(seconds=1))
    if latest_due is None or last_started >= latest_due:
        return None
    return latest_due


def run_schedule(
    settings: Settings,
    job: Callable[[], object],
    last_run_started: Callable[[], datetime.datetime | None] = lambda: None,
    stop: threading.Event | None = None,
) -> None:
    """Run `job` on `settings.schedule_cron` in `settings.timezone` until SIGTERM, Ctrl-C or `stop`.

    - one run at a time: a run still going when the next is due is skipped, not doubled;
    - missed runs are coalesced into one;
    - a run that was due less than `missed_run_grace_seconds` ago while the scheduler was
      down (no run started since, though runs did start before) is run once at start-up;
    - each run logs one line with its run id, outcome and duration;
    - a stop lets a run in progress finish, then exits.
    """
    stop = stop or threading.Event()
    scheduler = BackgroundScheduler(timezone=settings.timezone)
    trigger = cron_trigger(settings.schedule_cron, settings.timezone)
    running = threading.Lock()

    def timed_job(reason: str = "scheduled") -> None:
        if not running.acquire(blocking=False):
            log.warning("%s run skipped: the previous run is still in progress", reason)
            return
        started = time.monotonic()
        try:
            outcome = job()
        except RunHeld as held:
            log.warning("%s run %s held after %.1f s: %s", reason, held.outcome.run_id if held.outcome else "?",
                        time.monotonic() - started, held)
        except Exception as error:  # keep the scheduler alive; the run row records the failure
            log.error("%s run failed after %.1f s: %s", reason, time.monotonic() - started, error)
        else:
            log.info("%s run %s %s in %.1f s (k = %s)", reason, getattr(outcome, "run_id", "?"),
                     getattr(outcome, "status", "finished"), time.monotonic() - started, getattr(outcome, "k", "?"))
        finally:
            running.release()

    scheduler.add_job(timed_job, trigger, id=JOB_ID, max_instances=1, coalesce=True, misfire_grace_time=3600)

    def request_stop(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
        log.info("received signal %d; stopping the scheduler after any run in progress", signum)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
    scheduler.start()
    now = datetime.datetime.now(trigger.timezone)
    missed = missed_fire_time(trigger, now, settings.missed_run_grace_seconds, last_run_started())
    if missed is not None:
        log.info("no run has started since the one due at %s (the scheduler was not running then); running it now",
                 missed)
        scheduler.add_job(timed_job, args=["catch-up"], id="catch-up", next_run_time=now)
    log.info(
        "scheduler started: cron %r in %s, next run at %s",
        settings.schedule_cron,
        settings.timezone,
        scheduler.get_job(JOB_ID).next_run_time,
    )
    while not stop.wait(1.0):
        pass
    scheduler.shutdown(wait=True)
    log.info("scheduler stopped")
