"""The APScheduler loop behind `segment schedule`: the same job as `segment run`, on a cron."""

from __future__ import annotations

import datetime
import logging
import signal
import threading
import time
from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from segmentation.errors import RunHeld
from segmentation.settings import Settings

log = logging.getLogger(__name__)
JOB_ID = "nightly-segmentation"


def missed_fire_time(
    trigger: CronTrigger, now: datetime.datetime, grace_seconds: float, last_started: datetime.datetime | None
) -> datetime.datetime | None:
    """The scheduled time within the last `grace_seconds` that no run started after, if any."""
    due = trigger.get_next_fire_time(None, now - datetime.timedelta(seconds=grace_seconds))
    latest_due = None
    while due is not None and due <= now:
        latest_due = due
        due = trigger.get_next_fire_time(due, due + datetime.timedelta(seconds=1))
    if latest_due is None or (last_started is not None and last_started >= latest_due):
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
      down (no run started since) is run once at start-up;
    - each run logs one line with its run id, outcome and duration;
    - a stop lets a run in progress finish, then exits.
    """
    stop = stop or threading.Event()
    scheduler = BackgroundScheduler(timezone=settings.timezone)
    trigger = CronTrigger.from_crontab(settings.schedule_cron, timezone=settings.timezone)
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
        log.info("the run due at %s was missed while the scheduler was down; running it now", missed)
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
