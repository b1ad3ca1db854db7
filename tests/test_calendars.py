"""Business calendars: building from YAML specs, business days, opening hours, wall-clock rule."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import holidays
import pytest

from engine.calendars import (
    BusinessCalendar,
    CalendarSpecError,
    build_calendar,
    local_to_utc,
    start_of_day,
)

WARSAW = ZoneInfo("Europe/Warsaw")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- build_calendar -------------------------------------------------------------------------


def test_none_spec_is_monday_to_friday_without_holidays_or_hours() -> None:
    calendar = build_calendar(None, WARSAW)
    assert calendar == BusinessCalendar(zone=WARSAW)
    assert calendar.workdays == frozenset({0, 1, 2, 3, 4})
    assert calendar.opens is None and calendar.closes is None
    assert calendar.is_business_day(date(2026, 12, 25))  # Friday; no country, so no holidays
    assert not calendar.is_business_day(date(2026, 12, 26))  # Saturday


def test_full_spec() -> None:
    calendar = build_calendar(
        {
            "country": "us",
            "subdivision": "ny",
            "workdays": ["mon", "tue", "wed", "thu", "fri", "sat"],
            "hours": "08:30-18:00",
            "holidays": ["2026-12-24", date(2026, 12, 31)],
        },
        NEW_YORK,
    )
    assert calendar.country == "US"
    assert calendar.subdivision == "NY"
    assert calendar.workdays == frozenset({0, 1, 2, 3, 4, 5})
    assert (calendar.opens, calendar.closes) == (time(8, 30), time(18, 0))
    assert calendar.extra_holidays == frozenset({date(2026, 12, 24), date(2026, 12, 31)})


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"country": "XX"},
            "unknown country 'XX' for public holidays; use an ISO 3166 code such as PL, US or HU",
        ),
        (
            {"country": "US", "subdivision": "ZZ"},
            r"unknown subdivision 'ZZ' of US; valid ones "
            r"include AK, AL, AR, .*, \.\.\.",
        ),
        ({"country": "HU", "subdivision": "BU"}, "HU has no subdivisions"),
        ({"subdivision": "NY"}, "subdivision 'NY' needs a country, e.g. country: US"),
        ({"hours": "9-17"}, "hours '9-17' must look like \"09:00-17:00\""),
        ({"hours": "09:00"}, "hours '09:00' must look like"),
        ({"hours": "25:00-26:00"}, "hours '25:00-26:00' must look like"),
        ({"hours": "09:60-17:00"}, "hours '09:60-17:00' must look like"),
        ({"hours": "17:00-09:00"}, 'hours "17:00-09:00" close before they open'),
        ({"hours": "09:00-09:00"}, 'hours "09:00-09:00" close before they open'),
        ({"workdays": []}, "workdays is empty; list at least one day such as mon"),
        (
            {"workdays": ["mon", "monday"]},
            "unknown workday 'monday'; use mon, tue, wed, thu, fri, sat, sun",
        ),
        ({"holidays": ["christmas"]}, "holiday 'christmas' is not a date; write YYYY-MM-DD"),
        ({"holidays": ["2026-13-01"]}, "holiday '2026-13-01' is not a date"),
        ({"holidays": ["20261224"]}, "holiday '20261224' is not a date"),
        ({"timezone": "UTC"}, "unknown calendar key 'timezone'; use country, subdivision"),
    ],
)
def test_build_calendar_rejects_with_actionable_message(spec: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_calendar(spec, WARSAW)


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        ({"holidays": ["2026-12-24"], "country": "XX"}, "country"),
        ({"country": "US", "holidays": [], "subdivision": "ZZ"}, "subdivision"),
        ({"hours": "9-17"}, "hours"),
        ({"workdays": ["monday"]}, "workdays"),
        ({"holidays": ["christmas"]}, "holidays"),
        ({"zone": "UTC"}, "zone"),
    ],
)
def test_errors_name_the_calendar_key(spec: dict, key: str) -> None:
    with pytest.raises(CalendarSpecError) as caught:
        build_calendar(spec, WARSAW)
    assert caught.value.key == key


# --- business days --------------------------------------------------------------------------


def test_polish_christmas_2026_per_holidays_package() -> None:
    # Christmas Eve is a public holiday in Poland from 2025 on; holidays.PL agrees.
    assert date(2026, 12, 24) in holidays.country_holidays("PL")
    calendar = build_calendar({"country": "PL"}, WARSAW)
    assert calendar.is_business_day(date(2026, 12, 23))
    for closed in (date(2026, 12, 24), date(2026, 12, 25), date(2026, 12, 26)):
        assert not calendar.is_business_day(closed)
    assert calendar.next_business_day(date(2026, 12, 23)) == date(2026, 12, 28)
    assert calendar.next_business_day(date(2026, 12, 28), step=-1) == date(2026, 12, 23)


def test_us_new_york_thanksgiving() -> None:
    calendar = build_calendar({"country": "US", "subdivision": "NY"}, NEW_YORK)
    assert not calendar.is_business_day(date(2026, 11, 26))
    assert calendar.is_business_day(date(2026, 11, 27))


def test_extra_holidays_and_custom_workdays() -> None:
    calendar = build_calendar({"workdays": ["sat", "sun"], "holidays": ["2026-06-06"]}, WARSAW)
    assert not calendar.is_business_day(date(2026, 6, 5))  # Friday
    assert not calendar.is_business_day(date(2026, 6, 6))  # Saturday, extra holiday
    assert calendar.is_business_day(date(2026, 6, 7))  # Sunday


def test_calendar_that_never_opens_raises_instead_of_looping() -> None:
    calendar = BusinessCalendar(zone=WARSAW, workdays=frozenset())
    with pytest.raises(ValueError, match="no business day within"):
        calendar.next_business_day(date(2026, 1, 1))
    with pytest.raises(ValueError, match="no business day within"):
        calendar.next_opening(utc(2026, 1, 1, 12))


# --- next_opening ---------------------------------------------------------------------------


OFFICE = BusinessCalendar(zone=WARSAW, opens=time(9), closes=time(17), country="PL")


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        # Monday 2026-06-01 10:00 CEST: open, unchanged
        (utc(2026, 6, 1, 8), utc(2026, 6, 1, 8)),
        # 09:00 exactly is open; 17:00 exactly is closed
        (utc(2026, 6, 1, 7), utc(2026, 6, 1, 7)),
        (utc(2026, 6, 1, 15), utc(2026, 6, 2, 7)),
        # before opening: the same day's opening
        (utc(2026, 6, 1, 5), utc(2026, 6, 1, 7)),
        # Friday 18:30 CEST: Monday 09:00
        (utc(2026, 6, 5, 16, 30), utc(2026, 6, 8, 7)),
        # Wednesday 2026-06-03 after hours; Thursday is Corpus Christi: Friday 09:00
        (utc(2026, 6, 3, 16, 30), utc(2026, 6, 5, 7)),
        # Friday 2026-03-27 18:30 CET, DST weekend: Monday 09:00 CEST = 07:00 UTC
        (utc(2026, 3, 27, 17, 30), utc(2026, 3, 30, 7)),
    ],
)
def test_next_opening_with_hours(instant: datetime, expected: datetime) -> None:
    assert OFFICE.next_opening(instant) == expected


def test_next_opening_without_hours_goes_to_local_midnight() -> None:
    calendar = BusinessCalendar(zone=WARSAW)
    saturday_noon = datetime(2026, 6, 6, 12, tzinfo=WARSAW)
    assert calendar.next_opening(saturday_noon) == utc(2026, 6, 7, 22)  # Mon 00:00 CEST
    tuesday = datetime(2026, 6, 2, 23, 59, tzinfo=WARSAW)
    assert calendar.next_opening(tuesday) == tuesday.astimezone(UTC)
    assert calendar.next_opening(tuesday).tzinfo is UTC


def test_next_opening_at_a_time_inside_the_dst_gap_moves_forward() -> None:
    every_day = BusinessCalendar(
        zone=WARSAW, workdays=frozenset(range(7)), opens=time(2, 30), closes=time(17)
    )
    one_am = datetime(2026, 3, 29, 1, tzinfo=WARSAW)
    # 02:30 does not exist on 2026-03-29: opening is 03:30 CEST = 01:30 UTC
    assert every_day.next_opening(one_am) == utc(2026, 3, 29, 1, 30)


def test_next_opening_rejects_naive() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        OFFICE.next_opening(datetime(2026, 6, 1, 10))


# --- local_to_utc / start_of_day ------------------------------------------------------------


@pytest.mark.parametrize(
    ("wall", "zone", "expected"),
    [
        (datetime(2026, 6, 1, 10), WARSAW, utc(2026, 6, 1, 8)),
        # gap: 02:30 does not exist, becomes 03:30 CEST
        (datetime(2026, 3, 29, 2, 30), WARSAW, utc(2026, 3, 29, 1, 30)),
        (datetime(2026, 3, 29, 2, 0), WARSAW, utc(2026, 3, 29, 1, 0)),
        # ambiguous: 02:30 happens twice, first occurrence is CEST
        (datetime(2026, 10, 25, 2, 30), WARSAW, utc(2026, 10, 25, 0, 30)),
        (datetime(2026, 3, 8, 2, 30), NEW_YORK, utc(2026, 3, 8, 7, 30)),  # 03:30 EDT
        (datetime(2026, 11, 1, 1, 30), NEW_YORK, utc(2026, 11, 1, 5, 30)),  # 01:30 EDT
    ],
)
def test_local_to_utc(wall: datetime, zone: ZoneInfo, expected: datetime) -> None:
    result = local_to_utc(wall, zone)
    assert result == expected
    assert result.tzinfo is UTC


def test_local_to_utc_gap_moves_forward_by_gap_length() -> None:
    result = local_to_utc(datetime(2026, 3, 29, 2, 30), WARSAW).astimezone(WARSAW)
    assert (result.hour, result.minute) == (3, 30)


def test_local_to_utc_rejects_aware() -> None:
    with pytest.raises(ValueError, match="expects a naive wall time"):
        local_to_utc(datetime(2026, 6, 1, tzinfo=UTC), WARSAW)


@pytest.mark.parametrize(
    ("day", "zone", "expected"),
    [
        (date(2026, 6, 1), WARSAW, utc(2026, 5, 31, 22)),
        (date(2026, 1, 1), NEW_YORK, utc(2026, 1, 1, 5)),
        # midnight falls in the DST gap: the day starts at 01:00 local
        (date(2018, 11, 4), ZoneInfo("America/Sao_Paulo"), utc(2018, 11, 4, 3)),
        (date(2026, 3, 29), ZoneInfo("Asia/Beirut"), utc(2026, 3, 28, 22)),
    ],
)
def test_start_of_day(day: date, zone: ZoneInfo, expected: datetime) -> None:
    assert start_of_day(day, zone) == expected
