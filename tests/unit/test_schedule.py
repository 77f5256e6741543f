"""The scheduler's catch-up rule and loop, without a database."""

import datetime
import logging
import re
import threading
import time
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger

from jobs.schedule import cron_trigger, cron_values, missed_fire_time, run_schedule
from segmentation.errors import ConfigurationError
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


def test_a_first_start_on_a_new_database_misses_nothing():
    assert missed_fire_time(NIGHTLY, at(5), 6 * 3600, last_started=None) is None


def test_a_first_start_says_nothing_was_missed_and_runs_nothing(caplog):
    calls = []
    stop = threading.Event()
    # every minute is due, so a scheduler that took "never ran" for "missed" would run at once
    settings = load_settings(database_url="postgresql://u@h/d", schedule_cron="* * * * *", timezone="UTC",
                             missed_run_grace_seconds=120)
    thread = threading.Thread(target=run_schedule, args=(settings, lambda: calls.append(1), lambda: None, stop))
    with caplog.at_level(logging.INFO, logger="jobs.schedule"):
        thread.start()
        deadline = time.monotonic() + 10
        while "scheduler started" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        thread.join(timeout=10)
    assert "scheduler started" in caplog.text
    assert "no run has started since" not in caplog.text and "missed" not in caplog.text
    assert not thread.is_alive()


@pytest.mark.parametrize(
    ("expression", "weekdays"),
    [
        ("0 2 * * 1", {"Monday"}),
        ("0 2 * * 0", {"Sunday"}),
        ("0 2 * * 7", {"Sunday"}),
        ("0 2 * * 1-5", {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday"}),
        ("0 2 * * sat,sun", {"Saturday", "Sunday"}),
        ("0 2 * * */3", {"Sunday", "Wednesday", "Saturday"}),  # crontab(5): 0, 3, 6
    ],
)
def test_the_day_of_the_week_is_counted_as_crontab_counts_it(expression, weekdays):
    trigger = cron_trigger(expression, "Europe/Paris")
    fired, previous = set(), None
    now = at(0)
    for _ in range(14):
        previous = trigger.get_next_fire_time(previous, now)
        fired.add(previous.strftime("%A"))
        now = previous + datetime.timedelta(seconds=1)
    assert fired == weekdays
    assert previous.hour == 2 and previous.tzinfo.key == "Europe/Paris"


@pytest.mark.parametrize(
    ("expression", "complaint"),
    [
        ("0 2 * *", "expected five fields"),
        ("61 2 * * *", "minute '61' is not a number from 0 to 59"),
        ("0 2 * * fri-mon", "day_of_week range 'fri-mon' runs backwards"),
        ("0 2 L * *", "day 'L' is not a number from 1 to 31"),
        ("*/0 2 * * *", "minute step '0' is not a positive number"),
    ],
)
def test_a_schedule_cron_outside_crontab_syntax_is_refused_naming_the_field(expression, complaint):
    with pytest.raises(ConfigurationError, match=re.escape(complaint)):
        cron_values(expression)
