"""Row <-> value mapping and every query the runtime runs. Repositories never commit.

SQLAlchemy rows do not leave this module: callers get the frozen records defined here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from storage.tables import ACTIVE_INSTANCE, PENDING_TIMER, definitions, history, instances, timers

# The statements the runtime runs on every step are built once and executed with parameters:
# building them per call (``.where(...)``, ``.values(...)``) cost more than the database's work.
_GET_INSTANCE = select(instances).where(instances.c.id == bindparam("instance_id"))
_GET_INSTANCE_LOCKED = _GET_INSTANCE.with_for_update()
_FIND_BY_KEY = (
    select(instances)
    .where(instances.c.process == bindparam("process"), instances.c.business_key == bindparam("key"))
    .order_by((instances.c.status == "active").desc(), instances.c.id.desc())
    .limit(1)
)
_INSERT_HISTORY = insert(history)
_INSERT_TIMERS = insert(timers)
_UPDATE_INSTANCE = update(instances).where(
    instances.c.id == bindparam("instance_id"), instances.c.row_version == bindparam("expected_version")
)
_LATEST_VERSION = select(func.max(definitions.c.version)).where(definitions.c.process == bindparam("process"))
_CANCEL_PENDING = update(timers).where(
    timers.c.instance_id == bindparam("owner_id"), text(f"timers.{PENDING_TIMER}")
)
_FINISH_TIMER = update(timers).where(timers.c.id == bindparam("timer_id"))
# Rows are read by position into the records below, whose fields follow the tables' column order
# (tests/test_storage.py checks it); the timer's created_at is not part of its record.
_TIMER_COLUMNS = tuple(column for column in timers.c if column.name != "created_at")
_CLAIM_DUE = (
    select(*_TIMER_COLUMNS, *instances.c)
    .join(instances, instances.c.id == timers.c.instance_id)
    .where(text(f"timers.{PENDING_TIMER}"), timers.c.due_at <= bindparam("until"))
    .order_by(timers.c.due_at, timers.c.id)
    .limit(1)
    .with_for_update(skip_locked=True, of=[timers, instances])
)


@dataclass(frozen=True)
class InstanceRecord:
    id: int
    process: str
    version: int
    key: str
    state: str
    data: dict[str, Any]
    status: str
    queue: str | None
    stage: str | None
    outcome: str | None
    visit: int
    row_version: int
    created_at: datetime
    updated_at: datetime
    last_event_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "process": self.process,
            "version": self.version,
            "key": self.key,
            "state": self.state,
            "status": self.status,
            "queue": self.queue,
            "stage": self.stage,
            "outcome": self.outcome,
            "data": self.data,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True)
class HistoryRecord:
    instance_id: int
    seq: int
    at: datetime
    recorded_at: datetime
    actor: str | None
    source: str
    event: str
    from_state: str | None
    to_state: str | None
    input: dict[str, Any] | None
    data_changes: dict[str, Any] | None
    definition_version: int
    note: str | None
    idempotency_key: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at.isoformat(),
            "recorded_at": self.recorded_at.isoformat(),
            "actor": self.actor,
            "source": self.source,
            "event": self.event,
            "from": self.from_state,
            "to": self.to_state,
            "input": self.input,
            "note": self.note,
        }


@dataclass(frozen=True)
class TimerRecord:
    id: int
    instance_id: int
    visit: int
    timer_index: int
    name: str
    state: str
    due_at: datetime
    status: str
    fired_at: datetime | None
    lateness_seconds: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "instance": self.instance_id,
            "name": self.name,
            "state": self.state,
            "due_at": self.due_at.isoformat(),
            "status": self.status,
        }


@dataclass(frozen=True)
class DefinitionRecord:
    process: str
    version: int
    content_hash: str
    source: str
    deployed_at: datetime


# -- definitions ---------------------------------------------------------------------------------
def find_definition(conn: Connection, process: str, version: int | None) -> DefinitionRecord | None:
    """That version, or the latest one when ``version`` is None."""
    query = select(definitions).where(definitions.c.process == process)
    query = (
        query.where(definitions.c.version == version)
        if version is not None
        else query.order_by(definitions.c.version.desc()).limit(1)
    )
    row = conn.execute(query).first()
    return _definition(row) if row else None


def insert_definition(conn: Connection, record: DefinitionRecord) -> None:
    conn.execute(
        insert(definitions).values(
            process=record.process,
            version=record.version,
            content_hash=record.content_hash,
            source=record.source,
            deployed_at=record.deployed_at,
        )
    )


def latest_version(conn: Connection, process: str) -> int | None:
    """The newest deployed version number of ``process`` (None when it is not deployed)."""
    return conn.execute(_LATEST_VERSION, {"process": process}).scalar()


def list_processes(conn: Connection) -> list[str]:
    return list(
        conn.execute(select(definitions.c.process).distinct().order_by(definitions.c.process)).scalars()
    )


def _definition(row: Row) -> DefinitionRecord:
    return DefinitionRecord(row.process, row.version, row.content_hash, row.source, row.deployed_at)


# -- instances -----------------------------------------------------------------------------------
def get_instance(conn: Connection, instance_id: int, lock: bool = False) -> InstanceRecord | None:
    query = _GET_INSTANCE_LOCKED if lock else _GET_INSTANCE
    row = conn.execute(query, {"instance_id": instance_id}).first()
    return _instance(row) if row else None


def find_instance_by_key(conn: Connection, process: str, key: str) -> InstanceRecord | None:
    """The active instance for (process, key), else the most recently created closed one."""
    row = conn.execute(_FIND_BY_KEY, {"process": process, "key": key}).first()
    return _instance(row) if row else None


def insert_new_instances(conn: Connection, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Insert the rows whose (process, business key) has no active instance yet and return business
    key -> id of those inserted. The partial unique index decides, atomically, in the insert itself
    (``ON CONFLICT ... DO NOTHING``): a read of the keys first cost a scan per chunk on a table the
    planner has no statistics for yet (a first import), and could race with another import."""
    if not rows:
        return {}
    statement = _insert_new_statement(conn.dialect.name)
    return {key: instance_id for instance_id, key in conn.execute(statement, rows)}


def insert_started_instance(conn: Connection, row: dict[str, Any]) -> int | None:
    """Insert one started instance in a single statement, unless its (process, business key) already
    has an active instance or a version of the process newer than ``row["version"]`` has been
    deployed; return its id, or None when it was not inserted (the caller reads which it was).

    This lets ``start`` trust its cached latest version and skip two reads (the key, the latest
    version): both are checked atomically by the insert itself."""
    return conn.execute(_insert_started_statement(conn.dialect.name), row).scalar()


def _unless_active(dialect_name: str) -> Any:
    """``INSERT INTO instances ... ON CONFLICT (process, business_key) WHERE status = 'active' DO
    NOTHING``: the partial unique index, not a read, decides whether a key is already active."""
    dialect_insert = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
    return dialect_insert(instances).on_conflict_do_nothing(
        index_elements=[instances.c.process, instances.c.business_key],
        index_where=text(ACTIVE_INSTANCE),
    )


@functools.cache  # per dialect: ON CONFLICT is dialect-specific SQL
def _insert_new_statement(dialect_name: str) -> Any:
    return _unless_active(dialect_name).returning(instances.c.id, instances.c.business_key)


@functools.cache
def _insert_started_statement(dialect_name: str) -> Any:
    columns = [column for column in instances.c if column.name != "id"]
    newer_deployed = (
        select(definitions.c.version)
        .where(definitions.c.process == bindparam("process"), definitions.c.version > bindparam("version"))
        .exists()
    )
    values = select(*[bindparam(column.name, type_=column.type) for column in columns])
    return (
        _unless_active(dialect_name)
        .from_select(columns, values.where(~newer_deployed))
        .returning(instances.c.id)
    )


def update_instance(
    conn: Connection, instance_id: int, expected_version: int, values: dict[str, Any]
) -> bool:
    """Version-checked update; False when someone else changed the row first."""
    params = {**values, "instance_id": instance_id, "expected_version": expected_version}
    return conn.execute(_UPDATE_INSTANCE, params).rowcount == 1


def list_instances(
    conn: Connection,
    *,
    process: str | None = None,
    state: str | None = None,
    queue: str | None = None,
    key: str | None = None,
    closed: bool = False,
    limit: int = 1000,
) -> list[InstanceRecord]:
    query = select(instances).where(instances.c.status == ("closed" if closed else "active"))
    for column, value in (("process", process), ("state", state), ("queue", queue), ("business_key", key)):
        if value is not None:
            query = query.where(instances.c[column] == value)
    rows = conn.execute(query.order_by(instances.c.id).limit(limit))
    return [_instance(row) for row in rows]


def count_by_state(conn: Connection, process: str | None = None) -> list[tuple[str, str, str, int]]:
    """(process, state, status, count) rows, for summaries."""
    query = select(instances.c.process, instances.c.state, instances.c.status, func.count()).group_by(
        instances.c.process, instances.c.state, instances.c.status
    )
    if process:
        query = query.where(instances.c.process == process)
    return [tuple(row) for row in conn.execute(query.order_by(instances.c.process, instances.c.state))]


def instance_record(instance_id: int, values: dict[str, Any]) -> InstanceRecord:
    """The record of an instance row just inserted with ``values`` (no need to read it back)."""
    fields = {name: value for name, value in values.items() if name != "business_key"}
    return InstanceRecord(id=instance_id, key=values["business_key"], **fields)


def _instance(row: Row) -> InstanceRecord:
    return InstanceRecord(*row)  # select(instances): every column, in the record's order


# -- history -------------------------------------------------------------------------------------
def insert_history(conn: Connection, rows: list[dict[str, Any]]) -> None:
    conn.execute(_INSERT_HISTORY, rows)


def find_by_idempotency_key(conn: Connection, instance_id: int, key: str) -> HistoryRecord | None:
    row = conn.execute(
        select(history).where(history.c.instance_id == instance_id, history.c.idempotency_key == key)
    ).first()
    return _history(row) if row else None


def get_history(conn: Connection, instance_id: int) -> list[HistoryRecord]:
    rows = conn.execute(select(history).where(history.c.instance_id == instance_id).order_by(history.c.seq))
    return [_history(row) for row in rows]


def _history(row: Row) -> HistoryRecord:
    return HistoryRecord(
        instance_id=row.instance_id,
        seq=row.seq,
        at=row.at,
        recorded_at=row.recorded_at,
        actor=row.actor,
        source=row.source,
        event=row.event,
        from_state=row.from_state,
        to_state=row.to_state,
        input=row.input,
        data_changes=row.data_changes,
        definition_version=row.definition_version,
        note=row.note,
        idempotency_key=row.idempotency_key,
    )


# -- timers --------------------------------------------------------------------------------------
def insert_timers(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(_INSERT_TIMERS, rows)


def cancel_pending_timers(conn: Connection, instance_id: int) -> None:
    conn.execute(_CANCEL_PENDING, {"owner_id": instance_id, "status": "cancelled"})


def claim_due_timer(conn: Connection, until: datetime) -> tuple[TimerRecord, InstanceRecord] | None:
    """The oldest due pending timer and its instance, both locked (PostgreSQL: rows another worker
    holds are skipped, so workers never wait on each other nor take the same timer; SQLite: the
    transaction's write lock already makes this worker the only one)."""
    row = conn.execute(_CLAIM_DUE, {"until": until}).first()
    if row is None:
        return None
    split = len(_TIMER_COLUMNS)
    return TimerRecord(*row[:split]), InstanceRecord(*row[split:])


def finish_timer(
    conn: Connection, timer_id: int, status: str, fired_at: datetime | None, lateness: float | None
) -> None:
    params = {"timer_id": timer_id, "status": status, "fired_at": fired_at, "lateness_seconds": lateness}
    conn.execute(_FINISH_TIMER, params)


def database_now(conn: Connection) -> datetime:
    """The database server's clock (PostgreSQL: the transaction's start), aware UTC."""
    return conn.execute(select(func.now())).scalar_one().astimezone(UTC)


def next_due(conn: Connection) -> datetime | None:
    query = select(func.min(timers.c.due_at)).where(text(f"timers.{PENDING_TIMER}"))
    return conn.execute(query).scalar()


def list_timers(
    conn: Connection,
    *,
    due_before: datetime | None = None,
    instance_id: int | None = None,
    status: str | None = "pending",
    limit: int = 1000,
) -> list[TimerRecord]:
    conditions = []
    if status is not None:
        conditions.append(timers.c.status == status)
    if due_before is not None:
        conditions.append(timers.c.due_at <= due_before)
    if instance_id is not None:
        conditions.append(timers.c.instance_id == instance_id)
    query = select(*_TIMER_COLUMNS).where(and_(*conditions)).order_by(timers.c.due_at, timers.c.id)
    return [_timer(row) for row in conn.execute(query.limit(limit))]


def _timer(row: Row) -> TimerRecord:
    return TimerRecord(*row)  # select(*_TIMER_COLUMNS)


def states_reached(conn: Connection, process: str) -> list[tuple[int, str]]:
    """Distinct (instance id, state) pairs the instances of ``process`` have ever entered."""
    query = (
        select(history.c.instance_id, history.c.to_state)
        .join(instances, instances.c.id == history.c.instance_id)
        .where(instances.c.process == process, history.c.to_state.is_not(None))
        .distinct()
    )
    return [(row[0], row[1]) for row in conn.execute(query)]
