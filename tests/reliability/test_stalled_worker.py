"""P4: the claim is the row lock inside the firing transaction. A worker that stalls (SIGSTOP,
like a frozen VM or a long GC pause) holding a claim blocks nobody for ever: the server ends its
session after ``idle_in_transaction_session_timeout``, another worker takes the timer over and
fires it, and the stalled worker's late commit fails when it wakes up. Exactly once, still."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from engine.runtime import Engine
from storage import database
from tests.reliability import figures, harness

pytestmark = pytest.mark.postgres
STALLED = "salesflow-stalled"


def process_state(pid: int) -> str:
    """The kernel's state letter for ``pid`` (T: stopped)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def wait_for(condition: object, process: subprocess.Popen[str], what: str, timeout: float = 30.0) -> None:
    """Poll a real process / server condition, pacing on the process itself (bounded)."""
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        try:  # pace on the worker process itself: returns at once if it ends
            process.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
        raise AssertionError(f"the worker ended ({process.returncode}) while waiting for {what}")


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_stalled_workers_claim_is_taken_over_and_its_late_commit_fails(
    database_url: str, backend_name: str
) -> None:
    harness.prepare(database_url, 1)  # one instance: a_to_b, then b_to_c and c_done, all due
    url = make_url(database_url)
    options = f"{url.query['options']} -cidle_in_transaction_session_timeout=1s"
    stalled_url = url.update_query_dict({"options": options, "application_name": STALLED})
    env = {**os.environ, "SALESFLOW_FAILPOINTS": "before_commit=stop"}
    worker = subprocess.Popen(
        [*harness.salesflow_command(), "tick", "--json", "--db", stalled_url.render_as_string(False)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    monitor = database.create_db_engine(database_url)
    try:
        # The worker claimed a_to_b (timer and instance rows locked) and froze before committing.
        wait_for(lambda: process_state(worker.pid) == "T", worker, "the worker to stop itself")
        with Engine(database_url) as other:
            assert other.tick().fired == []  # the claim holds: SKIP LOCKED passes it by

            def session_ended() -> bool:
                with monitor.connect() as conn:
                    query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = :n"
                    return conn.execute(text(query), {"n": STALLED}).scalar_one() == 0

            wait_for(session_ended, worker, "the server to end the stalled session")
            taken_over = other.tick(datetime.now(UTC) + timedelta(minutes=1)).fired
            assert [f.timer.name for f in taken_over] == ["a_to_b", "b_to_c", "c_done"]

        worker.send_signal(signal.SIGCONT)  # wakes up; its commit finds the session gone
        stdout, stderr = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=30)
        monitor.dispose()
    assert worker.returncode == 0, stderr
    assert json.loads(stdout)["fired"] == []  # its step was rolled back; the retry found nothing due
    assert "IdleInTransactionSessionTimeout" in stderr  # the late commit failed, and was retried
    report = harness.check(database_url, expect_instances=1)
    assert report.ok, report.violations
    assert report.timers_fired == 3
    figures.record("stalled worker (SIGSTOP)", backend_name, stalls=1, takeovers=1, late_commits_applied=0)
