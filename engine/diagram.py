"""Diagrams of a process: Mermaid ``stateDiagram-v2`` and Graphviz ``dot``; timers and guards labelled."""

from __future__ import annotations

import json
from collections.abc import Iterator

from engine.definition import ProcessDefinition, State, Timer, Transition

Edge = tuple[str, str, str, bool]  # (from, to, label, is a timer)


def edges(definition: ProcessDefinition) -> Iterator[Edge]:
    """Every labelled edge: events (with guards and roles) and timers (with their delay or date)."""
    for state in definition.states.values():
        for event, alternatives in state.events.items():
            for transition in alternatives:
                yield state.name, transition.target or state.name, _event_label(event, transition), False
        for timer in state.timers:
            yield state.name, timer.target or state.name, _timer_label(timer), True


def _event_label(event: str, transition: Transition) -> str:
    label = event
    if transition.guard is not None:
        label += f" [{transition.guard.source}]"
    if transition.roles:
        label += f" ({', '.join(transition.roles)})"
    if transition.is_internal:
        label += " (internal)"
    return label


def _timer_label(timer: Timer) -> str:
    if timer.delay is not None:
        when = f"after {timer.delay.text}"
    else:
        assert timer.at is not None
        offset = timer.offset.text if timer.offset else ""
        if offset and offset[0] not in "+-":
            offset = "+" + offset
        when = f"at {timer.at.source}" + (f" {offset}" if offset else "")
    label = f"{timer.name} {when}"
    if timer.guard is not None:
        label += f" [{timer.guard.source}]"
    return label


def mermaid(definition: ProcessDefinition) -> str:
    """A Mermaid ``stateDiagram-v2`` (paste into any Markdown viewer that renders Mermaid)."""
    lines = ["stateDiagram-v2"]
    if definition.title:
        # Front matter is YAML: a JSON string is a valid YAML scalar whatever the title holds.
        title = json.dumps(definition.title.replace("\n", " "), ensure_ascii=False)
        lines.insert(0, f"---\ntitle: {title}\n---")
    for state in definition.states.values():
        lines.append(f'    state "{_mermaid_text(_state_caption(state))}" as {state.name}')
    lines.append(f"    [*] --> {definition.initial}")
    for source, target, label, _ in edges(definition):
        lines.append(f"    {source} --> {target} : {_mermaid_text(label)}")
    for state in definition.states.values():
        if state.final:
            lines.append(f"    {state.name} --> [*]")
    return "\n".join(lines)


def dot(definition: ProcessDefinition) -> str:
    """A Graphviz digraph (``salesflow diagram X --format dot | dot -Tsvg > x.svg``)."""
    lines = [f"digraph {definition.process} {{", "    rankdir=LR;", "    node [shape=box, style=rounded];"]
    lines.append('    __start [shape=point, label=""];')
    for state in definition.states.values():
        shape = ", peripheries=2" if state.final else ""
        lines.append(f"    {_dot_id(state.name)} [label={_dot_text(_state_caption(state))}{shape}];")
    lines.append(f"    __start -> {_dot_id(definition.initial)};")
    for source, target, label, is_timer in edges(definition):
        style = ", style=dashed" if is_timer else ""
        lines.append(f"    {_dot_id(source)} -> {_dot_id(target)} [label={_dot_text(label)}{style}];")
    lines.append("}")
    return "\n".join(lines)


def _state_caption(state: State) -> str:
    extras = [f"stage {state.stage}"] if state.stage else []
    if state.outcome:
        extras.append(state.outcome)
    return f"{state.name} ({', '.join(extras)})" if extras else state.name


def _mermaid_text(text: str) -> str:
    # Mermaid has no escape for ':' or quotes in labels; '#58;' style entities are supported.
    text = text.replace(";", "#59;").replace('"', "#quot;").replace(":", "#58;")
    return text.replace("\n", " ")


def _dot_id(name: str) -> str:
    # DOT keywords (any case) cannot be bare IDs: a state named "node" would set node defaults.
    return _dot_text(name) if name.lower() in _DOT_KEYWORDS else name


_DOT_KEYWORDS = frozenset({"node", "edge", "graph", "digraph", "subgraph", "strict"})


def _dot_text(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
