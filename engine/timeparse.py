"""Reading instants typed on the command line: ISO 8601, or relative to now (``+2w``, ``-1d``)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from engine import calendars, durations
from engine.clock import as_utc
from engine.errors import UsageError

_UTC_CALENDAR = calendars.build_calendar(None, ZoneInfo("UTC"))


def parse_instant(text: str, now: datetime) -> datetime:
    """``2026-12-01`` (midnight UTC), ``2026-12-01T10:00`` (UTC), ``2026-12-01T10:00+01:00``,
    ``now``, or ``+DURATION`` / ``-DURATION`` relative to ``now`` (e.g. ``+2w``, ``+3 business days``).
    """
    value = text.strip()
    if value.lower() == "now":
        return now
    if value[:1] in "+-" and len(value) > 1:
        try:
            return durations.add_duration(now, durations.parse_duration(value), _UTC_CALENDAR)
        except ValueError as exc:
            raise UsageError(f"cannot read time '{text}': {exc}") from None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"cannot read time '{text}'; write e.g. 2026-12-01, 2026-12-01T10:00+01:00, now or +2w"
        ) from None
    if len(value) == 10:
        return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
    try:
        return as_utc(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))
    except ValueError as exc:  # out of range once in UTC
        raise UsageError(f"cannot read time '{text}': {exc}") from None
