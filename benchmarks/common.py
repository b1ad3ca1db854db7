"""Shared plumbing: fresh databases, measured child processes, statistics and Markdown tables."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine as SAEngine
from sqlalchemy.engine import make_url

from benchmarks._child import MARKER

ROOT = Path(__file__).resolve().parent.parent
BANK_YAML = ROOT / "processes" / "private_banking.yaml"
PG_URL_VAR = "SALESFLOW_BENCH_PG_URL"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/salesflow_bench"
#: Where every benchmark's manual clock starts (a Monday, no DST change within weeks).
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
BACKENDS = ("sqlite", "postgres")


# -- databases -----------------------------------------------------------------------------------
def pg_base_url() -> str:
    return os.environ.get(PG_URL_VAR, DEFAULT_PG_URL)


def ensure_pg_database(url: str) -> None:
    """Create the benchmark database (``salesflow_bench``) if it does not exist yet."""
    parsed = make_url(url)
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": parsed.database}
            ).first()
            if not exists:
                conn.exec_driver_sql(f'CREATE DATABASE "{parsed.database}"')
    finally:
        admin.dispose()


@contextlib.contextmanager
def fresh_database(backend: str, migrate: bool = True) -> Iterator[str]:
    """A URL to a new, empty database: an SQLite file in a temporary directory, or a new PostgreSQL
    schema (named in the URL, so subprocesses given the URL use it too), removed afterwards."""
    if backend == "sqlite":
        directory = tempfile.mkdtemp(prefix="salesflow-bench-")
        url = f"sqlite:///{directory}/bench.db"
        try:
            if migrate:
                migrate_url(url)
            yield url
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return
    base = pg_base_url()
    ensure_pg_database(base)
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        rendered = url.render_as_string(hide_password=False)
        if migrate:
            migrate_url(rendered)
        yield rendered
    finally:
        _drop_schema(admin, schema)
        admin.dispose()


def _drop_schema(admin: SAEngine, schema: str) -> None:
    """Drop a benchmark schema, waiting out a server restart (other test suites restart it)."""
    for attempt in range(30):
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            return
        except Exception:
            if attempt == 29:
                log(f"could not drop schema {schema}; `python -m benchmarks --cleanup` will")
                return
            time.sleep(2)


def drop_stale_schemas() -> int:
    """Drop every ``bench_*`` schema left in the benchmark database by interrupted runs."""
    base = pg_base_url()
    ensure_pg_database(base)
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            query = text("SELECT nspname FROM pg_namespace WHERE starts_with(nspname, 'bench_')")
            names = list(conn.execute(query).scalars())
        for name in names:
            _drop_schema(admin, name)
        return len(names)
    finally:
        admin.dispose()


def migrate_url(url: str) -> None:
    from storage import database

    engine = database.create_db_engine(url)
    try:
        database.migrate(engine)
    finally:
        engine.dispose()


def raw_engine(url: str) -> SAEngine:
    """A plain SQLAlchemy engine for the hand-written baselines. SQLite gets the same durability
    settings the engine uses (WAL, synchronous=NORMAL, foreign keys), so both pay for the same
    commits; nothing else (no pool pre-ping, no BEGIN IMMEDIATE hook)."""
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "foreign_keys = ON"):
                cursor.execute(f"PRAGMA {pragma}")
            cursor.close()

    return engine


def stop_worker(worker: subprocess.Popen[Any]) -> None:
    """SIGTERM a `salesflow worker` process; kill it if it has not ended within 30 s."""
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()


def analyze(url: str) -> None:
    """Refresh planner statistics after a bulk load, as an operator would."""
    engine = raw_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    finally:
        engine.dispose()


# -- measured child processes --------------------------------------------------------------------
def run_child(module: str, function: str, timeout: float = 3600, **kwargs: Any) -> dict[str, Any]:
    """Run ``module.function(**kwargs)`` in a fresh interpreter; its dict result plus peak RSS."""
    command = [sys.executable, "-m", "benchmarks._child", module, function, json.dumps(kwargs)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER) :])
    raise RuntimeError(f"{module}.{function} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")


# -- statistics and tables -----------------------------------------------------------------------
@dataclass
class Series:
    """Repeated measurements of one variant on one backend."""

    name: str
    values: list[float] = field(default_factory=list)  # the headline figure, e.g. items/s
    rss_mb: list[float] = field(default_factory=list)
    extra: list[dict[str, Any]] = field(default_factory=list)

    def add(self, value: float, rss_mb: float | None = None, **extra: Any) -> None:
        self.values.append(value)
        if rss_mb is not None:
            self.rss_mb.append(rss_mb)
        self.extra.append(extra)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def spread(self, fmt: str = "{:,.0f}") -> str:
        return f"{fmt.format(min(self.values))}-{fmt.format(max(self.values))}"

    def rss(self) -> str:
        return f"{statistics.median(self.rss_mb):.0f}" if self.rss_mb else "-"


def paired_ratios(series: Series, baseline: Series) -> list[float]:
    """Per repetition ratios (the repetitions were interleaved, so each pair ran side by side)."""
    return [a / b for a, b in zip(series.values, baseline.values, strict=False) if b]


def ratio_cell(series: Series, baseline: Series) -> str:
    pairs = paired_ratios(series, baseline)
    spread = f" ({min(pairs):.2f}-{max(pairs):.2f})" if pairs else ""
    return f"{series.median / baseline.median:.2f}x{spread}"


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def section(title: str, body: str) -> str:
    return f"### {title}\n\n{body}\n"


# -- command lines -------------------------------------------------------------------------------
def parser(description: str, n: int, reps: int = 3) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--db", choices=(*BACKENDS, "both"), default="both", help="backend (default both)")
    ap.add_argument("--n", type=int, default=n, help=f"workload size (default {n:,})")
    ap.add_argument("--reps", type=int, default=reps, help=f"interleaved repetitions (default {reps})")
    return ap


def backends(choice: str) -> list[str]:
    return list(BACKENDS) if choice == "both" else [choice]


def interleaved(reps: int, variants: Sequence[str]) -> Iterator[tuple[int, str]]:
    """rep 1: a, b, c; rep 2: b, c, a; ... so no variant always runs first (warm caches, drift)."""
    for rep in range(reps):
        shift = rep % len(variants)
        for variant in [*variants[shift:], *variants[:shift]]:
            yield rep, variant


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


# -- the machine ---------------------------------------------------------------------------------
def environment() -> str:
    """Machine and versions, as a Markdown list."""
    from importlib import metadata

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "not installed"

    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    pg_version = "unreachable"
    with contextlib.suppress(Exception):
        engine = create_engine(pg_base_url().rsplit("/", 1)[0] + "/postgres")
        with engine.connect() as conn:
            pg_version = str(conn.exec_driver_sql("SHOW server_version").scalar())
        engine.dispose()
    items = [
        f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"machine: {os.cpu_count()} cores (nproc), {memory} memory, CPU {cpu}",
        f"OS: {platform.platform()}",
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, PostgreSQL {pg_version}",
        f"SQLAlchemy {version('SQLAlchemy')}, psycopg {version('psycopg')}, "
        f"SpiffWorkflow {version('SpiffWorkflow')}, psutil {version('psutil')}, "
        f"salesflow {version('salesflow')}",
    ]
    return "\n".join(f"- {item}" for item in items)
