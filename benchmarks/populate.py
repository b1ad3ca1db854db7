"""Fill a migrated salesflow database with bank-flow clients quickly, for the set-up of the drain,
idle-tick and memory workloads (not measured): driver-level ``executemany`` on SQLite, ``COPY`` on
PostgreSQL, in the formats SQLAlchemy itself writes.

Each client is an instance in ``awaiting_call`` (started, then ``mailing_sent``: two history rows)
with its pending one-week ``call_overdue`` timer, due at ``due_at(i)``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import make_url

from benchmarks import common

INSTANCE_COLUMNS = (
    "id, process, version, business_key, state, data, status, queue, stage, outcome, visit, row_version, "
    "created_at, updated_at, last_event_at"
)
HISTORY_COLUMNS = (
    "instance_id, seq, at, recorded_at, actor, source, event, from_state, to_state, input, data_changes, "
    "definition_version, note, idempotency_key"
)
TIMER_COLUMNS = (
    "instance_id, visit, timer_index, name, state, due_at, status, fired_at, lateness_seconds, created_at"
)
BATCH = 50_000


def clients(
    first_id: int, n: int, due_at: Callable[[int], Any], created: Any
) -> Iterator[tuple[tuple[Any, ...], list[tuple[Any, ...]], tuple[Any, ...]]]:
    """Rows for ``n`` clients; instants as given (datetimes, or SQLite's text for them)."""
    mailing = {"batch": "2026-W10", "mailed_on": "2026-03-02"}
    for i in range(n):
        iid = first_id + i
        data = {"client_name": f"Client {iid}", "segment": "affluent", **mailing, "call_attempts": 0}
        instance = (iid, "private_banking", 1, f"C{iid:08d}", "awaiting_call", json.dumps(data), "active",
                    "telemarketing", "call", None, 2, 2, created, created, created)  # fmt: skip
        start = {k: data[k] for k in ("client_name", "segment")}
        history = [
            (iid, 1, created, created, "import", "import", "start", None, "mailing", None, json.dumps(start),
             1, None, None),
            (iid, 2, created, created, "back-office", "staff", "mailing_sent", "mailing", "awaiting_call",
             json.dumps(mailing), json.dumps({**mailing, "call_attempts": 0}), 1, None, None),
        ]  # fmt: skip
        timer = (iid, 2, 0, "call_overdue", "awaiting_call", due_at(i), "pending", None, None, created)
        yield instance, history, timer


def populate(url: str, n: int, due_at: Callable[[int], datetime], created: datetime = common.T0) -> None:
    """Add ``n`` clients (ids after the highest present)."""
    if url.startswith("sqlite"):
        _sqlite(url, n, due_at, created)
    else:
        _postgres(url, n, due_at, created)


def _sqlite_time(value: datetime) -> str:
    """SQLAlchemy's SQLite DATETIME text for the UTC wall time (what storage.types writes)."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _sqlite(url: str, n: int, due_at: Callable[[int], datetime], created: datetime) -> None:
    con = sqlite3.connect(make_url(url).database, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("PRAGMA synchronous = OFF")  # set-up only; the measured runs use the engine's settings
        first = (con.execute("SELECT max(id) FROM instances").fetchone()[0] or 0) + 1
        placeholders = {name: ", ".join("?" * len(cols.split(","))) for name, cols in
                        (("i", INSTANCE_COLUMNS), ("h", HISTORY_COLUMNS), ("t", TIMER_COLUMNS))}  # fmt: skip
        rows = clients(first, n, lambda i: _sqlite_time(due_at(i)), _sqlite_time(created))
        while True:
            batch = [next(rows, None) for _ in range(BATCH)]
            batch = [b for b in batch if b is not None]
            if not batch:
                break
            con.execute("BEGIN")
            con.executemany(f"INSERT INTO instances ({INSTANCE_COLUMNS}) VALUES ({placeholders['i']})",
                            [b[0] for b in batch])  # fmt: skip
            con.executemany(f"INSERT INTO history ({HISTORY_COLUMNS}) VALUES ({placeholders['h']})",
                            [h for b in batch for h in b[1]])  # fmt: skip
            con.executemany(f"INSERT INTO timers ({TIMER_COLUMNS}) VALUES ({placeholders['t']})",
                            [b[2] for b in batch])  # fmt: skip
            con.execute("COMMIT")
        con.execute("ANALYZE")
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()


def _postgres(url: str, n: int, due_at: Callable[[int], datetime], created: datetime) -> None:
    engine = common.raw_engine(url)
    try:
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute("SELECT coalesce(max(id), 0) FROM instances")
            first = cur.fetchone()[0] + 1
            rows = list(clients(first, n, due_at, created))
            with cur.copy(f"COPY instances ({INSTANCE_COLUMNS}) FROM STDIN") as copy:
                for instance, _, _ in rows:
                    copy.write_row(instance)
            with cur.copy(f"COPY history ({HISTORY_COLUMNS}) FROM STDIN") as copy:
                for _, history, _ in rows:
                    for entry in history:
                        copy.write_row(entry)
            with cur.copy(f"COPY timers ({TIMER_COLUMNS}) FROM STDIN") as copy:
                for _, _, timer in rows:
                    copy.write_row(timer)
            cur.execute(
                "SELECT setval(pg_get_serial_sequence('instances', 'id'), (SELECT max(id) FROM instances))"
            )
            raw.commit()
        finally:
            raw.close()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    finally:
        engine.dispose()


def deploy(url: str) -> None:
    """Deploy the bank flow (version 1) so the engine can fire the populated timers."""
    from engine import Engine, ManualClock

    with Engine(url, ManualClock(common.T0)) as engine:
        engine.deploy(common.BANK_YAML)
