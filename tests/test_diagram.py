"""``salesflow diagram``: Mermaid and Graphviz output parse, and show every state, event and timer."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml

from engine import diagram
from engine.definition import ProcessDefinition
from engine.loader import load_file, load_text

ROOT = Path(__file__).resolve().parent.parent
PROCESSES = sorted((ROOT / "processes").glob("*.yaml"))
IDS = [p.name for p in PROCESSES]

MERMAID_STATE = re.compile(r'^    state "([^"]*)" as ([A-Za-z]\w*)$')
MERMAID_EDGE = re.compile(r"^    ([A-Za-z]\w*) --> ([A-Za-z]\w*) : (.+)$")
MERMAID_START = re.compile(r"^    \[\*\] --> ([A-Za-z]\w*)$")
MERMAID_END = re.compile(r"^    ([A-Za-z]\w*) --> \[\*\]$")
DOT_STRING = r'"((?:[^"\\]|\\.)*)"'
DOT_NODE = re.compile(rf"^    ([A-Za-z]\w*) \[label={DOT_STRING}(, peripheries=2)?\];$")
DOT_EDGE = re.compile(rf"^    ([A-Za-z]\w*) -> ([A-Za-z]\w*) \[label={DOT_STRING}(, style=dashed)?\];$")


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str
    dashed: bool = False


def salesflow(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = shutil.which("salesflow", path=str(Path(sys.executable).parent))
    assert command is not None, f"salesflow is not installed next to {sys.executable}"
    return subprocess.run(
        [command, *map(str, args)], capture_output=True, text=True, timeout=60, cwd=ROOT, check=False
    )


@cache
def rendered(name: str, fmt: str) -> str:
    args = ["diagram", f"processes/{name}"] + (["--format", fmt] if fmt != "mermaid" else [])
    done = salesflow(*args)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout


def mermaid_unescape(text: str) -> str:
    return text.replace("#58;", ":").replace("#quot;", '"').replace("#59;", ";")


def dot_unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def expected_edges(definition: ProcessDefinition) -> list[tuple[str, str, str, bool]]:
    """(source, target, name, is a timer) for every event alternative and every timer."""
    found = []
    for state in definition.states.values():
        for event, alternatives in state.events.items():
            found += [(state.name, t.target or state.name, event, False) for t in alternatives]
        found += [(state.name, t.target or state.name, t.name, True) for t in state.timers]
    return found


# -- Mermaid -----------------------------------------------------------------------------------------


@dataclass
class Mermaid:
    front_matter: dict | None
    header: str
    states: dict[str, str]  # name -> caption
    start: list[str]
    edges: list[Edge]
    ends: list[str]
    other: list[str]


def parse_mermaid(text: str) -> Mermaid:
    lines = text.splitlines()
    front_matter = None
    if lines and lines[0] == "---":
        close = lines.index("---", 1)
        front_matter = yaml.safe_load("\n".join(lines[1:close]))
        lines = lines[close + 1 :]
    parsed = Mermaid(front_matter, lines[0], {}, [], [], [], [])
    for line in lines[1:]:
        if match := MERMAID_STATE.match(line):
            assert match.group(2) not in parsed.states, f"state declared twice: {line}"
            parsed.states[match.group(2)] = match.group(1)
        elif match := MERMAID_START.match(line):
            parsed.start.append(match.group(1))
        elif match := MERMAID_END.match(line):
            parsed.ends.append(match.group(1))
        elif match := MERMAID_EDGE.match(line):
            raw = match.group(3)
            bare = raw.replace("#59;", "").replace("#58;", "").replace("#quot;", "")
            assert not set(':";') & set(bare), f"Mermaid would misread this label: {line}"
            parsed.edges.append(Edge(match.group(1), match.group(2), mermaid_unescape(raw)))
        else:
            parsed.other.append(line)
    return parsed


@pytest.fixture(params=PROCESSES, ids=IDS)
def process(request: pytest.FixtureRequest) -> tuple[str, ProcessDefinition]:
    path: Path = request.param
    return path.name, load_file(path)


def test_mermaid_structure(process: tuple[str, ProcessDefinition]) -> None:
    name, definition = process
    chart = parse_mermaid(rendered(name, "mermaid"))

    assert chart.header == "stateDiagram-v2"
    assert chart.other == []
    if definition.title:
        assert chart.front_matter == {"title": definition.title.replace("\n", " ")}
    assert list(chart.states) == list(definition.states)
    for state in definition.states.values():
        assert chart.states[state.name].startswith(state.name)
        if state.stage:
            assert f"stage {state.stage}" in chart.states[state.name]
    assert chart.start == [definition.initial]
    assert chart.ends == [s.name for s in definition.states.values() if s.final]


def test_mermaid_shows_every_event_with_its_guard_roles_and_target(
    process: tuple[str, ProcessDefinition],
) -> None:
    name, definition = process
    chart = parse_mermaid(rendered(name, "mermaid"))

    assert len(chart.edges) == len(expected_edges(definition))
    for state in definition.states.values():
        for event, alternatives in state.events.items():
            for transition in alternatives:
                target = transition.target or state.name
                candidates = [
                    e.label
                    for e in chart.edges
                    if (e.source, e.target) == (state.name, target)
                    and (e.label == event or e.label.startswith(event + " "))
                ]
                assert candidates, f"no edge {state.name} --> {target} : {event}"
                wanted = [
                    label
                    for label in candidates
                    if (transition.guard is None or f"[{transition.guard.source}]" in label)
                    and (not transition.roles or f"({', '.join(transition.roles)})" in label)
                    and (transition.target is not None or label.endswith(" (internal)"))
                ]
                assert wanted, f"{state.name}.{event}: guard/roles/internal missing in {candidates}"


def test_mermaid_shows_every_timer_with_its_delay_or_date(process: tuple[str, ProcessDefinition]) -> None:
    name, definition = process
    chart = parse_mermaid(rendered(name, "mermaid"))

    for state in definition.states.values():
        for timer in state.timers:
            target = timer.target or state.name
            labels = [
                e.label
                for e in chart.edges
                if (e.source, e.target) == (state.name, target) and e.label.startswith(timer.name + " ")
            ]
            assert len(labels) == 1, f"timer {state.name}.{timer.name}: {labels}"
            if timer.delay is not None:
                assert f"after {timer.delay.text}" in labels[0]
            else:
                assert timer.at is not None
                assert f"at {timer.at.source}" in labels[0]
                if timer.offset is not None:  # signed, so "+1d" reads as "a day after"
                    shift = timer.offset.text
                    shift = shift if shift[0] in "+-" else f"+{shift}"
                    assert f"at {timer.at.source} {shift}" in labels[0]
            if timer.guard is not None:
                assert f"[{timer.guard.source}]" in labels[0]


def test_shipped_processes_have_guards_and_timers_to_show() -> None:
    definitions = [load_file(p) for p in PROCESSES]

    assert any(t.guard for d in definitions for s in d.states.values() for a in s.events.values() for t in a)
    assert any(t.delay for d in definitions for s in d.states.values() for t in s.timers)
    assert any(t.at and t.offset for d in definitions for s in d.states.values() for t in s.timers)


# -- Graphviz ----------------------------------------------------------------------------------------


def braces_balance(text: str) -> bool:
    """Braces outside double-quoted strings open and close in order."""
    depth, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            in_string = char != '"' or escaped
            escaped = char == "\\" and not escaped
        elif char == '"':
            in_string = True
        elif char in "{}":
            depth += 1 if char == "{" else -1
            if depth < 0:
                return False
    return depth == 0 and not in_string


def test_dot_structure(process: tuple[str, ProcessDefinition]) -> None:
    name, definition = process
    text = rendered(name, "dot")
    lines = text.splitlines()

    assert lines[0] == f"digraph {definition.process} {{"
    assert lines[-1] == "}"
    assert braces_balance(text)
    nodes = {}
    edges = []
    for line in lines[1:-1]:
        if match := DOT_NODE.match(line):
            assert match.group(1) not in nodes, f"node declared twice: {line}"
            nodes[match.group(1)] = (dot_unescape(match.group(2)), bool(match.group(3)))
        elif match := DOT_EDGE.match(line):
            label = dot_unescape(match.group(3))
            edges.append(Edge(match.group(1), match.group(2), label, bool(match.group(4))))
    assert list(nodes) == list(definition.states)
    for state in definition.states.values():
        caption, double = nodes[state.name]
        assert caption.startswith(state.name)
        assert double == state.final
    assert f"    __start -> {definition.initial};" in lines

    wanted = expected_edges(definition)
    assert len(edges) == len(wanted)
    for source, target, event, is_timer in wanted:
        matching = [
            e
            for e in edges
            if (e.source, e.target) == (source, target)
            and (e.label == event or e.label.startswith(event + " "))
            and e.dashed == is_timer
        ]
        assert matching, f"no edge {source} -> {target} for {event}"


# -- options and details -----------------------------------------------------------------------------


def test_unknown_format_exits_2() -> None:
    done = salesflow("diagram", f"processes/{PROCESSES[0].name}", "--format", "svg")

    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == ["error: unknown format 'svg'; use mermaid or dot"]


def test_diagram_of_an_invalid_file_exits_1_with_the_located_error() -> None:
    bad = Path("tests/corpus/invalid/20_unknown_target_transition.yaml")

    done = salesflow("diagram", bad)

    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"error: {bad}:9:13: states.to_call.on.book.to: unknown state 'meetng' (did you mean 'meeting'?)"
    ]


def test_diagram_of_a_missing_file_exits_2() -> None:
    done = salesflow("diagram", "processes/nope.yaml")

    assert done.returncode == 2
    assert done.stderr.startswith("error: cannot read processes/nope.yaml")


PUNCTUATED = """\
process: punctuated
version: 1
title: 'Offer: "gold"; then #1 follow-up'
initial: node
states:
  node:
    on:
      ask:
        when: "data.x == 'a:b' ? true : false"
        to: Edge
      note: {}
    after:
      - delay: 2w
        name: lapse
        to: Edge
  Edge:
    final: true
    outcome: won
"""


def test_punctuation_in_titles_guards_and_dot_keywords_is_escaped() -> None:
    definition = load_text(PUNCTUATED)

    chart = parse_mermaid(diagram.mermaid(definition))
    assert chart.front_matter == {"title": 'Offer: "gold"; then #1 follow-up'}
    assert [e.label for e in chart.edges] == [
        "ask [data.x == 'a:b' ? true : false]",
        "note (internal)",
        "lapse after 2w",
    ]

    text = diagram.dot(definition)
    assert braces_balance(text)
    # DOT keywords are quoted, so a state named "node" or "Edge" is a node, not a default setting.
    assert '    "node" [label="node"];' in text.splitlines()
    assert '    "Edge" [label="Edge (won)", peripheries=2];' in text.splitlines()
    assert '    "node" -> "Edge" [label="ask [data.x == \'a:b\' ? true : false]"];' in text.splitlines()
    assert '    "node" -> "Edge" [label="lapse after 2w", style=dashed];' in text.splitlines()
    assert "    node [shape=box, style=rounded];" in text.splitlines()
