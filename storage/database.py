"""Database engines from a URL, and the schema brought to the current migration.

SQLite (one host): WAL, a busy timeout, foreign keys on, and every write transaction begun with
``BEGIN IMMEDIATE`` so it takes the write lock up front instead of failing with "database is
locked" halfway through (P21). PostgreSQL: READ COMMITTED, and server-side timeouts so a stalled
session cannot hold row locks for ever (P4, P22). Pooled connections are pinged before use, except
the runtime's: it retries a unit of work whose connection turns out to be dead instead (P22).
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import PoolProxiedConnection, StaticPool

from engine import errors

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Mark on a pooled SQLite connection: its next transaction only reads (see read_transaction).
_READONLY = "salesflow_readonly"

# Any constant works; every salesflow migrator on one PostgreSQL database agrees on it.
_MIGRATION_LOCK_KEY = 0x5A1E5F10


def create_db_engine(
    url: str | URL,
    *,
    search_path: str | None = None,
    busy_timeout_ms: int = 30_000,
    lock_timeout: str = "10s",
    statement_timeout: str = "60s",
    idle_in_transaction_session_timeout: str = "60s",
    **kw: Any,
) -> Engine:
    """Build an engine for ``sqlite:///path.db`` or ``postgresql://...`` (psycopg 3).

    ``search_path`` (PostgreSQL) puts the tables in that schema; extra ``kw`` go to
    :func:`sqlalchemy.create_engine`. Nothing connects until the engine is first used.
    """
    parsed = _parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, busy_timeout_ms, **kw)
    settings = {
        "lock_timeout": lock_timeout,
        "statement_timeout": statement_timeout,
        "idle_in_transaction_session_timeout": idle_in_transaction_session_timeout,
    }
    if search_path:
        settings["search_path"] = search_path
    return _postgresql_engine(parsed, settings, **kw)


def _parse_url(url: str | URL) -> URL:
    """Parse and normalise: bare ``postgresql://`` / ``postgres://`` mean psycopg 3."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise errors.UsageError(
            f"cannot parse database URL {redact(url)!r}: {exc}; "
            "use sqlite:///path.db or postgresql://user@host/dbname"
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise errors.UsageError(
            f"unsupported database URL {redact(parsed)!r}; "
            "use sqlite:///path.db or postgresql://user@host/dbname"
        )
    return parsed


def _sqlite_engine(url: URL, busy_timeout_ms: int, **kw: Any) -> Engine:
    if url.database in (None, "", ":memory:"):
        # One shared connection, or every checkout would see a different empty database.
        kw.setdefault("poolclass", StaticPool)
        kw.setdefault("connect_args", {}).setdefault("check_same_thread", False)
    engine = create_engine(url, **kw)
    event.listen(engine, "connect", functools.partial(_sqlite_on_connect, busy_timeout_ms))
    # pysqlite's dialect begins nothing itself (do_begin is a no-op; the driver is in autocommit
    # mode, see below); this engine's dialect sends the BEGIN. Not a "begin" event listener, as
    # SQLAlchemy's documentation shows: any connection listener makes every statement dispatch
    # events, which cost more per step than the BEGIN itself.
    engine.dialect.do_begin = _sqlite_begin  # type: ignore[method-assign]
    return engine


def _sqlite_on_connect(busy_timeout_ms: int, dbapi_connection: Any, _record: Any) -> None:
    """Per-connection settings; pysqlite's own transaction handling is switched off (we BEGIN)."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        # busy_timeout first: switching to WAL needs a lock another process may hold.
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        _switch_to_wal(cursor, busy_timeout_ms)
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


# How often a connection retries switching a new database file to WAL while another holds it.
_WAL_RETRY_SECONDS = 0.01


def _switch_to_wal(cursor: sqlite3.Cursor, busy_timeout_ms: int) -> None:
    """Switch the file to WAL, waiting up to the busy timeout for other connections.

    SQLite does not wait by itself here. While a new file is still in rollback-journal mode, the
    switch reads first and then needs the write lock. If another connection is creating the schema
    at that moment, SQLite answers "database is locked" at once instead of calling the busy
    handler (it would otherwise deadlock). So several processes opening one new file retry."""
    deadline = time.monotonic() + busy_timeout_ms / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            _wait_before_retry()


def _wait_before_retry() -> None:
    time.sleep(_WAL_RETRY_SECONDS)


def _sqlite_begin(connection: PoolProxiedConnection) -> None:
    """Writers lock up front; a deferred read-then-write would fail at once when busy (P21)."""
    readonly = connection.info.pop(_READONLY, False)
    connection.driver_connection.execute("BEGIN" if readonly else "BEGIN IMMEDIATE")


@contextmanager
def read_transaction(conn: Connection) -> Iterator[Connection]:
    """A transaction that only reads: on SQLite it begins without taking the write lock, so readers
    never wait for writers (WAL gives them a snapshot)."""
    sqlite = conn.dialect.name == "sqlite"
    if sqlite:
        conn.connection.info[_READONLY] = True
    try:
        with conn.begin():
            yield conn
    finally:
        if sqlite:
            conn.connection.info.pop(_READONLY, None)


def _postgresql_engine(url: URL, settings: dict[str, str], **kw: Any) -> Engine:
    """Server settings travel as libpq ``options``, merged with any already in the URL."""
    connect_args = dict(kw.pop("connect_args", {}))
    from_url = url.query.get("options", ())
    options = [f"-c {name}={value}" for name, value in settings.items()]
    options += [from_url] if isinstance(from_url, str) else list(from_url)
    options += [connect_args["options"]] if connect_args.get("options") else []
    connect_args["options"] = " ".join(options)  # later settings win: the caller's override ours
    kw.setdefault("pool_pre_ping", True)  # the runtime turns it off: it retries instead
    kw.setdefault("isolation_level", "READ COMMITTED")
    return create_engine(url, connect_args=connect_args, **kw)


def redact(url: str | URL) -> str:
    """The URL with its password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


@functools.cache
def head_revision() -> str | None:
    """The newest migration shipped with this code."""
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at; None for an empty database."""
    with engine.connect() as conn, read_transaction(conn):
        return _revision(conn)


def _revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def migrate(engine: Engine) -> bool:
    """Upgrade the database to head; return whether anything was done.

    The cheap check runs first without the write lock; the upgrade itself runs in one transaction
    that holds the write lock (SQLite) or an advisory lock (PostgreSQL) and re-checks, so several
    processes migrating one database at once is safe: one upgrades, the others find it done.
    """
    if current_revision(engine) == head_revision():
        return False
    with engine.begin() as conn:
        take_migration_lock(conn)
        if _revision(conn) == head_revision():  # another process got there first
            return False
        config = _alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    log.info("database %s upgraded to %s", redact(engine.url), head_revision())
    return True


def take_migration_lock(conn: Connection) -> None:
    """Serialise migrators. SQLite needs nothing: BEGIN IMMEDIATE already holds the write lock."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_KEY})")


def ensure_schema(engine: Engine) -> None:
    """Make the schema usable: SQLite is created/upgraded on first use; PostgreSQL must be
    migrated explicitly (a shared server's schema changes are an operator's decision)."""
    if engine.dialect.name == "sqlite":
        migrate(engine)
        return
    if current_revision(engine) != head_revision():
        url = redact(engine.url)
        raise errors.UsageError(
            f"database at {url} is not initialised (or is out of date); run: salesflow db upgrade --db {url}"
        )


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return config
