"""Duration parsing and due-instant arithmetic across DST, month ends and holidays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.calendars import BusinessCalendar, build_calendar
from engine.durations import Duration, add_duration, parse_duration

WARSAW = ZoneInfo("Europe/Warsaw")
NEW_YORK = ZoneInfo("America/New_York")
BUDAPEST = ZoneInfo("Europe/Budapest")
PLAIN_WARSAW = BusinessCalendar(zone=WARSAW)
PLAIN_NEW_YORK = BusinessCalendar(zone=NEW_YORK)
POLAND = build_calendar({"country": "PL"}, WARSAW)
HOUR = timedelta(hours=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def add(text: str, instant: datetime, calendar: BusinessCalendar = PLAIN_WARSAW) -> datetime:
    return add_duration(instant, parse_duration(text), calendar)


# --- parsing --------------------------------------------------------------------------------


def elapsed(seconds: int) -> tuple:
    return ("elapsed", seconds, 0, 0, 0)


def calendar(days: int = 0, months: int = 0, seconds: int = 0) -> tuple:
    return ("calendar", seconds, days, months, 0)


def business(count: int) -> tuple:
    return ("business", 0, 0, 0, count)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", elapsed(30)),
        ("30 seconds", elapsed(30)),
        ("1 second", elapsed(1)),
        ("30m", elapsed(1800)),
        ("30 m", elapsed(1800)),
        ("30 minutes", elapsed(1800)),
        ("1 minute", elapsed(60)),
        ("4h", elapsed(14400)),
        ("4 hours", elapsed(14400)),
        ("1 hour", elapsed(3600)),
        ("24H", elapsed(86400)),
        ("7d", calendar(days=7)),
        ("7 days", calendar(days=7)),
        ("1 day", calendar(days=1)),
        ("2w", calendar(days=14)),
        ("2 weeks", calendar(days=14)),
        ("1 week", calendar(days=7)),
        ("3mo", calendar(months=3)),
        ("3 months", calendar(months=3)),
        ("1 month", calendar(months=1)),
        ("1y", calendar(months=12)),
        ("1 year", calendar(months=12)),
        ("2 years", calendar(months=24)),
        ("10 business days", business(10)),
        ("1 business day", business(1)),
        ("3bd", business(3)),
        ("3 BD", business(3)),
        ("  10  Business   Days ", business(10)),
        ("-30d", calendar(days=-30)),
        ("+30d", calendar(days=30)),
        ("-2 business days", business(-2)),
        ("-90m", elapsed(-5400)),
        ("0s", elapsed(0)),
        ("0 business days", business(0)),
        ("P14D", calendar(days=14)),
        ("P2W", calendar(days=14)),
        ("P1Y2M3D", calendar(days=3, months=14)),
        ("p1m", calendar(months=1)),
        ("PT4H", elapsed(14400)),
        ("PT30M", elapsed(1800)),
        ("PT1H30M", elapsed(5400)),
        ("PT45S", elapsed(45)),
        ("P1DT2H", calendar(days=1, seconds=7200)),
        ("-P30D", calendar(days=-30)),
        ("-PT1H", elapsed(-3600)),
        ("P0D", calendar()),
    ],
)
def test_parse_accepted(text: str, expected: tuple) -> None:
    duration = parse_duration(text)
    got = (duration.kind, duration.seconds, duration.days, duration.months, duration.business_days)
    assert got == expected
    assert duration.text == text.strip()


FORMS = r"write e\.g\. 30m, 4h, 7d, 2w, 3mo, 1y, 10 business days or ISO 8601 such as P14D"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty duration; " + FORMS),
        ("   ", "empty duration; " + FORMS),
        ("fortnight", "'fortnight' is not a duration; " + FORMS),
        ("10 business", "'10 business' is not a duration; " + FORMS),
        ("5x", "'5x' is not a duration; " + FORMS),
        ("P", "'P' is not a duration; " + FORMS),
        ("PT", "'PT' is not a duration; " + FORMS),
        ("P1DT", "'P1DT' is not a duration; " + FORMS),
        ("P1H", "'P1H' is not a duration; " + FORMS),
        ("1.5h", r"'1\.5h' is not a duration \(whole numbers only: write 90m rather than 1\.5h\)"),
        ("PT0.5H", r"'PT0\.5H' is not a duration \(whole numbers only"),
        ("d", "'d' is not a duration; " + FORMS),
        ("7", "'7' is not a duration; " + FORMS),
        ("7 dayz", "'7 dayz' is not a duration; " + FORMS),
        ("- 7d", "'- 7d' is not a duration; " + FORMS),
        ("7d 4h", "'7d 4h' is not a duration; " + FORMS),
        ("10 working days", "'10 working days' is not a duration; " + FORMS),
        ("20000 business days", "'20000 business days' is too many business days; use at most"),
    ],
)
def test_parse_rejected(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(text)


def test_parse_rejects_non_text() -> None:
    with pytest.raises(ValueError, match="30 is not a duration; write it as text"):
        parse_duration(30)  # type: ignore[arg-type]


# --- elapsed --------------------------------------------------------------------------------


def test_elapsed_is_absolute_and_returns_utc() -> None:
    start = datetime(2026, 6, 1, 10, tzinfo=WARSAW)
    result = add("30m", start)
    assert result == utc(2026, 6, 1, 8, 30)
    assert result.tzinfo is UTC
    assert add("-PT1H", start) == utc(2026, 6, 1, 7)


@pytest.mark.parametrize(
    ("start", "zone", "wall_after"),
    [
        (datetime(2026, 3, 28, 10, tzinfo=WARSAW), WARSAW, (29, 11)),
        (datetime(2026, 10, 24, 10, tzinfo=WARSAW), WARSAW, (25, 9)),
        (datetime(2026, 3, 7, 10, tzinfo=NEW_YORK), NEW_YORK, (8, 11)),
        (datetime(2026, 10, 31, 10, tzinfo=NEW_YORK), NEW_YORK, (1, 9)),
    ],
)
def test_24h_stays_24_elapsed_hours_and_moves_wall_clock(
    start: datetime, zone: ZoneInfo, wall_after: tuple[int, int]
) -> None:
    result = add("24h", start, BusinessCalendar(zone=zone))
    assert result - start == 24 * HOUR
    local = result.astimezone(zone)
    assert (local.day, local.hour) == wall_after


def test_naive_instant_is_refused() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        add("1h", datetime(2026, 6, 1, 10))


# --- calendar: DST --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "start", "hours"),
    [
        # Europe/Warsaw: spring forward 2026-03-29, fall back 2026-10-25
        ("2w", datetime(2026, 3, 20, 10, tzinfo=WARSAW), 335),
        ("7d", datetime(2026, 3, 25, 10, tzinfo=WARSAW), 167),
        ("1d", datetime(2026, 3, 28, 10, tzinfo=WARSAW), 23),
        ("2w", datetime(2026, 10, 18, 10, tzinfo=WARSAW), 337),
        ("7d", datetime(2026, 10, 21, 10, tzinfo=WARSAW), 169),
        ("1d", datetime(2026, 10, 24, 10, tzinfo=WARSAW), 25),
        ("2w", datetime(2026, 6, 1, 10, tzinfo=WARSAW), 336),
        ("P14D", datetime(2026, 3, 20, 10, tzinfo=WARSAW), 335),
        ("-2w", datetime(2026, 4, 3, 10, tzinfo=WARSAW), -335),
        # America/New_York: spring forward 2026-03-08, fall back 2026-11-01
        ("2w", datetime(2026, 3, 1, 10, tzinfo=NEW_YORK), 335),
        ("1d", datetime(2026, 3, 7, 10, tzinfo=NEW_YORK), 23),
        ("2w", datetime(2026, 10, 25, 10, tzinfo=NEW_YORK), 337),
        ("1d", datetime(2026, 10, 31, 10, tzinfo=NEW_YORK), 25),
        ("7d", datetime(2026, 7, 1, 10, tzinfo=NEW_YORK), 168),
    ],
)
def test_calendar_days_keep_local_wall_time(text: str, start: datetime, hours: int) -> None:
    zone = start.tzinfo
    assert isinstance(zone, ZoneInfo)
    result = add(text, start, BusinessCalendar(zone=zone))
    assert result - start == hours * HOUR
    assert result.astimezone(zone).time() == start.time()


def test_calendar_arithmetic_uses_calendar_zone_not_instant_zone() -> None:
    # 23:30 UTC on 2026-03-28 is 00:30 on the 29th in Warsaw; +1d is 00:30 CEST on the 30th.
    assert add("1d", utc(2026, 3, 28, 23, 30)) == utc(2026, 3, 29, 22, 30)


@pytest.mark.parametrize(
    ("text", "start", "zone", "expected"),
    [
        # 02:30 on 2026-03-29 does not exist in Warsaw: 03:30 CEST
        ("1d", datetime(2026, 3, 28, 2, 30), WARSAW, utc(2026, 3, 29, 1, 30)),
        ("1w", datetime(2026, 3, 22, 2, 0), WARSAW, utc(2026, 3, 29, 1, 0)),
        # 02:30 on 2026-03-08 does not exist in New York: 03:30 EDT
        ("1d", datetime(2026, 3, 7, 2, 30), NEW_YORK, utc(2026, 3, 8, 7, 30)),
    ],
)
def test_calendar_landing_in_gap_moves_forward_by_gap(
    text: str, start: datetime, zone: ZoneInfo, expected: datetime
) -> None:
    result = add(text, start.replace(tzinfo=zone), BusinessCalendar(zone=zone))
    assert result == expected
    assert result.astimezone(zone).time() == (start + HOUR).time()


@pytest.mark.parametrize(
    ("start", "zone", "expected"),
    [
        # 02:30 on 2026-10-25 happens twice in Warsaw: the first (CEST, 00:30 UTC)
        (datetime(2026, 10, 24, 2, 30), WARSAW, utc(2026, 10, 25, 0, 30)),
        # 01:30 on 2026-11-01 happens twice in New York: the first (EDT, 05:30 UTC)
        (datetime(2026, 10, 31, 1, 30), NEW_YORK, utc(2026, 11, 1, 5, 30)),
    ],
)
def test_calendar_landing_in_ambiguous_hour_takes_first_occurrence(
    start: datetime, zone: ZoneInfo, expected: datetime
) -> None:
    assert add("1d", start.replace(tzinfo=zone), BusinessCalendar(zone=zone)) == expected


def test_zero_calendar_duration_keeps_second_occurrence() -> None:
    second = datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=WARSAW)  # 01:30 UTC
    assert add("P0D", second) == utc(2026, 10, 25, 1, 30)


def test_mixed_iso_date_part_is_calendar_time_part_elapsed() -> None:
    start = datetime(2026, 3, 28, 10, tzinfo=WARSAW)  # 09:00 UTC
    # P1D: 2026-03-29 10:00 CEST (08:00 UTC), then 2 elapsed hours
    assert add("P1DT2H", start) == utc(2026, 3, 29, 10)


def test_negative_calendar_offset_before_contract_end() -> None:
    end = datetime(2026, 4, 15, 10, tzinfo=WARSAW)
    assert add("-30d", end) == datetime(2026, 3, 16, 10, tzinfo=WARSAW)


# --- calendar: month ends and leap years ----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "start", "expected"),
    [
        ("1mo", (2026, 1, 31), (2026, 2, 28)),
        ("1mo", (2028, 1, 31), (2028, 2, 29)),
        ("1y", (2028, 2, 29), (2029, 2, 28)),
        ("4y", (2028, 2, 29), (2032, 2, 29)),
        ("1mo", (2026, 3, 31), (2026, 4, 30)),
        ("-1mo", (2026, 3, 31), (2026, 2, 28)),
        ("3mo", (2026, 11, 30), (2027, 2, 28)),
        ("-13mo", (2026, 1, 15), (2024, 12, 15)),
        ("P1Y2M3D", (2026, 1, 31), (2027, 4, 3)),  # months first (31 Mar), then days
        ("P1M1D", (2026, 1, 31), (2026, 3, 1)),
    ],
)
def test_months_clamp_to_month_end(text: str, start: tuple, expected: tuple) -> None:
    result = add(text, datetime(*start, 9, 15, tzinfo=WARSAW))
    assert result == datetime(*expected, 9, 15, tzinfo=WARSAW)


def test_out_of_range_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="falls outside the years 1 to 9999"):
        add("9000y", utc(2026, 1, 1))
    with pytest.raises(ValueError, match="falls outside the years 1 to 9999"):
        add("3000000d", utc(2026, 1, 1))
    with pytest.raises(ValueError, match="falls outside the years 1 to 9999"):
        add("99999999999999s", utc(2026, 1, 1))


# --- business days --------------------------------------------------------------------------


def test_business_days_skip_the_weekend_without_holidays() -> None:
    monday = datetime(2026, 6, 1, 10, tzinfo=WARSAW)
    assert add("1 business day", monday) == datetime(2026, 6, 2, 10, tzinfo=WARSAW)
    assert add("5bd", monday) == datetime(2026, 6, 8, 10, tzinfo=WARSAW)
    assert add("10 business days", monday) == datetime(2026, 6, 15, 10, tzinfo=WARSAW)
    saturday = datetime(2026, 6, 6, 10, tzinfo=WARSAW)
    assert add("1bd", saturday) == datetime(2026, 6, 8, 10, tzinfo=WARSAW)


def test_polish_christmas() -> None:
    # holidays.PL for 2026: 24, 25 and 26 December are public holidays (Christmas Eve is
    # one since 2025); 26 December is also a Saturday.
    wednesday = datetime(2026, 12, 23, 10, tzinfo=WARSAW)
    assert add("1 business day", wednesday, POLAND) == datetime(2026, 12, 28, 10, tzinfo=WARSAW)
    assert add("2 business days", wednesday, POLAND) == datetime(2026, 12, 29, 10, tzinfo=WARSAW)
    assert add("2 business days", wednesday) == datetime(2026, 12, 25, 10, tzinfo=WARSAW)


def test_polish_extra_holidays() -> None:
    calendar = build_calendar({"country": "PL", "holidays": ["2026-12-28", "2026-12-29"]}, WARSAW)
    wednesday = datetime(2026, 12, 23, 10, tzinfo=WARSAW)
    assert add("1bd", wednesday, calendar) == datetime(2026, 12, 30, 10, tzinfo=WARSAW)
    # 31 Dec is a working day in Poland, 1 Jan is New Year, 2 Jan is a Saturday
    assert add("3bd", wednesday, calendar) == datetime(2027, 1, 4, 10, tzinfo=WARSAW)


def test_negative_business_days_count_backwards_over_holidays() -> None:
    monday = datetime(2026, 6, 8, 10, tzinfo=WARSAW)
    # Thursday 2026-06-04 is Corpus Christi in Poland
    assert add("-1bd", monday, POLAND) == datetime(2026, 6, 5, 10, tzinfo=WARSAW)
    assert add("-2bd", monday, POLAND) == datetime(2026, 6, 3, 10, tzinfo=WARSAW)


def test_us_new_york_thanksgiving() -> None:
    calendar = build_calendar({"country": "US", "subdivision": "NY"}, NEW_YORK)
    wednesday = datetime(2026, 11, 25, 10, tzinfo=NEW_YORK)
    assert add("1bd", wednesday, calendar) == datetime(2026, 11, 27, 10, tzinfo=NEW_YORK)
    assert add("2bd", wednesday, calendar) == datetime(2026, 11, 30, 10, tzinfo=NEW_YORK)


def test_hungary_national_day_over_dst_weekend() -> None:
    # Friday 2026-10-23 is a national holiday in Hungary; DST ends Sunday 2026-10-25.
    calendar = build_calendar({"country": "HU"}, BUDAPEST)
    thursday = datetime(2026, 10, 22, 10, tzinfo=BUDAPEST)  # 08:00 UTC
    result = add("1 business day", thursday, calendar)
    assert result == datetime(2026, 10, 26, 10, tzinfo=BUDAPEST)
    assert result == utc(2026, 10, 26, 9)


def test_hungary_substituted_day_off() -> None:
    # 2026-08-20 (Thu) is State Foundation Day and 2026-08-21 (Fri) a substituted day off.
    calendar = build_calendar({"country": "HU"}, BUDAPEST)
    wednesday = datetime(2026, 8, 19, 10, tzinfo=BUDAPEST)
    assert add("1bd", wednesday, calendar) == datetime(2026, 8, 24, 10, tzinfo=BUDAPEST)


def test_custom_workdays_monday_to_saturday() -> None:
    calendar = build_calendar({"workdays": ["mon", "tue", "wed", "thu", "fri", "sat"]}, WARSAW)
    friday = datetime(2026, 6, 5, 10, tzinfo=WARSAW)
    assert add("1bd", friday, calendar) == datetime(2026, 6, 6, 10, tzinfo=WARSAW)
    assert add("2bd", friday, calendar) == datetime(2026, 6, 8, 10, tzinfo=WARSAW)


OFFICE = build_calendar({"country": "PL", "hours": "09:00-17:00"}, WARSAW)


@pytest.mark.parametrize(
    ("text", "start", "expected"),
    [
        # inside hours: same wall time
        ("1bd", datetime(2026, 6, 1, 16, 59), datetime(2026, 6, 2, 16, 59)),
        # 18:30 landing moves to the next business day's opening
        ("1bd", datetime(2026, 6, 1, 18, 30), datetime(2026, 6, 3, 9)),
        # 07:00 landing moves to that day's opening
        ("1bd", datetime(2026, 6, 1, 7), datetime(2026, 6, 2, 9)),
        # Wednesday 18:30 + 1bd is Thursday, Corpus Christi: Friday 09:00
        ("1bd", datetime(2026, 6, 2, 18, 30), datetime(2026, 6, 5, 9)),
        # across the DST weekend: Friday 18:30 CET -> Monday 18:30 CEST -> Tuesday 09:00 CEST
        ("1bd", datetime(2026, 3, 27, 18, 30), datetime(2026, 3, 31, 9)),
        ("1bd", datetime(2026, 3, 27, 16), datetime(2026, 3, 30, 16)),
        # zero business days: itself when open, else the next opening
        ("0bd", datetime(2026, 6, 1, 10), datetime(2026, 6, 1, 10)),
        ("0bd", datetime(2026, 6, 6, 10), datetime(2026, 6, 8, 9)),
        ("0bd", datetime(2026, 6, 1, 17), datetime(2026, 6, 2, 9)),
    ],
)
def test_business_days_with_opening_hours(text: str, start: datetime, expected: datetime) -> None:
    result = add(text, start.replace(tzinfo=WARSAW), OFFICE)
    assert result == expected.replace(tzinfo=WARSAW)
    assert result.tzinfo is UTC


def test_across_dst_opening_is_local_nine() -> None:
    friday_evening = datetime(2026, 3, 27, 18, 30, tzinfo=WARSAW)
    assert add("1bd", friday_evening, OFFICE) == utc(2026, 3, 31, 7)  # 09:00 CEST


def test_zero_business_days_without_hours() -> None:
    saturday = datetime(2026, 6, 6, 10, tzinfo=WARSAW)
    assert add("0bd", saturday) == datetime(2026, 6, 8, 0, tzinfo=WARSAW)
    monday = datetime(2026, 6, 8, 10, tzinfo=WARSAW)
    assert add("0bd", monday) == monday


def test_business_days_with_a_calendar_that_never_opens() -> None:
    closed = BusinessCalendar(zone=WARSAW, workdays=frozenset())
    with pytest.raises(ValueError, match="no business day within"):
        add("1bd", utc(2026, 6, 1), closed)


def test_duration_is_a_value() -> None:
    assert parse_duration("2w") == Duration(text="2w", kind="calendar", days=14)


# --- properties -----------------------------------------------------------------------------

INSTANTS = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)
PL_HOLIDAYS = holidays.country_holidays("PL")


def _wall_exists(wall: datetime, zone: ZoneInfo) -> bool:
    aware = wall.replace(tzinfo=zone)
    return aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall


@settings(deadline=None)
@given(instant=INSTANTS, count=st.integers(min_value=1, max_value=40))
def test_business_days_never_land_on_weekend_or_polish_holiday(instant: datetime, count: int) -> None:
    result = add(f"{count} business days", instant, POLAND)
    start, local = instant.astimezone(WARSAW), result.astimezone(WARSAW)
    assert local.weekday() < 5
    assert local.date() not in PL_HOLIDAYS
    wall = datetime.combine(local.date(), start.time())
    if _wall_exists(wall, WARSAW):
        assert local.time() == start.time()
    else:
        assert local.replace(tzinfo=None) == wall + HOUR
    span = (local.date() - start.date()).days
    between = (start.date() + timedelta(days=n) for n in range(1, span + 1))
    assert sum(1 for day in between if day.weekday() < 5 and day not in PL_HOLIDAYS) == count


@settings(deadline=None)
@given(
    instant=INSTANTS,
    days=st.integers(min_value=-400, max_value=400),
    zone=st.sampled_from([WARSAW, NEW_YORK]),
)
def test_calendar_days_keep_local_wall_time_except_in_gap(
    instant: datetime, days: int, zone: ZoneInfo
) -> None:
    result = add(f"{days}d", instant, BusinessCalendar(zone=zone))
    if days == 0:
        assert result == instant  # the instant itself, even in a repeated hour
        return
    start, local = instant.astimezone(zone), result.astimezone(zone)
    wall = start.replace(tzinfo=None) + timedelta(days=days)
    if _wall_exists(wall, zone):
        assert local.replace(tzinfo=None) == wall
        assert local.fold == 0 or not _is_ambiguous(wall, zone)
    else:
        assert local.replace(tzinfo=None) == wall + HOUR


def _is_ambiguous(wall: datetime, zone: ZoneInfo) -> bool:
    first, second = wall.replace(tzinfo=zone, fold=0), wall.replace(tzinfo=zone, fold=1)
    return first.utcoffset() != second.utcoffset()


@settings(deadline=None)
@given(instant=INSTANTS, hours=st.integers(min_value=-2000, max_value=2000))
def test_elapsed_hours_are_exact(instant: datetime, hours: int) -> None:
    assert add(f"{hours}h", instant) - instant == hours * HOUR
