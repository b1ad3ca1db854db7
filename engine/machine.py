"""The one module that imports ``transitions``.

One static ``Machine`` is built per definition version and shared by every instance (building a
Machine per instance costs ~256 us and 15 KB; a shared one costs ~10 us per trigger). It picks the
candidate transitions for (state, event) and runs their guards; our guards are compiled CEL wrapped in
callables, so the library is never handed a string it could import. Nothing is persisted here.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from transitions import Machine
from transitions.core import EventData

from engine.definition import ProcessDefinition, Transition
from engine.expressions import Expression, ExpressionError


class ProcessMachine:
    """Chooses transitions for one definition version."""

    def __init__(self, definition: ProcessDefinition) -> None:
        self.definition = definition
        self._machine = Machine(
            model=None,
            states=list(definition.states),
            initial=definition.initial,
            auto_transitions=False,
            send_event=True,
            ignore_invalid_triggers=False,
        )
        # Ours, aligned index by index with the library's transitions for (state, event).
        self._ours: dict[tuple[str, str], tuple[Transition, ...]] = {}
        for state in definition.states.values():
            for event, alternatives in state.events.items():
                self._ours[(state.name, event)] = alternatives
                for alternative in alternatives:
                    self._machine.add_transition(
                        trigger=event,
                        source=state.name,
                        dest=alternative.target,
                        conditions=[_guard_callable(alternative.guard)],
                    )

    def allowed_events(self, state: str) -> list[str]:
        """Events the state accepts, in the order the definition lists them."""
        return list(self.definition.states[state].events)

    def accepts(self, state: str, event: str) -> bool:
        return (state, event) in self._ours

    def alternatives(self, state: str, event: str) -> tuple[Transition, ...]:
        return self._ours.get((state, event), ())

    def guard_holds(self, state: str, event: str, position: int, variables: dict[str, Any]) -> bool:
        """Run alternative ``position``'s guard through the library's condition check."""
        library_transition = self._machine.events[event].transitions[state][position]
        event_data = EventData(
            self._machine.get_state(state), self._machine.events[event], self._machine, None, (), variables
        )
        return all(condition.check(event_data) for condition in library_transition.conditions)


def _guard_callable(guard: Expression | None) -> Callable[[EventData], bool]:
    if guard is None:
        return _always

    def check(event_data: EventData) -> bool:
        return evaluate_guard(guard, event_data.kwargs)

    return check


def _always(_event_data: EventData) -> bool:
    return True


def evaluate_guard(guard: Expression, variables: dict[str, Any]) -> bool:
    """A guard holds only when it evaluates to exactly ``true``; anything else is an error."""
    result = guard.evaluate(variables)
    if not isinstance(result, bool):
        raise ExpressionError(f"guard '{guard.source}' gave {result!r}, not true or false")
    return result


@lru_cache(maxsize=256)
def machine_for(definition: ProcessDefinition) -> ProcessMachine:
    """The shared machine of a definition version (definitions are frozen and hashable by id)."""
    return ProcessMachine(definition)
