"""The systemd units and cron line of `segment ops`: systemd accepts them, the timer fires when
`segment schedule` would, and no secret is written into them."""

import datetime
import getpass
import os
import re
import shutil
import stat
import subprocess

import pytest

from jobs import ops
from jobs.schedule import cron_trigger
from segmentation.settings import load_settings

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (Debian: apt-get install systemd)"
)
BASE = datetime.datetime(2026, 12, 7, 0, 0, tzinfo=datetime.UTC)  # a Monday


@pytest.fixture(autouse=True)
def no_settings_in_the_environment(monkeypatch):
    """The units carry the environment's settings: start each test from none."""
    for name in os.environ:
        if name.startswith("SEGMENT_") or name == "DATABASE_URL":
            monkeypatch.delenv(name)


def systemd_elapses(calendar: str, count: int) -> list[datetime.datetime]:
    """The next `count` times systemd's own calendar reading fires `calendar` after BASE (UTC)."""
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "calendar", f"--base-time={BASE:%Y-%m-%d %H:%M:%S} UTC", f"--iterations={count}", calendar],
        capture_output=True, text=True, env={**os.environ, "TZ": "UTC"}, check=True,
    )
    found = re.findall(r"(?:Next elapse|Iter\. #\d+): \w{3} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", result.stdout)
    return [datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.UTC) for text in found]


def scheduler_fire_times(expression: str, timezone: str, count: int) -> list[datetime.datetime]:
    trigger = cron_trigger(expression, timezone)
    times, previous, now = [], None, BASE + datetime.timedelta(seconds=1)
    for _ in range(count):
        previous = trigger.get_next_fire_time(previous, now)
        times.append(previous.astimezone(datetime.UTC))
        now = previous + datetime.timedelta(seconds=1)
    return times


@needs_systemd
@pytest.mark.parametrize(
    ("expression", "timezone"),
    [
        ("0 2 * * *", "UTC"),
        ("30 1 * * 1", "Europe/Paris"),
        ("*/15 2-4 1,15 * mon-fri", "UTC"),
        ("0 0,12 1 */2 *", "America/New_York"),
        ("5-10/2 3 * * 0", "UTC"),
        ("0 22 * jan,jul 6-7", "Asia/Tokyo"),
    ],
)
def test_the_timer_fires_when_segment_schedule_would(expression, timezone):
    calendar = ops.on_calendar(expression, timezone)
    assert systemd_elapses(calendar, 8) == scheduler_fire_times(expression, timezone, 8), calendar


@needs_systemd
def test_systemd_accepts_the_units_as_generated(tmp_path, monkeypatch):
    (tmp_path / "odd 100%").mkdir()  # WorkingDirectory: a folder with a space and a percent sign
    monkeypatch.chdir(tmp_path / "odd 100%")
    monkeypatch.setenv("SEGMENT_K_MAX", "8")
    plain, secret = ops.night_environment()
    command = [*ops.segment_command(), "run", "--csv", str(tmp_path / "odd 100%" / "customers $.csv")]
    units = ops.systemd_units("segment-nightly", command, load_settings(), plain, None, getpass.getuser())
    for name, text in units.items():
        (tmp_path / name).write_text(text)
    checked = subprocess.run([SYSTEMD_ANALYZE, "verify", *(str(tmp_path / name) for name in units)],
                             capture_output=True, text=True)
    assert checked.returncode == 0 and checked.stderr == "", checked.stderr
    service = units["segment-nightly.service"]
    assert "WorkingDirectory=" + str(tmp_path / "odd 100%%") + "\n" in service
    assert '"' + str(tmp_path / "odd 100%%" / "customers $$.csv") + '"' in service
    assert "Environment=SEGMENT_K_MAX=8" in service and f"User={getpass.getuser()}" in service


def test_secrets_go_to_a_file_only_its_owner_reads(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", "postgresql://etl:s3cret@dbhost/analytics")
    monkeypatch.setenv("SEGMENT_NOTIFY_URL", "https://hooks.example/T0KEN")
    monkeypatch.setenv("SEGMENT_TIMEZONE", "Europe/Paris")
    plain, secret = ops.night_environment()
    assert plain == {"SEGMENT_TIMEZONE": "Europe/Paris"}
    assert secret == {"DATABASE_URL": "postgresql://etl:s3cret@dbhost/analytics",
                      "SEGMENT_NOTIFY_URL": "https://hooks.example/T0KEN"}
    environment_file = tmp_path / "etc" / "segment.env"
    ops.write_environment_file(environment_file, secret)
    assert stat.S_IMODE(environment_file.stat().st_mode) == 0o600
    settings = load_settings()
    texts = [*ops.systemd_units("n", ["/bin/segment", "run"], settings, plain, environment_file, None).values(),
             ops.cron_entry(["/bin/segment", "run"], settings, plain, environment_file, tmp_path / "s.log")]
    assert not any("s3cret" in text or "T0KEN" in text for text in texts)
    assert f"EnvironmentFile={environment_file}" in texts[0] and f". {environment_file}" in texts[2]
    sourced = subprocess.run(["sh", "-c", f"set -a && . {environment_file} && set +a && env"],
                             capture_output=True, text=True, check=True, env={"PATH": os.environ["PATH"]}).stdout
    assert "DATABASE_URL=postgresql://etl:s3cret@dbhost/analytics\n" in sourced


def test_a_passwordless_database_url_and_the_settings_file_are_kept_in_the_unit(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "segment.toml").write_text("k_max = 6\n")
    monkeypatch.setenv("DATABASE_URL", "postgresql://segment@/analytics?host=/run/postgresql")
    plain, secret = ops.night_environment()
    assert secret == {}
    assert plain == {"DATABASE_URL": "postgresql://segment@/analytics?host=/run/postgresql",
                     "SEGMENT_CONFIG": str(tmp_path / "segment.toml")}


def test_the_cron_line_escapes_percent_signs_and_warns_about_cron_days(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(schedule_cron="0 3 1 * mon")
    entry = ops.cron_entry(["/opt/segment/bin/segment", "run", "--csv", "/data/100%.csv"], settings, {}, None,
                           tmp_path / "segment.log")
    line = entry.splitlines()[-1]
    assert line.startswith("0 3 1 * mon cd ")
    assert "/data/100\\%.csv" in line and line.endswith(">/dev/null")
    assert "day of the month OR the weekday" in entry
