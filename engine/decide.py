"""The pure core: what an event, a timer or a start does to an instance. No I/O, no clock.

Each function returns a :class:`Decision` (a value) or raises :class:`EventRejected` /
:class:`UsageError`; the runtime applies the decision in one database transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from typing import Any

import jsonschema

from engine import durations, fastschema, storable
from engine.calendars import local_to_utc, start_of_day
from engine.clock import as_utc
from engine.definition import ProcessDefinition, SetField, State, Timer, Transition
from engine.errors import EventRejected, UsageError
from engine.expressions import ExpressionError, to_json_value
from engine.machine import evaluate_guard, machine_for


@dataclass(frozen=True)
class InstanceView:
    """What the core needs to know about an instance."""

    state: str
    data: Mapping[str, Any]
    active: bool = True


@dataclass(frozen=True)
class TimerPlan:
    """A timer to arm on entering a state."""

    index: int
    name: str
    due_at: datetime


@dataclass(frozen=True)
class Decision:
    """What applying an event does; ``entered`` means a state was (re-)entered."""

    event: str
    from_state: str | None
    to_state: str
    entered: bool
    data: dict[str, Any]
    changes: dict[str, Any]
    input: dict[str, Any] | None = None
    timers: tuple[TimerPlan, ...] = ()
    taken: bool = True  # False: a timer whose guard was false; recorded, nothing changes
    note: str | None = None
    state_info: State | None = field(default=None, compare=False)

    @property
    def closes(self) -> bool:
        return bool(self.state_info and self.state_info.final)


def decide_start(definition: ProcessDefinition, data: Mapping[str, Any], now: datetime) -> Decision:
    """Starting an instance: validate the data, enter the initial state, plan its timers."""
    data = dict(data)
    _check_storable(data, "start data", UsageError)
    _check_data(definition, data, "start data")
    state = definition.states[definition.initial]
    timers = _plan_timers(definition, state, _variables(data, {}, now, state.name))
    return Decision(
        event="start",
        from_state=None,
        to_state=state.name,
        entered=True,
        data=data,
        changes=dict(data),
        timers=timers,
        state_info=state,
    )


def decide_event(
    definition: ProcessDefinition,
    instance: InstanceView,
    event: str,
    input: Mapping[str, Any] | None,
    roles: frozenset[str],
    now: datetime,
) -> Decision:
    """A staff event: pick the alternative, check roles and input, apply merge and ``set``."""
    machine = machine_for(definition)
    if not instance.active:
        raise EventRejected(f"the instance is closed (in final state '{instance.state}'); nothing can change")
    if not machine.accepts(instance.state, event):
        raise EventRejected(_not_allowed(machine.allowed_events(instance.state), instance.state, event))
    payload = dict(input or {})
    _check_storable(payload, f"input of event '{event}'", EventRejected)
    chosen = _choose(definition, instance, event, payload, roles, now)
    return _apply(definition, instance, chosen, event, payload, now)


def decide_timer(
    definition: ProcessDefinition, instance: InstanceView, timer_index: int, due_at: datetime
) -> Decision:
    """A due timer fires at its due instant (the logical time of the step)."""
    state = definition.states[instance.state]
    timer = state.timers[timer_index]
    variables = _variables(instance.data, {}, due_at, instance.state)
    if timer.guard is not None and not _guard(timer.guard, variables, f"timer '{timer.name}'"):
        note = f"guard '{timer.guard.source}' was false; nothing changed"
        return unchanged(timer.name, instance, note, state)
    return _apply(definition, instance, timer, timer.name, {}, due_at)


def unchanged(event: str, instance: InstanceView, note: str, state: State | None = None) -> Decision:
    """A step that is recorded in history but changes nothing (a timer that did not act)."""
    return Decision(
        event=event,
        from_state=instance.state,
        to_state=instance.state,
        entered=False,
        data=dict(instance.data),
        changes={},
        taken=False,
        note=note,
        state_info=state,
    )


# -- choosing ------------------------------------------------------------------------------------
def _choose(
    definition: ProcessDefinition,
    instance: InstanceView,
    event: str,
    payload: dict[str, Any],
    roles: frozenset[str],
    now: datetime,
) -> Transition:
    machine = machine_for(definition)
    alternatives = machine.alternatives(instance.state, event)
    variables = _variables(instance.data, payload, now, instance.state)
    missing_roles: list[str] = []
    failed: list[Transition] = []
    for position, alternative in enumerate(alternatives):
        if alternative.roles and not roles & set(alternative.roles):
            missing_roles.extend(r for r in alternative.roles if r not in missing_roles)
            continue
        _check_input(alternative, event, payload)
        try:
            if machine.guard_holds(instance.state, event, position, variables):
                return alternative
        except ExpressionError as exc:
            raise EventRejected(f"event '{event}' could not be decided: {exc}") from None
        failed.append(alternative)
    if missing_roles and not failed:
        have = ", ".join(sorted(roles)) or "none"
        raise EventRejected(
            f"event '{event}' needs role {' or '.join(missing_roles)}; the caller has: {have}"
        )
    raise EventRejected(_refusal(event, instance.state, failed))


def _refusal(event: str, state: str, failed: list[Transition]) -> str:
    """The process owner's own words (``refusal``) when given, else the conditions that failed."""
    reasons = [t.refusal for t in failed if t.refusal]
    if reasons:
        return f"event '{event}' was refused: {'; '.join(dict.fromkeys(reasons))}"
    conditions = "; ".join(f"'{t.guard.source}'" for t in failed if t.guard)
    return f"event '{event}' was refused in state '{state}': no condition held ({conditions})"


def _check_input(transition: Transition, event: str, payload: dict[str, Any]) -> None:
    if transition.input_schema is None:
        return
    error = _input_check(transition).best_error(payload)
    if error is not None:
        raise EventRejected(f"input of event '{event}' is invalid: {_describe(error)}")


@dataclass(frozen=True)
class _SchemaCheck:
    """A compiled schema: the fast "certainly valid" check first, jsonschema for everything else
    (it gives the verdict and the message); see ``engine.fastschema``."""

    validator: jsonschema.protocols.Validator
    fast: Callable[[Any], bool] | None

    def best_error(self, instance: Any) -> jsonschema.ValidationError | None:
        if self.fast is not None and self.fast(instance):
            return None
        return jsonschema.exceptions.best_match(self.validator.iter_errors(instance))


def _schema_check(schema: Any) -> _SchemaCheck:
    format_checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    return _SchemaCheck(
        jsonschema.Draft202012Validator(schema, format_checker=format_checker),
        fastschema.compile_check(schema, format_checker),
    )


# Building a validator costs more than validating a small input; transitions are frozen and belong
# to cached definitions, so each keeps its check (keyed by identity: its schema is a dict).
_input_checks: dict[int, tuple[Transition, _SchemaCheck]] = {}


def _input_check(transition: Transition) -> _SchemaCheck:
    cached = _input_checks.get(id(transition))
    if cached is None or cached[0] is not transition:
        if len(_input_checks) >= 4096:  # many definitions loaded over time: start again
            _input_checks.clear()
        cached = _input_checks[id(transition)] = (transition, _schema_check(transition.input_schema))
    return cached[1]


# -- applying ------------------------------------------------------------------------------------
def _apply(
    definition: ProcessDefinition,
    instance: InstanceView,
    step: Transition | Timer,
    event: str,
    payload: dict[str, Any],
    now: datetime,
) -> Decision:
    merge = isinstance(step, Transition) and step.merge
    data = dict(instance.data)
    changes: dict[str, Any] = dict(payload) if merge else {}
    data.update(changes)
    for set_field in step.sets:
        value = _set_value(set_field, _variables(data, payload, now, instance.state), event)
        data[set_field.field] = value
        changes[set_field.field] = value
    _check_storable(changes, f"data after event '{event}'", EventRejected)  # e.g. a 'set' giving NaN
    _check_data(definition, data, f"data after event '{event}'", rejected=True)
    target = step.target or instance.state
    state = definition.states[target]
    entered = step.target is not None
    timers = _plan_timers(definition, state, _variables(data, payload, now, target)) if entered else ()
    return Decision(
        event=event,
        from_state=instance.state,
        to_state=target,
        entered=entered,
        data=data,
        changes=changes,
        input=payload or None,
        timers=timers,
        state_info=state,
    )


def _set_value(set_field: SetField, variables: dict[str, Any], event: str) -> Any:
    if set_field.expression is None:
        return set_field.literal
    try:
        return to_json_value(set_field.expression.evaluate(variables))
    except ExpressionError as exc:
        raise EventRejected(f"event '{event}': cannot set '{set_field.field}': {exc}") from None


def _plan_timers(
    definition: ProcessDefinition, state: State, variables: dict[str, Any]
) -> tuple[TimerPlan, ...]:
    now = variables["now"]
    instants: dict[str, datetime] = {}  # timers often count from one 'at' (a reminder, a deadline)
    return tuple(
        TimerPlan(timer.index, timer.name, _due_at(definition, state, timer, variables, now, instants))
        for timer in state.timers
    )


def _due_at(
    definition: ProcessDefinition,
    state: State,
    timer: Timer,
    variables: dict[str, Any],
    now: datetime,
    instants: dict[str, datetime],
) -> datetime:
    try:
        if timer.delay is not None:
            return durations.add_duration(now, timer.delay, definition.calendar)
        assert timer.at is not None
        instant = instants.get(timer.at.source)
        if instant is None:
            instant = instants[timer.at.source] = to_instant(timer.at.evaluate(variables), definition)
        return durations.add_duration(instant, timer.offset, definition.calendar) if timer.offset else instant
    except ValueError as exc:  # an 'at' that fails or is no date, a date past 9999, a closed calendar
        raise EventRejected(f"timer '{timer.name}' of state '{state.name}' cannot be armed: {exc}") from None


def to_instant(value: Any, definition: ProcessDefinition) -> datetime:
    """A date (start of day in the process zone), an aware or naive (local) date-time -> UTC."""
    zone = definition.timezone
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"'{value}' is not a date or date-time") from None
    if isinstance(value, datetime):
        return as_utc(value) if value.tzinfo else local_to_utc(value, zone)
    if isinstance(value, date):
        return start_of_day(value, zone)
    raise ValueError(f"{value!r} is not a date or date-time")


# -- helpers -------------------------------------------------------------------------------------
def _variables(data: Mapping[str, Any], payload: Mapping[str, Any], now: datetime, state: str) -> dict:
    return {"data": dict(data), "input": dict(payload), "now": now, "state": state}


def _guard(guard: Any, variables: dict[str, Any], what: str) -> bool:
    try:
        return evaluate_guard(guard, variables)
    except ExpressionError as exc:
        raise EventRejected(f"{what} could not be decided: {exc}") from None


def _check_storable(value: dict[str, Any], what: str, error_type: type[Exception]) -> None:
    problem = storable.json_problem(value)
    if problem is not None:
        raise error_type(f"{what} cannot be stored: {problem}")


def _check_data(
    definition: ProcessDefinition, data: dict[str, Any], what: str, rejected: bool = False
) -> None:
    if definition.data_schema is None:
        return
    error = _data_check(definition).best_error(data)
    if error is not None:
        error_type = EventRejected if rejected else UsageError
        raise error_type(f"{what} is invalid: {_describe(error)}")


@lru_cache(maxsize=256)
def _data_check(definition: ProcessDefinition) -> _SchemaCheck:
    return _schema_check(definition.data_schema)


def _describe(error: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "required":
        return error.message.replace("is a required property", "is required")
    return f"field '{where}': {error.message}" if where else error.message


def _not_allowed(allowed: list[str], state: str, event: str) -> str:
    if not allowed:
        return f"event '{event}' is not allowed in state '{state}', which accepts no events"
    return f"event '{event}' is not allowed in state '{state}'; allowed: {', '.join(allowed)}"
