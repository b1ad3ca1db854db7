"""Durations ("30m", "2w", "3mo", "10 business days", "P14D") and due-instant arithmetic.

STUB: being written; the interface below is fixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from engine.calendars import BusinessCalendar


@dataclass(frozen=True)
class Duration:
    text: str  # as written, for messages and diagrams
    kind: Literal["elapsed", "calendar", "business"]
    seconds: int = 0  # elapsed: signed total seconds
    days: int = 0  # calendar: signed days (weeks become 7 days)
    months: int = 0  # calendar: signed months (years become 12 months)
    business_days: int = 0  # business: signed count of business days


def parse_duration(text: str) -> Duration:
    raise NotImplementedError


def add_duration(instant: datetime, duration: Duration, calendar: BusinessCalendar) -> datetime:
    raise NotImplementedError
