"""Several writers on one database: every timer fires exactly once, no lost updates, one instance
per key. Real OS processes for ticking, threads for staff events and starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from engine.clock import ManualClock
from engine.errors import ConflictError, EventRejected
from engine.runtime import Engine
from storage import database
from storage.tables import history

FIXTURES = Path(__file__).parent / "fixtures"
SALESFLOW = str(Path(sys.executable).with_name("salesflow"))
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
TIMERS = 500
THREADS = 8


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SALESFLOW_")}


def _with_due_timers(make_engine: Callable[..., Engine], count: int) -> Engine:
    """``count`` ping instances started at T0, each with one timer due at T0 + 1h."""
    engine = make_engine()
    engine.deploy(FIXTURES / "ping.yaml")
    report = engine.start_many("ping", ((n, f"client-{n}", {}) for n in range(count)), at=T0)
    assert report.started == count
    return engine


def _tick_in_processes(url: str, until: datetime, processes: int = 2) -> list[list[dict[str, Any]]]:
    """Run ``salesflow tick --until`` in several OS processes at once; what each one fired."""
    command = [SALESFLOW, "tick", "--until", until.isoformat(), "--json", "--db", url]
    running = [
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_environment()
        )
        for _ in range(processes)
    ]
    fired = []
    for process in running:
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        fired.append(json.loads(stdout)["fired"])
    return fired


def _timer_history_rows(url: str) -> Counter[int]:
    """How many timer rows the history holds, per instance."""
    db = database.create_db_engine(url)
    try:
        with db.connect() as conn:
            query = (
                select(history.c.instance_id, func.count())
                .where(history.c.source == "timer")
                .group_by(history.c.instance_id)
            )
            return Counter({instance_id: count for instance_id, count in conn.execute(query)})
    finally:
        db.dispose()


def _assert_each_timer_fired_once(engine: Engine, fired: list[list[dict[str, Any]]]) -> None:
    all_fired = [f["timer"] for batch in fired for f in batch]
    assert len(all_fired) == TIMERS
    assert len(set(all_fired)) == TIMERS  # no timer was fired by both processes
    assert {f["outcome"] for batch in fired for f in batch} == {"fired"}
    assert engine.timers() == []
    assert len(engine.timers(status="fired")) == TIMERS
    rows = _timer_history_rows(engine.url)
    assert len(rows) == TIMERS and set(rows.values()) == {1}
    closed = engine.list_instances(closed=True)
    assert len(closed) == TIMERS and {i.state for i in closed} == {"expired"}
    assert all(i.row_version == 2 for i in closed)


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_two_processes_ticking_postgresql_fire_every_timer_exactly_once(
    make_engine: Callable[..., Engine],
) -> None:
    engine = _with_due_timers(make_engine, TIMERS)

    fired = _tick_in_processes(engine.url, T0 + timedelta(hours=2))

    _assert_each_timer_fired_once(engine, fired)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_two_processes_ticking_one_sqlite_file_fire_every_timer_exactly_once(
    make_engine: Callable[..., Engine],
) -> None:
    engine = _with_due_timers(make_engine, TIMERS)

    fired = _tick_in_processes(engine.url, T0 + timedelta(hours=2))

    _assert_each_timer_fired_once(engine, fired)


def _in_threads(work: Callable[[int], Any], count: int = THREADS) -> list[Any]:
    """Run ``work(n)`` in ``count`` threads released together; each result or raised error."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(n: int) -> None:
        barrier.wait()
        try:
            results[n] = work(n)
        except Exception as exc:
            results[n] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_the_same_event_from_many_threads_is_applied_once(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine()
    engine.deploy(FIXTURES / "offer_loop.yaml")
    instance = engine.start("offer_loop", "c1", {"name": "Acme"}).instance
    engine.fire(instance.id, "make_offer", {"amount": 500}, roles=["sales_rep"])
    clients = [make_engine() for _ in range(THREADS)]  # one connection pool per "user"

    results = _in_threads(lambda n: clients[n].fire(instance.id, "accepted", {"amount": 500}, actor=f"u{n}"))

    successes = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(successes) == 1, results
    assert all(isinstance(r, ConflictError | EventRejected) for r in refused), refused
    entries = engine.history(instance.id)
    assert [e.event for e in entries].count("accepted") == 1
    assert entries[-1].actor == successes[0].entry.actor
    final = engine.get(instance.id)
    assert (final.state, final.status) == ("won", "closed")
    assert final.row_version == len(entries) == 3


def test_concurrent_internal_events_lose_no_update(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine()
    engine.deploy(FIXTURES / "offer_loop.yaml")
    instance = engine.start("offer_loop", "c1", {"name": "Acme"}).instance
    engine.fire(instance.id, "make_offer", {"amount": 500}, roles=["sales_rep"])
    clients = [make_engine() for _ in range(THREADS)]

    def add_notes(n: int) -> int:
        applied = 0
        for k in range(5):
            try:
                clients[n].fire(instance.id, "add_note", {"note": f"{n}-{k}"}, actor=f"u{n}")
                applied += 1
            except ConflictError:
                pass  # someone else changed it first; nothing was applied
        return applied

    results = _in_threads(add_notes)

    assert not [r for r in results if isinstance(r, Exception)], results
    applied = sum(results)
    final = engine.get(instance.id)
    entries = engine.history(instance.id)
    assert applied >= 1
    assert final.data["notes"] == applied  # every applied event counted, none overwritten
    assert [e.event for e in entries].count("add_note") == applied
    assert final.row_version == len(entries) == 2 + applied
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))


def test_many_threads_starting_the_same_key_create_one_instance(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine()
    engine.deploy(FIXTURES / "offer_loop.yaml")
    clients = [make_engine() for _ in range(THREADS)]

    results = _in_threads(lambda n: clients[n].start("offer_loop", "c1", {"name": f"Acme {n}"}))

    assert not [r for r in results if isinstance(r, Exception)], results
    created = [r for r in results if r.created]
    assert len(created) == 1
    assert {r.instance.id for r in results} == {created[0].instance.id}
    [instance] = engine.list_instances(key="c1")
    assert instance.data == created[0].instance.data
    assert len(engine.history(instance.id)) == 1


def test_two_processes_starting_the_same_client_create_one_instance(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine()
    engine.deploy(FIXTURES / "offer_loop.yaml")
    command = [SALESFLOW, "start", "offer_loop", "--key", "c1", "--json", "--db", engine.url]
    running = [
        subprocess.Popen(
            [*command, "--data", json.dumps({"name": f"Acme {n}"})],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_environment(),
        )
        for n in range(2)
    ]

    answers = []
    for process in running:
        stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
        answers.append(json.loads(stdout))

    assert sorted(a["created"] for a in answers) == [False, True]
    assert answers[0]["id"] == answers[1]["id"]
    assert len(engine.list_instances(key="c1")) == 1


def test_staff_events_racing_the_timers_move_each_instance_once(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine()
    engine.deploy(FIXTURES / "offer_loop.yaml")
    ids = []
    for n in range(40):
        instance = engine.start("offer_loop", f"c{n}", {"name": f"Client {n}"}).instance
        engine.fire(instance.id, "make_offer", {"amount": 500}, roles=["sales_rep"])
        ids.append(instance.id)
    later = ManualClock(T0 + timedelta(weeks=2, hours=1))  # every re-contact timer is due
    ticker, staff = make_engine(clock=later), make_engine(clock=later)

    def accept_all() -> list[str]:
        outcomes = []
        for instance_id in reversed(ids):  # from the other end, so the two meet in the middle
            try:
                staff.fire(instance_id, "accepted", {"amount": 500})
                outcomes.append("accepted")
            except (ConflictError, EventRejected):
                outcomes.append("refused")  # the timer got there first
        return outcomes

    tick_report, outcomes = _in_threads(lambda n: ticker.tick() if n == 0 else accept_all(), count=2)

    assert not isinstance(tick_report, Exception) and not isinstance(outcomes, Exception)
    assert {t.name for t in engine.timers()} <= {"give_up"}  # each re-contact fired or was cancelled
    fired_for = {f.instance_id for f in tick_report.fired if f.outcome == "fired"}
    assert len(fired_for) + outcomes.count("accepted") == len(ids)
    for instance_id in ids:
        events = [e.event for e in engine.history(instance_id)][2:]
        [timer] = [t for t in engine.timers(instance=instance_id, status=None) if t.name == "recontact"]
        if instance_id in fired_for:
            assert (events, timer.status, engine.get(instance_id).state) == (
                ["recontact"],
                "fired",
                "recontact",
            )
        else:
            assert (events, timer.status, engine.get(instance_id).state) == (["accepted"], "cancelled", "won")
