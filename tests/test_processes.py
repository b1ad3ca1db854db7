"""The shipped processes (processes/*.yaml) walked through their main paths with the library API.

Every test runs on SQLite and on PostgreSQL (when configured), on a ManualClock: time moves only
through ``tick(until=...)`` and the ``at=`` of each step. Timer instants are asserted in UTC, and
checked against the local wall time a user of the process would expect.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from engine import loader
from engine.clock import ManualClock
from engine.definition import ProcessDefinition
from engine.errors import EventRejected
from engine.runtime import Engine, FiredTimer
from storage.repository import InstanceRecord

PROCESSES = Path(__file__).resolve().parent.parent / "processes"
WARSAW = ZoneInfo("Europe/Warsaw")
BUDAPEST = ZoneInfo("Europe/Budapest")
MOSCOW = ZoneInfo("Europe/Moscow")
SECOND = timedelta(seconds=1)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def local(zone: ZoneInfo, *parts: int) -> datetime:
    return datetime(*parts, tzinfo=zone)  # type: ignore[misc]


@functools.cache
def shipped(process: str) -> ProcessDefinition:
    """A shipped process, read and checked once per test session."""
    return loader.load_file(PROCESSES / f"{process}.yaml")


class Sales:
    """An Engine driven by a manual clock; each shipped process is deployed when first started."""

    def __init__(self, engine: Engine, clock: ManualClock) -> None:
        self.engine = engine
        self.clock = clock
        self.deployed: set[str] = set()

    def start(self, process: str, key: str, data: dict[str, Any], at: datetime) -> InstanceRecord:
        if process not in self.deployed:
            assert self.engine.deploy(shipped(process)).created
            self.deployed.add(process)
        self.clock.set(at)
        result = self.engine.start(process, key, data, at=at, actor="back_office")
        assert result.created
        return result.instance

    def fire(
        self,
        ref: int | str,
        event: str,
        input: dict[str, Any] | None = None,
        *,
        at: datetime,
        roles: tuple[str, ...] = (),
        actor: str = "staff",
    ) -> InstanceRecord:
        self.clock.set(at)
        return self.engine.fire(ref, event, input, actor=actor, roles=roles, at=at).instance

    def refused(
        self,
        ref: int | str,
        event: str,
        input: dict[str, Any] | None = None,
        *,
        at: datetime,
        roles: tuple[str, ...] = (),
    ) -> str:
        """Fire an event that must be refused; assert nothing changed and return the reason."""
        before, history = self.engine.get(ref), self.engine.history(ref)
        with pytest.raises(EventRejected) as refused:
            self.engine.fire(ref, event, input, actor="staff", roles=roles, at=at)
        assert self.engine.get(ref) == before
        assert self.engine.history(ref) == history
        return refused.value.message

    def tick(self, until: datetime) -> list[FiredTimer]:
        """What a worker does when the clock reaches ``until``."""
        self.clock.set(until)
        return self.engine.tick(until).fired

    def get(self, ref: int | str) -> InstanceRecord:
        return self.engine.get(ref)

    def pending(self, ref: int | str) -> dict[str, datetime]:
        """The instance's pending timers, by name: what ``salesflow show`` lists."""
        timers = self.engine.timers(instance=ref)
        assert len({t.name for t in timers}) == len(timers)
        return {t.name: t.due_at for t in timers}

    def timer_statuses(self, ref: int | str) -> list[tuple[str, str, datetime]]:
        return [(t.name, t.status, t.due_at) for t in self.engine.timers(instance=ref, status=None)]

    def events(self, ref: int | str) -> list[tuple[str, str, str | None, str | None]]:
        return [(h.event, h.source, h.from_state, h.to_state) for h in self.engine.history(ref)]


@pytest.fixture
def sales(make_engine: Callable[..., Engine]) -> Sales:
    clock = ManualClock(utc(2026, 1, 5, 8, 0))
    return Sales(make_engine(clock), clock)


def fired(report: list[FiredTimer]) -> list[tuple[str, str, str, str, datetime]]:
    return [(f.timer.name, f.outcome, f.from_state, f.to_state, f.timer.due_at) for f in report]


# ================================================================ private_banking (Warsaw, PL)

PB = "private_banking"


def pb_mailed(sales: Sales, key: str, mailed_at: datetime) -> InstanceRecord:
    sales.start(
        PB, key, {"client_name": f"Client {key}", "segment": "affluent"}, at=mailed_at - timedelta(days=3)
    )
    return sales.fire(
        f"{PB}/{key}",
        "mailing_sent",
        {"batch": "2026-W15", "mailed_on": mailed_at.date().isoformat()},
        at=mailed_at,
        actor="back_office",
    )


def pb_booked(sales: Sales, key: str, meeting_at: str) -> InstanceRecord:
    pb_mailed(sales, key, local(WARSAW, 2026, 4, 7, 9, 0))
    return sales.fire(
        f"{PB}/{key}",
        "meeting_booked",
        {"meeting_at": meeting_at, "advisor": "Marek Lis", "meeting_place": "Warszawa, Złota 44"},
        at=local(WARSAW, 2026, 4, 8, 11, 0),
        roles=("telemarketer",),
        actor="ola",
    )


def test_private_banking_letter_not_followed_by_a_call_goes_overdue_seven_days_later(sales: Sales) -> None:
    mailed_at = local(WARSAW, 2026, 3, 23, 10, 0)  # Monday, CET (+01:00)
    sales.start(
        PB, "C001", {"client_name": "Jan Kowalski", "batch": "2026-W13"}, at=mailed_at - timedelta(days=3)
    )
    waiting = sales.get(f"{PB}/C001")
    assert (waiting.state, waiting.queue, waiting.stage, waiting.status) == (
        "mailing",
        "mailing_batch",
        "mailing",
        "active",
    )
    assert sales.pending(waiting.id) == {}

    case = sales.fire(
        waiting.id, "mailing_sent", {"mailed_on": "2026-03-23"}, at=mailed_at, actor="back_office"
    )

    assert (case.state, case.queue, case.stage) == ("awaiting_call", "telemarketing", "call")
    assert case.data == {
        "client_name": "Jan Kowalski",
        "batch": "2026-W13",
        "mailed_on": "2026-03-23",
        "call_attempts": 0,
    }
    # Seven days later at 10:00 local time, now CEST (+02:00): the clocks changed on 29 March.
    due = utc(2026, 3, 30, 8, 0)
    assert sales.pending(case.id) == {"call_overdue": due}
    assert due.astimezone(WARSAW).time() == time(10, 0)
    assert due - mailed_at == timedelta(days=7, hours=-1)

    assert sales.tick(due - SECOND) == []
    assert sales.get(case.id).state == "awaiting_call"

    report = sales.tick(due)

    assert fired(report) == [("call_overdue", "fired", "awaiting_call", "call_overdue", due)]
    overdue = sales.get(case.id)
    assert (overdue.state, overdue.queue, overdue.stage, overdue.status) == (
        "call_overdue",
        "telemarketing_overdue",
        "call",
        "active",
    )
    last = sales.engine.history(case.id)[-1]
    assert (last.event, last.source, last.actor, last.at) == ("call_overdue", "timer", "timer", due)
    assert [i.key for i in sales.engine.list_instances(process=PB, queue="telemarketing_overdue")] == ["C001"]
    # Three more weeks without contact: given up, at 10:00 local again.
    given_up = utc(2026, 4, 20, 8, 0)
    assert sales.pending(case.id) == {"given_up": given_up}

    assert fired(sales.tick(given_up)) == [("given_up", "fired", "call_overdue", "not_reached", given_up)]
    closed = sales.get(case.id)
    assert (closed.state, closed.status, closed.outcome, closed.queue) == (
        "not_reached",
        "closed",
        "not_reached",
        None,
    )
    assert sales.pending(case.id) == {}


def test_private_banking_overdue_case_can_still_be_booked(sales: Sales) -> None:
    case = pb_mailed(sales, "C002", local(WARSAW, 2026, 3, 2, 9, 0))
    sales.tick(utc(2026, 3, 9, 8, 0))
    assert sales.get(case.id).state == "call_overdue"

    booked = sales.fire(
        case.id,
        "meeting_booked",
        {"meeting_at": "2026-03-12T16:00:00+01:00"},
        at=local(WARSAW, 2026, 3, 10, 9, 30),
        roles=("telemarketer",),
    )

    assert (booked.state, booked.queue) == ("meeting_booked", "advisor_meetings")
    assert sales.pending(case.id) == {
        "remind_client": utc(2026, 3, 11, 15, 0),
        "outcome_due": utc(2026, 3, 12, 17, 0),
    }
    assert ("given_up", "cancelled", utc(2026, 3, 30, 7, 0)) in sales.timer_statuses(case.id)


def test_private_banking_meeting_reminder_the_day_before_and_outcome_missing_two_hours_after(
    sales: Sales,
) -> None:
    case = pb_booked(sales, "C003", "2026-04-14T10:30:00+02:00")

    assert (case.state, case.queue, case.stage) == ("meeting_booked", "advisor_meetings", "meeting")
    assert case.data["meeting_at"] == "2026-04-14T10:30:00+02:00"
    assert case.data["advisor"] == "Marek Lis"
    remind, outcome_due = utc(2026, 4, 13, 8, 30), utc(2026, 4, 14, 10, 30)
    assert sales.pending(case.id) == {"remind_client": remind, "outcome_due": outcome_due}
    # The one-week call deadline no longer applies once the meeting is booked.
    assert ("call_overdue", "cancelled", utc(2026, 4, 14, 7, 0)) in sales.timer_statuses(case.id)

    assert sales.tick(remind - SECOND) == []
    assert fired(sales.tick(remind)) == [
        ("remind_client", "fired", "meeting_booked", "meeting_booked", remind)
    ]

    reminded = sales.get(case.id)
    assert (reminded.state, reminded.queue) == ("meeting_booked", "advisor_meetings")
    assert reminded.data["client_reminder_due"] is True
    entry = sales.engine.history(case.id)[-1]
    assert (entry.event, entry.source, entry.at, entry.data_changes) == (
        "remind_client",
        "timer",
        remind,
        {"client_reminder_due": True},
    )
    # The reminder does not leave the state: the outcome deadline is still armed, unchanged.
    assert sales.pending(case.id) == {"outcome_due": outcome_due}

    assert sales.tick(outcome_due - SECOND) == []
    assert fired(sales.tick(outcome_due)) == [
        ("outcome_due", "fired", "meeting_booked", "outcome_missing", outcome_due)
    ]
    missing = sales.get(case.id)
    assert (missing.state, missing.queue, missing.stage, missing.status) == (
        "outcome_missing",
        "advisor_outcome_missing",
        "meeting",
        "active",
    )

    # The advisor records the outcome late; the case closes as won.
    won = sales.fire(
        case.id,
        "bought",
        {"product": "private_banking_gold"},
        at=local(WARSAW, 2026, 4, 14, 15, 0),
        roles=("advisor",),
    )
    assert (won.state, won.status, won.outcome) == ("bought", "closed", "won")


def test_private_banking_meeting_booked_less_than_a_day_ahead_is_flagged_at_once(sales: Sales) -> None:
    pb_mailed(sales, "C004", local(WARSAW, 2026, 4, 7, 9, 0))
    booked_at = local(WARSAW, 2026, 4, 8, 11, 0)
    case = sales.fire(
        f"{PB}/C004",
        "meeting_booked",
        {"meeting_at": "2026-04-08T17:00:00+02:00"},
        at=booked_at,
        roles=("telemarketer",),
    )

    report = sales.tick(booked_at)

    assert fired(report) == [
        ("remind_client", "fired", "meeting_booked", "meeting_booked", utc(2026, 4, 7, 15, 0))
    ]
    assert sales.get(case.id).data["client_reminder_due"] is True
    assert sales.engine.history(case.id)[-1].at == booked_at  # history never goes backwards


def test_private_banking_rescheduled_meeting_rearms_both_timers(sales: Sales) -> None:
    case = pb_booked(sales, "C005", "2026-04-14T10:30:00+02:00")
    sales.tick(utc(2026, 4, 13, 9, 0))
    assert sales.get(case.id).data["client_reminder_due"] is True

    moved = sales.fire(
        case.id,
        "rescheduled",
        {"meeting_at": "2026-04-21T15:00:00+02:00", "note": "client travelling"},
        at=local(WARSAW, 2026, 4, 13, 12, 0),
        roles=("advisor",),
    )

    assert (moved.state, moved.queue) == ("meeting_booked", "advisor_meetings")
    assert moved.data["meeting_at"] == "2026-04-21T15:00:00+02:00"
    assert moved.data["client_reminder_due"] is False
    assert sales.pending(case.id) == {
        "remind_client": utc(2026, 4, 20, 13, 0),
        "outcome_due": utc(2026, 4, 21, 15, 0),
    }
    statuses = sales.timer_statuses(case.id)
    assert ("remind_client", "fired", utc(2026, 4, 13, 8, 30)) in statuses
    assert ("outcome_due", "cancelled", utc(2026, 4, 14, 10, 30)) in statuses

    # The old meeting time passes without anything happening.
    assert sales.tick(utc(2026, 4, 15, 0, 0)) == []
    assert sales.get(case.id).state == "meeting_booked"
    # The new ones fire at the new times.
    assert [(n, o) for n, o, *_ in fired(sales.tick(utc(2026, 4, 21, 15, 0)))] == [
        ("remind_client", "fired"),
        ("outcome_due", "fired"),
    ]
    assert sales.get(case.id).state == "outcome_missing"


def test_private_banking_the_three_meeting_outcomes(sales: Sales) -> None:
    meeting = "2026-04-14T10:30:00+02:00"
    after_meeting = local(WARSAW, 2026, 4, 14, 11, 45)
    buyer, thinker, refuser = (pb_booked(sales, key, meeting) for key in ("C010", "C011", "C012"))

    won = sales.fire(
        buyer.id,
        "bought",
        {"product": "private_banking_gold"},
        at=after_meeting,
        roles=("advisor",),
        actor="marek",
    )
    assert (won.state, won.status, won.outcome, won.queue, won.stage) == (
        "bought",
        "closed",
        "won",
        None,
        "decision",
    )
    assert won.data["product"] == "private_banking_gold"
    assert sales.pending(buyer.id) == {}
    last = sales.engine.history(buyer.id)[-1]
    assert (last.actor, last.source, last.from_state, last.to_state) == (
        "marek",
        "staff",
        "meeting_booked",
        "bought",
    )

    lost = sales.fire(
        refuser.id, "refused", {"reason": "stays with his bank"}, at=after_meeting, roles=("advisor",)
    )
    assert (lost.state, lost.status, lost.outcome) == ("refused", "closed", "lost")
    assert lost.data["reason"] == "stays with his bank"
    assert sales.pending(refuser.id) == {}

    later = sales.fire(
        thinker.id,
        "buy_within_12_months",
        {"note": "after selling his flat"},
        at=after_meeting,
        roles=("advisor",),
    )
    assert (later.state, later.status, later.queue, later.stage) == (
        "follow_up",
        "active",
        "follow_up_12_months",
        "decision",
    )
    # 11 months later, 11:45 local time again (CET in March 2027, so 10:45 UTC).
    follow_up_due = utc(2027, 3, 14, 10, 45)
    assert sales.pending(thinker.id) == {"follow_up_due": follow_up_due}
    assert follow_up_due.astimezone(WARSAW).time() == time(11, 45)

    assert sales.tick(follow_up_due - SECOND) == []
    assert fired(sales.tick(follow_up_due)) == [
        ("follow_up_due", "fired", "follow_up", "awaiting_call", follow_up_due)
    ]
    again = sales.get(thinker.id)
    assert (again.state, again.queue, again.status) == ("awaiting_call", "telemarketing", "active")
    assert again.data["follow_ups"] == 1
    assert again.data["call_attempts"] == 0
    assert sales.pending(thinker.id) == {"call_overdue": utc(2027, 3, 21, 10, 45)}

    assert [(i.key, i.outcome) for i in sales.engine.list_instances(process=PB, closed=True)] == [
        ("C010", "won"),
        ("C012", "lost"),
    ]


def test_private_banking_roles_decide_who_records_what(sales: Sales) -> None:
    case = pb_mailed(sales, "C020", local(WARSAW, 2026, 4, 7, 9, 0))
    at = local(WARSAW, 2026, 4, 8, 10, 0)
    meeting = {"meeting_at": "2026-04-14T10:30:00+02:00"}

    reason = sales.refused(case.id, "meeting_booked", meeting, at=at, roles=("advisor",))
    assert "needs role telemarketer" in reason
    assert "needs role telemarketer" in sales.refused(case.id, "meeting_booked", meeting, at=at)
    assert "not allowed in state 'awaiting_call'" in sales.refused(
        case.id, "bought", {}, at=at, roles=("advisor",)
    )

    sales.fire(case.id, "meeting_booked", meeting, at=at, roles=("telemarketer",))
    after = local(WARSAW, 2026, 4, 14, 11, 30)
    reason = sales.refused(case.id, "bought", {"product": "gold"}, at=after, roles=("telemarketer",))
    assert reason == "event 'bought' needs role advisor; the caller has: telemarketer"
    assert "needs role advisor" in sales.refused(case.id, "refused", {}, at=after, roles=("telemarketer",))
    assert "meeting_at" in sales.refused(case.id, "rescheduled", {}, at=after, roles=("telemarketer",))

    won = sales.fire(case.id, "bought", {"product": "gold"}, at=after, roles=("advisor",))
    assert won.outcome == "won"
    assert "closed" in sales.refused(case.id, "refused", {}, at=after, roles=("advisor",))


def test_private_banking_fifth_unanswered_call_closes_as_not_reached(sales: Sales) -> None:
    case = pb_mailed(sales, "C030", local(WARSAW, 2026, 4, 7, 9, 0))
    deadline = sales.pending(case.id)
    assert deadline == {"call_overdue": utc(2026, 4, 14, 7, 0)}

    for attempt in range(1, 5):
        after = sales.fire(
            case.id,
            "no_answer",
            at=local(WARSAW, 2026, 4, 7 + attempt, 10, 0),
            roles=("telemarketer",),
            actor="ola",
        )
        assert (after.state, after.queue, after.data["call_attempts"]) == (
            "awaiting_call",
            "telemarketing",
            attempt,
        )
        # An unanswered call does not restart the one-week deadline.
        assert sales.pending(case.id) == deadline

    closed = sales.fire(case.id, "no_answer", at=local(WARSAW, 2026, 4, 13, 16, 0), roles=("telemarketer",))

    assert (closed.state, closed.status, closed.outcome, closed.queue) == (
        "not_reached",
        "closed",
        "not_reached",
        None,
    )
    assert closed.data["call_attempts"] == 5
    assert sales.pending(case.id) == {}
    assert sales.tick(utc(2026, 4, 30)) == []
    assert [e[0] for e in sales.events(case.id)] == ["start", "mailing_sent"] + ["no_answer"] * 5


# ================================================================ cross_sell (Budapest, HU)

CS = "cross_sell"
PRODUCTS = ["loan_protection", "life", "unemployment", "accident", "home"]


def cs_offer(sales: Sales, ref: int | str, product: str, at: datetime) -> InstanceRecord:
    return sales.fire(ref, "offer_made", {"product": product}, at=at, roles=("adviser",), actor="eva")


def test_cross_sell_rejection_comes_back_two_weeks_later_with_another_product(sales: Sales) -> None:
    start = local(BUDAPEST, 2026, 3, 16, 9, 0)  # Monday
    case = sales.start(CS, "K-1001", {"client_name": "Kovács Anna", "products": PRODUCTS}, at=start)
    assert (case.state, case.queue, case.stage) == ("to_offer", "adviser_offers", "offer")
    # Five business days without an offer: a reminder, same hour (Mon 16 -> Mon 23 March).
    assert sales.pending(case.id) == {"offer_reminder": utc(2026, 3, 23, 8, 0)}

    offered = cs_offer(sales, case.id, "loan_protection", local(BUDAPEST, 2026, 3, 16, 10, 0))
    assert (offered.state, offered.queue) == ("offered", "adviser_pending_answers")
    assert offered.data["offered"] == ["loan_protection"]
    assert offered.data["rounds"] == 1
    assert offered.data["offer_reminder_due"] is False

    rejected_at = local(BUDAPEST, 2026, 3, 17, 10, 0)  # Tuesday, CET
    waiting = sales.fire(case.id, "rejected", {"reason": "too expensive"}, at=rejected_at, roles=("adviser",))

    assert (waiting.state, waiting.queue, waiting.status) == ("waiting", None, "active")
    assert waiting.data["suggested_product"] == "life"
    assert waiting.data["reason"] == "too expensive"
    # Two weeks later at 10:00 local time; the clocks changed on 29 March (CEST, +02:00).
    recontact = utc(2026, 3, 31, 8, 0)
    assert sales.pending(case.id) == {"recontact": recontact}
    assert recontact.astimezone(BUDAPEST).replace(tzinfo=None) == datetime(2026, 3, 31, 10, 0)

    assert sales.tick(recontact - SECOND) == []
    assert fired(sales.tick(recontact)) == [("recontact", "fired", "waiting", "to_offer", recontact)]
    back = sales.get(case.id)
    assert (back.state, back.queue) == ("to_offer", "adviser_offers")
    assert back.data["suggested_product"] == "life"

    # The product already offered cannot be offered again.
    reason = sales.refused(
        case.id,
        "offer_made",
        {"product": "loan_protection"},
        at=local(BUDAPEST, 2026, 3, 31, 11, 0),
        roles=("adviser",),
    )
    assert reason == (
        "event 'offer_made' was refused: this product was already offered to the client; offer another one"
    )

    second = cs_offer(sales, case.id, "life", local(BUDAPEST, 2026, 3, 31, 11, 0))
    assert (second.data["offered"], second.data["rounds"]) == (["loan_protection", "life"], 2)
    waiting = sales.fire(case.id, "rejected", at=local(BUDAPEST, 2026, 4, 1, 10, 0), roles=("adviser",))
    assert (waiting.state, waiting.data["suggested_product"]) == ("waiting", "unemployment")
    # The client calls before the two weeks are over: the next offer is made at once.
    early = sales.fire(case.id, "client_called", at=local(BUDAPEST, 2026, 4, 2, 9, 0), roles=("adviser",))
    assert early.state == "to_offer"
    assert ("recontact", "cancelled", utc(2026, 4, 15, 8, 0)) in sales.timer_statuses(case.id)

    third = cs_offer(sales, case.id, "unemployment", local(BUDAPEST, 2026, 4, 2, 9, 30))
    assert third.data["rounds"] == 3

    # The third rejection is the last: at most three offers.
    last = sales.fire(case.id, "rejected", at=local(BUDAPEST, 2026, 4, 2, 15, 0), roles=("adviser",))
    assert (last.state, last.status, last.outcome) == ("exhausted", "closed", "lost")
    assert last.data["offered"] == ["loan_protection", "life", "unemployment"]
    assert sales.pending(case.id) == {}


def test_cross_sell_unanswered_offer_counts_as_rejected_after_15_hungarian_business_days(
    sales: Sales,
) -> None:
    case = sales.start(
        CS, "K-1002", {"client_name": "Szabó Béla", "products": ["life", "home"]}, at=utc(2026, 3, 16, 8)
    )
    cs_offer(sales, case.id, "life", local(BUDAPEST, 2026, 3, 16, 10, 0))
    # 15 business days from Monday 16 March skip weekends, Good Friday (3 April) and Easter Monday (6 April).
    no_answer = utc(2026, 4, 8, 8, 0)
    assert sales.pending(case.id) == {"no_answer": no_answer, "no_answer_last_round": no_answer}

    assert sales.tick(no_answer - SECOND) == []
    assert fired(sales.tick(no_answer)) == [("no_answer", "fired", "offered", "waiting", no_answer)]
    waiting = sales.get(case.id)
    assert (waiting.state, waiting.data["suggested_product"]) == ("waiting", "home")

    sales.tick(utc(2026, 4, 22, 8, 0))
    cs_offer(sales, case.id, "home", local(BUDAPEST, 2026, 4, 22, 11, 0))
    # Every candidate product has now been offered: the next silence ends the case.
    due = sales.pending(case.id)["no_answer_last_round"]
    assert due == utc(2026, 5, 14, 9, 0)  # 1 May is a holiday in Hungary
    report = fired(sales.tick(due))
    assert report == [
        ("no_answer", "skipped", "offered", "offered", due),
        ("no_answer_last_round", "fired", "offered", "exhausted", due),
    ]
    assert (sales.get(case.id).state, sales.get(case.id).outcome) == ("exhausted", "lost")


def test_cross_sell_acceptance_leads_to_a_signed_contract(sales: Sales) -> None:
    case = sales.start(
        CS, "K-1003", {"client_name": "Tóth Júlia", "products": PRODUCTS}, at=utc(2026, 5, 4, 7)
    )
    cs_offer(sales, case.id, "home", local(BUDAPEST, 2026, 5, 4, 10, 0))

    accepted = sales.fire(
        case.id, "accepted", {"variant": "premium"}, at=local(BUDAPEST, 2026, 5, 6, 14, 0), roles=("adviser",)
    )

    assert (accepted.state, accepted.queue, accepted.stage) == (
        "contract_preparation",
        "back_office_contracts",
        "contract",
    )
    assert accepted.data["variant"] == "premium"
    assert sales.pending(case.id) == {}
    contract = {"contract_number": "HOME-2026-0042"}
    at = local(BUDAPEST, 2026, 5, 7, 9, 0)
    assert "needs role back_office" in sales.refused(
        case.id, "contract_sent", contract, at=at, roles=("adviser",)
    )
    assert "contract_number" in sales.refused(case.id, "contract_sent", {}, at=at, roles=("back_office",))

    sent = sales.fire(case.id, "contract_sent", contract, at=at, roles=("back_office",), actor="zsofi")
    assert (sent.state, sent.queue, sent.data["contract_number"]) == (
        "contract_sent",
        "awaiting_signature",
        "HOME-2026-0042",
    )
    assert sales.pending(case.id) == {"signature_reminder": utc(2026, 5, 21, 7, 0)}

    signed = sales.fire(
        case.id,
        "signed",
        {"signed_on": "2026-05-12"},
        at=local(BUDAPEST, 2026, 5, 12, 16, 0),
        roles=("adviser",),
    )
    assert (signed.state, signed.status, signed.outcome, signed.stage) == (
        "signed",
        "closed",
        "won",
        "signed",
    )
    assert signed.data["signed_on"] == "2026-05-12"
    assert sales.pending(case.id) == {}
    assert sales.engine.funnel(CS) == [("offer", 1), ("contract", 1), ("signed", 1)]


# ================================================================ contract_renewal (Budapest, HU)

CR = "contract_renewal"


def test_contract_renewal_window_opens_30_days_before_the_end_at_budapest_midnight(sales: Sales) -> None:
    data = {
        "client_name": "Nagy Péter",
        "contract_number": "KGFB-2291",
        "product": "motor_insurance",
        "contract_end": "2026-04-30",
    }
    case = sales.start(CR, "KGFB-2291", data, at=local(BUDAPEST, 2026, 1, 15, 10, 0))
    assert (case.state, case.stage, case.queue) == ("active_contract", "in_force", None)
    # 31 March 2026, 00:00 in Budapest (CEST, +02:00).
    opens = utc(2026, 3, 30, 22, 0)
    assert sales.pending(case.id) == {"renewal_window_opens": opens}
    assert opens.astimezone(BUDAPEST).replace(tzinfo=None) == datetime(2026, 3, 31, 0, 0)

    assert sales.tick(opens - SECOND) == []
    assert fired(sales.tick(opens)) == [
        ("renewal_window_opens", "fired", "active_contract", "renewal_due", opens)
    ]
    due = sales.get(case.id)
    assert (due.state, due.queue, due.stage, due.data["offers"]) == (
        "renewal_due",
        "adviser_renewals",
        "renewal_contact",
        0,
    )
    # The contract has ended when 1 May starts in Budapest.
    ended = utc(2026, 4, 30, 22, 0)
    assert sales.pending(case.id) == {"contract_ended": ended}

    offer = sales.fire(
        case.id,
        "offer_made",
        {"offer": "3 years, fixed premium"},
        at=local(BUDAPEST, 2026, 4, 1, 10, 0),
        roles=("adviser",),
    )
    assert (offer.state, offer.queue, offer.data["offers"]) == (
        "offer_pending",
        "adviser_pending_renewals",
        1,
    )

    rejected = sales.fire(
        case.id,
        "rejected",
        {"reason": "found cheaper"},
        at=local(BUDAPEST, 2026, 4, 2, 10, 0),
        roles=("adviser",),
    )
    assert (rejected.state, rejected.queue) == ("reoffer_wait", None)
    # 10 business days after Thursday 2 April: Good Friday and Easter Monday and two weekends are
    # skipped, so Monday 20 April at 10:00 (not Thursday 16 April).
    reoffer = utc(2026, 4, 20, 8, 0)
    assert sales.pending(case.id) == {"reoffer_due": reoffer, "contract_ended": ended}

    assert sales.tick(reoffer - SECOND) == []
    assert fired(sales.tick(reoffer)) == [("reoffer_due", "fired", "reoffer_wait", "renewal_due", reoffer)]
    again = sales.get(case.id)
    assert (again.state, again.queue) == ("renewal_due", "adviser_renewals")
    offer = sales.fire(
        case.id, "offer_made", {"offer": "1 year"}, at=local(BUDAPEST, 2026, 4, 21, 9, 0), roles=("adviser",)
    )
    assert offer.data["offers"] == 2

    accepted_at = local(BUDAPEST, 2026, 4, 22, 11, 0)
    reason = sales.refused(
        case.id, "accepted", {"new_contract_end": "2026-04-30"}, at=accepted_at, roles=("adviser",)
    )
    assert "new_contract_end > data.contract_end" in reason

    renewed = sales.fire(
        case.id, "accepted", {"new_contract_end": "2027-04-30"}, at=accepted_at, roles=("adviser",)
    )

    assert (renewed.state, renewed.status, renewed.stage, renewed.queue) == (
        "active_contract",
        "active",
        "in_force",
        None,
    )
    assert renewed.data["contract_end"] == "2027-04-30"
    assert renewed.data["renewals"] == 1
    assert datetime.fromisoformat(renewed.data["last_renewed_at"]) == accepted_at
    assert "new_contract_end" not in renewed.data
    # The next renewal contact: 31 March 2027, 00:00 in Budapest (CEST since 28 March 2027).
    assert sales.pending(case.id) == {"renewal_window_opens": utc(2027, 3, 30, 22, 0)}
    # The old end date passes without anything happening.
    assert sales.tick(utc(2026, 5, 2)) == []
    assert sales.get(case.id).state == "active_contract"


def test_contract_renewal_expires_when_nobody_acts(sales: Sales) -> None:
    case = sales.start(
        CR, "INV-7", {"client_name": "Kiss Ádám", "contract_end": "2026-10-31"}, at=utc(2026, 6, 1, 8)
    )

    report = sales.tick(utc(2026, 11, 5))

    opens, ended = utc(2026, 9, 30, 22, 0), utc(2026, 10, 31, 23, 0)  # CEST, then CET after 25 October
    assert fired(report) == [
        ("renewal_window_opens", "fired", "active_contract", "renewal_due", opens),
        ("contract_ended", "fired", "renewal_due", "expired", ended),
    ]
    expired = sales.get(case.id)
    assert (expired.state, expired.status, expired.outcome, expired.queue) == (
        "expired",
        "closed",
        "lost",
        None,
    )
    assert [(h.event, h.source, h.at) for h in sales.engine.history(case.id)[1:]] == [
        ("renewal_window_opens", "timer", opens),
        ("contract_ended", "timer", ended),
    ]
    assert sales.pending(case.id) == {}


def test_contract_renewal_expiry_wins_over_a_reoffer_after_the_end(sales: Sales) -> None:
    """Started less than 30 days before the end: the renewal contact is due at once."""
    start = local(BUDAPEST, 2026, 12, 10, 9, 0)
    case = sales.start(CR, "KGFB-9", {"client_name": "Fehér Lili", "contract_end": "2026-12-31"}, at=start)
    assert sales.pending(case.id) == {"renewal_window_opens": utc(2026, 11, 30, 23, 0)}
    assert fired(sales.tick(start)) == [
        ("renewal_window_opens", "fired", "active_contract", "renewal_due", utc(2026, 11, 30, 23, 0))
    ]
    assert sales.engine.history(case.id)[-1].at == start
    sales.fire(case.id, "offer_made", at=local(BUDAPEST, 2026, 12, 14, 9, 0), roles=("adviser",))
    sales.fire(case.id, "rejected", at=local(BUDAPEST, 2026, 12, 21, 10, 0), roles=("adviser",))
    # 10 business days from Monday 21 December skip 24-26 December and 1 January: 7 January 2027.
    ended = utc(2026, 12, 31, 23, 0)
    assert sales.pending(case.id) == {"contract_ended": ended, "reoffer_due": utc(2027, 1, 7, 9, 0)}

    assert fired(sales.tick(utc(2027, 1, 8))) == [
        ("contract_ended", "fired", "reoffer_wait", "expired", ended)
    ]
    assert (sales.get(case.id).state, sales.get(case.id).outcome) == ("expired", "lost")
    assert ("reoffer_due", "cancelled", utc(2027, 1, 7, 9, 0)) in sales.timer_statuses(case.id)


# ================================================================ b2b_active_sales (Warsaw, PL)

B2B = "b2b_active_sales"


def b2b_to_negotiation(sales: Sales, key: str, territory: str) -> InstanceRecord:
    case = sales.start(
        B2B, key, {"company_name": f"{key} sp. z o.o.", "territory": territory}, at=utc(2026, 5, 4, 7)
    )
    rep = ("sales_rep",)
    sales.fire(case.id, "call_held", {"sales_rep": "tomek"}, at=local(WARSAW, 2026, 5, 5, 10, 0), roles=rep)
    sales.fire(case.id, "offer_sent", {"monthly_bill": 2400}, at=local(WARSAW, 2026, 5, 6, 10, 0), roles=rep)
    return sales.fire(case.id, "negotiation_started", at=local(WARSAW, 2026, 5, 7, 10, 0), roles=rep)


def test_b2b_leads_per_territory_and_channel_through_to_contract(sales: Sales) -> None:
    rep, manager = ("sales_rep",), ("sales_manager",)
    wola, krakow = "PL-MZ-Warszawa-Wola", "PL-MA-Krakow"
    visit = sales.start(
        B2B, "5250001234", {"company_name": "Kowalski Logistyka", "territory": wola}, at=utc(2026, 5, 4, 7)
    )
    call = sales.start(
        B2B, "6760005678", {"company_name": "Nowak Druk", "territory": krakow}, at=utc(2026, 4, 27, 7)
    )
    dud = sales.start(
        B2B, "5210009999", {"company_name": "Zamknięte SA", "territory": wola}, at=utc(2026, 5, 4, 7)
    )
    assert (visit.state, visit.queue, visit.stage) == ("lead", "territory_leads", "lead")

    # The visit channel: book, visit, offer, negotiate, sign.
    booked = sales.fire(
        visit.id,
        "visit_scheduled",
        {"visit_at": "2026-05-12T11:00:00+02:00", "sales_rep": "tomek"},
        at=local(WARSAW, 2026, 5, 4, 12, 0),
        roles=rep,
    )
    assert (booked.state, booked.queue, booked.data["channel"]) == (
        "visit_scheduled",
        "field_visits",
        "visit",
    )
    assert sales.pending(visit.id) == {"visit_not_reported": utc(2026, 5, 13, 9, 0)}
    visited = sales.fire(
        visit.id, "visited", {"note": "CFO interested"}, at=local(WARSAW, 2026, 5, 12, 13, 0), roles=rep
    )
    assert (visited.state, visited.queue, visited.data["visit_report_overdue"]) == (
        "visited",
        "offers_to_prepare",
        False,
    )
    assert sales.pending(visit.id) == {"offer_not_sent": utc(2026, 5, 19, 11, 0)}
    sales.fire(
        visit.id,
        "offer_sent",
        {"monthly_bill": 3150.5, "lines": 25},
        at=local(WARSAW, 2026, 5, 14, 10, 0),
        roles=rep,
    )
    negotiating = sales.fire(visit.id, "negotiation_started", at=local(WARSAW, 2026, 5, 18, 10, 0), roles=rep)
    assert (negotiating.state, negotiating.queue, negotiating.stage) == (
        "negotiation",
        "negotiations",
        "negotiation",
    )
    assert sales.pending(visit.id) == {"negotiation_stalled": utc(2026, 6, 17, 8, 0)}
    won = sales.fire(
        visit.id,
        "contract_signed",
        {"contract_number": "B2B/2026/117", "monthly_bill": 2990},
        at=local(WARSAW, 2026, 5, 20, 15, 0),
        roles=rep,
    )
    assert (won.state, won.status, won.outcome, won.stage) == ("won", "closed", "won", "contract")
    assert (won.data["channel"], won.data["territory"], won.data["monthly_bill"]) == ("visit", wola, 2990)

    # The call channel: the conversation on the phone, then an offer nobody answers.
    called = sales.fire(
        call.id, "call_held", {"sales_rep": "kasia"}, at=local(WARSAW, 2026, 4, 29, 9, 0), roles=rep
    )
    assert (called.state, called.data["channel"]) == ("visited", "call")
    sales.fire(call.id, "offer_sent", {"monthly_bill": 800}, at=local(WARSAW, 2026, 4, 30, 10, 0), roles=rep)
    # 5 business days from Thursday 30 April: 1 May (holiday), the weekend with 3 May: Friday 8 May.
    no_answer = utc(2026, 5, 8, 8, 0)
    assert sales.pending(call.id) == {"no_answer": no_answer}
    assert fired(sales.tick(no_answer)) == [("no_answer", "fired", "offer_sent", "follow_up", no_answer)]
    assert sales.get(call.id).queue == "sales_follow_up"
    again = sales.fire(call.id, "followed_up", at=local(WARSAW, 2026, 5, 8, 11, 0), roles=rep)
    assert (again.state, again.data["follow_ups"]) == ("offer_sent", 1)
    lost = sales.fire(
        call.id, "offer_rejected", {"lost_reason": "price"}, at=local(WARSAW, 2026, 5, 11, 9, 0), roles=rep
    )
    assert (lost.state, lost.outcome, lost.data["lost_reason"]) == ("lost", "lost", "price")

    sales.fire(
        dud.id,
        "disqualified",
        {"lost_reason": "out of business"},
        at=local(WARSAW, 2026, 5, 4, 9, 0),
        roles=manager,
    )

    closed = sales.engine.list_instances(process=B2B, closed=True)
    by_territory = Counter((i.data["territory"], i.outcome) for i in closed)
    assert by_territory == {(wola, "won"): 1, (wola, "lost"): 1, (krakow, "lost"): 1}
    by_channel = Counter((i.data.get("channel"), i.outcome) for i in closed)
    assert by_channel == {("visit", "won"): 1, ("call", "lost"): 1, (None, "lost"): 1}
    assert sales.engine.funnel(B2B) == [
        ("lead", 3),
        ("meeting", 2),
        ("offer", 2),
        ("negotiation", 1),
        ("contract", 1),
    ]


def test_b2b_discount_above_ten_percent_needs_a_sales_manager(sales: Sales) -> None:
    case = b2b_to_negotiation(sales, "7010001111", "PL-MZ-Warszawa-Wola")
    rep, manager = ("sales_rep",), ("sales_manager",)
    at = local(WARSAW, 2026, 5, 8, 10, 0)

    asked = sales.fire(case.id, "discount_requested", {"discount_pct": 15}, at=at, roles=rep)
    assert (asked.state, asked.data["discount_pct"], asked.data["discount_approved"]) == (
        "negotiation",
        15,
        False,
    )
    assert "refused in state 'negotiation'" in sales.refused(case.id, "contract_signed", {}, at=at, roles=rep)
    assert "needs role sales_manager" in sales.refused(case.id, "discount_approved", at=at, roles=rep)
    assert "maximum" in sales.refused(case.id, "discount_requested", {"discount_pct": 60}, at=at, roles=rep)
    assert "needs role sales_manager" in sales.refused(
        case.id, "deal_lost", {"lost_reason": "x"}, at=at, roles=rep
    )

    approved = sales.fire(case.id, "discount_approved", at=at, roles=manager, actor="boss")
    assert (approved.state, approved.data["discount_approved"]) == ("negotiation", True)
    won = sales.fire(case.id, "contract_signed", {"contract_number": "B2B/2026/200"}, at=at, roles=rep)
    assert (won.state, won.outcome) == ("won", "won")

    # Up to 10% the rep decides alone.
    small = b2b_to_negotiation(sales, "7010002222", "PL-MZ-Warszawa-Wola")
    sales.fire(small.id, "discount_requested", {"discount_pct": 10}, at=at, roles=rep)
    assert sales.fire(small.id, "contract_signed", at=at, roles=rep).outcome == "won"


# ================================================================ customer_maturation (Moscow, RU)

CM = "customer_maturation"


def test_customer_maturation_six_phases_from_unaware_to_customer(sales: Sales) -> None:
    seller = ("seller",)
    case = sales.start(
        CM,
        "RU-001",
        {"client_name": "Ivan Petrov", "preferred_channel": "phone", "wishes": ["crm_licence"]},
        at=local(MOSCOW, 2026, 6, 1, 9, 0),
    )
    assert (case.state, case.queue, case.stage) == ("unaware", "first_contact", "call")
    nurture = utc(2026, 6, 15, 6, 0)
    assert sales.pending(case.id) == {"nurture": nurture, "gone_cold": nurture}

    call_at = local(MOSCOW, 2026, 6, 1, 11, 0)
    called = sales.fire(case.id, "called", {"note": "feels the pain"}, at=call_at, roles=seller)
    assert called.state == "unaware"
    assert (called.data["contacts"], called.data["last_contact_channel"]) == (1, "phone")
    assert datetime.fromisoformat(called.data["last_contact_at"]) == call_at
    assert sales.pending(case.id) == {"nurture": nurture, "gone_cold": nurture}  # an internal event

    doubting = sales.fire(case.id, "need_recognised", at=local(MOSCOW, 2026, 6, 2, 10, 0), roles=seller)
    assert (doubting.state, doubting.queue, doubting.stage) == ("doubting", "proposals", "proposal")
    at = local(MOSCOW, 2026, 6, 2, 12, 0)
    assert "meeting_agreed" in sales.refused(
        case.id, "meeting_agreed", {"meeting_at": "2026-06-03T15:00:00+03:00"}, at=at, roles=seller
    )
    assert "input.product in data.wishes" in sales.refused(
        case.id, "proposal_sent", {"product": "erp_suite"}, at=at, roles=seller
    )
    proposal = sales.fire(case.id, "proposal_sent", {"product": "crm_licence"}, at=at, roles=seller)
    assert (proposal.data["product"], proposal.data["proposals"]) == ("crm_licence", 1)

    choosing = sales.fire(
        case.id, "meeting_agreed", {"meeting_at": "2026-06-03T15:00:00+03:00"}, at=at, roles=seller
    )
    assert (choosing.state, choosing.queue, choosing.stage) == ("choosing", "meetings", "meeting")
    assert sales.pending(case.id) == {"meeting_not_reported": utc(2026, 6, 4, 12, 0)}
    bargaining = sales.fire(case.id, "presentation_agreed", at=local(MOSCOW, 2026, 6, 3, 17, 0), roles=seller)
    assert (bargaining.state, bargaining.stage, bargaining.data["meeting_report_overdue"]) == (
        "bargaining",
        "presentation",
        False,
    )
    buying = sales.fire(case.id, "terms_agreed", at=local(MOSCOW, 2026, 6, 10, 12, 0), roles=seller)
    assert (buying.state, buying.queue, buying.stage) == ("buying", "contracts", "presentation")
    customer = sales.fire(
        case.id,
        "signed",
        {"contract_number": "RU-2026-77"},
        at=local(MOSCOW, 2026, 6, 15, 12, 0),
        roles=seller,
    )

    assert (customer.state, customer.status, customer.outcome, customer.stage) == (
        "customer",
        "closed",
        "won",
        "contract",
    )
    assert customer.data["contract_number"] == "RU-2026-77"
    entered = [to for event, _, frm, to in sales.events(case.id) if frm != to]
    assert entered == ["unaware", "doubting", "choosing", "bargaining", "buying", "customer"]


def test_customer_maturation_client_who_asked_for_email_is_never_phoned(sales: Sales) -> None:
    case = sales.start(
        CM, "RU-002", {"client_name": "Olga Smirnova", "preferred_channel": "email"}, at=utc(2026, 6, 1, 6)
    )
    at = local(MOSCOW, 2026, 6, 1, 10, 0)

    reason = sales.refused(case.id, "called", at=at, roles=("seller",))

    assert "data.preferred_channel != 'email'" in reason
    written = sales.fire(case.id, "emailed", {"note": "article on cash flow"}, at=at, roles=("seller",))
    assert (written.state, written.data["contacts"], written.data["last_contact_channel"]) == (
        "unaware",
        1,
        "email",
    )


def test_customer_maturation_nurture_loop_ends_dormant_after_six_touches(sales: Sales) -> None:
    start = local(MOSCOW, 2026, 2, 2, 9, 0)  # Moscow has no daylight saving: 06:00 UTC all year
    case = sales.start(CM, "RU-003", {"client_name": "Pavel Orlov", "preferred_channel": "email"}, at=start)
    touches = [start + timedelta(weeks=2 * n) for n in range(1, 8)]

    report = sales.tick(touches[5])

    assert fired(report) == [("nurture", "fired", "unaware", "unaware", due) for due in touches[:6]]
    quiet = sales.get(case.id)
    assert (quiet.state, quiet.queue, quiet.data["nurture_rounds"], quiet.data["next_touch"]) == (
        "unaware",
        "first_contact",
        6,
        "email",
    )
    assert sales.pending(case.id) == {"nurture": touches[6], "gone_cold": touches[6]}
    assert sales.tick(touches[6] - SECOND) == []

    assert fired(sales.tick(touches[6])) == [
        ("nurture", "skipped", "unaware", "unaware", touches[6]),
        ("gone_cold", "fired", "unaware", "dormant", touches[6]),
    ]
    dormant = sales.get(case.id)
    assert (dormant.state, dormant.status, dormant.outcome, dormant.data["nurture_rounds"]) == (
        "dormant",
        "closed",
        "lost",
        6,
    )
    assert touches[6] == utc(2026, 5, 11, 6, 0)


def test_customer_maturation_funnel_counts_each_client_once_per_stage(sales: Sales) -> None:
    seller = ("seller",)
    keys = [f"RU-{n:03d}" for n in range(100, 120)]
    for key in keys:
        sales.start(CM, key, {"client_name": key, "preferred_channel": "any"}, at=utc(2026, 6, 1, 6))
    at = local(MOSCOW, 2026, 6, 2, 10, 0)

    def step(selected: list[str], event: str, input: dict[str, Any] | None = None) -> None:
        for key in selected:
            sales.fire(f"{CM}/{key}", event, input, at=at, roles=seller)

    step(keys[:12], "need_recognised")
    step(keys[11:12], "not_now")  # back to phase 1 and forward again: still one client per stage
    step(keys[11:12], "need_recognised")
    step(keys[12:13], "not_interested", {"reason": "no budget"})
    step(keys[:6], "proposal_sent", {"product": "crm_licence"})
    step(keys[:6], "meeting_agreed", {"meeting_at": "2026-06-05T15:00:00+03:00"})
    step(keys[:4], "presentation_agreed")
    step(keys[:2], "terms_agreed")
    step(keys[:1], "signed", {"contract_number": "RU-1"})

    assert sales.engine.funnel(CM) == [
        ("call", 20),
        ("proposal", 12),
        ("meeting", 6),
        ("presentation", 4),
        ("contract", 1),  # only the signed one: agreed terms are not yet a contract
    ]
    active = Counter(i.state for i in sales.engine.list_instances(process=CM))
    assert active == {"unaware": 7, "doubting": 6, "choosing": 2, "bargaining": 2, "buying": 1}
    closed = Counter((i.state, i.outcome) for i in sales.engine.list_instances(process=CM, closed=True))
    assert closed == {("customer", "won"): 1, ("dropped", "lost"): 1}
