"""Durations ("30m", "2w", "3mo", "10 business days", "P14D") and due-instant arithmetic.

Three kinds, because sales people mean different things by "later":

- elapsed (``30s``, ``30m``, ``4h``, ``PT1H30M``): absolute time; ``24h`` is always 24 hours,
  so across a DST change the local wall-clock time shifts by an hour.
- calendar (``7d``, ``2w``, ``3mo``, ``1y``, ``P1Y2M3D``): local dates in the calendar's time
  zone at the same local wall-clock time; months first (clamped to the month's end: 31 Jan +
  1mo = 28/29 Feb), then days. ``2w`` across the EU spring change is 335 elapsed hours. A
  mixed ISO duration such as ``P1DT2H`` applies the date part as calendar time, then the time
  part (``seconds``) as elapsed time.
- business (``10 business days``, ``3bd``): the Nth business day after (or, negative, before)
  the instant's local date, at the same local wall time, then moved to the next opening if
  the calendar has opening hours and the landing is outside them.

Landing on a wall time that does not exist (spring-forward gap) moves forward by the gap;
landing on an ambiguous one (autumn fall-back) takes the first occurrence. See
``engine.calendars.local_to_utc``.
"""

from __future__ import annotations

import re
from calendar import monthrange
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from engine.calendars import BusinessCalendar, local_to_utc
from engine.clock import as_utc

MAX_BUSINESS_DAYS = 10_000  # about 40 years; keeps the day-by-day walk bounded

ACCEPTED_FORMS = "30m, 4h, 7d, 2w, 3mo, 1y, 10 business days or ISO 8601 such as P14D"

# unit -> (kind, field, multiplier); "m" is minutes, "mo" months.
_UNITS: dict[str, tuple[str, str, int]] = {}
for _names, _spec in (
    (("s", "second", "seconds"), ("elapsed", "seconds", 1)),
    (("m", "minute", "minutes"), ("elapsed", "seconds", 60)),
    (("h", "hour", "hours"), ("elapsed", "seconds", 3600)),
    (("d", "day", "days"), ("calendar", "days", 1)),
    (("w", "week", "weeks"), ("calendar", "days", 7)),
    (("mo", "month", "months"), ("calendar", "months", 1)),
    (("y", "year", "years"), ("calendar", "months", 12)),
    (("bd", "business day", "business days"), ("business", "business_days", 1)),
):
    for _name in _names:
        _UNITS[_name] = _spec

_SIMPLE = re.compile(r"^([+-]?)(\d+)\s*([a-z]+(?:\s+[a-z]+)?)$")
_ISO = re.compile(
    r"^([+-]?)P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
    r"(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$"
)


@dataclass(frozen=True)
class Duration:
    text: str  # as written, for messages and diagrams
    kind: Literal["elapsed", "calendar", "business"]
    seconds: int = 0  # elapsed: signed total seconds
    days: int = 0  # calendar: signed days (weeks become 7 days)
    months: int = 0  # calendar: signed months (years become 12 months)
    business_days: int = 0  # business: signed count of business days


def parse_duration(text: str) -> Duration:
    """Parse a duration as written in a process definition.

    Raises ValueError with the accepted forms, since the reader is whoever wrote the YAML.
    """
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a duration; write it as text, e.g. {ACCEPTED_FORMS}")
    written = text.strip()
    normalized = " ".join(written.lower().split())
    duration = _parse_simple(written, normalized) or _parse_iso(written, normalized.upper())
    if duration is None:
        raise ValueError(_rejection(written))
    if abs(duration.business_days) > MAX_BUSINESS_DAYS:
        raise ValueError(f"'{written}' is too many business days; use at most {MAX_BUSINESS_DAYS}")
    return duration


def add_duration(instant: datetime, duration: Duration, calendar: BusinessCalendar) -> datetime:
    """When ``duration`` after the aware ``instant`` falls due, as aware UTC.

    Calendar and business arithmetic happen in ``calendar.zone``, so "7d" means the same
    local wall time a week later whatever DST does in between.
    """
    start = as_utc(instant)
    if duration.kind == "business":
        return _add_business(start, duration.business_days, calendar)
    try:
        if duration.kind == "calendar":
            return _add_calendar(start, duration, calendar)
        return start + timedelta(seconds=duration.seconds)
    except (OverflowError, ValueError):
        raise ValueError(
            f"'{duration.text}' from {start.isoformat()} falls outside the years 1 to 9999"
        ) from None


def _parse_simple(written: str, normalized: str) -> Duration | None:
    match = _SIMPLE.match(normalized)
    unit = _UNITS.get(match.group(3)) if match else None
    if match is None or unit is None:
        return None
    kind, field, multiplier = unit
    value = int(match.group(2)) * multiplier * (-1 if match.group(1) == "-" else 1)
    return Duration(text=written, kind=kind, **{field: value})


def _parse_iso(written: str, normalized: str) -> Duration | None:
    match = _ISO.match(normalized)
    if match is None or all(part is None for part in match.groups()[1:]):
        return None
    sign = -1 if match.group(1) == "-" else 1
    years, months, weeks, days, hours, minutes, seconds = (
        int(part or 0) * sign for part in match.groups()[1:]
    )
    elapsed = hours * 3600 + minutes * 60 + seconds
    if all(part is None for part in match.groups()[1:5]):
        return Duration(text=written, kind="elapsed", seconds=elapsed)
    return Duration(
        text=written,
        kind="calendar",
        seconds=elapsed,
        days=weeks * 7 + days,
        months=years * 12 + months,
    )


def _rejection(written: str) -> str:
    if not written:
        return f"empty duration; write e.g. {ACCEPTED_FORMS}"
    hint = ""
    if re.search(r"\d[.,]\d", written):
        hint = " (whole numbers only: write 90m rather than 1.5h)"
    return f"'{written}' is not a duration{hint}; write e.g. {ACCEPTED_FORMS}"


def _add_calendar(start: datetime, duration: Duration, calendar: BusinessCalendar) -> datetime:
    if duration.months == 0 and duration.days == 0:
        return start + timedelta(seconds=duration.seconds)  # keep the instant exactly
    wall = start.astimezone(calendar.zone).replace(tzinfo=None)
    wall = _add_months(wall, duration.months) + timedelta(days=duration.days)
    return local_to_utc(wall, calendar.zone) + timedelta(seconds=duration.seconds)


def _add_months(wall: datetime, months: int) -> datetime:
    """Same day-of-month ``months`` later, clamped to the month's last day."""
    if months == 0:
        return wall
    year, month0 = divmod(wall.year * 12 + wall.month - 1 + months, 12)
    day = min(wall.day, monthrange(year, month0 + 1)[1])
    return wall.replace(year=year, month=month0 + 1, day=day)


def _add_business(start: datetime, count: int, calendar: BusinessCalendar) -> datetime:
    """Walk ``count`` business days from the local date, keep the wall time, then open."""
    if count == 0:
        return calendar.next_opening(start)
    local = start.astimezone(calendar.zone)
    day = local.date()
    step = 1 if count > 0 else -1
    for _ in range(abs(count)):
        day = calendar.next_business_day(day, step)
    landed = local_to_utc(datetime.combine(day, local.time()), calendar.zone)
    # Without hours this is a no-op unless a DST gap pushed the wall time past midnight.
    return calendar.next_opening(landed)
