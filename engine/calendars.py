"""Business calendars: time zone, workdays, opening hours, public and extra holidays.

A calendar answers two questions for due-instant arithmetic: "is this local date a business
day?" and "when does the business next open?". Public holidays come from the ``holidays``
package; the country (and subdivision) is checked when the calendar is built, so a typo in a
process definition fails at deploy time instead of silently counting holidays as workdays.

Wall-clock rule (``local_to_utc``): a local wall time that does not exist (spring-forward gap)
moves forward by the length of the gap; an ambiguous one (autumn fall-back) means its first
occurrence, the earlier instant.
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import holidays
import holidays.registry

from engine.clock import as_utc

WEEKDAY_NAMES: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_SEARCH_DAYS = 3 * 366  # no business day within ~3 years means the calendar is unusable

_HOURS = re.compile(r"^\s*(\d{2}):(\d{2})\s*-\s*(\d{2}):(\d{2})\s*$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SPEC_KEYS = ("country", "subdivision", "workdays", "hours", "holidays")
_holidays_lock = threading.Lock()


class CalendarSpecError(ValueError):
    """A bad ``calendar:`` entry; ``key`` names the entry (country, hours, ...) to locate it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class BusinessCalendar:
    zone: ZoneInfo
    workdays: frozenset[int] = frozenset({0, 1, 2, 3, 4})  # Monday = 0
    opens: time | None = None
    closes: time | None = None
    country: str | None = None
    subdivision: str | None = None
    extra_holidays: frozenset[date] = field(default_factory=frozenset)

    def is_business_day(self, day: date) -> bool:
        """A workday that is neither a public holiday nor one of the extra closed dates."""
        if day.weekday() not in self.workdays or day in self.extra_holidays:
            return False
        return not _is_public_holiday(self.country, self.subdivision, day)

    def within_hours(self, wall: time) -> bool:
        """Whether a local wall time is inside [opens, closes); always true without hours."""
        if self.opens is None or self.closes is None:
            return True
        return self.opens <= wall < self.closes

    def next_business_day(self, day: date, step: int = 1) -> date:
        """The first business day strictly after ``day`` (or before it, with ``step=-1``).

        Raises ValueError when none is found within ~3 years, so a calendar that never opens
        (no workdays, or everything a holiday) cannot hang the engine.
        """
        candidate = day
        for _ in range(MAX_SEARCH_DAYS):
            candidate = candidate + timedelta(days=step)
            if self.is_business_day(candidate):
                return candidate
        raise ValueError(
            f"no business day within {MAX_SEARCH_DAYS} days of {day.isoformat()}; "
            "check the calendar's workdays and holidays"
        )

    def opening_on(self, day: date) -> datetime:
        """When the business opens on ``day`` (local midnight without hours), as aware UTC."""
        return local_to_utc(datetime.combine(day, self.opens or time(0)), self.zone)

    def next_opening(self, instant: datetime) -> datetime:
        """``instant`` (in UTC) if the business is open then, else the next opening time.

        Without opening hours the business is "open" all day on business days, so a
        non-business instant moves to local midnight of the next business day.
        """
        utc = as_utc(instant)
        local = utc.astimezone(self.zone)
        day = local.date()
        if self.is_business_day(day):
            if self.within_hours(local.time()):
                return utc
            if self.opens is not None and local.time() < self.opens:
                return self.opening_on(day)
        return self.opening_on(self.next_business_day(day))


def build_calendar(spec: dict[str, Any] | None, zone: ZoneInfo) -> BusinessCalendar:
    """Build a calendar from a definition's ``calendar:`` mapping (None: Mon-Fri, no holidays).

    Every problem raises ValueError naming the bad value and what would be valid, because the
    message goes straight to whoever wrote the YAML.
    """
    if spec is None:
        return BusinessCalendar(zone=zone)
    unknown = sorted(str(key) for key in spec if key not in _SPEC_KEYS)
    if unknown:
        raise CalendarSpecError(
            unknown[0], f"unknown calendar key '{unknown[0]}'; use {', '.join(_SPEC_KEYS)}"
        )
    country, subdivision = _parse_region(spec.get("country"), spec.get("subdivision"))
    opens, closes = _parse_hours(spec.get("hours"))
    return BusinessCalendar(
        zone=zone,
        workdays=_parse_workdays(spec.get("workdays")),
        opens=opens,
        closes=closes,
        country=country,
        subdivision=subdivision,
        extra_holidays=_parse_extra_holidays(spec.get("holidays")),
    )


def local_to_utc(wall: datetime, zone: ZoneInfo) -> datetime:
    """Turn a naive local wall time in ``zone`` into an aware UTC instant.

    Gap (the wall time never happens, e.g. 02:30 on 2026-03-29 in Europe/Warsaw): moved
    forward by the length of the gap (03:30 CEST). Ambiguous (happens twice, e.g. 02:30 on
    2026-10-25 in Europe/Warsaw): the first occurrence (CEST, the earlier instant). This is
    what PEP 495's fold=0 means, so zoneinfo does the work.
    """
    if wall.tzinfo is not None:
        raise ValueError(f"local_to_utc expects a naive wall time, got {wall.isoformat()}")
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)


def start_of_day(day: date, zone: ZoneInfo) -> datetime:
    """Local midnight of ``day`` as aware UTC; 01:00 where midnight falls in a DST gap."""
    return local_to_utc(datetime.combine(day, time(0)), zone)


@cache
def _public_holidays(country: str, subdivision: str | None) -> holidays.HolidayBase:
    """One holidays object per region, shared by every calendar; it fills in years lazily."""
    return holidays.country_holidays(country, subdiv=subdivision)


def _is_public_holiday(country: str | None, subdivision: str | None, day: date) -> bool:
    if country is None:
        return False
    with _holidays_lock:  # membership tests populate years in place; keep that single-threaded
        return day in _public_holidays(country, subdivision)


@functools.cache
def _country_codes() -> frozenset[str]:
    """Supported ISO codes, read from the registry: importing every country module costs 0.3 s."""
    return frozenset(entry[1] for entry in holidays.registry.COUNTRIES.values())


def _parse_region(country: Any, subdivision: Any) -> tuple[str | None, str | None]:
    if country is None:
        if subdivision is not None:
            raise CalendarSpecError(
                "subdivision", f"subdivision '{subdivision}' needs a country, e.g. country: US"
            )
        return None, None
    code = str(country).strip().upper()
    if code not in _country_codes():
        raise CalendarSpecError(
            "country",
            f"unknown country '{country}' for public holidays; use an ISO 3166 code such as PL, US or HU",
        )
    if subdivision is None:
        return code, None
    known = list(holidays.country_holidays(code).subdivisions)
    return code, _check_subdivision(code, str(subdivision).strip(), known)


def _check_subdivision(country: str, subdivision: str, known: list[str]) -> str:
    for candidate in dict.fromkeys((subdivision, subdivision.upper())):
        try:
            holidays.country_holidays(country, subdiv=candidate)
        except NotImplementedError:
            continue
        return candidate
    if not known:
        raise CalendarSpecError(
            "subdivision",
            f"unknown subdivision '{subdivision}' of {country}: {country} has no subdivisions in the "
            "public-holiday data; remove subdivision",
        )
    examples = ", ".join(known[:8])
    more = ", ..." if len(known) > 8 else ""
    raise CalendarSpecError(
        "subdivision",
        f"unknown subdivision '{subdivision}' of {country}; valid ones include {examples}{more}",
    )


def _parse_hours(hours: Any) -> tuple[time | None, time | None]:
    if hours is None:
        return None, None
    match = _HOURS.match(str(hours))
    numbers = [int(part) for part in match.groups()] if match else []
    if not match or numbers[0] > 23 or numbers[2] > 23 or numbers[1] > 59 or numbers[3] > 59:
        raise CalendarSpecError("hours", f"hours '{hours}' must look like \"09:00-17:00\"")
    opens, closes = time(numbers[0], numbers[1]), time(numbers[2], numbers[3])
    if closes <= opens:
        raise CalendarSpecError(
            "hours",
            f'hours "{hours}" close before they open; '
            'overnight hours are not supported, write e.g. "09:00-17:00"',
        )
    return opens, closes


def _parse_workdays(workdays: Any) -> frozenset[int]:
    if workdays is None:
        return frozenset({0, 1, 2, 3, 4})
    if isinstance(workdays, str):
        workdays = [workdays]
    days: set[int] = set()
    for name in workdays:
        key = str(name).strip().lower()
        if key not in WEEKDAY_NAMES:
            raise CalendarSpecError("workdays", f"unknown workday '{name}'; use {', '.join(WEEKDAY_NAMES)}")
        days.add(WEEKDAY_NAMES.index(key))
    if not days:
        raise CalendarSpecError("workdays", "workdays is empty; list at least one day such as mon")
    return frozenset(days)


def _parse_extra_holidays(values: Any) -> frozenset[date]:
    if values is None:
        return frozenset()
    return frozenset(_parse_date(value) for value in values)


def _parse_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    try:
        if _ISO_DATE.match(text):
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise CalendarSpecError(
        "holidays", f"holiday '{value}' is not a date; write YYYY-MM-DD such as 2026-12-24"
    )
