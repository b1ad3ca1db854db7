"""Column types that keep the database honest about time and JSON on both backends.

SQLite's ``DateTime(timezone=True)`` silently drops the offset (12:00+02:00 comes back as a naive
12:00), so instants are converted to UTC before they are stored and marked UTC when read (P14).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from engine import clock


class UTCDateTime(TypeDecorator[datetime]):
    """An instant: only aware datetimes go in, aware UTC datetimes come out.

    PostgreSQL stores ``TIMESTAMP WITH TIME ZONE``; SQLite stores the UTC wall time without an
    offset (its text format sorts correctly, so range queries and indexes still work).
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.TIMESTAMP(timezone=True))
        return dialect.type_descriptor(DateTime(timezone=False))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected an aware datetime, got {type(value).__name__}: {value!r}")
        instant = clock.as_utc(value)  # refuses naive datetimes: their zone would be a guess
        return instant if dialect.name == "postgresql" else instant.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:  # SQLite: stored as UTC wall time
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def json_document() -> TypeEngine[Any]:
    """JSON on SQLite, JSONB on PostgreSQL; Python ``None`` is stored as SQL NULL, not ``'null'``."""
    return JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
