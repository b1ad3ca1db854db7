"""The crash harness: worker processes tick one database full of due timers while a controller
kills them (``kill -9``), failpoints crash them inside the step, and (PostgreSQL) their connections
are terminated or the server restarted; afterwards :func:`check` proves that nothing was lost,
doubled or half-applied.

Used by ``tests/reliability/test_crash_harness.py`` (short runs, in CI) and by
``scripts/crash_harness.py`` (long runs). Every instance of the harness process walks
``a -> b -> c -> won`` on three timers, all already due when the run begins; ``a`` also arms a
later timer (``a_expired``) that must end cancelled, never fired.

What :func:`check` proves, per instance:

- ``row_version`` equals the number of history rows, whose ``seq`` run 1..n (no half-applied step);
- folding the history (from/to states, data changes, visits) gives the instance row exactly;
- each timer that fired has exactly one history row, in the state visit that armed it, and each
  timer-sourced history row has exactly one fired timer (exactly once: none lost, none doubled);
- no pending timer belongs to an ended state visit or a closed instance;
- and over the run: nothing due is left pending; every instance finished in ``won`` with
  ``hops == 3`` (or ``lost`` by a staff ``close``); the timers fired equal the timer steps the
  instances counted in ``data.hops`` (with no staff events: exactly ``3 * instances``).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from engine import failpoints, loader
from engine.runtime import Engine
from storage import database
from storage.tables import definitions, history, instances, timers

ROOT = Path(__file__).resolve().parents[2]
APPLICATION_NAME = "salesflow-harness"
FIRES_PER_INSTANCE = 3
CRASH_EXIT = 137  # os._exit(137) in engine.failpoints

PROCESS_YAML = """\
# The crash harness's process: three timers in a chain; 'a_expired' must always end cancelled.
process: harness
version: 1
data:
  type: object
  properties:
    hops: {type: integer}
    pokes: {type: integer}
initial: a
states:
  a:
    after:
      - delay: 1h
        name: a_to_b
        to: b
        set:
          hops: "${ has(data.hops) ? data.hops + 1 : 1 }"
      - delay: 2h
        name: a_expired
        to: lost
    on:
      poke:
        set:
          pokes: "${ has(data.pokes) ? data.pokes + 1 : 1 }"
      close: lost
  b:
    after:
      - delay: 1h
        name: b_to_c
        to: c
        set:
          hops: "${ data.hops + 1 }"
    on:
      poke:
        set:
          pokes: "${ has(data.pokes) ? data.pokes + 1 : 1 }"
      close: lost
  c:
    after:
      - delay: 1h
        name: c_done
        to: won
        set:
          hops: "${ data.hops + 1 }"
    on:
      poke:
        set:
          pokes: "${ has(data.pokes) ? data.pokes + 1 : 1 }"
      close: lost
  won:
    final: true
    outcome: won
  lost:
    final: true
    outcome: lost
"""


# -- set-up --------------------------------------------------------------------------------------
def with_application_name(url: str, name: str = APPLICATION_NAME) -> str:
    """The URL with a libpq application_name, so the harness can find its workers' sessions."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return url
    return parsed.update_query_dict({"application_name": name}).render_as_string(hide_password=False)


def prepare(url: str, count: int, *, prefix: str = "C", chunk_size: int = 2000) -> None:
    """Migrate, deploy the harness process and start ``count`` instances a day in the past, so
    every one of their chained timers is already due."""
    db = database.create_db_engine(url)
    try:
        database.migrate(db)
    finally:
        db.dispose()
    with Engine(url) as engine:
        engine.deploy(loader.load_text(PROCESS_YAML, "harness.yaml"))
        rows = ((n, f"{prefix}{n:06d}", {}) for n in range(1, count + 1))
        engine.start_many("harness", rows, at=datetime.now(UTC) - timedelta(days=1), chunk_size=chunk_size)


# -- the run -------------------------------------------------------------------------------------
@dataclass
class RunConfig:
    url: str
    instances: int
    workers: int = 3
    kills: int = 10  # kill -9 of a random worker, spread over the run
    failpoint_crashes: int = 8  # processes crashed (os._exit) at a failpoint inside a step
    terminations: int = 0  # PostgreSQL: rounds of pg_terminate_backend on the workers' sessions
    restarts: int = 0  # PostgreSQL: server restarts (pg_ctlcluster) during the run
    interval: float = 0.2  # the workers' poll interval, seconds
    timeout: float = 240.0  # the whole run must finish within this
    log_dir: Path | None = None
    seed: int | None = None
    progress: Callable[[str], None] | None = None


@dataclass
class RunFigures:
    backend: str
    instances: int
    workers: int
    expected_fires: int
    seconds: float = 0.0
    spawned: int = 0
    kills: int = 0
    failpoint_crashes: Counter[str] = field(default_factory=Counter)
    terminated_sessions: int = 0
    termination_rounds: int = 0
    restarts: int = 0
    unexpected_exits: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "instances": self.instances,
            "workers": self.workers,
            "expected_fires": self.expected_fires,
            "seconds": round(self.seconds, 1),
            "processes_started": self.spawned,
            "kills": self.kills,
            "failpoint_crashes": sum(self.failpoint_crashes.values()),
            "failpoint_crashes_by_point": dict(sorted(self.failpoint_crashes.items())),
            "terminated_sessions": self.terminated_sessions,
            "termination_rounds": self.termination_rounds,
            "restarts": self.restarts,
            "unexpected_exits": self.unexpected_exits,
        }


@dataclass
class _Proc:
    popen: subprocess.Popen[bytes]
    kind: str  # "worker" (salesflow worker) or "crasher:<point>"
    started: float
    log: IO[bytes] | None


class Controller:
    """Starts, kills and replaces worker processes until every timer has fired."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.backend = make_url(config.url).get_backend_name()
        self.worker_url = with_application_name(config.url)
        self.figures = RunFigures(
            self.backend, config.instances, config.workers, FIRES_PER_INSTANCE * config.instances
        )
        self.procs: list[_Proc] = []
        self.crashers_started = 0
        self.first_point = self.rng.randrange(len(failpoints.POINTS))  # then each point in turn
        self.monitor = database.create_db_engine(config.url, pool_pre_ping=True)

    # -- processes ---------------------------------------------------------------------------
    def _spawn(self, slot: int) -> None:
        """A ``salesflow worker`` in ``slot``; a worker that ends is replaced in its slot."""
        command = [*salesflow_command(), "worker", "--interval", str(self.config.interval)]
        self.procs.insert(slot, self._start([*command, "--db", self.worker_url], "worker"))

    def _spawn_crasher(self) -> None:
        """A crasher beside the workers, at the next failpoint in turn.

        Crashers run side by side (up to one per failpoint at a time), not one after another in a
        worker's slot: each takes about a second to start, and a short run on a fast machine was
        over before the last of a chain had anything left to fire."""
        point = failpoints.POINTS[(self.first_point + self.crashers_started) % len(failpoints.POINTS)]
        command = [sys.executable, "-m", "tests.reliability.crashworker", self.worker_url]
        command += ["--after", str(self.rng.randint(0, 15)), "--point", point]
        self.procs.append(self._start(command, f"crasher:{point}"))
        self.crashers_started += 1

    def _start(self, command: list[str], kind: str) -> _Proc:
        log = None
        if self.config.log_dir is not None:
            self.config.log_dir.mkdir(parents=True, exist_ok=True)
            log = open(self.config.log_dir / f"proc-{self.figures.spawned:04d}-{kind}.log", "wb")  # noqa: SIM115
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("SALESFLOW_FAILPOINTS", None)
        popen = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
        )
        self.figures.spawned += 1
        return _Proc(popen, kind, time.monotonic(), log)

    def _reap(self) -> None:
        """Replace every process that has ended, and account for how it ended."""
        for slot, proc in enumerate(list(self.procs)):
            code = proc.popen.poll()
            if code is None:
                continue
            self.procs.remove(proc)
            if proc.log:
                proc.log.close()
            if proc.kind.startswith("crasher:") and code == CRASH_EXIT:
                self.figures.failpoint_crashes[proc.kind.partition(":")[2]] += 1
            elif code not in (0, -signal.SIGKILL):
                self.figures.unexpected_exits.append(f"{proc.kind} exited with {code}")
            if proc.kind == "worker":  # workers come first in the list: slot is still its place
                self._spawn(slot)
            elif self.crashers_started < self.config.failpoint_crashes:
                self._spawn_crasher()

    def _kill_one(self) -> None:
        """kill -9 a random ``salesflow worker`` that has been running long enough to be working
        (crashers crash by themselves, at their failpoint)."""
        now = time.monotonic()
        workers = [p for p in self.procs if p.kind == "worker"] or self.procs
        settled = [p for p in workers if now - p.started > 1.0] or workers
        victim = self.rng.choice(settled)
        victim.popen.send_signal(signal.SIGKILL)
        victim.popen.wait(timeout=30)
        self.figures.kills += 1

    def _terminate_sessions(self) -> None:
        with self.monitor.begin() as conn:
            ended = conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = :name AND pid <> pg_backend_pid()"
                ),
                {"name": APPLICATION_NAME},
            ).scalar_one()
        self.figures.terminated_sessions += int(ended)
        self.figures.termination_rounds += 1

    def _restart_server(self) -> None:
        """Stop the server; replace a worker while it is down (the new one must wait for the
        database, not die); start the server again."""
        pg_ctl("stop")
        try:
            self._kill_one()
            self._reap()  # the replacement starts while the server is down
            newest = max(self.procs, key=lambda p: p.started)
            deadline = time.monotonic() + 60
            while newest.log is not None and b"database unreachable" not in _read(newest.log.name):
                if newest.popen.poll() is not None or time.monotonic() > deadline:
                    break  # _reap records how it ended
                _wait_briefly(newest.popen)
        finally:
            pg_ctl("start")
        self.figures.restarts += 1

    # -- progress ----------------------------------------------------------------------------
    def _progress(self) -> tuple[int, int] | None:
        """(timers fired, timers pending and due), or None while the database is unreachable."""
        try:
            with self.monitor.connect() as conn:
                fired = conn.execute(
                    select(func.count()).select_from(timers).where(timers.c.status == "fired")
                ).scalar_one()
                due = conn.execute(
                    select(func.count())
                    .select_from(timers)
                    .where(text("timers.status = 'pending'"), timers.c.due_at <= datetime.now(UTC))
                ).scalar_one()
            return int(fired), int(due)
        except DBAPIError:
            return None

    def run(self) -> RunFigures:
        config, figures = self.config, self.figures
        disruptions = ["kill"] * config.kills + ["terminate"] * config.terminations
        self.rng.shuffle(disruptions)
        if config.restarts and config.log_dir is None:
            raise ValueError("a run with restarts needs log_dir (to see a worker wait for the server)")
        if config.restarts:  # restarts go in the middle of the run, where they hurt most
            middle = len(disruptions) // 2
            disruptions[middle:middle] = ["restart"] * config.restarts
        spacing = figures.expected_fires / (len(disruptions) + 1)
        threshold = spacing
        began = time.monotonic()
        try:
            for slot in range(config.workers):
                self._spawn(slot)
            for _ in range(min(config.failpoint_crashes, len(failpoints.POINTS))):
                self._spawn_crasher()
            while True:
                self._reap()
                state = self._progress()
                if state is not None:
                    fired, due = state
                    finished = due == 0  # firing a chain's timer arms the next one, already due
                    if finished and not disruptions and self._crashers_done():
                        break
                    if disruptions and (fired >= threshold or finished):
                        self._disrupt(disruptions.pop(0), fired)
                        threshold += spacing
                if time.monotonic() - began > config.timeout:
                    raise TimeoutError(f"harness run did not finish in {config.timeout}s: {state}")
                _wait_briefly(self.procs[0].popen)
        finally:
            self.stop()
            figures.seconds = time.monotonic() - began
        return figures

    def _crashers_done(self) -> bool:
        crashed = sum(self.figures.failpoint_crashes.values())
        # A crasher that found nothing left to fire exits 0 without crashing; stop waiting then.
        running = any(p.kind.startswith("crasher:") for p in self.procs)
        return crashed >= self.config.failpoint_crashes or not running

    def _disrupt(self, what: str, fired: int) -> None:
        if self.config.progress:
            self.config.progress(f"{fired} fired: {what}")
        if what == "kill":
            self._kill_one()
        elif what == "terminate":
            self._terminate_sessions()
        elif what == "restart":
            self._restart_server()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                code = proc.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                code = proc.popen.wait(timeout=30)
                self.figures.unexpected_exits.append(f"{proc.kind} did not stop on SIGTERM")
            if proc.kind.startswith("crasher:") and code == CRASH_EXIT:
                self.figures.failpoint_crashes[proc.kind.partition(":")[2]] += 1
            elif code not in (0, -signal.SIGTERM, -signal.SIGKILL):
                self.figures.unexpected_exits.append(f"{proc.kind} exited with {code} when stopped")
            if proc.log:
                proc.log.close()
        self.procs.clear()
        self.monitor.dispose()


def _wait_briefly(popen: subprocess.Popen[bytes]) -> None:
    """Wait up to 50 ms for a real process (the controller's pace); its end is handled by _reap."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        popen.wait(timeout=0.05)


def salesflow_command() -> list[str]:
    """The installed ``salesflow`` console script next to this interpreter, or the module."""
    script = Path(sys.executable).with_name("salesflow")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from engine.cli import main; main()"]


# -- PostgreSQL server control -------------------------------------------------------------------
def pg_version() -> str | None:
    """The local cluster's version, when pg_ctlcluster can manage it."""
    if shutil.which("pg_ctlcluster") is None or not Path("/etc/postgresql").is_dir():
        return None
    versions = sorted(os.listdir("/etc/postgresql"))
    return versions[-1] if versions else None


def pg_ctl(action: str) -> None:
    """``pg_ctlcluster VERSION main ACTION`` (start, stop, restart) on the local cluster."""
    version = pg_version()
    assert version is not None, "pg_ctlcluster is not available"
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
        check=True,
        timeout=120,
        capture_output=True,
    )


def _read(path: str | bytes) -> bytes:
    try:
        return Path(path if isinstance(path, str) else path.decode()).read_bytes()
    except OSError:
        return b""


def ensure_postgresql_running() -> None:
    """Start the local cluster if it is down (after a restart test, whatever happened)."""
    version = pg_version()
    if version is None:
        return
    ready = subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"], timeout=30, check=False)
    if ready.returncode != 0:
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
            timeout=120,
            check=False,
            capture_output=True,
        )


# -- the checker ---------------------------------------------------------------------------------
def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every salesflow table, for "nothing changed" assertions."""
    db = database.create_db_engine(url)
    try:
        with db.connect() as conn:
            return {
                table.name: [tuple(row) for row in conn.execute(select(table).order_by(table.c.id))]
                for table in (definitions, instances, history, timers)
            }
    finally:
        db.dispose()


@dataclass
class CheckReport:
    instances: int = 0
    history_rows: int = 0
    timers_fired: int = 0
    timers_cancelled: int = 0
    timers_pending: int = 0
    hops: int = 0  # sum of data.hops: one per timer step applied
    pokes: int = 0  # sum of data.pokes: one per staff 'poke' applied
    outcomes: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        if len(self.violations) < 50:
            self.violations.append(message)

    @property
    def ok(self) -> bool:
        return not self.violations


def check(
    url: str, *, expect_instances: int | None = None, finished: bool = True, complete: bool = True
) -> CheckReport:
    """Prove the database is consistent (see the module docstring). ``finished``: the run is over,
    so no due timer may be left pending. ``complete``: also every instance reached ``won`` by its
    three timers, or ``lost`` by a staff ``close`` (staff events move an instance's logical time to
    the present, so the timers after one come due an hour later: such runs are not complete)."""
    db = database.create_db_engine(url)
    try:
        with db.connect() as conn:
            rows = list(conn.execute(select(instances).order_by(instances.c.id)))
            hist = list(conn.execute(select(history).order_by(history.c.instance_id, history.c.seq)))
            tims = list(conn.execute(select(timers).order_by(timers.c.instance_id, timers.c.id)))
            now = datetime.now(UTC)
    finally:
        db.dispose()
    report = CheckReport(instances=len(rows), history_rows=len(hist))
    by_instance_history: dict[int, list[Any]] = {}
    for row in hist:
        by_instance_history.setdefault(row.instance_id, []).append(row)
    by_instance_timers: dict[int, list[Any]] = {}
    for row in tims:
        by_instance_timers.setdefault(row.instance_id, []).append(row)
        report.timers_fired += row.status == "fired"
        report.timers_cancelled += row.status == "cancelled"
        report.timers_pending += row.status == "pending"
        if row.status == "pending" and row.due_at <= now and finished:
            report.fail(f"timer {row.id} ({row.name}) of instance {row.instance_id} is due and still pending")
    if expect_instances is not None and len(rows) != expect_instances:
        report.fail(f"{len(rows)} instances, expected {expect_instances}")
    for instance in rows:
        steps = by_instance_history.get(instance.id, [])
        _check_instance(report, instance, steps, by_instance_timers.get(instance.id, []))
        report.outcomes[instance.state] += 1
        report.hops += instance.data.get("hops", 0)
        report.pokes += instance.data.get("pokes", 0)
        if instance.status == "active" and not any(
            t.status == "pending" and t.visit == instance.visit
            for t in by_instance_timers.get(instance.id, [])
        ):
            report.fail(f"instance {instance.id} is active in {instance.state} with no pending timer")
        if not complete:
            continue
        if instance.state == "won" and instance.data.get("hops") != FIRES_PER_INSTANCE:
            report.fail(f"instance {instance.id} won with data {instance.data}")
        closed_by_staff = bool(steps) and (steps[-1].source, steps[-1].event) == ("staff", "close")
        if instance.state != "won" and not (instance.state == "lost" and closed_by_staff):
            report.fail(f"instance {instance.id} ended in {instance.state} with data {instance.data}")
    if report.timers_fired != report.hops:
        report.fail(f"{report.timers_fired} timers fired but the instances counted {report.hops} timer steps")
    return report


def _check_instance(report: CheckReport, instance: Any, rows: list[Any], timer_rows: list[Any]) -> None:
    iid = instance.id
    if [r.seq for r in rows] != list(range(1, len(rows) + 1)):
        report.fail(f"instance {iid}: history seq {[r.seq for r in rows]} is not 1..n")
    if instance.row_version != len(rows):
        report.fail(f"instance {iid}: row_version {instance.row_version} but {len(rows)} history rows")
    # Fold the history: states, data and state visits must give the instance row back.
    state, data, visit = None, {}, 0
    timer_steps: Counter[tuple[int, str]] = Counter()
    for row in rows:
        if row.from_state != state:
            report.fail(f"instance {iid} seq {row.seq}: from {row.from_state}, but the fold is in {state}")
        if row.source == "timer":
            timer_steps[(visit, row.event)] += 1
        if row.to_state != row.from_state:  # the harness process has no self-transitions
            visit += 1
        state = row.to_state
        data.update(row.data_changes or {})
    if (state, data, visit) != (instance.state, instance.data, instance.visit):
        report.fail(
            f"instance {iid}: history folds to {state} {data} visit {visit}, "
            f"the row says {instance.state} {instance.data} visit {instance.visit}"
        )
    closed = instance.status != "active"
    fired: Counter[tuple[int, str]] = Counter()
    for timer in timer_rows:
        key = (timer.visit, timer.name)
        if timer.status in ("fired", "skipped", "failed"):
            fired[key] += 1
            if timer.fired_at is None or timer.lateness_seconds is None or timer.lateness_seconds < 0:
                report.fail(f"timer {timer.id}: {timer.status} without a fired_at / lateness")
        elif timer.status == "pending" and (closed or timer.visit != instance.visit):
            report.fail(f"timer {timer.id} ({timer.name}) is pending but its visit {timer.visit} ended")
        elif timer.status == "cancelled" and not closed and timer.visit == instance.visit:
            report.fail(f"timer {timer.id} ({timer.name}) was cancelled during its own visit")
        if timer.name == "a_expired" and timer.status != "cancelled" and closed:
            report.fail(f"timer {timer.id} (a_expired) ended {timer.status}; a_to_b comes first")
    for key in set(fired) | set(timer_steps):
        if fired[key] != 1 or timer_steps[key] != 1:
            report.fail(
                f"instance {iid}: timer {key[1]} of visit {key[0]}: {fired[key]} timer rows fired, "
                f"{timer_steps[key]} history rows"
            )
