"""``salesflow demo``: the bank's mailing -> call -> advisor flow, played week by week.

Deploys ``processes/private_banking.yaml`` into a fresh SQLite file, enrolls sample clients, and moves a
manual clock through the weeks: each Monday a mailing batch sized to the call centre's weekly
capacity goes out, telemarketers call during the week, advisors meet clients at the booked hour, and
``tick`` fires every timer that comes due (overdue calls, meeting reminders, missing outcomes).
Seeded, so every run prints the same story.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy.engine import make_url

from engine import cli_output as out
from engine.clock import ManualClock
from engine.errors import EventRejected
from engine.runtime import Engine

PROCESS_FILE = Path(__file__).resolve().parent.parent / "processes" / "private_banking.yaml"
ZONE = ZoneInfo("Europe/Warsaw")
START = datetime(2026, 3, 2, 8, 0, tzinfo=ZONE)  # a Monday morning
NAMES = [
    "Anna Nowak",
    "Jan Kowalski",
    "Maria Wiśniewska",
    "Piotr Wójcik",
    "Katarzyna Kamińska",
    "Tomasz Lewandowski",
    "Agnieszka Zielińska",
    "Marek Szymański",
    "Ewa Woźniak",
    "Paweł Dąbrowski",
]


def run(url: str, clients: int = 40, seed: int = 7) -> None:
    """Play the demo into the database at ``url`` (a SQLite file is started afresh)."""
    _fresh_sqlite(url)
    clock = ManualClock(START)
    rng = random.Random(seed)
    with Engine(url, clock) as engine:
        engine.deploy(PROCESS_FILE)
        keys = _enroll(engine, clients, rng)
        capacity = max(1, clients // 5)  # the call centre can call this many clients a week
        out.say(f"Enrolled {len(keys)} clients; the call centre calls {capacity} a week.\n")
        weeks = -(-len(keys) // capacity) + 1  # every batch, then one week to finish the calls
        for week in range(weeks):
            batch = keys[week * capacity : (week + 1) * capacity]
            _play_week(engine, clock, week, batch, rng)
        _report(engine, url)


def _fresh_sqlite(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        for suffix in ("", "-wal", "-shm"):
            Path(parsed.database + suffix).unlink(missing_ok=True)


def _enroll(engine: Engine, clients: int, rng: random.Random) -> list[str]:
    rows = []
    for number in range(1, clients + 1):
        name = rng.choice(NAMES)
        rows.append((number, f"C{number:04d}", {"client_name": name, "segment": "affluent"}))
    engine.start_many("private_banking", rows, actor="crm-import")
    return [key for _, key, _ in rows]


def _play_week(engine: Engine, clock: ManualClock, week: int, batch: list[str], rng: random.Random) -> None:
    monday = START + timedelta(weeks=week)
    clock.set(monday)
    label = f"2026-W{monday.isocalendar().week:02d}"
    for key in batch:
        engine.fire(f"private_banking/{key}", "mailing_sent", {"batch": label}, actor="back-office")
    events = Counter()
    for day in range(5):
        clock.set(monday + timedelta(days=day, hours=2))
        events.update(f.timer.name for f in engine.tick().fired)  # what came due overnight first
        events.update(_call_some(engine, monday, rng))
        events.update(_record_outcomes(engine, clock, rng))
    clock.set(monday + timedelta(days=7) - timedelta(minutes=1))
    events.update(f.timer.name for f in engine.tick().fired)
    summary = ", ".join(f"{name} {count}" for name, count in sorted(events.items())) or "nothing"
    out.say(f"week {week + 1} ({label}): mailed {len(batch)}; {summary}")


def _call_some(engine: Engine, monday: datetime, rng: random.Random) -> Counter:
    """Telemarketers work through their queues; about half the calls book a meeting."""
    done = Counter()
    for state in ("awaiting_call", "call_overdue"):
        for case in engine.list_instances(process="private_banking", state=state):
            roll = rng.random()
            if roll < 0.55:
                continue  # not called today
            if roll < 0.80:
                meeting = monday + timedelta(days=rng.randint(7, 11), hours=rng.choice([2, 6]))
                event, data = "meeting_booked", {"meeting_at": meeting.isoformat(), "advisor": "A. Zając"}
            elif roll < 0.88:
                event, data = "refused", {"reason": "not interested"}
            else:
                event, data = "no_answer", None
            _fire(engine, case.id, event, data, "telemarketer", done)
    return done


def _record_outcomes(engine: Engine, clock: ManualClock, rng: random.Random) -> Counter:
    """Advisors record the outcome of meetings that have taken place (and sometimes forget)."""
    done = Counter()
    for state in ("meeting_booked", "outcome_missing"):
        for case in engine.list_instances(process="private_banking", state=state):
            meeting = datetime.fromisoformat(case.data["meeting_at"])
            if meeting > clock.now() or rng.random() < 0.2:
                continue
            event = rng.choices(["bought", "buy_within_12_months", "refused"], [3, 4, 3])[0]
            _fire(engine, case.id, event, None, "advisor", done)
    return done


def _fire(engine: Engine, instance: int, event: str, data: dict | None, role: str, done: Counter) -> None:
    try:
        engine.fire(instance, event, data, actor=f"demo-{role}", roles=[role])
        done[event] += 1
    except EventRejected as exc:
        out.warn(f"instance {instance}: {exc.message}")


def _report(engine: Engine, url: str) -> None:
    out.say("")
    rows = [(state, status, count) for _, state, status, count in engine.summary("private_banking")]
    out.table("Where everyone is", ["state", "status", "clients"], rows)
    out.table(
        "Funnel (clients who reached each stage)", ["stage", "clients"], engine.funnel("private_banking")
    )
    closed = engine.list_instances(process="private_banking", closed=True)
    won = [case for case in closed if case.outcome == "won"] or closed
    if won:
        example = max(won, key=lambda case: case.row_version)  # the longest story
        out.table(
            f"History of {example.key} ({example.data.get('client_name')})",
            ["seq", "at (UTC)", "source", "event", "from", "to"],
            [
                (h.seq, out.when(h.at), h.source, h.event, h.from_state, h.to_state)
                for h in engine.history(example.id)
            ],
        )
    out.say(f"\nThe data is in {url}: try  salesflow list --db {url}  or  salesflow timers --db {url}")
