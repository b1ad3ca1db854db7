"""The storage limit: the bank flow's writes done by a minimal hand-written SQLAlchemy Core loop.

Same tables, same rows, same transactions as the engine: per step, read the instance, a
version-checked update, a history insert, the old state's timers cancelled (when it has any still
pending: the hand-written loop knows the flow, as the engine knows its definition) and the new
state's inserted, one transaction per step; a timer is claimed with its instance (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL) and marked fired in the transaction that applies it. What it leaves out is
everything that is not a write: no definition, no validation, no expressions, no calendars.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, text, update

import engine  # noqa: F401  (engine first: importing storage.tables first is a circular import)
from storage.tables import history, instances, timers

PROCESS = "private_banking"

# Built once, executed with parameters: the fast way to use SQLAlchemy Core.
_INSERT_INSTANCE = insert(instances).returning(instances.c.id)
_INSERT_HISTORY = insert(history)
_INSERT_TIMERS = insert(timers)
_SELECT_INSTANCE = select(instances).where(instances.c.id == bindparam("iid"))
_UPDATE_INSTANCE = update(instances).where(
    instances.c.id == bindparam("iid"), instances.c.row_version == bindparam("expected")
)
_CANCEL_TIMERS = update(timers).where(
    timers.c.instance_id == bindparam("iid"), text("timers.status = 'pending'")
)
_FINISH_TIMER = update(timers).where(timers.c.id == bindparam("tid"))
_CLAIM = (
    select(
        timers.c.id.label("timer_id"),
        timers.c.due_at,
        timers.c.visit.label("timer_visit"),
        timers.c.state.label("timer_state"),
        instances.c.id,
        instances.c.state,
        instances.c.data,
        instances.c.visit,
        instances.c.row_version,
        instances.c.status,
    )
    .join_from(timers, instances, instances.c.id == timers.c.instance_id)
    .where(text("timers.status = 'pending'"), timers.c.due_at <= bindparam("until"))
    .order_by(timers.c.due_at, timers.c.id)
    .limit(1)
    .with_for_update(skip_locked=True, of=[timers, instances])
)


@dataclass(frozen=True)
class Target:
    """A state of the bank flow as the raw loop hard-codes it."""

    name: str
    queue: str | None
    stage: str | None
    final: bool = False
    outcome: str | None = None


AWAITING_CALL = Target("awaiting_call", "telemarketing", "call")
CALL_OVERDUE = Target("call_overdue", "telemarketing_overdue", "call")
MEETING_BOOKED = Target("meeting_booked", "advisor_meetings", "meeting")
BOUGHT = Target("bought", None, "decision", final=True, outcome="won")
MAILING = Target("mailing", "mailing_batch", "mailing")
# States left with timers still pending: mailing has none, and awaiting_call's only timer is the
# one firing when it is left.
LEAVES_PENDING_TIMERS = {CALL_OVERDUE.name, MEETING_BOOKED.name}


def new_instance_row(key: str, data: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The instances row of a client just enrolled in the bank flow (also the bulk baseline's)."""
    return {
        "process": PROCESS,
        "version": 1,
        "business_key": key,
        "state": MAILING.name,
        "data": data,
        "status": "active",
        "queue": MAILING.queue,
        "stage": MAILING.stage,
        "outcome": None,
        "visit": 1,
        "row_version": 1,
        "created_at": now,
        "updated_at": now,
        "last_event_at": now,
    }


def start(conn: Connection, key: str, data: dict[str, Any], now: datetime) -> int:
    instance_id = conn.execute(_INSERT_INSTANCE, new_instance_row(key, data, now)).scalar_one()
    conn.execute(
        _INSERT_HISTORY, _history(instance_id, 1, now, "import", "start", None, MAILING.name, None, data)
    )
    return instance_id


def event(
    conn: Connection,
    instance_id: int,
    name: str,
    payload: dict[str, Any],
    sets: dict[str, Any],
    target: Target,
    arm: list[tuple[int, str, datetime]],
    now: datetime,
) -> None:
    """A staff event: read, version-checked update, history, cancel and arm timers."""
    row = conn.execute(_SELECT_INSTANCE, {"iid": instance_id}).one()
    transition(conn, row, name, payload, sets, target, arm, now, "staff")


def transition(
    conn: Connection,
    row: Any,
    name: str,
    payload: dict[str, Any],
    sets: dict[str, Any],
    target: Target,
    arm: list[tuple[int, str, datetime]],
    now: datetime,
    source: str,
) -> None:
    changes = {**payload, **sets}
    seq, visit = row.row_version + 1, row.visit + 1
    updated = conn.execute(
        _UPDATE_INSTANCE,
        {
            "iid": row.id,
            "expected": row.row_version,
            "row_version": seq,
            "updated_at": now,
            "last_event_at": now,
            "data": {**row.data, **changes},
            "state": target.name,
            "visit": visit,
            "queue": target.queue,
            "stage": target.stage,
            "outcome": target.outcome,
            "status": "closed" if target.final else "active",
        },
    )
    if updated.rowcount != 1:
        raise RuntimeError(f"instance {row.id} changed concurrently")
    conn.execute(
        _INSERT_HISTORY,
        _history(row.id, seq, now, source, name, row.state, target.name, payload or None, changes or None),
    )
    if row.state in LEAVES_PENDING_TIMERS:
        conn.execute(_CANCEL_TIMERS, {"iid": row.id, "status": "cancelled"})
    if arm:
        conn.execute(
            _INSERT_TIMERS,
            [
                {
                    "instance_id": row.id,
                    "visit": visit,
                    "timer_index": index,
                    "name": timer_name,
                    "state": target.name,
                    "due_at": due,
                    "status": "pending",
                    "fired_at": None,
                    "lateness_seconds": None,
                    "created_at": now,
                }
                for index, timer_name, due in arm
            ],
        )


def fire_next_due(conn: Connection, until: datetime, now: datetime) -> bool:
    """Claim the oldest due timer with its instance and apply it (the bank flow's two call timers:
    call_overdue -> call_overdue, arming given_up three weeks later). False when nothing is due."""
    row = conn.execute(_CLAIM, {"until": until}).first()
    if row is None:
        return False
    lateness = max(0.0, (now - row.due_at).total_seconds())
    if row.status != "active" or row.visit != row.timer_visit or row.state != row.timer_state:
        conn.execute(_FINISH_TIMER, {"tid": row.timer_id, "status": "cancelled"})
        return True
    conn.execute(
        _FINISH_TIMER, {"tid": row.timer_id, "status": "fired", "fired_at": now, "lateness_seconds": lateness}
    )
    at = row.due_at
    transition(
        conn,
        row,
        "call_overdue",
        {},
        {},
        CALL_OVERDUE,
        [(0, "given_up", at + timedelta(weeks=3))],
        at,
        "timer",
    )
    return True


def _history(
    instance_id: int,
    seq: int,
    at: datetime,
    source: str,
    name: str,
    from_state: str | None,
    to_state: str,
    payload: dict[str, Any] | None,
    changes: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "instance_id": instance_id,
        "seq": seq,
        "at": at,
        "recorded_at": at,
        "actor": None,
        "source": source,
        "event": name,
        "from_state": from_state,
        "to_state": to_state,
        "input": payload,
        "data_changes": changes,
        "definition_version": 1,
        "note": None,
        "idempotency_key": None,
    }
