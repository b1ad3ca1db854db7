"""P14, P15, P23 and one clock: instants survive both databases exactly, timers come due at the
DST-correct instant stored and fired through the database, and on PostgreSQL due-ness is decided by
the server's clock, so a worker whose clock runs ahead does not fire anything early."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from engine import loader
from engine.clock import ManualClock, SystemClock
from engine.runtime import Engine
from tests.reliability import figures

INSTANTS = """\
process: instants
version: 1
data:
  type: object
  properties:
    when: {type: string, format: date-time}
initial: waiting
states:
  waiting:
    after:
      - at: data.when
        name: at_when
        to: done
  done:
    final: true
"""


@pytest.fixture
def shared_engine(make_engine: Any) -> Engine:
    """One engine for all of a Hypothesis test's examples (fixtures are not reset between them)."""
    return make_engine()


ZONES = sorted(z for z in available_timezones() if "/" in z and not z.startswith(("posix/", "right/")))
round_trips = {"count": 0}


@given(
    instant=st.datetimes(
        min_value=datetime(1900, 1, 2),
        max_value=datetime(2200, 12, 30),
        timezones=st.sampled_from(ZONES).map(ZoneInfo),
    )
)
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    database=None,
)
def test_aware_instants_from_any_zone_come_back_equal_and_in_utc(
    shared_engine: Engine, instant: datetime
) -> None:
    engine = shared_engine
    engine.deploy(loader.load_text(INSTANTS, "instants.yaml"))  # the same content again: a no-op
    when = instant.astimezone(UTC).isoformat()  # RFC 3339 text (LMT offsets have seconds)
    started = engine.start("instants", uuid.uuid4().hex, {"when": when}, at=instant).instance
    again = engine.get(started.id)
    [timer] = engine.timers(instance=started.id)
    [entry] = engine.history(started.id)
    # In UTC: an instant in a repeated hour never compares equal across zones (PEP 495).
    expected = instant.astimezone(UTC)
    for stored in (again.last_event_at, entry.at, timer.due_at):
        assert stored == expected  # the same instant, to the microsecond
        assert stored.utcoffset() == timedelta(0) and stored.tzinfo is UTC
    round_trips["count"] += 1


@pytest.fixture(scope="module", autouse=True)
def _count_round_trips() -> Iterator[None]:
    yield
    figures.record("time", "both", instants_round_tripped=round_trips["count"])


# -- DST and holidays, end to end ----------------------------------------------------------------
TIMER = """\
process: due
version: 1
timezone: {zone}
{calendar}
initial: waiting
states:
  waiting:
    after:
      - delay: "{delay}"
        name: later
        to: done
  done:
    final: true
"""
CASES = [
    # zone, calendar country, local start, delay, local due, elapsed hours
    ("Europe/Warsaw", None, "2026-03-20T10:00", "2w", "2026-04-03T10:00", 335),
    ("Europe/Warsaw", None, "2026-10-20T10:00", "2w", "2026-11-03T10:00", 337),
    ("Europe/Warsaw", None, "2026-03-28T12:00", "24h", "2026-03-29T13:00", 24),
    ("Europe/Warsaw", None, "2026-03-28T12:00", "1d", "2026-03-29T12:00", 23),
    ("America/New_York", None, "2026-03-07T09:00", "1w", "2026-03-14T09:00", 167),
    ("America/New_York", None, "2026-10-31T09:00", "1d", "2026-11-01T09:00", 25),
    ("Europe/Warsaw", "PL", "2026-04-30T10:00", "1 business day", "2026-05-04T10:00", 96),  # 1 May, weekend
    ("Europe/Warsaw", "PL", "2026-11-10T10:00", "1 business day", "2026-11-12T10:00", 48),  # 11 November
    ("America/New_York", "US", "2026-07-02T10:00", "1 business day", "2026-07-06T10:00", 96),  # 3 July
    ("Europe/Warsaw", None, "2026-03-01T02:30", "4w", "2026-03-29T03:30", 672),  # 02:30 does not exist
    ("Europe/Budapest", None, "2026-10-18T02:30", "1w", "2026-10-25T02:30", 168),  # ambiguous: the first
]


@pytest.mark.parametrize(
    ("zone", "country", "start", "delay", "due", "hours"),
    CASES,
    ids=[f"{c[0]} {c[2]} +{c[3]}" for c in CASES],
)
def test_due_instants_are_dst_and_holiday_correct_through_the_database(
    make_engine: Any,
    backend_name: str,
    zone: str,
    country: str | None,
    start: str,
    delay: str,
    due: str,
    hours: int,
) -> None:
    local = ZoneInfo(zone)
    begin = datetime.fromisoformat(start).replace(tzinfo=local).astimezone(UTC)
    expected = datetime.fromisoformat(due).replace(tzinfo=local, fold=0).astimezone(UTC)
    assert expected - begin == timedelta(hours=hours)
    calendar = f"calendar: {{country: {country}}}" if country else ""
    clock = ManualClock(begin)
    engine = make_engine(clock=clock)
    engine.deploy(loader.load_text(TIMER.format(zone=zone, calendar=calendar, delay=delay), "due.yaml"))
    case = engine.start("due", "c1").instance

    [timer] = engine.timers(instance=case.id)
    assert timer.due_at == expected
    assert engine.tick(expected - timedelta(microseconds=1)).fired == []  # not a microsecond early
    [fired] = engine.tick(expected).fired
    assert (fired.timer.name, engine.get(case.id).state) == ("later", "done")
    assert engine.history(case.id)[-1].at == expected
    figures.record("time", backend_name, dst_and_holiday_cases=1)


# -- one clock ------------------------------------------------------------------------------------
class AheadClock(SystemClock):
    """A worker host whose clock runs an hour fast (NTP broken, a VM resumed)."""

    def now(self) -> datetime:
        return super().now() + timedelta(hours=1)


PING = """\
process: ping
version: 1
initial: waiting
states:
  waiting:
    after:
      - delay: 30m
        name: expire
        to: expired
  expired:
    final: true
"""


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_worker_whose_clock_is_ahead_does_not_fire_early_on_postgresql(
    migrated_url: str, backend_name: str
) -> None:
    with Engine(migrated_url) as clerk, Engine(migrated_url, AheadClock()) as fast_worker:
        clerk.deploy(loader.load_text(PING, "ping.yaml"))
        soon = clerk.start("ping", "soon").instance  # due in 30 minutes, by the real clock
        late = clerk.start("ping", "late", at=datetime.now(UTC) - timedelta(hours=1)).instance  # 30 min late
        with fast_worker.db.connect() as conn:
            server_now = conn.execute(text("SELECT now()")).scalar_one()

        report = fast_worker.tick()

        assert abs(report.until - server_now) < timedelta(minutes=1)  # the server's clock, not +1h
        assert [f.instance_id for f in report.fired] == [late.id]  # the due one only
        [fired] = report.fired
        assert 1700 < fired.lateness_seconds < 1900  # 30 minutes by the server, not 90
        [timer] = fast_worker.timers(instance=late.id, status="fired")
        assert timer.fired_at is not None and abs(timer.fired_at - server_now) < timedelta(minutes=1)
        assert [t.name for t in fast_worker.timers(instance=soon.id)] == ["expire"]  # still pending

        # An injected clock is obeyed (tests, replays), and so is an explicit --until.
        manual = ManualClock(datetime.now(UTC) + timedelta(hours=1))
        with Engine(migrated_url, manual) as replay:
            assert [f.instance_id for f in replay.tick().fired] == [soon.id]
    figures.record("time", backend_name, early_fires_by_a_fast_worker=0)
