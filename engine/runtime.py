"""The Engine: deploy, start, fire, tick and read, each command one database transaction.

The pure core (``engine.decide``) says what an event does; this module loads what it needs, applies
the decision (instance update with a version check, history row, timers cancelled and armed)
and commits, or rolls back leaving nothing half-applied.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from engine import decide, failpoints, loader, storable
from engine.clock import Clock, SystemClock, as_utc
from engine.definition import ProcessDefinition
from engine.errors import ConflictError, EventRejected, NotFoundError, UsageError
from storage import database
from storage import repository as repo
from storage.repository import DefinitionRecord, HistoryRecord, InstanceRecord, TimerRecord

log = logging.getLogger(__name__)

DEFAULT_DATABASE_URL = "sqlite:///salesflow.db"
RETRIES = 5
RETRY_BACKOFF_SECONDS = 0.05  # doubled on each attempt: 0.1 s, 0.2 s, ... 0.8 s
T = TypeVar("T")
InstanceRef = int | str


@dataclass(frozen=True)
class DeployResult:
    process: str
    version: int
    created: bool  # False: identical content was already deployed


@dataclass(frozen=True)
class StartResult:
    instance: InstanceRecord
    created: bool  # False: an active instance for this key already existed


@dataclass(frozen=True)
class FireResult:
    instance: InstanceRecord
    entry: HistoryRecord
    replayed: bool = False  # True: the idempotency key was seen before; nothing changed now


@dataclass(frozen=True)
class FiredTimer:
    timer: TimerRecord
    outcome: str  # fired / skipped (guard false) / stale (its state visit had ended) / failed
    instance_id: int
    from_state: str
    to_state: str
    lateness_seconds: float
    note: str | None = None


@dataclass
class TickReport:
    until: datetime
    fired: list[FiredTimer] = field(default_factory=list)


@dataclass
class BulkReport:
    started: int = 0
    already_active: list[tuple[int, str]] = field(default_factory=list)  # (row number, key)
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (row number, reason)


class Engine:
    """salesflow's library API; the CLI, the worker and tests drive it the same way."""

    def __init__(self, url: str | None = None, clock: Clock | None = None, **engine_options: Any) -> None:
        self.url = url or DEFAULT_DATABASE_URL
        self.clock: Clock = clock or SystemClock()
        # No ping per checkout (a round trip per step): _retrying replaces a dead connection.
        self.db = database.create_db_engine(self.url, **{"pool_pre_ping": False, **engine_options})
        database.ensure_schema(self.db)
        self._definitions: dict[tuple[str, int], ProcessDefinition] = {}
        self._latest_versions: dict[str, int] = {}  # what start last saw; its insert re-checks it

    def close(self) -> None:
        self.db.dispose()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- deploy ----------------------------------------------------------------------------------
    def deploy(self, definition: ProcessDefinition | str | Path) -> DeployResult:
        """Store a definition version. Identical content again is a no-op; other content under the
        same version is refused (bump ``version``)."""
        if not isinstance(definition, ProcessDefinition):
            definition = loader.load_file(definition)
        return self._transaction(lambda conn: self._deploy(conn, definition))

    def _deploy(self, conn: Connection, definition: ProcessDefinition) -> DeployResult:
        existing = repo.find_definition(conn, definition.process, definition.version)
        if existing is not None:
            if existing.content_hash == definition.content_hash:
                return DeployResult(definition.process, definition.version, created=False)
            raise ConflictError(
                f"{definition.process} version {definition.version} is already deployed with different "
                f"content; set 'version: {self._next_version(conn, definition.process)}' to deploy it"
            )
        record = DefinitionRecord(
            definition.process,
            definition.version,
            definition.content_hash,
            definition.source,
            self.clock.now(),
        )
        repo.insert_definition(conn, record)
        return DeployResult(definition.process, definition.version, created=True)

    def _next_version(self, conn: Connection, process: str) -> int:
        latest = repo.find_definition(conn, process, None)
        return (latest.version if latest else 0) + 1

    def definition(self, process: str, version: int | None = None) -> ProcessDefinition:
        """A deployed definition (the latest version unless one is named)."""
        return self._read(lambda conn: self._load_definition(conn, process, version))

    def _load_definition(self, conn: Connection, process: str, version: int | None) -> ProcessDefinition:
        if version is None:  # only the number: the cached definition saves reading the source again
            version = repo.latest_version(conn, process)
        if version is not None and (process, version) in self._definitions:
            return self._definitions[(process, version)]
        record = repo.find_definition(conn, process, version)
        if record is None:
            known = ", ".join(repo.list_processes(conn)) or "none"
            what = f"process '{process}'" + (f" version {version}" if version is not None else "")
            raise NotFoundError(f"{what} is not deployed (deployed: {known}); run salesflow deploy FILE")
        key = (record.process, record.version)
        if key not in self._definitions:
            self._definitions[key] = loader.load_text(record.source, f"{process} v{record.version}")
        return self._definitions[key]

    # -- start -----------------------------------------------------------------------------------
    def start(
        self,
        process: str,
        key: str,
        data: dict[str, Any] | None = None,
        *,
        version: int | None = None,
        at: datetime | None = None,
        actor: str | None = None,
        source: str = "staff",
    ) -> StartResult:
        """Start an instance for ``key``, or return the active one that already exists."""
        if not key or not str(key).strip():
            raise UsageError("the business key is empty; give --key, e.g. the client number")
        _check_text(str(key), "the business key")
        _check_text(actor, "the actor (--as)")
        now = self._logical(at)
        return self._transaction(
            lambda conn: self._start(conn, process, str(key), data or {}, version, now, actor, source)
        )

    def _start(
        self,
        conn: Connection,
        process: str,
        key: str,
        data: dict[str, Any],
        version: int | None,
        now: datetime,
        actor: str | None,
        source: str,
    ) -> StartResult:
        """One statement in the usual case: the insert itself refuses a key that is already active
        and a version that is no longer the latest; only then are they read."""
        for _ in range(RETRIES):
            definition = self._start_definition(conn, process, version)
            try:
                decision = decide.decide_start(definition, data, now)
            except (UsageError, EventRejected):
                existing = _active_instance(conn, process, key)
                if existing is not None:
                    return StartResult(existing, created=False)  # as if the data were never looked at
                raise
            guard = version is None
            started = self._insert_started(conn, definition, [(key, decision)], now, actor, source, guard)
            if started:
                return StartResult(started[0], created=True)
            existing = _active_instance(conn, process, key)
            if existing is not None:
                return StartResult(existing, created=False)
            self._latest_versions.pop(process, None)  # a newer version was deployed: use it
        raise ConflictError(f"process '{process}' kept being redeployed while starting '{key}'; retry")

    def _start_definition(self, conn: Connection, process: str, version: int | None) -> ProcessDefinition:
        """The definition a start uses: the named version, or the latest as last seen (the insert
        checks it is still the latest)."""
        if version is None and process in self._latest_versions:
            return self._definitions[(process, self._latest_versions[process])]
        definition = self._load_definition(conn, process, version)
        if version is None:
            self._latest_versions[process] = definition.version
        return definition

    def start_many(
        self,
        process: str,
        rows: Iterable[tuple[int, str, dict[str, Any]]],
        *,
        version: int | None = None,
        at: datetime | None = None,
        actor: str | None = None,
        source: str = "import",
        chunk_size: int = 1000,
        progress: Callable[[int], None] | None = None,
        report: BulkReport | None = None,
    ) -> BulkReport:
        """Bulk start from (row number, key, data) rows. Each chunk is one transaction; a bad row is
        rejected with its reason and never stops or half-applies the others."""
        now = self._logical(at)
        _check_text(actor, "the actor (--as)")
        definition = self.definition(process, version)
        report = report if report is not None else BulkReport()
        chunk: list[tuple[int, str, dict[str, Any]]] = []
        for row in rows:
            chunk.append(row)
            if len(chunk) >= chunk_size:
                self._start_chunk(definition, chunk, now, actor, source, report, progress)
                chunk = []
        if chunk:
            self._start_chunk(definition, chunk, now, actor, source, report, progress)
        return report

    def _start_chunk(
        self,
        definition: ProcessDefinition,
        chunk: list[tuple[int, str, dict[str, Any]]],
        now: datetime,
        actor: str | None,
        source: str,
        report: BulkReport,
        progress: Callable[[int], None] | None,
    ) -> None:
        decided: list[tuple[int, str, decide.Decision]] = []
        seen: set[str] = set()
        for number, key, data in chunk:
            if not key:
                report.rejected.append((number, "the key column is empty"))
                continue
            problem = storable.text_problem(key)
            if problem is not None:
                report.rejected.append((number, f"the key {problem}"))
                continue
            if key in seen:
                report.already_active.append((number, key))
                continue
            try:
                decided.append((number, key, decide.decide_start(definition, data, now)))
                seen.add(key)
            except (UsageError, EventRejected) as exc:
                report.rejected.append((number, exc.message))

        def work(conn: Connection) -> list[InstanceRecord]:
            started = [(key, decision) for _, key, decision in decided]
            return self._insert_started(conn, definition, started, now, actor, source)

        started_keys = {record.key for record in self._transaction(work)}
        report.already_active.extend((n, k) for n, k, _ in decided if k not in started_keys)
        report.started += len(started_keys)
        if progress:
            progress(len(chunk))

    def _insert_started(
        self,
        conn: Connection,
        definition: ProcessDefinition,
        started: list[tuple[str, decide.Decision]],
        now: datetime,
        actor: str | None,
        source: str,
        guard_version: bool = False,
    ) -> list[InstanceRecord]:
        """Insert started instances with their history and timers; return them as written. Keys that
        already have an active instance are left out, and with ``guard_version`` (one start of the
        latest version) so is everything when a newer version has been deployed meanwhile."""
        if not started:
            return []
        real_now = self.clock.now()
        state = definition.states[definition.initial]
        rows = [
            {
                "process": definition.process,
                "version": definition.version,
                "business_key": key,
                "state": state.name,
                "data": decision.data,
                "status": "closed" if state.final else "active",
                "queue": state.queue,
                "stage": state.stage,
                "outcome": state.outcome,
                "visit": 1,
                "row_version": 1,
                "created_at": real_now,
                "updated_at": real_now,
                "last_event_at": now,
            }
            for key, decision in started
        ]
        if guard_version:
            (row,) = rows
            instance_id = repo.insert_started_instance(conn, row)
            ids_by_key = {} if instance_id is None else {row["business_key"]: instance_id}
        else:  # the unique index decides, in the insert itself: no read first
            ids_by_key = repo.insert_new_instances(conn, rows)
        kept = [
            (ids_by_key[row["business_key"]], row, decision)
            for row, (_, decision) in zip(rows, started, strict=True)
            if row["business_key"] in ids_by_key
        ]
        history_rows, timer_rows = [], []
        for instance_id, _, decision in kept:
            history_rows.append(
                _history_row(instance_id, 1, now, real_now, actor, source, decision, definition.version)
            )
            timer_rows.extend(_timer_rows(instance_id, 1, decision, real_now))
        if history_rows:
            repo.insert_history(conn, history_rows)
        repo.insert_timers(conn, timer_rows)
        return [repo.instance_record(instance_id, row) for instance_id, row, _ in kept]

    # -- fire ------------------------------------------------------------------------------------
    def fire(
        self,
        ref: InstanceRef,
        event: str,
        input: dict[str, Any] | None = None,
        *,
        actor: str | None = None,
        roles: Iterable[str] = (),
        idempotency_key: str | None = None,
        at: datetime | None = None,
        source: str = "staff",
    ) -> FireResult:
        """Send a staff event. Rejections raise and change nothing."""
        requested = as_utc(at) if at is not None else None
        role_set = frozenset(roles)
        _check_text(actor, "the actor (--as)")
        _check_text(idempotency_key, "the idempotency key")

        def work(conn: Connection) -> FireResult:
            instance = self._resolve(conn, ref)
            if idempotency_key:
                earlier = repo.find_by_idempotency_key(conn, instance.id, idempotency_key)
                if earlier is not None:
                    _check_same_request(earlier, idempotency_key, event, input)
                    return FireResult(instance, earlier, replayed=True)
            now = self._event_time(instance, requested)
            definition = self._load_definition(conn, instance.process, instance.version)
            decision = decide.decide_event(definition, _view(instance), event, input, role_set, now)
            updated, entry = self._apply(
                conn, instance, definition, decision, now, actor, source, idempotency_key
            )
            return FireResult(updated, entry)

        return self._transaction(work)

    def _event_time(self, instance: InstanceRecord, requested: datetime | None) -> datetime:
        """History never goes backwards: an explicit earlier time is refused; the clock is clamped."""
        if requested is None:
            return max(self.clock.now(), instance.last_event_at)
        if requested < instance.last_event_at:
            raise UsageError(
                f"--at {requested.isoformat()} is before the instance's last event at "
                f"{instance.last_event_at.isoformat()}; history never goes backwards"
            )
        return requested

    def _apply(
        self,
        conn: Connection,
        instance: InstanceRecord,
        definition: ProcessDefinition,
        decision: decide.Decision,
        at: datetime,
        actor: str | None,
        source: str,
        idempotency_key: str | None = None,
        fired_timer: int | None = None,
    ) -> tuple[InstanceRecord, HistoryRecord]:
        """Apply ``decision``; return the instance as written (no need to read it back) and the
        history entry. ``fired_timer``: the index of the timer firing now, already marked fired."""
        real_now = self.clock.now()
        seq = instance.row_version + 1
        values: dict[str, Any] = {
            "row_version": seq,
            "updated_at": real_now,
            "last_event_at": at,
            "data": decision.data,
        }
        visit = instance.visit + 1
        if decision.entered:
            state = decision.state_info
            values.update(
                state=state.name,
                visit=visit,
                queue=state.queue,
                stage=state.stage,
                outcome=state.outcome,
                status="closed" if state.final else "active",
            )
        if not repo.update_instance(conn, instance.id, instance.row_version, values):
            raise ConflictError(
                f"instance {instance.id} was changed by someone else at the same time; "
                "nothing was applied: look at it again and retry"
            )
        failpoints.hit("after_instance_update")
        row = _history_row(
            instance.id, seq, at, real_now, actor, source, decision, instance.version, idempotency_key
        )
        repo.insert_history(conn, [row])
        failpoints.hit("after_history")
        if decision.entered:
            if _may_have_pending_timers(definition, instance.state, fired_timer):
                repo.cancel_pending_timers(conn, instance.id)
            repo.insert_timers(conn, _timer_rows(instance.id, visit, decision, real_now))
        failpoints.hit("after_timers")
        return replace(instance, **values), _history_record(row)

    # -- timers ----------------------------------------------------------------------------------
    def tick(self, until: datetime | None = None, *, limit: int | None = None) -> TickReport:
        """Fire every pending timer due by ``until`` (default: now), in due order, each in its own
        transaction, including timers armed by those firings that come due by ``until``."""
        shared_clock = until is None and self._database_clock
        if until is not None:
            bound = as_utc(until)
        else:
            bound = self._read(repo.database_now) if shared_clock else self.clock.now()
        report = TickReport(bound)
        while limit is None or len(report.fired) < limit:
            fired = self._transaction(lambda conn: self._fire_next_due(conn, bound, shared_clock))
            if fired is None:
                break
            report.fired.append(fired)
            log.info(
                "timer %s (%s) of instance %s: %s %s -> %s, %.1fs late",
                fired.timer.id,
                fired.timer.name,
                fired.instance_id,
                fired.outcome,
                fired.from_state,
                fired.to_state,
                fired.lateness_seconds,
            )
        return report

    @property
    def _database_clock(self) -> bool:
        """Whether due-ness is decided by the database server's clock: on PostgreSQL with the real
        clock, so workers on hosts whose clocks disagree still agree on what is due (one clock).
        An injected clock (tests, replays) is always obeyed; SQLite runs on one host anyway."""
        return isinstance(self.clock, SystemClock) and self.db.dialect.name == "postgresql"

    def _fire_next_due(
        self, conn: Connection, until: datetime, shared_clock: bool = False
    ) -> FiredTimer | None:
        claimed = repo.claim_due_timer(conn, until)
        if claimed is None:
            return None
        timer, instance = claimed
        real_now = repo.database_now(conn) if shared_clock else self.clock.now()
        lateness = max(0.0, (real_now - timer.due_at).total_seconds())
        if instance.status != "active" or instance.visit != timer.visit or instance.state != timer.state:
            repo.finish_timer(conn, timer.id, "cancelled", None, None)
            return FiredTimer(timer, "stale", instance.id, instance.state, instance.state, 0.0)
        definition = self._load_definition(conn, instance.process, instance.version)
        at = max(timer.due_at, instance.last_event_at)
        try:
            decision = decide.decide_timer(definition, _view(instance), timer.timer_index, at)
        except EventRejected as exc:
            return self._timer_failed(conn, timer, instance, exc.message, real_now, lateness)
        repo.finish_timer(conn, timer.id, "fired" if decision.taken else "skipped", real_now, lateness)
        self._apply(conn, instance, definition, decision, at, "timer", "timer", fired_timer=timer.timer_index)
        outcome = "fired" if decision.taken else "skipped"
        return FiredTimer(
            timer, outcome, instance.id, instance.state, decision.to_state, lateness, decision.note
        )

    def _timer_failed(
        self,
        conn: Connection,
        timer: TimerRecord,
        instance: InstanceRecord,
        reason: str,
        real_now: datetime,
        lateness: float,
    ) -> FiredTimer:
        """A timer whose step is invalid (e.g. data no longer fits) is recorded, not retried for ever."""
        repo.finish_timer(conn, timer.id, "failed", real_now, lateness)
        note = f"timer could not fire: {reason}"
        failed = decide.unchanged(timer.name, _view(instance), note)
        at = max(timer.due_at, instance.last_event_at)
        self._apply(
            conn,
            instance,
            self._load_definition(conn, instance.process, instance.version),
            failed,
            at,
            "timer",
            "timer",
        )
        log.warning("timer %s of instance %s failed: %s", timer.id, instance.id, reason)
        return FiredTimer(timer, "failed", instance.id, instance.state, instance.state, lateness, note)

    def next_due(self) -> datetime | None:
        """When the earliest pending timer is due (None when nothing is pending)."""
        return self._read(repo.next_due)

    # -- reading ---------------------------------------------------------------------------------
    def get(self, ref: InstanceRef) -> InstanceRecord:
        return self._read(lambda conn: self._resolve(conn, ref))

    def history(self, ref: InstanceRef) -> list[HistoryRecord]:
        return self._read(lambda conn: repo.get_history(conn, self._resolve(conn, ref).id))

    def list_instances(self, **filters: Any) -> list[InstanceRecord]:
        return self._read(lambda conn: repo.list_instances(conn, **filters))

    def timers(
        self,
        *,
        due_before: datetime | None = None,
        instance: InstanceRef | None = None,
        status: str | None = "pending",
    ) -> list[TimerRecord]:
        def work(conn: Connection) -> list[TimerRecord]:
            instance_id = self._resolve(conn, instance).id if instance is not None else None
            bound = as_utc(due_before) if due_before else None
            return repo.list_timers(conn, due_before=bound, instance_id=instance_id, status=status)

        return self._read(work)

    def summary(self, process: str | None = None) -> list[tuple[str, str, str, int]]:
        return self._read(lambda conn: repo.count_by_state(conn, process))

    def funnel(self, process: str) -> list[tuple[str, int]]:
        """For each declared stage, in order, how many instances ever reached it."""
        definition = self.definition(process)
        stage_of = {state.name: state.stage for state in definition.states.values()}
        reached: dict[str, set[int]] = {stage: set() for stage in definition.stages}
        for instance_id, state in self._read(lambda conn: repo.states_reached(conn, process)):
            stage = stage_of.get(state)
            if stage in reached:
                reached[stage].add(instance_id)
        return [(stage, len(ids)) for stage, ids in reached.items()]

    def allowed_events(self, ref: InstanceRef) -> list[str]:
        instance = self.get(ref)
        if instance.status != "active":
            return []
        return list(self.definition(instance.process, instance.version).states[instance.state].events)

    # -- plumbing --------------------------------------------------------------------------------
    def _resolve(self, conn: Connection, ref: InstanceRef) -> InstanceRecord:
        instance_id = _as_id(ref)
        if instance_id is not None:
            found = repo.get_instance(conn, instance_id) if 0 < instance_id <= _MAX_ID else None
            if found is None:
                raise NotFoundError(f"instance {instance_id} does not exist; see salesflow list")
            return found
        process, _, key = str(ref).partition("/")
        if not key:
            raise UsageError(f"'{ref}' is not an instance; give the id start printed, or PROCESS/KEY")
        found = repo.find_instance_by_key(conn, process, key)
        if found is None:
            raise NotFoundError(f"no instance of process '{process}' with key '{key}'; see salesflow list")
        return found

    def _logical(self, at: datetime | None) -> datetime:
        return as_utc(at) if at is not None else self.clock.now()

    def _transaction(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one write transaction; retry it whole on deadlocks, serialization
        failures and lost connections (PostgreSQL), which leave nothing applied."""

        def attempt() -> T:
            with self.db.begin() as conn:
                result = work(conn)
                failpoints.hit("before_commit")
                return result

        return self._retrying(attempt)

    def _read(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in a read-only transaction, retried like a write on a lost connection."""

        def attempt() -> T:
            with self.db.connect() as conn, database.read_transaction(conn):
                return work(conn)

        return self._retrying(attempt)

    @staticmethod
    def _retrying(attempt: Callable[[], T]) -> T:
        """Connections are not pinged before use (a round trip per transaction): a connection the
        server closed fails its first statement instead, SQLAlchemy then replaces every pooled
        connection, and the whole unit of work runs again."""
        for number in range(1, RETRIES + 1):
            try:
                return attempt()
            except DBAPIError as exc:
                if number == RETRIES or not _retryable(exc):
                    raise
                log.warning("retrying after %s (attempt %d)", type(exc.orig).__name__, number)
                time.sleep(RETRY_BACKOFF_SECONDS * 2**number)  # let a restarting server come back
        raise AssertionError("unreachable")


_MAX_ID = 2**63 - 1  # BIGINT: a larger id cannot exist (and cannot even be sent to the database)


def _active_instance(conn: Connection, process: str, key: str) -> InstanceRecord | None:
    found = repo.find_instance_by_key(conn, process, key)
    return found if found is not None and found.status == "active" else None


def _may_have_pending_timers(definition: ProcessDefinition, state: str, fired_timer: int | None) -> bool:
    """Whether leaving ``state`` has timers to cancel. Entering a state cancels every pending timer
    of the instance before arming the new state's, so the only ones pending are the left state's
    own, less the one firing now; a state with none needs no cancelling statement. (A stray timer
    from an ended visit would still be recognised as stale when claimed, and cancelled then.)"""
    return any(timer.index != fired_timer for timer in definition.states[state].timers)


def _check_text(value: str | None, what: str) -> None:
    problem = storable.text_problem(value) if value is not None else None
    if problem is not None:
        raise UsageError(f"{what} {problem}")


def _check_same_request(earlier: HistoryRecord, key: str, event: str, input: dict[str, Any] | None) -> None:
    """A reused idempotency key must name the same event (and input, when the retry gives one):
    otherwise it is a mistake, not a retry."""
    if earlier.event != event or (input is not None and (earlier.input or None) != (input or None)):
        raise ConflictError(
            f"idempotency key '{key}' was already used for event '{earlier.event}' with other input; "
            "use a new key for a new request"
        )


def _retryable(exc: DBAPIError) -> bool:
    if exc.connection_invalidated:
        return True
    code = getattr(exc.orig, "sqlstate", None)
    return code in {"40001", "40P01", "55P03"}


def _as_id(ref: InstanceRef) -> int | None:
    if isinstance(ref, int):
        return ref
    text = str(ref).strip()
    return int(text) if text.isdigit() else None


def _view(instance: InstanceRecord) -> decide.InstanceView:
    return decide.InstanceView(instance.state, instance.data, instance.status == "active")


def _history_row(
    instance_id: int,
    seq: int,
    at: datetime,
    recorded_at: datetime,
    actor: str | None,
    source: str,
    decision: decide.Decision,
    version: int,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    return {
        "instance_id": instance_id,
        "seq": seq,
        "at": at,
        "recorded_at": recorded_at,
        "actor": actor,
        "source": source,
        "event": decision.event,
        "from_state": decision.from_state,
        "to_state": decision.to_state,
        "input": decision.input,
        "data_changes": decision.changes or None,
        "definition_version": version,
        "note": decision.note,
        "idempotency_key": idempotency_key,
    }


def _history_record(row: dict[str, Any]) -> HistoryRecord:
    return HistoryRecord(**{k: v for k, v in row.items()})


def _timer_rows(
    instance_id: int, visit: int, decision: decide.Decision, now: datetime
) -> list[dict[str, Any]]:
    return [
        {
            "instance_id": instance_id,
            "visit": visit,
            "timer_index": plan.index,
            "name": plan.name,
            "state": decision.to_state,
            "due_at": plan.due_at,
            "status": "pending",
            "fired_at": None,
            "lateness_seconds": None,
            "created_at": now,
        }
        for plan in decision.timers
    ]
