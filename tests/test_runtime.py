"""The Engine's library API on SQLite and PostgreSQL: deploy, start, fire, history, atomicity."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine import failpoints, loader
from engine.errors import ConflictError, EventRejected, NotFoundError, UsageError
from engine.runtime import Engine
from storage.repository import HistoryRecord, InstanceRecord, TimerRecord

FIXTURES = Path(__file__).parent / "fixtures"
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # Monday 09:00 in Warsaw (CET)

Snapshot = tuple[InstanceRecord, list[HistoryRecord], list[TimerRecord]]


@pytest.fixture
def engine(make_engine: Callable[..., Engine]) -> Engine:
    """An engine with the test processes deployed, its manual clock at T0."""
    sales = make_engine()
    for name in ("offer_loop", "renewal", "escalation"):
        sales.deploy(FIXTURES / f"{name}.yaml")
    return sales


@pytest.fixture
def failpoint() -> Iterator[Callable[..., None]]:
    """``failpoint(name, action)`` arms a failpoint; every failpoint is disarmed afterwards."""
    yield failpoints.arm
    failpoints.disarm_all()


def new_lead(engine: Engine, key: str = "c1", **data: Any) -> InstanceRecord:
    return engine.start("offer_loop", key, {"name": "Acme", **data}, actor="anna").instance


def offer_sent(engine: Engine, key: str = "c1", amount: int = 500) -> InstanceRecord:
    """An offer_loop instance in state offer_sent (its 2w re-contact timer armed)."""
    lead = new_lead(engine, key)
    return engine.fire(lead.id, "make_offer", {"amount": amount}, roles=["sales_rep"], actor="anna").instance


def snapshot(engine: Engine, ref: int | str) -> Snapshot:
    """Everything a user can see of an instance: the row, its history and all its timers."""
    return engine.get(ref), engine.history(ref), engine.timers(instance=ref, status=None)


def offer_loop_text(*replacements: tuple[str, str]) -> str:
    """The offer_loop fixture's YAML with some text replaced."""
    text = (FIXTURES / "offer_loop.yaml").read_text(encoding="utf-8")
    for old, new in replacements:
        assert text.count(old) == 1
        text = text.replace(old, new)
    return text


def fold(entries: list[HistoryRecord]) -> tuple[str | None, dict[str, Any]]:
    """Replay a history: the last row's target state, and every data change applied in order."""
    data: dict[str, Any] = {}
    for entry in entries:
        data.update(entry.data_changes or {})
    return entries[-1].to_state, data


# -- deploy ------------------------------------------------------------------------------------------
def test_deploying_the_same_file_twice_is_a_no_op(engine: Engine) -> None:
    again = engine.deploy(FIXTURES / "offer_loop.yaml")

    assert (again.process, again.version, again.created) == ("offer_loop", 1, False)
    assert engine.definition("offer_loop").version == 1


def test_other_content_under_a_deployed_version_is_refused_and_says_to_bump(engine: Engine) -> None:
    changed = loader.load_text(offer_loop_text(("delay: 2w", "delay: 3w")))

    with pytest.raises(ConflictError) as caught:
        engine.deploy(changed)

    assert "offer_loop version 1 is already deployed with different content" in caught.value.message
    assert "set 'version: 2'" in caught.value.message
    instance = offer_sent(engine)  # the deployed version 1 still rules: re-contact in 2 weeks
    assert engine.timers(instance=instance.id)[0].due_at == datetime(2026, 3, 16, 8, 0, tzinfo=UTC)


def test_running_instances_stay_on_their_version_while_new_starts_use_the_latest(engine: Engine) -> None:
    old = new_lead(engine, "old-client")
    v2 = engine.deploy(
        loader.load_text(offer_loop_text(("\nversion: 1\n", "\nversion: 2\n"), ("delay: 2w", "delay: 3w")))
    )
    new = new_lead(engine, "new-client")

    assert (v2.version, v2.created) == (2, True)
    assert (old.version, new.version) == (1, 2)
    for instance in (old, new):
        engine.fire(instance.id, "make_offer", {"amount": 500}, roles=["sales_rep"])
    assert engine.get(old.id).version == 1
    assert engine.timers(instance=old.id)[0].due_at == T0 + timedelta(weeks=2)
    assert engine.timers(instance=new.id)[0].due_at == T0 + timedelta(weeks=3)
    pinned = engine.start("offer_loop", "asked-for-v1", {"name": "Acme"}, version=1).instance
    assert pinned.version == 1


def test_a_version_deployed_by_another_process_is_used_by_the_next_start(
    engine: Engine, make_engine: Callable[..., Engine]
) -> None:
    before = new_lead(engine, "before")  # this engine now knows version 1 as the latest
    other_process = make_engine()
    other_process.deploy(loader.load_text(offer_loop_text(("\nversion: 1\n", "\nversion: 2\n"))))

    after = new_lead(engine, "after")

    assert (before.version, after.version) == (1, 2)
    assert engine.get(after.id).version == 2
    assert [entry.definition_version for entry in engine.history(after.id)] == [2]


# -- start -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param({}, ["start data is invalid", "'name' is required"], id="missing-field"),
        pytest.param(
            {"name": "Acme", "employees": "abc"},
            ["start data is invalid", "field 'employees'", "'abc' is not of type 'integer'"],
            id="wrong-type",
        ),
        pytest.param({"name": "Acme", "colour": "red"}, ["'colour' was unexpected"], id="unknown-field"),
    ],
)
def test_start_refuses_data_that_does_not_fit_the_schema(
    engine: Engine, data: dict[str, Any], expected: list[str]
) -> None:
    with pytest.raises(UsageError) as caught:
        engine.start("offer_loop", "c1", data)

    for fragment in expected:
        assert fragment in caught.value.message
    assert engine.list_instances() == []


def test_start_creates_an_instance_in_the_initial_state_with_a_start_row(engine: Engine) -> None:
    result = engine.start("offer_loop", "c1", {"name": "Acme", "employees": 40}, actor="anna")

    instance = result.instance
    assert result.created is True
    assert (instance.process, instance.version, instance.key) == ("offer_loop", 1, "c1")
    assert (instance.state, instance.status, instance.queue, instance.stage) == (
        "new",
        "active",
        "inbox",
        "lead",
    )
    assert instance.data == {"name": "Acme", "employees": 40}
    assert engine.get("offer_loop/c1") == instance
    [entry] = engine.history(instance.id)
    assert (entry.seq, entry.event, entry.from_state, entry.to_state) == (1, "start", None, "new")
    assert (entry.actor, entry.source, entry.at) == ("anna", "staff", T0)
    assert entry.data_changes == {"name": "Acme", "employees": 40}


def test_a_second_start_for_the_same_key_returns_the_active_instance(engine: Engine) -> None:
    first = engine.start("offer_loop", "c1", {"name": "Acme"})
    second = engine.start("offer_loop", "c1", {"name": "Someone else"})

    assert (first.created, second.created) == (True, False)
    assert second.instance == first.instance
    assert engine.get(first.instance.id).data == {"name": "Acme"}
    assert len(engine.history(first.instance.id)) == 1
    assert len(engine.list_instances(process="offer_loop")) == 1


def test_a_second_start_with_bad_data_still_returns_the_active_instance(engine: Engine) -> None:
    first = engine.start("offer_loop", "c1", {"name": "Acme"})
    second = engine.start("offer_loop", "c1", {"colour": "red"})  # would be refused for a new key

    assert (second.created, second.instance) == (False, first.instance)
    with pytest.raises(UsageError, match="'colour' was unexpected"):
        engine.start("offer_loop", "c2", {"colour": "red"})


def test_a_closed_instance_does_not_block_a_new_start_for_its_key(engine: Engine) -> None:
    first = offer_sent(engine, "c1")
    engine.fire(first.id, "rejected", {"reason": "too expensive"})

    again = engine.start("offer_loop", "c1", {"name": "Acme"})

    assert again.created is True
    assert again.instance.id != first.id
    assert engine.get("offer_loop/c1").id == again.instance.id
    assert [i.id for i in engine.list_instances(closed=True)] == [first.id]


def test_start_arms_the_timers_of_the_initial_state(engine: Engine) -> None:
    instance = engine.start("renewal", "contract-7", {"contract_end": "2026-06-30"}).instance

    [timer] = engine.timers(instance=instance.id)
    assert (timer.name, timer.state, timer.status) == ("renewal_window", "in_force", "pending")
    assert timer.due_at == datetime(2026, 5, 30, 22, 0, tzinfo=UTC)  # 31 May 00:00 in Warsaw
    assert engine.next_due() == timer.due_at


@pytest.mark.parametrize(
    ("process", "key", "error", "fragment"),
    [
        pytest.param("offer_loop", " ", UsageError, "business key is empty", id="empty-key"),
        pytest.param(
            "no_such_process", "c1", NotFoundError, "'no_such_process' is not deployed", id="unknown"
        ),
    ],
)
def test_start_refuses_an_empty_key_or_an_undeployed_process(
    engine: Engine, process: str, key: str, error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error, match=fragment):
        engine.start(process, key, {"name": "Acme"})
    assert engine.list_instances() == []


# -- fire: rejections ------------------------------------------------------------------------------
@pytest.mark.parametrize("ref", [999, "999", "offer_loop/nobody"], ids=["id", "id-text", "process-key"])
def test_firing_at_an_unknown_instance_is_not_found(engine: Engine, ref: int | str) -> None:
    new_lead(engine)

    with pytest.raises(NotFoundError, match="salesflow list"):
        engine.fire(ref, "make_offer", {"amount": 5}, roles=["sales_rep"])


REJECTIONS = [
    pytest.param(
        "offer_sent",
        ("approve", None, ["manager"]),
        [
            "event 'approve' is not allowed in state 'offer_sent'",
            "allowed: add_note, revise_offer, discount, accepted, rejected",
        ],
        id="event-not-allowed",
    ),
    pytest.param(
        "new",
        ("make_offer", {"amount": 5}, ["manager"]),
        ["event 'make_offer' needs role sales_rep", "the caller has: manager"],
        id="role-missing",
    ),
    pytest.param(
        "new",
        ("make_offer", {"amount": 0}, ["sales_rep"]),
        ["input of event 'make_offer' is invalid", "field 'amount'", "less than the minimum of 1"],
        id="input-invalid",
    ),
    pytest.param(
        "new",
        ("make_offer", {"amount": "a lot"}, ["sales_rep"]),
        ["field 'amount'", "'a lot' is not of type 'number'"],
        id="input-wrong-type",
    ),
    pytest.param(
        "new",
        ("make_offer", {}, ["sales_rep"]),
        ["input of event 'make_offer' is invalid", "'amount' is required"],
        id="input-missing",
    ),
    pytest.param(
        "offer_sent",
        ("accepted", {"amount": 0}, []),
        [
            "refused in state 'offer_sent': no condition held",
            "'input.amount >= 10000.0'",
            "'input.amount > 0.0'",
        ],
        id="no-guard-held",
    ),
    pytest.param(
        "offer_sent",
        ("discount", {"pct": 50}, []),
        ["data after event 'discount' is invalid", "field 'discount'", "greater than the maximum of 20"],
        id="data-invalid-after-change",
    ),
]


@pytest.mark.parametrize(("state", "call", "expected"), REJECTIONS)
def test_a_rejected_event_says_why_and_changes_nothing(
    engine: Engine, state: str, call: tuple[str, Any, list[str]], expected: list[str]
) -> None:
    instance = offer_sent(engine) if state == "offer_sent" else new_lead(engine)
    engine.clock.advance(timedelta(hours=1))
    before = snapshot(engine, instance.id)
    event, payload, roles = call

    with pytest.raises(EventRejected) as caught:
        engine.fire(instance.id, event, payload, roles=roles, actor="anna")

    for fragment in expected:
        assert fragment in caught.value.message
    assert snapshot(engine, instance.id) == before
    assert before[0].state == state


def test_a_closed_instance_refuses_every_event(engine: Engine) -> None:
    instance = offer_sent(engine)
    won = engine.fire(instance.id, "accepted", {"amount": 500}).instance
    before = snapshot(engine, instance.id)

    with pytest.raises(EventRejected, match=r"closed \(in final state 'won'\)"):
        engine.fire(instance.id, "add_note", {"note": "too late"})

    assert (won.state, won.status, won.outcome) == ("won", "closed", "won")
    assert snapshot(engine, instance.id) == before
    assert engine.allowed_events(instance.id) == []


# -- fire: what it does ------------------------------------------------------------------------------
def test_guarded_alternatives_take_the_first_that_holds(engine: Engine) -> None:
    big = offer_sent(engine, "big")
    small = offer_sent(engine, "small")

    big_after = engine.fire(big.id, "accepted", {"amount": 25000}).instance
    small_after = engine.fire(small.id, "accepted", {"amount": 900}).instance

    assert (big_after.state, big_after.status, big_after.queue) == ("approval", "active", "managers")
    assert (small_after.state, small_after.status) == ("won", "closed")


def test_an_idempotency_key_replays_the_first_outcome_and_changes_nothing(engine: Engine) -> None:
    instance = offer_sent(engine)
    first = engine.fire(instance.id, "accepted", {"amount": 500}, idempotency_key="req-1")
    engine.clock.advance(timedelta(minutes=5))
    before = snapshot(engine, instance.id)

    retry = engine.fire(instance.id, "accepted", {"amount": 500}, idempotency_key="req-1")

    assert (first.replayed, retry.replayed) == (False, True)
    assert retry.entry == first.entry  # the first outcome, although the instance is now closed
    assert retry.instance == first.instance
    assert snapshot(engine, instance.id) == before


def test_an_idempotency_key_keeps_a_counter_from_counting_a_retry_twice(engine: Engine) -> None:
    instance = offer_sent(engine)

    engine.fire(instance.id, "add_note", {"note": "called"}, idempotency_key="note-1")
    engine.fire(instance.id, "add_note", {"note": "called"}, idempotency_key="note-1")
    engine.fire(instance.id, "add_note", {"note": "called again"}, idempotency_key="note-2")

    assert engine.get(instance.id).data["notes"] == 2
    assert [e.idempotency_key for e in engine.history(instance.id)] == [None, None, "note-1", "note-2"]


def test_an_idempotency_key_reused_for_another_request_is_a_conflict(engine: Engine) -> None:
    instance = offer_sent(engine)
    engine.fire(instance.id, "add_note", {"note": "called"}, idempotency_key="note-1")
    before = snapshot(engine, instance.id)

    with pytest.raises(ConflictError, match="idempotency key 'note-1' was already used for event 'add_note'"):
        engine.fire(instance.id, "add_note", {"note": "something else"}, idempotency_key="note-1")

    assert snapshot(engine, instance.id) == before


def test_an_explicit_time_is_recorded_and_an_earlier_one_is_refused(engine: Engine) -> None:
    instance = offer_sent(engine)
    later = T0 + timedelta(days=1)
    engine.fire(instance.id, "add_note", {"note": "back-dated entry"}, at=later)
    before = snapshot(engine, instance.id)

    with pytest.raises(UsageError, match="history never goes backwards"):
        engine.fire(instance.id, "add_note", {"note": "too early"}, at=later - timedelta(seconds=1))

    assert snapshot(engine, instance.id) == before
    entry = before[1][-1]
    assert (entry.at, entry.recorded_at) == (later, T0)  # logical time, and the real time beside it


def test_an_internal_transition_keeps_the_state_and_its_timers(engine: Engine) -> None:
    instance = offer_sent(engine)
    timers_before = engine.timers(instance=instance.id, status=None)
    engine.clock.advance(timedelta(days=3))

    after = engine.fire(instance.id, "add_note", {"note": "asked for a demo"}).instance

    assert (after.state, after.queue) == ("offer_sent", "follow_up")
    assert after.data == {
        "name": "Acme",
        "amount": 500,
        "attempts": 1,
        "note": "asked for a demo",
        "notes": 1,
    }
    assert engine.timers(instance=instance.id, status=None) == timers_before
    assert timers_before[0].due_at == T0 + timedelta(weeks=2)


def test_a_re_entering_transition_cancels_the_old_timers_and_arms_new_ones(engine: Engine) -> None:
    instance = offer_sent(engine)
    [old] = engine.timers(instance=instance.id)
    engine.clock.advance(timedelta(days=3))

    entry = engine.fire(instance.id, "revise_offer", {"amount": 450}).entry

    assert (entry.from_state, entry.to_state) == ("offer_sent", "offer_sent")
    timers = {t.id: t for t in engine.timers(instance=instance.id, status=None)}
    assert timers[old.id].status == "cancelled"
    [new] = [t for t in timers.values() if t.id != old.id]
    assert (new.name, new.status) == ("recontact", "pending")
    assert new.due_at == T0 + timedelta(days=3, weeks=2)
    assert engine.get(instance.id).data["amount"] == 450


# -- history -----------------------------------------------------------------------------------------
def test_history_records_every_step_and_folding_it_gives_the_instance(engine: Engine) -> None:
    instance = offer_sent(engine)  # start + make_offer by anna
    engine.fire(instance.id, "add_note", {"note": "no answer"}, actor="bob")
    engine.clock.advance(timedelta(weeks=2, hours=1))
    engine.tick()  # recontact -> recontact state
    engine.fire(instance.id, "make_offer", {"amount": 400}, roles=["sales_rep"], actor="bob")
    engine.fire(instance.id, "accepted", {"amount": 400}, actor="carol")

    entries = engine.history(instance.id)
    final = engine.get(instance.id)

    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    assert [(e.source, e.actor, e.event) for e in entries] == [
        ("staff", "anna", "start"),
        ("staff", "anna", "make_offer"),
        ("staff", "bob", "add_note"),
        ("timer", "timer", "recontact"),
        ("staff", "bob", "make_offer"),
        ("staff", "carol", "accepted"),
    ]
    assert [(e.from_state, e.to_state) for e in entries] == [
        (None, "new"),
        ("new", "offer_sent"),
        ("offer_sent", "offer_sent"),
        ("offer_sent", "recontact"),
        ("recontact", "offer_sent"),
        ("offer_sent", "won"),
    ]
    assert entries[4].input == {"amount": 400}
    assert entries[4].data_changes == {"amount": 400, "attempts": 2}
    assert entries[3].input is None
    assert all(e.definition_version == 1 for e in entries)
    assert fold(entries) == (final.state, final.data)
    assert final.row_version == len(entries)


def test_history_folds_to_the_instance_on_a_re_started_engine(make_engine: Callable[..., Engine]) -> None:
    first = make_engine()
    first.deploy(FIXTURES / "offer_loop.yaml")
    instance = offer_sent(first)
    first.fire(instance.id, "revise_offer", {"amount": 700})
    first.close()

    restarted = make_engine()
    entries = restarted.history("offer_loop/c1")
    current = restarted.get("offer_loop/c1")

    assert fold(entries) == (current.state, current.data)
    assert (current.state, current.data["amount"]) == ("offer_sent", 700)
    assert current.row_version == len(entries) == 3


# -- atomicity ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("point", failpoints.POINTS)
def test_a_failure_inside_an_event_leaves_the_instance_as_it_was(
    engine: Engine, failpoint: Callable[..., None], point: str
) -> None:
    instance = offer_sent(engine)
    engine.clock.advance(timedelta(days=1))
    before = snapshot(engine, instance.id)
    failpoint(point, "raise")

    with pytest.raises(failpoints.FailpointError, match=point):
        engine.fire(instance.id, "revise_offer", {"amount": 900}, idempotency_key="retry-me")

    assert snapshot(engine, instance.id) == before
    failpoints.disarm_all()
    retried = engine.fire(instance.id, "revise_offer", {"amount": 900}, idempotency_key="retry-me")
    assert retried.replayed is False  # the failed attempt left no trace to replay
    assert retried.instance.row_version == before[0].row_version + 1
    assert retried.instance.data["amount"] == 900


@pytest.mark.parametrize("point", failpoints.POINTS)
def test_a_failure_inside_a_timer_firing_leaves_the_instance_and_the_timer_as_they_were(
    engine: Engine, failpoint: Callable[..., None], point: str
) -> None:
    instance = offer_sent(engine)
    engine.clock.advance(timedelta(weeks=2, minutes=1))
    before = snapshot(engine, instance.id)
    failpoint(point, "raise")

    with pytest.raises(failpoints.FailpointError, match=point):
        engine.tick()

    assert snapshot(engine, instance.id) == before
    assert [t.status for t in before[2]] == ["pending"]
    failpoints.disarm_all()
    [fired] = engine.tick().fired
    assert (fired.outcome, fired.to_state) == ("fired", "recontact")


def test_a_failure_before_a_start_commits_creates_nothing(
    engine: Engine, failpoint: Callable[..., None]
) -> None:
    failpoint("before_commit", "raise")

    with pytest.raises(failpoints.FailpointError):
        engine.start("renewal", "contract-7", {"contract_end": "2026-06-30"})

    assert engine.list_instances() == []
    assert engine.timers() == []
    failpoints.disarm_all()
    assert engine.start("renewal", "contract-7", {"contract_end": "2026-06-30"}).created is True
