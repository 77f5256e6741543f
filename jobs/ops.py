"""A systemd service and timer, and a cron line, that run the nightly job of this installation.

They are generated (`segment ops systemd`, `segment ops cron`) rather than kept in docs/, because
what makes them work is local: the absolute path of this installation's `segment` (inside its
venv or pipx environment), the folder and TOML file the settings are read from, the
environment variables that set them, and `schedule_cron` in `timezone` turned into a systemd
calendar. A copy in docs/ could only say "edit these paths", and a wrong path fails silently at
02:00. Secrets (a password in DATABASE_URL, the notify settings) never go into a unit file or a
crontab, which other users may read: they go into an environment file of mode 600.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from jobs.schedule import CRON_FIELDS, cron_values, is_every
from segmentation.errors import ConfigurationError
from segmentation.settings import DEFAULT_CONFIG_FILE, Settings

#: variables that may hold a secret: written to the environment file only
SECRET_VARIABLES = ("SEGMENT_NOTIFY_URL", "SEGMENT_NOTIFY_COMMAND")
SYSTEMD_DAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")
#: where systemd runs a service without PATH of its own
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"


def segment_command() -> list[str]:
    """This installation's `segment`, as an absolute path (never resolved: a venv's python is a
    symlink out of the venv), or `python -m jobs.nightly` when the script is not beside it."""
    folder = Path(sys.executable).absolute().parent
    script = folder / "segment"
    return [str(script)] if script.is_file() else [str(Path(sys.executable).absolute()), "-m", "jobs.nightly"]


def night_environment() -> tuple[dict[str, str], dict[str, str]]:
    """(plain, secret) environment variables that give the night the settings of this shell.

    Plain: every SEGMENT_* variable, SEGMENT_CONFIG made absolute (also when the settings come
    from ./segment.toml), and DATABASE_URL when it has no password. Secret: the rest.
    """
    plain = {name: value for name, value in os.environ.items() if name.startswith("SEGMENT_")}
    secret = {name: plain.pop(name) for name in SECRET_VARIABLES if name in plain}
    config = plain.get("SEGMENT_CONFIG") or (str(DEFAULT_CONFIG_FILE) if DEFAULT_CONFIG_FILE.is_file() else None)
    if config:
        plain["SEGMENT_CONFIG"] = str(Path(config).absolute())
    url = os.environ.get("DATABASE_URL")
    if url:
        from sqlalchemy.engine import make_url

        has_password = bool(make_url(url.replace("postgres://", "postgresql://", 1)).password)
        (secret if has_password else plain)["DATABASE_URL"] = url
    return plain, secret


def write_environment_file(path: Path, variables: dict[str, str]) -> None:
    """Write `variables` as KEY='value' lines (read alike by systemd's EnvironmentFile= and by
    sh's `.`), readable by its owner only."""
    for name, value in variables.items():
        if "'" in value or "\n" in value:
            raise ConfigurationError(f"{name} holds a quote or a line break; write {path} by hand")
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write("".join(f"{name}='{value}'\n" for name, value in sorted(variables.items())))


def _compact(values: list[int], low: int, high: int) -> str:
    """A systemd calendar component: `*`, `first/step` to the end, or a list of values and ranges."""
    if values == list(range(low, high + 1)):
        return "*"
    step = values[1] - values[0] if len(values) > 1 else 0
    if len(values) > 2 and values == list(range(values[0], high + 1, step)):
        return f"{values[0]:02d}/{step}"
    runs: list[list[int]] = []
    for value in values:
        if runs and value == runs[-1][-1] + 1:
            runs[-1].append(value)
        else:
            runs.append([value])
    return ",".join(f"{run[0]:02d}..{run[-1]:02d}" if len(run) > 2 else ",".join(f"{v:02d}" for v in run) for run in runs)


def on_calendar(expression: str, timezone: str) -> str:
    """The systemd OnCalendar= of the crontab `expression` in `timezone` (same days as `segment schedule`)."""
    values = cron_values(expression)
    bounds = {name: (low, high) for name, low, high, _ in CRON_FIELDS}
    part = {name: _compact(values[name], *bounds[name]) for name in ("minute", "hour", "day", "month")}
    days = "" if is_every(values, "day_of_week") else ",".join(SYSTEMD_DAYS[day] for day in values["day_of_week"]) + " "
    return f"{days}*-{part['month']}-{part['day']} {part['hour']}:{part['minute']}:00 {timezone}"


def _systemd_word(text: str, command_line: bool = False) -> str:
    """`text` as one systemd word: quoted when needed, % (and in a command line $) doubled."""
    text = text.replace("%", "%%")
    if command_line:
        text = text.replace("$", "$$")
    if text and not any(character in text for character in ' \t"\'\\;'):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_units(
    name: str, command: list[str], settings: Settings, plain: dict[str, str], environment_file: Path | None,
    user: str | None, calendar: str | None = None,
) -> dict[str, str]:
    """{file name: text} of NAME.service (one night, `command`) and NAME.timer (on schedule)."""
    calendar = calendar or on_calendar(settings.schedule_cron, settings.timezone)
    lines = [
        "# Generated by `segment ops systemd`: one night of customer segmentation (pg-customer-segments).",
        "# Exit codes: 0 published; 6 held (not published); others failed (docs/operations.md).",
        "[Unit]",
        "Description=Customer segmentation: one night (segment run)",
        "Wants=network-online.target",
        "After=network-online.target postgresql.service",
        "",
        "[Service]",
        "Type=oneshot",
        *([f"User={user}"] if user else []),
        f"WorkingDirectory={str(Path.cwd()).replace('%', '%%')}",  # a plain path: no quotes
        *(f"Environment={_systemd_word(f'{key}={value}')}" for key, value in sorted(plain.items())),
        *([f"EnvironmentFile={_systemd_word(str(environment_file))}"] if environment_file else []),
        "ExecStart=" + " ".join(_systemd_word(word, command_line=True) for word in command),
        "# SIGTERM (systemctl stop) cancels the run cleanly: nothing is published, exit 143.",
        "TimeoutStopSec=120",
        "Nice=10",
    ]
    timer = [
        "# Generated by `segment ops systemd`: starts the service on the schedule (schedule_cron"
        f" {settings.schedule_cron!r} in {settings.timezone}).",
        "[Unit]",
        "Description=Customer segmentation: nightly schedule",
        "",
        "[Timer]",
        f"OnCalendar={calendar}",
        "# a night missed while the machine was off runs when it is back",
        "Persistent=true",
        f"Unit={name}.service",
        "",
        "[Install]",
        "WantedBy=timers.target",
    ]
    return {f"{name}.service": "\n".join(lines) + "\n", f"{name}.timer": "\n".join(timer) + "\n"}


def cron_entry(
    command: list[str], settings: Settings, plain: dict[str, str], environment_file: Path | None, log_file: Path
) -> str:
    """A crontab line running `command` on `schedule_cron`, with comments saying what it does.

    The night logs to `log_file` (rotated); stdout (the segments table) is dropped, so cron
    mails only warnings and the `error:` line of a failed or held night.
    """
    variables = {**plain, "SEGMENT_LOG_FILE": plain.get("SEGMENT_LOG_FILE", str(log_file))}
    steps = [f"cd {shlex.quote(str(Path.cwd()))}"]
    if environment_file:
        steps.append(f"set -a && . {shlex.quote(str(environment_file))} && set +a")
    assignments = " ".join(f"{key}={shlex.quote(value)}" for key, value in sorted(variables.items()))
    steps.append(f"{assignments} exec {shlex.join(command)} >/dev/null")
    shell = " && ".join(steps).replace("%", "\\%")  # % ends a crontab command
    values = cron_values(settings.schedule_cron)
    notes = [
        "# Generated by `segment ops cron`: one night of customer segmentation (pg-customer-segments).",
        f"# Logs: {variables['SEGMENT_LOG_FILE']} (rotated); cron mails warnings and the error line of a failed"
        " or held night.",
        f"# Times are in cron's time zone (the system's); the schedule's is {settings.timezone}.",
    ]
    if not is_every(values, "day") and not is_every(values, "day_of_week"):
        notes.append("# Note: cron runs when the day of the month OR the weekday matches; `segment schedule` and"
                     " the systemd timer when both do.")
    return "\n".join([*notes, f"{settings.schedule_cron} {shell}"]) + "\n"
