"""The worker as an operator runs it: a real ``salesflow worker`` process, stopped by a signal."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine import worker
from engine.clock import ManualClock
from storage import database

SALESFLOW = str(Path(sys.executable).with_name("salesflow"))

PROCESS = textwrap.dedent(
    """
    process: reminder
    version: 1
    initial: waiting
    states:
      waiting:
        after:
          - delay: 1d
            name: call_back
            to: due
      due:
        final: true
        outcome: done
    """
)


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SALESFLOW, *args, "--db", url], capture_output=True, text=True, timeout=60)


def _read_until(stream, marker: str, limit: int = 200) -> list[str]:
    """Read the worker's log lines until one contains ``marker`` (blocking on the real process)."""
    lines = []
    for _ in range(limit):
        line = stream.readline()
        if not line:
            break
        lines.append(line)
        if marker in line:
            return lines
    raise AssertionError(f"worker never logged {marker!r}; it logged:\n{''.join(lines)}")


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_worker_fires_overdue_timer_once_and_stops_cleanly(
    database_url: str, tmp_path: Path, stop_signal: signal.Signals
) -> None:
    """A timer that came due while no worker ran fires once, late, when one starts; a signal stops it."""
    if not database_url.startswith("sqlite"):
        db = database.create_db_engine(database_url)
        database.migrate(db)
        db.dispose()
    path = tmp_path / "reminder.yaml"
    path.write_text(PROCESS)
    assert _cli(database_url, "deploy", str(path)).returncode == 0
    assert _cli(database_url, "start", "reminder", "--key", "c1", "--at", "2020-01-01").returncode == 0

    with subprocess.Popen(
        [SALESFLOW, "worker", "--interval", "0.5", "--db", database_url],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    ) as worker:
        try:
            lines = _read_until(worker.stderr, "call_back")
            worker.send_signal(stop_signal)
            assert worker.wait(timeout=30) == 0
            log = "".join(lines) + worker.stderr.read()
        finally:
            if worker.poll() is None:
                worker.kill()
    assert "fired waiting -> due" in log
    assert "worker stopped" in log

    shown = json.loads(_cli(database_url, "show", "reminder/c1", "--json").stdout)
    assert (shown["state"], shown["status"], shown["outcome"]) == ("due", "closed", "done")
    history = json.loads(_cli(database_url, "history", "reminder/c1", "--json").stdout)
    timer_rows = [h for h in history if h["source"] == "timer"]
    assert len(timer_rows) == 1
    assert timer_rows[0]["at"] == "2020-01-02T00:00:00+00:00"  # recorded at its due instant
    assert json.loads(_cli(database_url, "timers", "--json").stdout) == []


class _EngineBetweenFiringAndAlarm:
    """Stands in for the Engine: nothing is due, and asking for the next due instant waits until
    the test lets it go, which holds a tick between its firings and setting its alarm."""

    url = "sqlite:///stand-in.db"

    def __init__(self, events: list[str]) -> None:
        self.clock = ManualClock(datetime(2026, 3, 2, 8, 0, tzinfo=UTC))
        self.events = events
        self.asked = threading.Event()
        self.let_go = threading.Event()

    def tick(self, limit: int) -> SimpleNamespace:
        return SimpleNamespace(fired=[])

    def next_due(self) -> datetime:
        self.asked.set()
        self.let_go.wait(timeout=10)  # bounded, so a worker that waits for the tick cannot hang us
        self.events.append("tick finished")
        return self.clock.now() + timedelta(seconds=1)  # soon: the tick sets an alarm job


def test_a_stop_during_a_tick_returns_at_once_and_the_worker_ends_after_the_tick(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The signal handler must not wait for the tick: APScheduler would hold its job-store lock
    while waiting, and the tick needs that lock to set its alarm, so the worker never ended."""
    monkeypatch.setattr(signal, "signal", lambda *_: None)  # leave pytest's own handlers alone
    events: list[str] = []
    engine = _EngineBetweenFiringAndAlarm(events)
    running = worker.Worker(engine, interval=60)  # type: ignore[arg-type]

    def operator() -> None:
        engine.asked.wait(timeout=10)
        running.stop(signal.SIGTERM)
        events.append("stop returned")
        running.stop(signal.SIGINT)  # a second signal changes nothing
        engine.let_go.set()

    threading.Thread(target=operator).start()
    running.run()
    events.append("worker ended")
    assert events == ["stop returned", "tick finished", "worker ended"]
