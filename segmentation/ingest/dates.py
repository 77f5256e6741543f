"""Order dates: which texts are dates, and the form they are stored in. Pure functions.

Without a `date_format` an order date is ISO 8601 (`2024-03-01`, `2024-03-01 14:05`,
`2024-03-01T14:05:00+01:00`) or `YYYYMMDD` (`20240301`); with one, exactly that strftime
format. The stored form is `YYYY-MM-DD HH:MM:SS` (the time as written: an offset is dropped,
so an order's day is the day in the export's own clock). Years outside 1900..2999 are
rejected: such dates are placeholders or typos, and they would make every recency absurd. So
is a day after `latest` (today plus the `order_date_tolerance_days` setting): an export
cannot hold orders from the future, and one such line would move the reference date.

`PLAIN_DATE` is a regular expression matching exactly the valid dates PostgreSQL reads as
written (leap years included); `plain_date_through(latest)` the same up to a day, for the
import's fast path; everything else goes through `parse_order_date`.
"""

from __future__ import annotations

import calendar
import datetime
import re

from segmentation.ingest.plain import integer_range_pattern
from segmentation.ingest.rules import ELLIPSIS, RowRejected, _quote
from segmentation.orders import FIRST_ORDER_YEAR as FIRST_YEAR
from segmentation.orders import LAST_ORDER_YEAR as LAST_YEAR

#: what the reason of a date after `latest` says, also in its pattern (`prefix` reads it)
FUTURE = "today plus order_date_tolerance_days"

_YEAR = r"(?:19[0-9]{2}|2[0-9]{3})"
_LEAP_YEAR = r"(?:(?:19|2[0-9])(?:0[48]|[2468][048]|[13579][26])|2[048]00)"


def _month_day(separator: str) -> str:
    return (
        rf"(?:(?:0[13578]|1[02]){separator}(?:0[1-9]|[12][0-9]|3[01])"
        rf"|(?:0[469]|11){separator}(?:0[1-9]|[12][0-9]|30)"
        rf"|02{separator}(?:0[1-9]|1[0-9]|2[0-8]))"
    )


_TIME = r"(?:[T ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?)?"
#: valid dates (and optional times) that PostgreSQL's timestamp input reads exactly as written
PLAIN_DATE = (
    rf"(?:(?:{_YEAR}-{_month_day('-')}|{_LEAP_YEAR}-02-29){_TIME}|{_YEAR}{_month_day('')}|{_LEAP_YEAR}0229)"
)
_BASIC = re.compile(r"[0-9]{8}")


def _days(last: int) -> str:
    return "(?:" + "|".join(f"{day:02d}" for day in range(1, last + 1)) + ")"


def _month_days(year: int, month: int, last_day: int | None = None) -> str:
    """Regex of the days of `month` in `year` (up to `last_day`), as MM-DD without separator."""
    length = calendar.monthrange(year, month)[1]
    return f"{month:02d}{{sep}}{_days(min(length, last_day or length))}"


def plain_date_through(latest: datetime.date) -> str:
    """`PLAIN_DATE` up to the day `latest`: a valid date (and optional time) from FIRST_YEAR-01-01
    to `latest`, ISO 8601 or YYYYMMDD, for the fast path (later days go through `parse_order_date`)."""
    forms = []
    for separator, time in (("-", _TIME), ("", "")):
        parts = []
        years = integer_range_pattern(FIRST_YEAR, latest.year - 1) if latest.year > FIRST_YEAR else None
        if years:  # every day of the earlier years; 02-29 of their leap years only
            parts.append(rf"(?:{years}){separator}{_month_day(separator)}")
            parts.append(rf"(?=(?:{years})){_LEAP_YEAR}{separator}02{separator}29")
        months = [_month_days(latest.year, month) for month in range(1, latest.month)]
        months.append(_month_days(latest.year, latest.month, latest.day))
        parts.append(f"{latest.year}{separator}(?:" + "|".join(months).replace("{sep}", separator) + ")")
        forms.append("(?:" + "|".join(parts) + f"){time}")
    return "(?:" + "|".join(forms) + ")"


def _rejected(value: str, rest: str) -> RowRejected:
    return RowRejected(f"date {_quote(value)} {rest}", f"date '{ELLIPSIS}' {rest}")


def parse_order_date(value: str, date_format: str | None = None, latest: datetime.date | None = None) -> str:
    """The stored form (`YYYY-MM-DD HH:MM:SS`) of a cleaned date text, or RowRejected (also for
    a day after `latest`, when given)."""
    if value == "":
        raise RowRejected("date is empty")
    try:
        if date_format is not None:
            moment = datetime.datetime.strptime(value, date_format)
        elif _BASIC.fullmatch(value):
            moment = datetime.datetime(int(value[:4]), int(value[4:6]), int(value[6:]))
        else:
            moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        expected = f"the format {date_format!r}" if date_format else "ISO 8601 (2024-03-01) or YYYYMMDD; set date_format"
        raise _rejected(value, f"is not a date in {expected}") from None
    if not FIRST_YEAR <= moment.year <= LAST_YEAR:
        raise _rejected(value, f"is outside the years {FIRST_YEAR}..{LAST_YEAR}")
    if latest is not None and moment.date() > latest:
        raise RowRejected(
            f"date {_quote(value)} is after {latest} ({FUTURE}): an order cannot be from the future; fix the date",
            f"date '{ELLIPSIS}' is after {ELLIPSIS} ({FUTURE}): an order cannot be from the future; fix the date",
        )
    return moment.replace(tzinfo=None).isoformat(sep=" ")
