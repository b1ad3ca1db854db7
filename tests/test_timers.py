"""Timers on SQLite and PostgreSQL: due order, logical time, catch-up after a gap, DST, guards.

Only manual clocks: time moves because a test says so, never by sleeping.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from engine.clock import ManualClock
from engine.runtime import Engine

FIXTURES = Path(__file__).parent / "fixtures"
WARSAW = ZoneInfo("Europe/Warsaw")
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def engine(make_engine: Callable[..., Engine], clock: ManualClock) -> Engine:
    sales = make_engine(clock=clock)
    for name in ("offer_loop", "renewal", "escalation", "chain", "ping"):
        sales.deploy(FIXTURES / f"{name}.yaml")
    return sales


def test_tick_fires_due_timers_in_due_order_at_their_due_instant(engine: Engine, clock: ManualClock) -> None:
    started_at = {"late": T0 + timedelta(minutes=30), "first": T0, "middle": T0 + timedelta(minutes=10)}
    ids = {key: engine.start("ping", key, at=at).instance.id for key, at in started_at.items()}
    not_yet = engine.start("ping", "not-yet", at=T0 + timedelta(hours=5)).instance.id
    clock.set(T0 + timedelta(hours=2))

    report = engine.tick()

    assert report.until == clock.now()
    assert [f.instance_id for f in report.fired] == [ids["first"], ids["middle"], ids["late"]]
    for fired in report.fired:
        due = fired.timer.due_at
        assert (fired.outcome, fired.from_state, fired.to_state) == ("fired", "waiting", "expired")
        assert fired.lateness_seconds == (clock.now() - due).total_seconds()
        last = engine.history(fired.instance_id)[-1]
        assert (last.event, last.source, last.at, last.recorded_at) == ("expire", "timer", due, clock.now())
        assert engine.get(fired.instance_id).status == "closed"
    assert [t.instance_id for t in engine.timers()] == [not_yet]
    assert engine.next_due() == T0 + timedelta(hours=6)


def test_a_timer_fired_on_time_is_not_late(engine: Engine, clock: ManualClock) -> None:
    engine.start("ping", "p1")
    clock.advance(timedelta(hours=1))

    [fired] = engine.tick().fired

    assert fired.lateness_seconds == 0.0
    [timer] = engine.timers(status="fired")
    assert (timer.fired_at, timer.lateness_seconds) == (T0 + timedelta(hours=1), 0.0)


@pytest.mark.parametrize(
    ("days", "fired", "state"),
    [
        (1, ["to_step2"], "step2"),
        (2, ["to_step2", "to_step3"], "step3"),
        (5, ["to_step2", "to_step3", "to_done"], "done"),
    ],
    ids=["one-day", "two-days", "all"],
)
def test_timers_armed_by_a_firing_also_fire_in_the_same_tick_when_due_by_until(
    engine: Engine, days: int, fired: list[str], state: str
) -> None:
    instance = engine.start("chain", "k1").instance

    report = engine.tick(until=T0 + timedelta(days=days))

    assert [f.timer.name for f in report.fired] == fired
    assert engine.get(instance.id).state == state
    timer_rows = [e for e in engine.history(instance.id) if e.source == "timer"]
    assert [e.at for e in timer_rows] == [T0 + timedelta(days=n) for n in range(1, len(fired) + 1)]
    assert engine.tick(until=T0 + timedelta(days=days)).fired == []


def test_tick_limit_fires_at_most_that_many_and_leaves_the_rest_pending(
    engine: Engine, clock: ManualClock
) -> None:
    for n in range(5):
        engine.start("ping", f"p{n}", at=T0 + timedelta(minutes=n))
    clock.advance(timedelta(hours=2))

    first = engine.tick(limit=2)
    rest = engine.tick()

    assert [f.timer.due_at for f in first.fired] == [T0 + timedelta(hours=1, minutes=n) for n in (0, 1)]
    assert len(rest.fired) == 3
    assert engine.timers() == []


def test_a_timer_whose_state_was_left_is_cancelled_and_never_fires(
    engine: Engine, clock: ManualClock
) -> None:
    instance = engine.start("offer_loop", "c1", {"name": "Acme"}).instance
    engine.fire(instance.id, "make_offer", {"amount": 50000}, roles=["sales_rep"])
    engine.fire(instance.id, "accepted", {"amount": 50000})  # -> approval, which has no timers
    history_before = engine.history(instance.id)
    clock.advance(timedelta(days=365))

    report = engine.tick()

    assert report.fired == []
    [timer] = engine.timers(instance=instance.id, status=None)
    assert (timer.name, timer.status, timer.fired_at) == ("recontact", "cancelled", None)
    assert engine.get(instance.id).state == "approval"
    assert engine.history(instance.id) == history_before


def test_a_timer_whose_guard_is_false_is_recorded_and_changes_nothing(
    engine: Engine, clock: ManualClock
) -> None:
    instance = engine.start("escalation", "quiet", {"priority": False}).instance
    clock.advance(timedelta(days=2))

    [fired] = engine.tick().fired

    guard_note = "guard 'has(data.priority) && data.priority' was false; nothing changed"
    assert (fired.outcome, fired.from_state, fired.to_state, fired.note) == (
        "skipped",
        "waiting",
        "waiting",
        guard_note,
    )
    after = engine.get(instance.id)
    assert (after.state, after.data, after.status) == ("waiting", {"priority": False}, "active")
    last = engine.history(instance.id)[-1]
    assert (last.event, last.source, last.note, last.at) == (
        "escalate",
        "timer",
        guard_note,
        T0 + timedelta(days=1),
    )
    assert (last.from_state, last.to_state, last.data_changes) == ("waiting", "waiting", None)
    [timer] = engine.timers(instance=instance.id, status=None)
    assert timer.status == "skipped"
    assert engine.tick().fired == []


def test_a_timer_whose_guard_holds_moves_the_case(engine: Engine, clock: ManualClock) -> None:
    instance = engine.start("escalation", "loud", {"priority": True}).instance
    clock.advance(timedelta(days=1))

    [fired] = engine.tick().fired

    assert (fired.outcome, fired.to_state, fired.note) == ("fired", "escalated", None)
    assert engine.get(instance.id).state == "escalated"
    [pending] = engine.timers(instance=instance.id)
    assert (pending.name, pending.due_at) == ("overdue", T0 + timedelta(days=3))


def test_a_timer_that_cannot_fire_is_recorded_as_failed_once(engine: Engine, clock: ManualClock) -> None:
    instance = engine.start("escalation", "loud", {"priority": True}).instance
    clock.advance(timedelta(days=4))

    report = engine.tick()

    assert [(f.timer.name, f.outcome) for f in report.fired] == [("escalate", "fired"), ("overdue", "failed")]
    failed = report.fired[1]
    assert failed.note is not None
    assert "field 'level'" in failed.note and "maximum of 3" in failed.note
    after = engine.get(instance.id)
    assert (after.state, after.data) == ("escalated", {"priority": True})
    assert engine.history(instance.id)[-1].note == failed.note
    assert engine.tick().fired == []  # not retried for ever


def test_an_internal_timer_sets_data_and_keeps_the_other_timers(engine: Engine, clock: ManualClock) -> None:
    clock.set(utc(2026, 6, 1, 8, 0))
    instance = engine.start("renewal", "contract-7", {"contract_end": "2026-06-30"}).instance
    [window] = engine.tick().fired  # the window opened on 31 May, before the start
    assert (window.timer.name, window.to_state) == ("renewal_window", "renewal_due")
    expiry_before = [t for t in engine.timers(instance=instance.id) if t.name == "contract_ended"]
    clock.advance(timedelta(days=7))

    [reminder] = engine.tick().fired

    assert (reminder.timer.name, reminder.outcome, reminder.to_state) == ("reminder", "fired", "renewal_due")
    after = engine.get(instance.id)
    assert (after.state, after.data["reminded"]) == ("renewal_due", True)
    assert engine.timers(instance=instance.id) == expiry_before
    assert expiry_before[0].due_at == utc(2026, 6, 30, 22, 0)  # 1 July 00:00 in Warsaw


def test_after_a_gap_a_long_overdue_timer_fires_once_late_with_its_lateness(
    make_engine: Callable[..., Engine],
) -> None:
    before_gap = make_engine(clock=ManualClock(T0))
    before_gap.deploy(FIXTURES / "ping.yaml")
    instance = before_gap.start("ping", "p1").instance
    before_gap.close()  # every worker is down for 90 days
    back = T0 + timedelta(days=90)

    restarted = make_engine(clock=ManualClock(back))
    [fired] = restarted.tick().fired
    again = restarted.tick()

    due = T0 + timedelta(hours=1)
    expected_lateness = (back - due).total_seconds()
    assert (fired.outcome, fired.timer.due_at, fired.lateness_seconds) == ("fired", due, expected_lateness)
    [timer] = restarted.timers(instance=instance.id, status=None)
    assert (timer.status, timer.fired_at, timer.lateness_seconds) == ("fired", back, expected_lateness)
    last = restarted.history(instance.id)[-1]
    assert (last.at, last.recorded_at, last.to_state) == (due, back, "expired")
    assert again.fired == []
    assert [e.event for e in restarted.history(instance.id)] == ["start", "expire"]


@pytest.mark.parametrize(
    ("contract_end", "due"),
    [
        pytest.param("2026-06-30", utc(2026, 5, 30, 22, 0), id="summer-time"),
        pytest.param("2026-04-15", utc(2026, 3, 15, 23, 0), id="due-before-the-spring-change"),
        pytest.param("2026-11-20", utc(2026, 10, 20, 22, 0), id="due-before-the-autumn-change"),
    ],
)
def test_at_contract_end_minus_30_days_is_local_midnight_in_the_process_zone(
    engine: Engine, contract_end: str, due: datetime
) -> None:
    instance = engine.start("renewal", "contract-7", {"contract_end": contract_end}).instance

    [timer] = engine.timers(instance=instance.id)
    early = engine.tick(until=due - timedelta(seconds=1))
    on_time = engine.tick(until=due)

    assert timer.due_at == due
    local = due.astimezone(WARSAW)
    assert (local.hour, local.minute) == (0, 0)
    assert (datetime.fromisoformat(contract_end).date() - local.date()).days == 30
    assert early.fired == []
    assert [f.timer.name for f in on_time.fired] == ["renewal_window"]
    assert engine.get(instance.id).state == "renewal_due"
    assert engine.history(instance.id)[-1].at == due


def test_changing_the_end_date_re_arms_the_renewal_timer_for_the_new_date(engine: Engine) -> None:
    instance = engine.start("renewal", "contract-7", {"contract_end": "2026-06-30"}).instance
    [old] = engine.timers(instance=instance.id)

    engine.fire(instance.id, "end_date_changed", {"contract_end": "2026-09-30"})

    [new] = engine.timers(instance=instance.id)
    assert new.id != old.id
    assert new.due_at == utc(2026, 8, 30, 22, 0)  # 31 August 00:00 in Warsaw
    assert engine.tick(until=utc(2026, 8, 1)).fired == []


@pytest.mark.parametrize(
    ("offered_at", "due", "hours"),
    [
        pytest.param(utc(2026, 3, 20, 8, 0), utc(2026, 4, 3, 7, 0), 335, id="across-29-march-2026"),
        pytest.param(utc(2026, 10, 20, 7, 0), utc(2026, 11, 3, 8, 0), 337, id="across-25-october-2026"),
    ],
)
def test_two_weeks_across_a_dst_change_keeps_the_local_wall_time(
    engine: Engine, clock: ManualClock, offered_at: datetime, due: datetime, hours: int
) -> None:
    clock.set(offered_at)
    instance = engine.start("offer_loop", "c1", {"name": "Acme"}).instance
    engine.fire(instance.id, "make_offer", {"amount": 500}, roles=["sales_rep"])

    [timer] = engine.timers(instance=instance.id)
    early = engine.tick(until=due - timedelta(seconds=1))
    on_time = engine.tick(until=due)

    assert timer.due_at == due
    assert (due - offered_at) == timedelta(hours=hours)
    assert due.astimezone(WARSAW).time() == offered_at.astimezone(WARSAW).time()  # 09:00 both times
    assert early.fired == []
    assert [(f.timer.name, f.to_state) for f in on_time.fired] == [("recontact", "recontact")]
    assert engine.history(instance.id)[-1].at == due
    [give_up] = engine.timers(instance=instance.id)
    assert give_up.due_at == due + timedelta(days=30)  # armed from the due instant, not the clock
