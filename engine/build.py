"""Turn a schema-valid definition mapping into frozen values, checking what a schema cannot.

Checks (all collected, none stops the others): time zone and calendar, data and input schemas,
expressions (compile, known variables), durations, targets and the initial state, roles, stages,
final-state rules, states with no way out, unreachable states (warning), alternatives after an
unguarded one (warning), timer names, and ``at`` expressions over date fields.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jsonschema
from jsonschema.exceptions import SchemaError

from engine import calendars, durations, expressions
from engine.definition import ProcessDefinition, SetField, State, Timer, Transition

DATE_FORMATS = ("date", "date-time")
JSON_TYPES = ("array", "boolean", "integer", "null", "number", "object", "string")


@dataclass(frozen=True)
class Finding:
    path: tuple[Any, ...]
    message: str
    at_key: bool = False


def did_you_mean(word: str, choices: Any) -> str:
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{matches[0]}'?)" if matches else ""


class Builder:
    """Builds one :class:`ProcessDefinition`; ``errors`` and ``warnings`` hold the findings."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.errors: list[Finding] = []
        self.warnings: list[Finding] = []
        self.state_names = set(raw["states"])
        self.roles = tuple(raw.get("roles", ()))
        self.stages = tuple(raw.get("stages", ()))
        self.data_schema = raw.get("data")

    def error(self, path: tuple[Any, ...], message: str, at_key: bool = False) -> None:
        self.errors.append(Finding(path, message, at_key))

    def warn(self, path: tuple[Any, ...], message: str, at_key: bool = False) -> None:
        self.warnings.append(Finding(path, message, at_key))

    def build(self, source: str, source_name: str, content_hash: str) -> ProcessDefinition:
        zone = self._zone()
        calendar = self._calendar(zone)
        self._check_json_schema(("data",), self.data_schema)
        self._check_initial()
        states = {name: self._state(name, spec) for name, spec in self.raw["states"].items()}
        self._check_reachable(states)
        return ProcessDefinition(
            process=self.raw["process"],
            version=self.raw["version"],
            initial=self.raw["initial"],
            states=MappingProxyType(states),
            timezone=zone,
            calendar=calendar,
            title=self.raw.get("title"),
            description=self.raw.get("description"),
            roles=self.roles,
            data_schema=self.data_schema,
            stages=self.stages,
            source=source,
            source_name=source_name,
            content_hash=content_hash,
        )

    # -- top level -------------------------------------------------------------------------
    def _zone(self) -> ZoneInfo:
        name = self.raw.get("timezone", "UTC")
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            self.error(
                ("timezone",),
                f"unknown time zone '{name}'; use an IANA name such as Europe/Warsaw or UTC",
            )
            return ZoneInfo("UTC")

    def _calendar(self, zone: ZoneInfo) -> calendars.BusinessCalendar:
        spec = self.raw.get("calendar")
        try:
            return calendars.build_calendar(spec, zone)
        except calendars.CalendarSpecError as exc:
            self.error(("calendar", exc.key) if exc.key else ("calendar",), str(exc))
            return calendars.build_calendar(None, zone)

    def _check_json_schema(self, path: tuple[Any, ...], schema: Any) -> None:
        if schema is None:
            return
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            where = (*path, *exc.absolute_path)
            self.error(where, f"invalid JSON Schema: {_schema_error_text(exc)}")

    def _check_initial(self) -> None:
        initial = self.raw["initial"]
        if initial not in self.state_names:
            hint = did_you_mean(initial, self.state_names)
            self.error(("initial",), f"unknown initial state '{initial}'{hint}")

    # -- states ----------------------------------------------------------------------------
    def _state(self, name: str, spec: dict[str, Any]) -> State:
        path = ("states", name)
        self._check_stage(path, spec.get("stage"))
        events = {
            event: self._alternatives((*path, "on", event), event, value)
            for event, value in (spec.get("on") or {}).items()
        }
        timers = tuple(
            self._timer((*path, "after", i), i, timer) for i, timer in enumerate(spec.get("after", []))
        )
        self._check_final_rules(path, spec, events, timers)
        self._check_timer_names(path, events, timers)
        return State(
            name=name,
            description=spec.get("description"),
            stage=spec.get("stage"),
            queue=spec.get("queue"),
            final=bool(spec.get("final", False)),
            outcome=spec.get("outcome"),
            events=MappingProxyType(events),
            timers=timers,
        )

    def _check_stage(self, path: tuple[Any, ...], stage: str | None) -> None:
        if stage is None or stage in self.stages:
            return
        if not self.stages:
            self.error((*path, "stage"), f"stage '{stage}' is used but no 'stages:' list is declared")
        else:
            hint = did_you_mean(stage, self.stages)
            self.error((*path, "stage"), f"stage '{stage}' is not in stages{hint}")

    def _check_final_rules(
        self, path: tuple[Any, ...], spec: dict[str, Any], events: dict, timers: tuple
    ) -> None:
        final = bool(spec.get("final", False))
        if final and events:
            self.error((*path, "on"), "a final state cannot have events; remove 'on' or 'final'", True)
        if final and timers:
            self.error((*path, "after"), "a final state cannot have timers; remove 'after' or 'final'", True)
        if not final and "outcome" in spec:
            self.error((*path, "outcome"), "'outcome' is only for final states; add 'final: true'", True)
        if not final and not events and not timers:
            self.error(
                path,
                "state has no way out: add an event under 'on', a timer under 'after', "
                "or mark it 'final: true'",
                True,
            )

    def _check_timer_names(self, path: tuple[Any, ...], events: dict, timers: tuple) -> None:
        seen: set[str] = set()
        for timer in timers:
            where = (*path, "after", timer.index, "name")
            if timer.name in seen:
                self.error(where, f"two timers of this state are named '{timer.name}'; name each one")
            elif timer.name in events:
                self.error(where, f"timer name '{timer.name}' is also an event of this state; rename it")
            seen.add(timer.name)

    def _check_reachable(self, states: dict[str, State]) -> None:
        initial = self.raw["initial"]
        if initial not in states:
            return
        seen, todo = {initial}, [initial]
        while todo:
            for target in _targets(states[todo.pop()]):
                if target in states and target not in seen:
                    seen.add(target)
                    todo.append(target)
        for name in states:
            if name not in seen:
                self.warn(("states", name), f"state '{name}' cannot be reached from '{initial}'", True)

    # -- transitions -----------------------------------------------------------------------
    def _alternatives(self, path: tuple[Any, ...], event: str, value: Any) -> tuple[Transition, ...]:
        if isinstance(value, str):
            self._check_target((path), value)
            return (Transition(event=event, target=value),)
        if isinstance(value, dict):
            return (self._transition(path, event, value),)
        built = tuple(self._transition((*path, i), event, alt) for i, alt in enumerate(value))
        for i, transition in enumerate(built[:-1]):
            if transition.guard is None:
                self.warn(
                    (*path, i + 1),
                    f"alternative {i + 2} can never be taken: alternative {i + 1} has no 'when'; "
                    "put the unguarded one last",
                )
                break
        return built

    def _transition(self, path: tuple[Any, ...], event: str, spec: dict[str, Any]) -> Transition:
        target = spec.get("to")
        if target is not None:
            self._check_target((*path, "to"), target)
        for i, role in enumerate(spec.get("roles", ())):
            if role not in self.roles:
                hint = did_you_mean(role, self.roles)
                self.error((*path, "roles", i), f"role '{role}' is not declared in roles{hint}")
        input_schema = spec.get("input")
        self._check_json_schema((*path, "input"), input_schema)
        return Transition(
            event=event,
            target=target,
            guard=self._expression((*path, "when"), spec.get("when")),
            roles=tuple(spec.get("roles", ())),
            input_schema=input_schema,
            merge=spec.get("merge", True),
            sets=self._sets((*path, "set"), spec.get("set")),
            description=spec.get("description"),
            refusal=spec.get("refusal"),
        )

    def _check_target(self, path: tuple[Any, ...], target: str) -> None:
        if target not in self.state_names:
            self.error(path, f"unknown state '{target}'{did_you_mean(target, self.state_names)}")

    def _expression(self, path: tuple[Any, ...], source: str | None) -> expressions.Expression | None:
        if source is None:
            return None
        try:
            return expressions.compile_expression(source)
        except expressions.ExpressionError as exc:
            self.error(path, str(exc))
            return None

    def _sets(self, path: tuple[Any, ...], spec: dict[str, Any] | None) -> tuple[SetField, ...]:
        fields = []
        for name, value in (spec or {}).items():
            self._check_data_field((*path, name), name)
            source = expressions.template_expression(value)
            if source is None:
                self._check_literal((*path, name), name, value)
                fields.append(SetField(field=name, literal=value))
            else:
                fields.append(SetField(field=name, expression=self._expression((*path, name), source)))
        return tuple(fields)

    def _check_data_field(self, path: tuple[Any, ...], name: str) -> None:
        schema = self.data_schema or {}
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is False and name not in properties:
            hint = did_you_mean(name, properties)
            self.error(path, f"field '{name}' is not declared in data{hint}", True)

    def _check_literal(self, path: tuple[Any, ...], name: str, value: Any) -> None:
        """A literal ``set`` value must fit its field now, not fail the day the step runs."""
        field_schema = ((self.data_schema or {}).get("properties") or {}).get(name)
        if not isinstance(field_schema, dict) or "$ref" in str(field_schema):
            return  # undeclared, or needs the whole schema to resolve: checked when applied
        try:
            validator = jsonschema.Draft202012Validator(
                field_schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
            )
            error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        except SchemaError:
            return  # reported by the data schema check
        if error is not None:
            self.error(path, f"value {value!r} does not fit field '{name}': {error.message}")

    # -- timers ----------------------------------------------------------------------------
    def _timer(self, path: tuple[Any, ...], index: int, spec: dict[str, Any]) -> Timer:
        target = spec.get("to")
        if target is not None:
            self._check_target((*path, "to"), target)
        at = self._expression((*path, "at"), spec.get("at"))
        if at is not None:
            self._check_at_fields((*path, "at"), at)
        return Timer(
            index=index,
            name=spec.get("name", "timeout"),
            target=target,
            delay=self._duration((*path, "delay"), spec.get("delay")),
            at=at,
            offset=self._duration((*path, "offset"), spec.get("offset")),
            guard=self._expression((*path, "when"), spec.get("when")),
            sets=self._sets((*path, "set"), spec.get("set")),
            description=spec.get("description"),
        )

    def _duration(self, path: tuple[Any, ...], text: str | None) -> durations.Duration | None:
        if text is None:
            return None
        try:
            return durations.parse_duration(text)
        except ValueError as exc:
            self.error(path, str(exc))
            return None

    def _check_at_fields(self, path: tuple[Any, ...], at: expressions.Expression) -> None:
        properties = (self.data_schema or {}).get("properties", {})
        bare = at.bare_data_field()
        for name in at.data_fields():
            declared = properties.get(name)
            if not isinstance(declared, dict):
                self.error(
                    path,
                    f"'at' reads data.{name}, which the data schema does not declare; declare it "
                    "with type: string and format: date or date-time",
                )
            elif name == bare and declared.get("format") not in DATE_FORMATS:
                self.error(
                    path,
                    f"'at' reads data.{name}, which is not declared as a date; give it "
                    "format: date or format: date-time in the data schema",
                )


def _schema_error_text(exc: SchemaError) -> str:
    """The metaschema's message, made readable for the common slip of a misspelt ``type``."""
    path = list(exc.absolute_path)
    if path and path[-1] == "type" and exc.validator == "anyOf" and isinstance(exc.instance, str):
        return (
            f"'{exc.instance}' is not a type; use one of {', '.join(JSON_TYPES)}"
            f"{did_you_mean(exc.instance, JSON_TYPES)}"
        )
    return exc.message


def _targets(state: State) -> list[str]:
    found = [t.target for alts in state.events.values() for t in alts if t.target]
    found += [t.target for t in state.timers if t.target]
    return found
