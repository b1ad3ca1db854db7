"""Business calendars: time zone, workdays, opening hours, public and extra holidays.

STUB: being written; the interface below is fixed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo


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
        raise NotImplementedError

    def next_opening(self, instant: datetime) -> datetime:
        raise NotImplementedError


def build_calendar(spec: dict[str, Any] | None, zone: ZoneInfo) -> BusinessCalendar:
    raise NotImplementedError


def local_to_utc(wall: datetime, zone: ZoneInfo) -> datetime:
    raise NotImplementedError


def start_of_day(day: date, zone: ZoneInfo) -> datetime:
    raise NotImplementedError
