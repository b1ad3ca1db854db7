"""Database fixtures: storage-backed tests run on SQLite always and on PostgreSQL when configured.

``SALESFLOW_TEST_DATABASE_URL`` (e.g. ``postgresql+psycopg://postgres@127.0.0.1:5432/test``)
enables PostgreSQL; each test then gets its own schema, named in the URL itself
(``?options=-csearch_path%3D<schema>``), so the plain URL string also works for CLI subprocesses.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from engine import runtime
from engine.clock import ManualClock
from storage import database

POSTGRES_URL_VAR = "SALESFLOW_TEST_DATABASE_URL"


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def backend(request: pytest.FixtureRequest) -> str:
    """Which database the test runs on; override with ``parametrize(..., indirect=True)``."""
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A URL to a fresh, empty database (not migrated) for this test."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'salesflow.db'}"
        return
    base_url = os.environ.get(POSTGRES_URL_VAR)
    if not base_url:
        pytest.skip(f"{POSTGRES_URL_VAR} is not set: PostgreSQL tests skipped")
    yield from _postgres_schema_url(base_url)


def _postgres_schema_url(base_url: str) -> Iterator[str]:
    """Create a throw-away schema, yield a URL whose connections use it, then drop it."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = database.create_db_engine(base_url)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def make_db_engine(database_url: str) -> Iterator[Callable[..., Engine]]:
    """Factory: ``make_db_engine(**create_db_engine_kwargs)``; engines are disposed afterwards."""
    engines: list[Engine] = []

    def make(**kw: Any) -> Engine:
        engine = database.create_db_engine(database_url, **kw)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.dispose()


@pytest.fixture
def db_engine(make_db_engine: Callable[..., Engine]) -> Engine:
    """An engine on a database migrated to head."""
    engine = make_db_engine()
    database.migrate(engine)
    return engine


#: Where ``make_engine``'s manual clock starts unless a test gives its own clock (a Monday).
ENGINE_START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.fixture
def migrated_url(database_url: str) -> str:
    """``database_url`` migrated to head (PostgreSQL must be, before an Engine may open it)."""
    engine = database.create_db_engine(database_url)
    try:
        database.migrate(engine)
    finally:
        engine.dispose()
    return database_url


@pytest.fixture
def make_engine(migrated_url: str) -> Iterator[Callable[..., runtime.Engine]]:
    """Factory: ``make_engine(clock=None, **engine_options)`` gives a salesflow Engine on this test's
    database, on a ManualClock at ENGINE_START unless a clock is given; all are closed afterwards.
    Several engines on one database behave like several processes (or a restart)."""
    engines: list[runtime.Engine] = []

    def make(clock: Any = None, **options: Any) -> runtime.Engine:
        engine = runtime.Engine(migrated_url, clock or ManualClock(ENGINE_START), **options)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()
