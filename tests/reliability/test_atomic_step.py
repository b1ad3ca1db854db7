"""P1: a step is applied whole or not at all. A process dies (``os._exit``, like ``kill -9``) at
each failpoint inside a staff event and inside a timer firing; afterwards the database is exactly
as it was, and the same step run again applies once.

The dying process is a forked child (a real process and a real lost connection, without the cost
of starting an interpreter); the crash harness does the same through ``salesflow worker`` processes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from engine import failpoints
from engine.runtime import Engine
from tests.reliability import figures, harness


def crash_in_child(point: str, url: str, work: Callable[[Engine], object]) -> int:
    """Run ``work`` in a forked child with ``point`` armed to crash; the child's exit code."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            failpoints.arm(point, "crash")
            with Engine(url) as engine:
                work(engine)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.parametrize("point", failpoints.POINTS)
def test_a_crash_inside_a_step_leaves_the_instance_wholly_old(
    point: str, database_url: str, backend_name: str
) -> None:
    harness.prepare(database_url, 2)  # two instances, each with its three timers already due
    before = harness.snapshot(database_url)

    event = crash_in_child(point, database_url, lambda e: e.fire("harness/C000001", "close", actor="anna"))
    tick = crash_in_child(point, database_url, lambda e: e.tick())

    assert (event, tick) == (harness.CRASH_EXIT, harness.CRASH_EXIT)
    assert harness.snapshot(database_url) == before  # nothing half-applied, nothing applied
    with Engine(database_url) as engine:  # the same steps, after the "restart"
        closed = engine.fire("harness/C000001", "close", actor="anna").instance
        fired = engine.tick(datetime.now(UTC) + timedelta(minutes=1)).fired
    assert (closed.state, closed.row_version) == ("lost", 2)
    assert [f.timer.name for f in fired] == ["a_to_b", "b_to_c", "c_done"]  # C000002's, once each
    report = harness.check(database_url, expect_instances=2)
    assert report.ok, report.violations
    assert report.outcomes == {"lost": 1, "won": 1}
    figures.record("atomic step (crash at failpoints)", backend_name, crashes=2, half_applied=0)
