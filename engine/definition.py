"""Frozen values describing a validated process definition. No YAML and no database here.

The loader (``engine.loader``) builds these from a YAML file; the decision core, the runtime and the
diagram writer read them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from engine.calendars import BusinessCalendar
from engine.durations import Duration
from engine.expressions import Expression


@dataclass(frozen=True)
class SetField:
    """One ``set:`` entry: a data field and either a literal value or an expression."""

    field: str
    literal: Any = None
    expression: Expression | None = None


@dataclass(frozen=True)
class Transition:
    """One way an event may go: the first alternative whose guard holds is taken."""

    event: str
    target: str | None  # None: internal transition (state and timers unchanged)
    guard: Expression | None = None
    roles: tuple[str, ...] = ()
    input_schema: Mapping[str, Any] | None = None
    merge: bool = True
    sets: tuple[SetField, ...] = ()
    description: str | None = None
    refusal: str | None = None  # shown to staff when this alternative's guard is false

    @property
    def is_internal(self) -> bool:
        return self.target is None


@dataclass(frozen=True)
class Timer:
    """A timer armed when its state is entered and cancelled when the state is left."""

    index: int  # position in the state's ``after:`` list; with the state visit it names the row
    name: str  # event name recorded in history
    target: str | None
    delay: Duration | None = None
    at: Expression | None = None
    offset: Duration | None = None
    guard: Expression | None = None
    sets: tuple[SetField, ...] = ()
    description: str | None = None

    @property
    def is_internal(self) -> bool:
        return self.target is None


@dataclass(frozen=True)
class State:
    name: str
    description: str | None = None
    stage: str | None = None
    queue: str | None = None
    final: bool = False
    outcome: str | None = None
    events: Mapping[str, tuple[Transition, ...]] = field(default_factory=dict)
    timers: tuple[Timer, ...] = ()


@dataclass(frozen=True, eq=False)
class ProcessDefinition:
    """A whole, validated process version (compared and hashed by identity)."""

    process: str
    version: int
    initial: str
    states: Mapping[str, State]
    timezone: ZoneInfo
    calendar: BusinessCalendar
    title: str | None = None
    description: str | None = None
    roles: tuple[str, ...] = ()
    data_schema: Mapping[str, Any] | None = None
    stages: tuple[str, ...] = ()
    source: str = ""  # the YAML text, stored on deploy
    source_name: str = "<string>"
    content_hash: str = ""

    def state(self, name: str) -> State:
        return self.states[name]
