"""Alembic environment for salesflow.

Programmatic use (``storage.database.migrate``) passes an open connection, already inside a
transaction that holds the migration lock, through ``config.attributes["connection"]``. From the
``alembic`` command line the URL comes from ``sqlalchemy.url`` or ``SALESFLOW_DATABASE_URL``.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from storage import database, tables

config = context.config


def _configure(**kw: object) -> None:
    context.configure(target_metadata=tables.metadata, compare_type=True, **kw)


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("SALESFLOW_DATABASE_URL")
    if not url:
        raise SystemExit("set SALESFLOW_DATABASE_URL (or sqlalchemy.url) to the database URL")
    return url


def _run(connection: Connection) -> None:
    # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = database.create_db_engine(_url())
    try:
        with engine.begin() as conn:  # BEGIN IMMEDIATE on SQLite
            database.take_migration_lock(conn)
            _run(conn)
    finally:
        engine.dispose()


def run_offline() -> None:
    """``alembic upgrade head --sql``: print the SQL for a DBA instead of running it."""
    url = database.create_db_engine(_url()).url
    _configure(url=url, literal_binds=True, render_as_batch=url.get_backend_name() == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if config.config_file_name is not None and config.attributes.get("connection") is None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

if context.is_offline_mode():
    run_offline()
else:
    run_online()
