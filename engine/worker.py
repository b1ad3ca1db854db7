"""The timer worker: APScheduler 3 as an alarm clock, never as the keeper of business timers.

An in-memory interval job polls (the guarantee: nothing is missed even if a wake-up is), and after
each tick a one-off job is set for the next due instant (the hint: timers fire close to on time).
All business timers live in salesflow's own table, so any number of workers on any number of hosts
can run against one database: PostgreSQL's SKIP LOCKED makes sure none fires a timer twice.
"""

from __future__ import annotations

import itertools
import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, timedelta
from typing import Any

from apscheduler.schedulers.blocking import BlockingScheduler
from sqlalchemy.exc import DBAPIError

from engine.runtime import Engine

log = logging.getLogger(__name__)

POLL_JOB = "salesflow-poll"
WAKE_JOB = "salesflow-wake"
BATCH = 200
CONNECT_RETRY_SECONDS = (0.5, 1, 2, 5, 10, 30)


class Worker:
    """Ticks ``engine`` every ``interval`` seconds and at the next due instant."""

    def __init__(self, engine: Engine, interval: float = 5.0) -> None:
        if interval <= 0:
            raise ValueError("--interval must be a positive number of seconds")
        self.engine = engine
        self.interval = interval
        self._stopping = False
        self._ticking = threading.Lock()  # held while a tick runs, so a stop can wait for it
        self.scheduler = BlockingScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )

    def tick(self) -> None:
        """One round: fire what is due, then set the alarm for the next due timer."""
        with self._ticking:
            self._tick()

    def _tick(self) -> None:
        try:
            fired = 0
            while not self._stopping:  # in batches, so a stop never waits for a long backlog
                batch = len(self.engine.tick(limit=BATCH).fired)
                fired += batch
                if batch < BATCH:
                    break
            if fired:
                log.info("tick handled %d timers", fired)
            if not self._stopping:
                self._set_alarm()
        except Exception:  # a lost database must not kill the worker: the next poll retries
            log.exception("tick failed; retrying at the next poll")

    def _set_alarm(self) -> None:
        due = self.engine.next_due()
        if due is None:
            return
        now = self.engine.clock.now()
        if due - now < timedelta(seconds=self.interval):
            self.scheduler.add_job(
                self.tick, "date", run_date=max(due, now), id=WAKE_JOB, replace_existing=True
            )

    def stop(self, signum: int | None = None, _frame: Any = None) -> None:
        """Ask the worker to stop; ``run`` returns once the tick under way has finished.

        Not ``shutdown(wait=True)``: APScheduler waits for running jobs while holding its job-store
        lock, and a tick that is setting its alarm at that moment needs the same lock, so both
        would wait for ever."""
        if self._stopping:  # a second signal while the first is being handled
            return
        log.info("stopping worker (signal %s); the timer being fired finishes first", signum)
        self._stopping = True
        self.scheduler.shutdown(wait=False)

    def run(self) -> None:
        self.scheduler.add_job(
            self.tick,
            "interval",
            seconds=self.interval,
            id=POLL_JOB,
            next_run_time=self.engine.clock.now(),
        )
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGTERM, self.stop)
        log.info("worker started on %s, polling every %ss", self.engine.url.split("@")[-1], self.interval)
        self.scheduler.start()  # returns once stop() has been called
        with self._ticking:  # the tick under way, if any, finishes first
            log.info("worker stopped")


def connect(make_engine: Callable[[], Engine]) -> Engine:
    """The engine, once the database answers. A worker started while the database is down (a
    restart, a failover, a host booting before its database) waits for it, as a running worker
    does between polls, instead of dying at start-up; SIGINT/SIGTERM still end it at once."""
    for attempt in itertools.count():
        try:
            return make_engine()
        except DBAPIError as exc:  # cannot connect; a schema that needs upgrading is a UsageError
            delay = CONNECT_RETRY_SECONDS[min(attempt, len(CONNECT_RETRY_SECONDS) - 1)]
            reason = str(exc.orig or exc).strip().splitlines()[0]
            log.warning("database unreachable (%s); retrying in %ss", reason, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def run(engine: Engine, interval: float = 5.0) -> None:
    """Run a worker until SIGINT or SIGTERM."""
    with engine:
        Worker(engine, interval).run()
