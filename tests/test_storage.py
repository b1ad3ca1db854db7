"""Storage: schema, migrations, UTC instants, database-enforced invariants, SQLite locking."""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError, StatementError

from engine import errors
from storage import database, repository, tables, types

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
EngineFactory = Callable[..., sa.Engine]
SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
POSTGRES_ONLY = pytest.mark.parametrize(
    "backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


# ---------------------------------------------------------------- helpers


def add_instance(conn: sa.Connection, key: str = "acme", status: str = "active", **kw: Any) -> int:
    row = {
        "process": "lead", "version": 1, "business_key": key, "state": "new", "data": {},
        "status": status, "visit": 1, "row_version": 0,
        "created_at": T0, "updated_at": T0, "last_event_at": T0,
    } | kw  # fmt: skip
    return int(conn.execute(sa.insert(tables.instances).values(row)).inserted_primary_key[0])


def add_timer(conn: sa.Connection, instance_id: int, **kw: Any) -> None:
    row = {
        "instance_id": instance_id, "visit": 1, "timer_index": 0, "name": "remind",
        "state": "new", "due_at": T0, "status": "pending", "created_at": T0,
    } | kw  # fmt: skip
    conn.execute(sa.insert(tables.timers).values(row))


def index_predicate(engine: sa.Engine, table: str, name: str) -> str:
    """The WHERE clause of a (partial) index as the database reports it, without casts."""
    indexes = {ix["name"]: ix for ix in sa.inspect(engine).get_indexes(table)}
    where = str(indexes[name]["dialect_options"].get(f"{engine.dialect.name}_where", ""))
    return where.replace("(", "").replace(")", "").replace("::text", "")  # PostgreSQL decorates


# ---------------------------------------------------------------- URLs and engines


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg"),
        ("postgres://u@h/db", "postgresql+psycopg"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg"),
        ("sqlite:///x.db", "sqlite"),
    ],
    ids=["postgresql", "postgres", "psycopg", "sqlite"],
)
def test_url_schemes_are_normalised(url: str, driver: str) -> None:
    engine = database.create_db_engine(url)
    assert engine.url.drivername == driver


@pytest.mark.parametrize("url", ["mysql://u@h/db", "not a url"], ids=["mysql", "garbage"])
def test_unsupported_url_is_a_usage_error(url: str) -> None:
    with pytest.raises(errors.UsageError, match=re.escape("use sqlite:///path.db or postgresql://")):
        database.create_db_engine(url)


def test_redact_hides_the_password() -> None:
    redacted = database.redact("postgresql://sales:s3cret@db.example/crm")
    assert "s3cret" not in redacted
    assert redacted == "postgresql://sales:***@db.example/crm"


def test_in_memory_sqlite_keeps_one_database() -> None:
    engine = database.create_db_engine("sqlite://")
    database.ensure_schema(engine)
    with engine.begin() as conn:
        add_instance(conn)
    with engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(tables.instances)) == 1


@POSTGRES_ONLY
def test_postgres_session_settings(database_url: str, make_db_engine: EngineFactory) -> None:
    engine = make_db_engine(lock_timeout="3s")
    schema = sa.engine.make_url(database_url).query["options"].split("=")[1]
    with engine.connect() as conn:
        show = {
            name: conn.exec_driver_sql(f"SHOW {name}").scalar()
            for name in ("search_path", "lock_timeout", "statement_timeout",
                         "idle_in_transaction_session_timeout", "transaction_isolation")
        }  # fmt: skip
    assert show == {
        "search_path": schema,
        "lock_timeout": "3s",
        "statement_timeout": "1min",
        "idle_in_transaction_session_timeout": "1min",
        "transaction_isolation": "read committed",
    }
    assert engine.pool._pre_ping  # type: ignore[attr-defined]


# ---------------------------------------------------------------- migrations


def test_migrate_creates_every_table_and_the_partial_indexes(db_engine: sa.Engine) -> None:
    inspector = sa.inspect(db_engine)
    assert set(inspector.get_table_names()) == {*tables.metadata.tables, "alembic_version"}
    for table in tables.metadata.sorted_tables:
        assert [c["name"] for c in inspector.get_columns(table.name)] == list(table.c.keys())
    predicate = functools.partial(index_predicate, db_engine)
    assert predicate("instances", "uq_instances_active_business_key") == "status = 'active'"
    assert predicate("timers", "ix_timers_pending_due") == "status = 'pending'"
    assert database.current_revision(db_engine) == database.head_revision()


def test_migrations_match_the_tables_module(db_engine: sa.Engine) -> None:
    with db_engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, tables.metadata) == []


def test_migrate_twice_is_a_no_op(make_db_engine: EngineFactory) -> None:
    engine = make_db_engine()
    assert database.migrate(engine) is True
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    assert database.migrate(engine) is False
    assert not [s for s in statements if s.lstrip().upper().startswith(("CREATE", "ALTER"))]


def test_alembic_command_line_uses_the_env_url(database_url: str, make_db_engine: EngineFactory) -> None:
    env = {**os.environ, "SALESFLOW_DATABASE_URL": database_url}
    ini = str(ROOT / "storage" / "alembic.ini")
    subprocess.run(
        [sys.executable, "-m", "alembic", "-c", ini, "upgrade", "head"],
        cwd=ROOT, env=env, check=True, capture_output=True,
    )  # fmt: skip
    assert database.current_revision(make_db_engine()) == database.head_revision()


@SQLITE_ONLY
def test_ensure_schema_creates_sqlite_on_first_use(make_db_engine: EngineFactory) -> None:
    engine = make_db_engine()
    database.ensure_schema(engine)
    assert database.current_revision(engine) == database.head_revision()


def test_concurrent_migrators_upgrade_exactly_once(make_db_engine: EngineFactory) -> None:
    engines = [make_db_engine() for _ in range(4)]
    barrier = threading.Barrier(len(engines))
    outcomes: list[bool | BaseException] = []

    def migrate(engine: sa.Engine) -> None:
        barrier.wait()
        try:
            outcomes.append(database.migrate(engine))
        except BaseException as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=migrate, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes, key=repr) == [False, False, False, True]
    assert database.current_revision(engines[0]) == database.head_revision()


@POSTGRES_ONLY
def test_ensure_schema_refuses_an_unmigrated_postgres(make_db_engine: EngineFactory) -> None:
    engine = make_db_engine()
    with pytest.raises(errors.UsageError) as caught:
        database.ensure_schema(engine)
    url = database.redact(engine.url)
    assert str(caught.value) == (
        f"database at {url} is not initialised (or is out of date); run: salesflow db upgrade --db {url}"
    )
    database.migrate(engine)
    database.ensure_schema(engine)


# ---------------------------------------------------------------- rows read by position


@pytest.mark.parametrize(
    ("table", "record", "renamed", "left_out"),
    [
        (tables.instances, repository.InstanceRecord, {"business_key": "key"}, set()),
        (tables.timers, repository.TimerRecord, {}, {"created_at"}),
    ],
)
def test_records_follow_their_tables_column_order(
    table: sa.Table, record: type, renamed: dict[str, str], left_out: set[str]
) -> None:
    """The repository builds records from rows by position: a column added or moved in a
    migration must be mirrored in the record, or every value would land in the wrong field."""
    columns = [renamed.get(c.name, c.name) for c in table.c if c.name not in left_out]
    assert columns == [f.name for f in dataclasses.fields(record)]


def test_records_read_back_hold_what_was_written(db_engine: sa.Engine) -> None:
    with db_engine.begin() as conn:
        instance_id = add_instance(conn, key="acme")
        add_timer(conn, instance_id, due_at=T0 + timedelta(days=1))
        instance = repository.get_instance(conn, instance_id)
        [timer] = repository.list_timers(conn)
        claimed = repository.claim_due_timer(conn, T0 + timedelta(days=2))
    assert instance is not None and (instance.key, instance.status, instance.visit) == ("acme", "active", 1)
    assert (timer.instance_id, timer.name, timer.due_at, timer.status) == (
        instance_id,
        "remind",
        T0 + timedelta(days=1),
        "pending",
    )
    assert claimed == (timer, instance)


# ---------------------------------------------------------------- instants (P14)

ZONES = [
    ZoneInfo("Europe/Warsaw"),
    ZoneInfo("America/New_York"),
    ZoneInfo("Asia/Kolkata"),
    timezone(timedelta(hours=14)),
    UTC,
]
WALL_TIMES = [
    datetime(2026, 3, 29, 3, 30, 0, 123456),  # just after the EU spring-forward
    datetime(2026, 10, 25, 2, 30, fold=1),  # the repeated hour, second pass
    datetime(2026, 11, 1, 1, 30),  # US fall-back
    datetime(2027, 1, 1, 0, 0, 0, 1),
]


@pytest.mark.parametrize("zone", ZONES, ids=str)
def test_aware_datetimes_round_trip_as_utc(db_engine: sa.Engine, zone: Any) -> None:
    instants = [wall.replace(tzinfo=zone) for wall in WALL_TIMES]
    with db_engine.begin() as conn:
        ids = [
            add_instance(conn, key=f"k{i}", status="closed", created_at=at) for i, at in enumerate(instants)
        ]
    with db_engine.connect() as conn:
        rows = conn.execute(
            sa.select(tables.instances.c.created_at).where(tables.instances.c.id.in_(ids))
            .order_by(tables.instances.c.id)
        ).scalars().all()  # fmt: skip
    # Compare in UTC: Python never finds an ambiguous wall time equal to one in another zone.
    assert rows == [at.astimezone(UTC) for at in instants]
    assert all(r.tzinfo is UTC for r in rows)


@SQLITE_ONLY
def test_sqlite_stores_the_utc_wall_time(db_engine: sa.Engine) -> None:
    at = datetime(2026, 6, 1, 12, 0, tzinfo=ZoneInfo("Europe/Warsaw"))
    with db_engine.begin() as conn:
        add_instance(conn, created_at=at)
        raw = conn.exec_driver_sql("SELECT created_at FROM instances").scalar()
    assert raw == "2026-06-01 10:00:00.000000"


def test_instants_from_many_zones_sort_by_instant(db_engine: sa.Engine) -> None:
    instants = [T0.astimezone(zone) + timedelta(minutes=7 * i) for i, zone in enumerate(ZONES)]
    instants += [T0.astimezone(zone) - timedelta(hours=i) for i, zone in enumerate(ZONES)]
    with db_engine.begin() as conn:
        instance_id = add_instance(conn)
        for i, due in enumerate(instants):
            add_timer(conn, instance_id, timer_index=i, due_at=due)
        got = conn.execute(
            sa.select(tables.timers.c.due_at).order_by(tables.timers.c.due_at)
        ).scalars().all()  # fmt: skip
    assert got == sorted(at.astimezone(UTC) for at in instants)


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()], ids=["sqlite", "pg"])
def test_naive_datetime_is_refused_by_the_type(dialect: sa.Dialect) -> None:
    with pytest.raises(ValueError, match=r"naive datetime .* pass an aware one"):
        types.UTCDateTime().process_bind_param(datetime(2026, 1, 1), dialect)


def test_naive_datetime_is_refused_on_insert(db_engine: sa.Engine) -> None:
    with pytest.raises(StatementError, match="naive datetime"), db_engine.begin() as conn:
        add_instance(conn, created_at=datetime(2026, 1, 1, 12, 0))


def test_json_none_is_sql_null(db_engine: sa.Engine) -> None:
    history = tables.history
    with db_engine.begin() as conn:
        instance_id = add_instance(conn, data={"owner": "ala", "amount": 12.5})
        conn.execute(sa.insert(history).values(
            instance_id=instance_id, seq=1, at=T0, recorded_at=T0, source="staff", event="start",
            input=None, data_changes={"owner": "ala"}, definition_version=1,
        ))  # fmt: skip
        nulls = conn.scalar(sa.select(sa.func.count()).where(history.c.input.is_(None)))
        data = conn.scalar(sa.select(tables.instances.c.data))
    assert nulls == 1
    assert data == {"owner": "ala", "amount": 12.5}


# ---------------------------------------------------------------- invariants (P3, P8, P9)


def test_one_active_instance_per_process_and_key(db_engine: sa.Engine) -> None:
    with db_engine.begin() as conn:
        add_instance(conn, status="closed")
        add_instance(conn, status="closed")
        add_instance(conn, status="active")
        add_instance(conn, status="active", process="renewal")
    with pytest.raises(IntegrityError), db_engine.begin() as conn:
        add_instance(conn, status="active")


def test_a_timer_row_is_unique_per_instance_visit_and_index(db_engine: sa.Engine) -> None:
    with db_engine.begin() as conn:
        instance_id = add_instance(conn)
        add_timer(conn, instance_id, visit=1, timer_index=0)
        add_timer(conn, instance_id, visit=2, timer_index=0)
        add_timer(conn, instance_id, visit=1, timer_index=1)
    with pytest.raises(IntegrityError), db_engine.begin() as conn:
        add_timer(conn, instance_id, visit=1, timer_index=0, status="fired")


def test_history_idempotency_key_is_unique_per_instance(db_engine: sa.Engine) -> None:
    def add_event(conn: sa.Connection, instance_id: int, seq: int, key: str | None) -> None:
        conn.execute(sa.insert(tables.history).values(
            instance_id=instance_id, seq=seq, at=T0, recorded_at=T0, source="staff",
            event="call", definition_version=1, idempotency_key=key,
        ))  # fmt: skip

    with db_engine.begin() as conn:
        first, second = add_instance(conn, key="a"), add_instance(conn, key="b")
        add_event(conn, first, 1, None)
        add_event(conn, first, 2, None)
        add_event(conn, first, 3, "req-1")
        add_event(conn, second, 1, "req-1")
    with pytest.raises(IntegrityError), db_engine.begin() as conn:
        add_event(conn, first, 4, "req-1")


def test_foreign_keys_are_enforced(db_engine: sa.Engine) -> None:
    with pytest.raises(IntegrityError), db_engine.begin() as conn:
        add_timer(conn, instance_id=424242)


# ---------------------------------------------------------------- SQLite locking (P21)


@SQLITE_ONLY
def test_sqlite_pragmas_are_in_force(db_engine: sa.Engine) -> None:
    with db_engine.connect() as conn:
        pragma = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
        }
    assert pragma == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 30000,
                      "synchronous": 1}  # fmt: skip


def _hold_new_file_in_rollback_mode(path: str) -> sqlite3.Connection:
    """What another process creating a new database looks like: the file is not in WAL mode yet
    and that process holds the write lock."""
    creator = sqlite3.connect(path, isolation_level=None)
    creator.execute("BEGIN IMMEDIATE")
    creator.execute("CREATE TABLE being_created (x)")
    return creator


@SQLITE_ONLY
def test_opening_a_new_file_another_process_is_creating_waits_for_it(
    database_url: str, make_db_engine: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite refuses the switch to WAL at once here (no busy wait); the connection retries."""
    creator = _hold_new_file_in_rollback_mode(sa.make_url(database_url).database)
    retries: list[str] = []

    def creator_finishes() -> None:
        retries.append("retry")
        if creator.in_transaction:
            creator.execute("COMMIT")

    monkeypatch.setattr(database, "_wait_before_retry", creator_finishes)
    with make_db_engine().connect() as conn:
        mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
        tables_seen = conn.exec_driver_sql("SELECT name FROM sqlite_master").scalars().all()
    creator.close()
    assert (retries, mode, tables_seen) == (["retry"], "wal", ["being_created"])


@SQLITE_ONLY
def test_opening_a_file_held_past_the_busy_timeout_says_it_is_locked(
    database_url: str, make_db_engine: EngineFactory
) -> None:
    creator = _hold_new_file_in_rollback_mode(sa.make_url(database_url).database)
    try:
        with pytest.raises(OperationalError, match="database is locked"):
            make_db_engine(busy_timeout_ms=0).connect()
    finally:
        creator.close()


@SQLITE_ONLY
def test_sqlite_writers_take_the_write_lock_at_begin(
    db_engine: sa.Engine, make_db_engine: EngineFactory
) -> None:
    impatient = make_db_engine(busy_timeout_ms=10)
    with db_engine.connect() as holder, holder.begin():  # no statement yet: only BEGIN IMMEDIATE
        with pytest.raises(OperationalError, match="database is locked"), impatient.begin():
            pass
        with impatient.connect() as reader, database.read_transaction(reader):
            assert reader.scalar(sa.select(sa.func.count()).select_from(tables.timers)) == 0
    with impatient.begin() as conn:  # the lock is free again once the holder has finished
        add_instance(conn)


@SQLITE_ONLY
def test_sqlite_begin_statements(db_engine: sa.Engine) -> None:
    """What SQLite itself ran: writers take the write lock at BEGIN, readers do not."""
    seen: list[str] = []
    with db_engine.connect() as conn:
        conn.connection.driver_connection.set_trace_callback(seen.append)
        try:
            with conn.begin():
                conn.exec_driver_sql("SELECT 1")
            with database.read_transaction(conn):
                conn.exec_driver_sql("SELECT 2")
            with conn.begin():  # the read-only mark does not outlive its transaction
                conn.exec_driver_sql("SELECT 3")
        finally:
            conn.connection.driver_connection.set_trace_callback(None)
    assert seen == [
        "BEGIN IMMEDIATE",
        "SELECT 1",
        "COMMIT",
        "BEGIN",
        "SELECT 2",
        "COMMIT",
        "BEGIN IMMEDIATE",
        "SELECT 3",
        "COMMIT",
    ]


# ---------------------------------------------------------------- the due-timer query plan

DUE_QUERY = "SELECT id FROM timers WHERE status = 'pending' AND due_at <= :t ORDER BY due_at, id LIMIT 100"


def explain(conn: sa.Connection, prefix: str) -> str:
    query = sa.text(f"{prefix} {DUE_QUERY}").bindparams(
        sa.bindparam("t", T0 + timedelta(days=30), type_=types.UTCDateTime())
    )
    return "\n".join(str(row[-1]) for row in conn.execute(query))


def add_many_timers(conn: sa.Connection, count: int) -> None:
    instance_id = add_instance(conn)
    rows = [
        {"instance_id": instance_id, "visit": i, "timer_index": 0, "name": "remind",
         "state": "new", "due_at": T0 + timedelta(minutes=i), "created_at": T0,
         "status": "pending" if i % 10 == 0 else "fired"}
        for i in range(count)
    ]  # fmt: skip
    conn.execute(sa.insert(tables.timers), rows)


@SQLITE_ONLY
def test_sqlite_due_timer_query_uses_the_partial_index(db_engine: sa.Engine) -> None:
    with db_engine.begin() as conn:
        add_many_timers(conn, 500)
        conn.exec_driver_sql("ANALYZE")
        plan = explain(conn, "EXPLAIN QUERY PLAN")
    assert "USING INDEX ix_timers_pending_due" in plan
    assert "TEMP B-TREE" not in plan  # no sort: the index gives due order


@POSTGRES_ONLY
def test_postgres_due_timer_query_uses_the_partial_index(db_engine: sa.Engine) -> None:
    with db_engine.begin() as conn:
        add_many_timers(conn, 2000)
        conn.exec_driver_sql("ANALYZE timers")
        plan = explain(conn, "EXPLAIN")
    assert "ix_timers_pending_due" in plan
    assert "Sort" not in plan.replace("Sort Key", "")
