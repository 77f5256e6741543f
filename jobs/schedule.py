"""The APScheduler loop behind `segment schedule`: the same job as `segment run`, on a cron."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from segmentation.settings import Settings

log = logging.getLogger(__name__)
JOB_ID = "nightly-segmentation"


def run_schedule(settings: Settings, job: Callable[[], object], stop: threading.Event | None = None) -> None:
    """Run `job` on `settings.schedule_cron` in `settings.timezone` until SIGTERM, Ctrl-C or `stop`.

    One instance at a time (a run still going when the next is due is not started twice),
    missed runs are coalesced into one, and each run logs its outcome and duration. A run in
    progress when the stop comes is allowed to finish.
    """
    stop = stop or threading.Event()
    scheduler = BackgroundScheduler(timezone=settings.timezone)
    trigger = CronTrigger.from_crontab(settings.schedule_cron, timezone=settings.timezone)

    def timed_job() -> None:
        started = time.monotonic()
        try:
            job()
        except Exception as error:  # keep the scheduler alive; the run row records the failure
            log.error("scheduled run failed after %.1f s: %s", time.monotonic() - started, error)
        else:
            log.info("scheduled run finished in %.1f s", time.monotonic() - started)

    scheduler.add_job(timed_job, trigger, id=JOB_ID, max_instances=1, coalesce=True, misfire_grace_time=3600)

    def request_stop(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
        log.info("received signal %d; stopping the scheduler", signum)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
    scheduler.start()
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
