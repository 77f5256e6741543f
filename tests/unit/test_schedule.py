"""The scheduler's catch-up rule and loop, without a database."""

import datetime
import threading
import time
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from jobs.schedule import missed_fire_time, run_schedule
from segmentation.settings import load_settings

PARIS = ZoneInfo("Europe/Paris")
NIGHTLY = CronTrigger.from_crontab("0 2 * * *", timezone=PARIS)


def at(hour, minute=0, day=26):
    return datetime.datetime(2026, 11, day, hour, minute, tzinfo=PARIS)


def test_a_night_missed_within_the_grace_is_caught_up():
    assert missed_fire_time(NIGHTLY, at(5), 6 * 3600, last_started=at(2, 0, day=25)) == at(2)


def test_no_catch_up_when_the_night_already_ran():
    assert missed_fire_time(NIGHTLY, at(5), 6 * 3600, last_started=at(2, 1)) is None


def test_no_catch_up_beyond_the_grace():
    assert missed_fire_time(NIGHTLY, at(9), 6 * 3600, last_started=None) is None


def test_the_scheduler_runs_a_missed_night_once_at_start_up_and_stops_on_request():
    calls = []
    stop = threading.Event()
    settings = load_settings(database_url="postgresql://u@h/d", schedule_cron="* * * * *", timezone="UTC",
                             missed_run_grace_seconds=120)
    # every minute is due; the last run started long ago, so the latest minute was missed
    thread = threading.Thread(
        target=run_schedule,
        args=(settings, lambda: calls.append(time.monotonic()), lambda: datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC), stop),
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not calls and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    thread.join(timeout=10)
    assert len(calls) >= 1 and not thread.is_alive()
