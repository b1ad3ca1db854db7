"""P7 and P1, model-based: a Hypothesis stateful test drives the runtime (start, valid and invalid
events, moving the clock, ticks, crashes inside a step, reopening the engine) and, after every
step, compares the database with a plain in-memory model of the same definition: state, data,
status, state visit, version, last event time and the pending timers of every instance, plus what
each command answered (accepted or refused; which timers fired and how).

Runs on SQLite and PostgreSQL, a fresh database per example. ``SALESFLOW_MODEL_EXAMPLES`` sets the
number of examples per backend (default 40).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy.engine import make_url

from engine import failpoints, loader
from engine.clock import ManualClock
from engine.errors import EventRejected, NotFoundError
from engine.runtime import Engine
from storage import database
from tests.conftest import POSTGRES_URL_VAR
from tests.reliability import figures
from tests.reliability.test_atomic_step import crash_in_child

MODEL_YAML = """\
process: model
version: 1
timezone: UTC
data:
  type: object
  properties:
    calls: {type: integer}
    vip: {type: boolean}
    reminded: {type: boolean}
initial: lead
states:
  lead:
    after:
      - delay: 2d
        name: lead_expired
        to: lost
    on:
      call:
        set:
          calls: "${ has(data.calls) ? data.calls + 1 : 1 }"
      qualify: offer
      drop: lost
  offer:
    after:
      - delay: 1d
        name: remind
        when: "has(data.vip) && data.vip"
        set:
          reminded: true
      - delay: 3d
        name: offer_expired
        to: lead
    on:
      mark_vip:
        set:
          vip: true
      revise: offer
      accept: won
      reject: lost
  won:
    final: true
    outcome: won
  lost:
    final: true
    outcome: lost
"""

# The same definition, as the model reads it: (name, days, target, needs vip, sets) per timer and
# (target, effect) per event; a target of None is an internal step.
TIMERS: dict[str, list[tuple[str, int, str | None, bool, dict[str, Any]]]] = {
    "lead": [("lead_expired", 2, "lost", False, {})],
    "offer": [("remind", 1, None, True, {"reminded": True}), ("offer_expired", 3, "lead", False, {})],
}
EVENTS: dict[str, dict[str, tuple[str | None, str | None]]] = {
    "lead": {"call": (None, "calls"), "qualify": ("offer", None), "drop": ("lost", None)},
    "offer": {
        "mark_vip": (None, "vip"),
        "revise": ("offer", None),
        "accept": ("won", None),
        "reject": ("lost", None),
    },
}
FINAL = {"won", "lost"}
ALL_EVENTS = sorted({e for events in EVENTS.values() for e in events} | {"bogus"})
KEYS = ["K1", "K2", "K3", "K4"]
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@dataclass
class ModelTimer:
    name: str
    due: datetime


@dataclass
class ModelInstance:
    id: int
    key: str
    state: str
    data: dict[str, Any]
    last: datetime
    visit: int = 1
    version: int = 1
    timers: list[ModelTimer] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.state not in FINAL

    def enter(self, state: str, at: datetime) -> None:
        self.state, self.visit, self.last = state, self.visit + 1, at
        self.version += 1
        self.arm(at)

    def arm(self, at: datetime) -> None:
        self.timers = [
            ModelTimer(name, at + timedelta(days=days)) for name, days, *_ in TIMERS.get(self.state, [])
        ]

    def apply_event(self, event: str, now: datetime) -> None:
        target, effect = EVENTS[self.state][event]
        if effect == "calls":
            self.data["calls"] = self.data.get("calls", 0) + 1
        elif effect == "vip":
            self.data["vip"] = True
        if target is None:
            self.version, self.last = self.version + 1, now
        else:
            self.enter(target, now)

    def fire_due(self, until: datetime) -> list[tuple[int, str, str]]:
        """Fire this instance's due timers in due order (chains included): (id, name, outcome)."""
        fired = []
        while self.active and self.timers:
            timer = min(self.timers, key=lambda t: t.due)
            if timer.due > until:
                break
            at = max(timer.due, self.last)
            _, _, target, needs_vip, sets = next(t for t in TIMERS[self.state] if t[0] == timer.name)
            self.timers.remove(timer)
            if needs_vip and not self.data.get("vip"):
                self.version, self.last = self.version + 1, at
                fired.append((self.id, timer.name, "skipped"))
                continue
            self.data.update(sets)
            if target is None:
                self.version, self.last = self.version + 1, at
            else:
                self.enter(target, at)
            fired.append((self.id, timer.name, "fired"))
        return fired


@contextmanager
def fresh_database(backend: str, folder: Path) -> Iterator[str]:
    """A migrated, empty database for one example; dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / f'model-{uuid.uuid4().hex}.db'}"
        return
    base = os.environ[POSTGRES_URL_VAR]
    schema = f"model_{uuid.uuid4().hex[:12]}"
    admin = database.create_db_engine(base)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        url_text = url.render_as_string(hide_password=False)
        db = database.create_db_engine(url_text)
        database.migrate(db)
        db.dispose()
        yield url_text
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


class RuntimeAgainstModel(RuleBasedStateMachine):
    backend = "sqlite"
    folder = Path(".")
    counts: ClassVar[dict[str, int]] = {}

    def __init__(self) -> None:
        super().__init__()
        self._database = fresh_database(self.backend, self.folder)
        self.url = self._database.__enter__()
        self.clock = ManualClock(T0)
        self.engine = Engine(self.url, self.clock)
        self.instances: dict[int, ModelInstance] = {}
        self.crashes = 0
        self.count("examples")

    def count(self, what: str, n: int = 1) -> None:
        self.counts[what] = self.counts.get(what, 0) + n

    def teardown(self) -> None:
        """Every example ends by letting every timer come due: the last tick must match too."""
        try:
            self.advance(24 * 10)
            self.tick()
            self.database_matches_the_model()
        finally:
            self.engine.close()
            self._database.__exit__(None, None, None)

    @initialize(keys=st.lists(st.sampled_from(KEYS), min_size=1, max_size=3, unique=True))
    def deploy_and_start(self, keys: list[str]) -> None:
        self.engine.deploy(loader.load_text(MODEL_YAML, "model.yaml"))
        for key in keys:
            self.start(key, vip=False)

    # -- commands ----------------------------------------------------------------------------
    @rule(key=st.sampled_from(KEYS), vip=st.booleans())
    def start(self, key: str, vip: bool) -> None:
        self.count("steps")
        data = {"vip": True} if vip else {}
        result = self.engine.start("model", key, data)
        active = [m for m in self.instances.values() if m.key == key and m.active]
        if active:
            assert not result.created and result.instance.id == active[0].id
            return
        assert result.created
        model = ModelInstance(result.instance.id, key, "lead", data, self.clock.now())
        model.arm(self.clock.now())
        self.instances[model.id] = model

    @precondition(lambda self: any(m.active for m in self.instances.values()))
    @rule(data=st.data())
    def fire_allowed_event(self, data: st.DataObject) -> None:
        self.count("steps")
        model = data.draw(st.sampled_from([m for m in self.instances.values() if m.active]))
        event = data.draw(st.sampled_from(sorted(EVENTS[model.state])))
        result = self.engine.fire(model.id, event, actor="clerk")
        model.apply_event(event, max(self.clock.now(), model.last))
        assert (result.instance.state, result.instance.row_version) == (model.state, model.version)
        self.count("accepted events")

    @rule(pick=st.integers(0, 50), event=st.sampled_from(ALL_EVENTS))
    def fire_any_event(self, pick: int, event: str) -> None:
        self.count("steps")
        if not self.instances:
            with pytest.raises(NotFoundError):
                self.engine.fire(10**6 + pick, event)
            self.count("refused events")
            return
        model = list(self.instances.values())[pick % len(self.instances)]
        if not (model.active and event in EVENTS.get(model.state, {})):
            with pytest.raises(EventRejected):
                self.engine.fire(model.id, event, actor="clerk")
            self.count("refused events")
            return
        result = self.engine.fire(model.id, event, actor="clerk")
        model.apply_event(event, max(self.clock.now(), model.last))
        assert (result.instance.state, result.instance.row_version) == (model.state, model.version)
        self.count("accepted events")

    @rule(hours=st.integers(1, 80))
    def advance(self, hours: int) -> None:
        self.count("steps")
        self.clock.advance(timedelta(hours=hours))

    @rule()
    def tick(self) -> None:
        self.count("steps")
        report = self.engine.tick()
        got = sorted((f.instance_id, f.timer.name, f.outcome) for f in report.fired)
        expected = sorted(x for m in self.instances.values() for x in m.fire_due(self.clock.now()))
        assert got == expected
        self.count("timers fired", len(got))

    @precondition(lambda self: self.crashes < 2)  # a fork and a reconnect each: keep examples quick
    @rule(
        point=st.sampled_from(failpoints.POINTS), pick=st.integers(0, 50), event=st.sampled_from(ALL_EVENTS)
    )
    def crash_and_reopen(self, point: str, pick: int, event: str) -> None:
        """A process dies inside a step (a tick, or an event); the engine is opened again."""
        self.count("steps")
        self.crashes += 1
        ids = list(self.instances)
        if ids and pick % 2:
            target = ids[pick % len(ids)]
            code = crash_in_child(point, self.url, lambda e: e.fire(target, event))
        else:
            code = crash_in_child(point, self.url, lambda e: e.tick(self.clock.now()))
        assert code in (0, 1, 137)  # crashed at the failpoint, or never reached one (nothing to do)
        self.count("crashes", code == 137)
        self.engine.close()
        self.engine = Engine(self.url, self.clock)  # the restart: nothing cached survives

    # -- the comparison ----------------------------------------------------------------------
    @invariant()
    def database_matches_the_model(self) -> None:
        for model in self.instances.values():
            row = self.engine.get(model.id)
            assert (row.state, row.status, row.data) == (
                model.state,
                "active" if model.active else "closed",
                model.data,
            )
            assert (row.visit, row.row_version, row.last_event_at) == (model.visit, model.version, model.last)
            pending = sorted((t.name, t.due_at) for t in self.engine.timers(instance=model.id))
            assert pending == sorted((t.name, t.due) for t in model.timers)
            assert len(self.engine.history(model.id)) == model.version


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_the_runtime_behaves_like_the_model(backend: str, tmp_path: Path) -> None:
    if backend == "postgres" and not os.environ.get(POSTGRES_URL_VAR):
        pytest.skip(f"{POSTGRES_URL_VAR} is not set: PostgreSQL tests skipped")
    examples = int(os.environ.get("SALESFLOW_MODEL_EXAMPLES", "40"))
    machine = type(
        f"RuntimeAgainstModel_{backend}", (RuntimeAgainstModel,), {"backend": backend, "folder": tmp_path}
    )
    machine.counts = {}
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    figures.record(
        "model-based (Hypothesis stateful)",
        "postgresql" if backend == "postgres" else "sqlite",
        **{name.replace(" ", "_"): n for name, n in sorted(machine.counts.items())},
        mismatches=0,
    )
