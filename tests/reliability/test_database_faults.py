"""P22: PostgreSQL faults during a run. The workers' sessions are ended by ``pg_terminate_backend``
(what a failover or an administrator does), and the server is restarted; the workers reconnect
and carry on, and afterwards every timer fired exactly once.

The restart runs when ``SALESFLOW_TEST_PG_RESTART=1``, or by default when running as root with
``pg_ctlcluster`` available (the CI machine); ``SALESFLOW_TEST_PG_RESTART=0`` skips it. Whatever
happens, the server is started again before the test ends, for the tests that follow.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.runtime import Engine
from storage import database
from tests.reliability import harness
from tests.reliability.test_crash_harness import run_harness

pytestmark = pytest.mark.postgres
FIXTURES = Path(__file__).parent.parent / "fixtures"


def restart_allowed() -> str | None:
    """Why the restart test cannot run here, or None when it can."""
    setting = os.environ.get("SALESFLOW_TEST_PG_RESTART")
    if setting == "0":
        return "SALESFLOW_TEST_PG_RESTART=0"
    if harness.pg_version() is None:
        return "pg_ctlcluster is not available to restart the server"
    if setting != "1" and os.geteuid() != 0:
        return "not root: set SALESFLOW_TEST_PG_RESTART=1 to restart the local server"
    return None


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_terminated_sessions_reconnect_and_nothing_is_lost_or_doubled(
    database_url: str, backend_name: str, tmp_path: Path
) -> None:
    run = run_harness(
        database_url,
        backend_name,
        tmp_path,
        "database faults",
        instances=400,
        workers=3,
        kills=0,
        failpoint_crashes=0,
        terminations=8,
    )
    assert run.termination_rounds == 8
    assert run.terminated_sessions >= 8  # each round ends every worker's session(s)


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_server_restart_mid_run_loses_and_doubles_nothing(
    database_url: str, backend_name: str, tmp_path: Path
) -> None:
    reason = restart_allowed()
    if reason:
        pytest.skip(reason)
    try:
        run = run_harness(
            database_url,
            backend_name,
            tmp_path,
            "database faults",
            instances=400,
            workers=3,
            kills=2,
            failpoint_crashes=0,
            restarts=1,
        )
    finally:
        harness.ensure_postgresql_running()
    assert run.restarts == 1


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_session_ended_by_the_server_costs_the_caller_nothing(
    make_engine: Callable[..., Engine], migrated_url: str
) -> None:
    """Pooled connections are not pinged before use: the unit of work that finds its connection
    dead runs again on a new one, reads and writes alike, and the caller sees no error."""
    sales = make_engine()
    sales.deploy(FIXTURES / "offer_loop.yaml")
    started = sales.start("offer_loop", "c1", {"name": "Acme"}).instance
    for step in (
        lambda: sales.get(started.id),
        lambda: sales.fire(started.id, "make_offer", {"amount": 5}, roles=["sales_rep"]),
    ):
        _end_sessions_of(sales, migrated_url)
        step()
    assert sales.get(started.id).state == "offer_sent"
    assert [entry.event for entry in sales.history(started.id)] == ["start", "make_offer"]


def _end_sessions_of(sales: Engine, url: str) -> None:
    with sales.db.connect() as conn:
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    admin = database.create_db_engine(url)
    try:
        with admin.begin() as conn:
            assert conn.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})").scalar_one()
    finally:
        admin.dispose()
