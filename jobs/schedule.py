"""The APScheduler loop behind `segment schedule`: the same job as `segment run`, on a cron."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger

from segmentation.settings import Settings

log = logging.getLogger(__name__)


def run_schedule(settings: Settings, job: Callable[[], object]) -> None:
    """Run `job` on `settings.schedule_cron` in `settings.timezone` until SIGTERM or Ctrl-C.

    One instance at a time (a night that is still running is not started twice), missed
    runs are coalesced into one, and each run logs its outcome and duration.
    """
    scheduler = BlockingScheduler(timezone=settings.timezone)
    trigger = CronTrigger.from_crontab(settings.schedule_cron, timezone=settings.timezone)

    def timed_job() -> None:
        started = time.monotonic()
        try:
            job()
        except Exception as error:  # keep the scheduler alive; the run row records the failure
            log.error("scheduled run failed after %.1f s: %s", time.monotonic() - started, error)
        else:
            log.info("scheduled run finished in %.1f s", time.monotonic() - started)

    scheduler.add_job(
        timed_job,
        trigger,
        id="nightly-segmentation",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=3600,
    )

    def stop(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
        log.info("received signal %d; stopping the scheduler", signum)
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    next_fire = trigger.get_next_fire_time(None, __import__("datetime").datetime.now(trigger.timezone))
    log.info("scheduler started: cron %r in %s, next run at %s", settings.schedule_cron, settings.timezone, next_fire)
    try:
        scheduler.start()
    except KeyboardInterrupt:
        log.info("interrupted; scheduler stopped")
