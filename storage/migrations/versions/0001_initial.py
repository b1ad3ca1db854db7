"""Initial schema: definitions, instances, history, timers.

Revision ID: 0001
Revises:
Create Date: 2025-11-23

Self-contained on purpose (no imports from salesflow): a migration must keep describing the schema
as it was at this revision, whatever the application's table code becomes later. Instants are
``DateTime(timezone=True)``: TIMESTAMP WITH TIME ZONE on PostgreSQL, DATETIME on SQLite, where
``storage.types.UTCDateTime`` stores the UTC wall time.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A BIGINT primary key is not a rowid alias on SQLite, so it would not autoincrement there.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ACTIVE_INSTANCE = "status = 'active'"
PENDING_TIMER = "status = 'pending'"


def _instant(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _json(name: str, nullable: bool) -> sa.Column:
    json_type = sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )
    return sa.Column(name, json_type, nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "definitions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("process", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        _instant("deployed_at"),
        sa.PrimaryKeyConstraint("id", name="pk_definitions"),
        sa.UniqueConstraint("process", "version", name="uq_definitions_process_version"),
    )
    op.create_table(
        "instances",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("process", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("business_key", sa.String(200), nullable=False),
        sa.Column("state", sa.String(100), nullable=False),
        _json("data", nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("queue", sa.String(100), nullable=True),
        sa.Column("stage", sa.String(100), nullable=True),
        sa.Column("outcome", sa.String(100), nullable=True),
        sa.Column("visit", sa.Integer(), nullable=False),
        sa.Column("row_version", sa.Integer(), nullable=False),
        _instant("created_at"),
        _instant("updated_at"),
        _instant("last_event_at"),
        sa.PrimaryKeyConstraint("id", name="pk_instances"),
    )
    op.create_index(
        "uq_instances_active_business_key",
        "instances",
        ["process", "business_key"],
        unique=True,
        sqlite_where=sa.text(ACTIVE_INSTANCE),
        postgresql_where=sa.text(ACTIVE_INSTANCE),
    )
    op.create_index("ix_instances_process_state", "instances", ["process", "state"])
    op.create_index("ix_instances_queue", "instances", ["queue"])
    op.create_index("ix_instances_status_process", "instances", ["status", "process"])

    op.create_table(
        "history",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("instance_id", BIG_ID, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        _instant("at"),
        _instant("recorded_at"),
        sa.Column("actor", sa.String(200), nullable=True),
        sa.Column("source", sa.String(10), nullable=False),
        sa.Column("event", sa.String(100), nullable=False),
        sa.Column("from_state", sa.String(100), nullable=True),
        sa.Column("to_state", sa.String(100), nullable=True),
        _json("input", nullable=True),
        _json("data_changes", nullable=True),
        sa.Column("definition_version", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_history"),
        sa.ForeignKeyConstraint(
            ["instance_id"], ["instances.id"], name="fk_history_instance_id_instances"
        ),
        sa.UniqueConstraint("instance_id", "seq", name="uq_history_instance_id_seq"),
        sa.UniqueConstraint(
            "instance_id", "idempotency_key", name="uq_history_instance_id_idempotency_key"
        ),
    )

    op.create_table(
        "timers",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("instance_id", BIG_ID, nullable=False),
        sa.Column("visit", sa.Integer(), nullable=False),
        sa.Column("timer_index", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("state", sa.String(100), nullable=False),
        _instant("due_at"),
        sa.Column("status", sa.String(10), nullable=False),
        _instant("fired_at", nullable=True),
        sa.Column("lateness_seconds", sa.Float(), nullable=True),
        _instant("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_timers"),
        sa.ForeignKeyConstraint(
            ["instance_id"], ["instances.id"], name="fk_timers_instance_id_instances"
        ),
        sa.UniqueConstraint(
            "instance_id", "visit", "timer_index", name="uq_timers_instance_id_visit_timer_index"
        ),
    )
    op.create_index(
        "ix_timers_pending_due",
        "timers",
        ["due_at", "id"],
        sqlite_where=sa.text(PENDING_TIMER),
        postgresql_where=sa.text(PENDING_TIMER),
    )
    op.create_index("ix_timers_instance_id_status", "timers", ["instance_id", "status"])


def downgrade() -> None:
    op.drop_table("timers")
    op.drop_table("history")
    op.drop_table("instances")
    op.drop_table("definitions")
