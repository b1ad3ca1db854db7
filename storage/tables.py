"""The salesflow schema as SQLAlchemy Core tables; the migrations create exactly this.

Invariants live in the database where they can: one active instance per (process, business key),
one history row per (instance, seq) and per idempotency key, one timer row per (instance, state
visit, timer index), so a timer can change state at most once (P3, P8, P9).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from storage import types

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# A BIGINT primary key is not a rowid alias on SQLite, so it would not autoincrement there.
BigId = BigInteger().with_variant(Integer, "sqlite")

# Partial-index predicates. Queries that should use these indexes must repeat the predicate with
# the literal value (not a bound parameter), or the planners cannot prove the index applies.
ACTIVE_INSTANCE = "status = 'active'"
PENDING_TIMER = "status = 'pending'"

definitions = Table(
    "definitions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("process", String(100), nullable=False),
    Column("version", Integer, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("source", Text, nullable=False),
    Column("deployed_at", types.UTCDateTime(), nullable=False),
    UniqueConstraint("process", "version"),
)

instances = Table(
    "instances",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("process", String(100), nullable=False),
    Column("version", Integer, nullable=False),
    Column("business_key", String(200), nullable=False),
    Column("state", String(100), nullable=False),
    Column("data", types.json_document(), nullable=False),
    Column("status", String(10), nullable=False),  # "active" / "closed"
    Column("queue", String(100), nullable=True),
    Column("stage", String(100), nullable=True),
    Column("outcome", String(100), nullable=True),
    Column("visit", Integer, nullable=False),  # incremented each time a state is entered
    Column("row_version", Integer, nullable=False),  # optimistic lock: number of history rows
    Column("created_at", types.UTCDateTime(), nullable=False),
    Column("updated_at", types.UTCDateTime(), nullable=False),
    Column("last_event_at", types.UTCDateTime(), nullable=False),  # logical time, latest event
    Index(
        "uq_instances_active_business_key",
        "process",
        "business_key",
        unique=True,
        sqlite_where=text(ACTIVE_INSTANCE),
        postgresql_where=text(ACTIVE_INSTANCE),
    ),
    Index(None, "process", "state"),
    Index(None, "queue"),
    Index(None, "status", "process"),
)

history = Table(
    "history",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("instance_id", BigId, ForeignKey("instances.id"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("at", types.UTCDateTime(), nullable=False),  # logical time of the event
    Column("recorded_at", types.UTCDateTime(), nullable=False),  # real time it was written
    Column("actor", String(200), nullable=True),
    Column("source", String(10), nullable=False),  # staff / timer / import / system
    Column("event", String(100), nullable=False),
    Column("from_state", String(100), nullable=True),
    Column("to_state", String(100), nullable=True),
    Column("input", types.json_document(), nullable=True),
    Column("data_changes", types.json_document(), nullable=True),
    Column("definition_version", Integer, nullable=False),
    Column("note", Text, nullable=True),
    Column("idempotency_key", String(200), nullable=True),
    UniqueConstraint("instance_id", "seq"),
    UniqueConstraint("instance_id", "idempotency_key"),
)

timers = Table(
    "timers",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("instance_id", BigId, ForeignKey("instances.id"), nullable=False),
    Column("visit", Integer, nullable=False),  # the state visit that armed the timer
    Column("timer_index", Integer, nullable=False),  # position of the timer within its state
    Column("name", String(100), nullable=False),
    Column("state", String(100), nullable=False),
    Column("due_at", types.UTCDateTime(), nullable=False),
    Column("status", String(10), nullable=False),  # pending / fired / cancelled / skipped
    Column("fired_at", types.UTCDateTime(), nullable=True),  # real time of firing
    Column("lateness_seconds", Float, nullable=True),
    Column("created_at", types.UTCDateTime(), nullable=False),
    UniqueConstraint("instance_id", "visit", "timer_index"),
    Index(
        "ix_timers_pending_due",
        "due_at",
        "id",
        sqlite_where=text(PENDING_TIMER),
        postgresql_where=text(PENDING_TIMER),
    ),
    Index(None, "instance_id", "status"),
)
