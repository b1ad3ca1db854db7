"""Loading definitions: YAML read as written, frozen values, every form, shipped processes, hostile input."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engine import yamlsafe
from engine.definition import ProcessDefinition, SetField
from engine.durations import Duration
from engine.loader import check_file, load_file, load_text

ROOT = Path(__file__).resolve().parent.parent
PROCESSES = sorted((ROOT / "processes").glob("*.yaml"))
HOSTILE = Path(__file__).resolve().parent / "hostile.py"

MINIMAL = """\
process: minimal
version: 1
initial: new
states:
  new:
    on:
      won: done
  done:
    final: true
"""


# -- YAML 1.1 surprises are neutralised -------------------------------------------------------------

SURPRISES = """\
on: 1
off: 2
yes: 3
answers: [no, yes, off, on, y, n, No, YES]
meeting_time: 14:30
sexagesimal: 190:20:30
branch_code: 010
octal_looking: 0o17
signed_day: 2026-05-12
instant: 2026-05-12T11:00:00+02:00
tilde: ~
empty:
flags: [true, false, True, FALSE]
numbers: [1, -7, 2.5, 1e3, 0x1F, 1_000]
quoted: ["true", "1", 'null']
version_text: 1.10.2
"""


def test_yaml_1_1_booleans_sexagesimals_octals_and_dates_stay_text() -> None:
    value = yamlsafe.load_located(SURPRISES).value

    assert list(value)[:3] == ["on", "off", "yes"]
    assert value["answers"] == ["no", "yes", "off", "on", "y", "n", "No", "YES"]
    assert value["meeting_time"] == "14:30"
    assert value["sexagesimal"] == "190:20:30"
    assert value["branch_code"] == "010"
    assert value["octal_looking"] == "0o17"
    assert value["signed_day"] == "2026-05-12"
    assert value["instant"] == "2026-05-12T11:00:00+02:00"
    assert value["version_text"] == "1.10.2"


def test_yaml_1_2_core_scalars_still_convert() -> None:
    value = yamlsafe.load_located(SURPRISES).value

    assert value["tilde"] is None
    assert value["empty"] is None
    assert value["flags"] == [True, False, True, False]
    assert value["numbers"] == [1, -7, 2.5, 1000.0, 31, 1000]
    assert [type(n) for n in value["numbers"]] == [int, int, float, float, int, int]
    assert value["quoted"] == ["true", "1", "null"]


def test_positions_of_keys_and_values_are_one_based() -> None:
    located = yamlsafe.load_located(MINIMAL)

    assert located.keys[("states", "new", "on", "won")] == (7, 7)
    assert located.values[("states", "new", "on", "won")] == (7, 12)
    assert located.position(("states", "done", "final"), prefer_key=True) == (9, 5)
    assert located.position(("states", "nowhere", "deeper")) == (5, 3)  # where the states mapping starts


def test_on_key_and_yes_no_values_reach_the_definition_as_text() -> None:
    text = """\
process: answers
version: 1
data:
  type: object
  properties:
    answer: {enum: [yes, no, off]}
initial: new
states:
  new:
    on:
      "on": done
      off:
        to: done
        set:
          answer: no
          switch: off
          agreed: yes
          meeting_time: 14:30
          branch_code: 010
          visit_on: 2026-05-12
          urgent: true
          lines: 3
  done:
    final: true
"""
    definition = load_text(text)

    new = definition.states["new"]
    assert list(new.events) == ["on", "off"]
    assert definition.data_schema == {
        "type": "object",
        "properties": {"answer": {"enum": ["yes", "no", "off"]}},
    }
    literals = {s.field: s.literal for s in new.events["off"][0].sets}
    assert literals == {
        "answer": "no",
        "switch": "off",
        "agreed": "yes",
        "meeting_time": "14:30",
        "branch_code": "010",
        "visit_on": "2026-05-12",
        "urgent": True,
        "lines": 3,
    }


# -- a valid definition becomes frozen values -------------------------------------------------------


def test_minimal_process_loads() -> None:
    definition = load_text(MINIMAL, "minimal.yaml")

    assert isinstance(definition, ProcessDefinition)
    assert (definition.process, definition.version, definition.initial) == ("minimal", 1, "new")
    assert list(definition.states) == ["new", "done"]
    assert definition.source == MINIMAL
    assert definition.source_name == "minimal.yaml"
    assert str(definition.timezone) == "UTC"
    assert definition.roles == ()
    assert definition.stages == ()
    assert definition.data_schema is None
    done = definition.state("done")
    assert done.final and done.events == {} and done.timers == () and done.outcome is None


def test_loaded_values_are_frozen() -> None:
    definition = load_text(MINIMAL)
    state = definition.states["new"]
    transition = state.events["won"][0]

    with pytest.raises(dataclasses.FrozenInstanceError):
        definition.version = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        definition.initial = "done"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.final = True  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        transition.target = "new"  # type: ignore[misc]


FORMS = """\
process: forms
version: 1
roles: [rep, manager]
stages: [lead, offer]
timezone: Europe/Warsaw
calendar:
  country: PL
  hours: "09:00-17:00"
data:
  type: object
  properties:
    amount: {type: number}
    contract_end: {type: string, format: date}
    calls: {type: integer}
initial: lead
states:
  lead:
    stage: lead
    queue: leads
    description: A new lead.
    on:
      qualify: offer
      note:
        roles: [rep]
        input:
          type: object
          properties:
            text: {type: string}
        merge: false
      call:
        set:
          calls: "${ has(data.calls) ? data.calls + 1 : 1 }"
          last_channel: phone
          template: "no ${ here"
      decide:
        - when: data.amount > 1000
          to: won
          roles: [manager]
          description: Big deals need a manager.
        - when: data.amount > 0
          to: won
        - to: lost
    after:
      - delay: 10 business days
        to: lost
      - at: data.contract_end
        offset: -30d
        name: renewal_due
        when: data.amount > 0
        to: offer
  offer:
    stage: offer
    on:
      accept: won
      reject: lost
  won:
    final: true
    outcome: won
  lost:
    final: true
    outcome: lost
"""


@pytest.fixture(scope="module")
def forms() -> ProcessDefinition:
    return load_text(FORMS, "forms.yaml")


def test_top_level_settings(forms: ProcessDefinition) -> None:
    assert forms.roles == ("rep", "manager")
    assert forms.stages == ("lead", "offer")
    assert str(forms.timezone) == "Europe/Warsaw"
    assert forms.calendar.country == "PL"
    assert (str(forms.calendar.opens), str(forms.calendar.closes)) == ("09:00:00", "17:00:00")
    lead = forms.states["lead"]
    assert (lead.stage, lead.queue, lead.description) == ("lead", "leads", "A new lead.")
    assert forms.states["won"].outcome == "won"


def test_short_form_is_one_unguarded_transition(forms: ProcessDefinition) -> None:
    (qualify,) = forms.states["lead"].events["qualify"]

    assert qualify.event == "qualify"
    assert qualify.target == "offer"
    assert qualify.guard is None
    assert qualify.roles == ()
    assert qualify.sets == ()
    assert qualify.merge is True
    assert not qualify.is_internal


def test_transition_form_without_to_is_internal(forms: ProcessDefinition) -> None:
    (note,) = forms.states["lead"].events["note"]

    assert note.target is None
    assert note.is_internal
    assert note.roles == ("rep",)
    assert note.merge is False
    assert note.input_schema == {"type": "object", "properties": {"text": {"type": "string"}}}


def test_alternatives_keep_their_order_and_guards(forms: ProcessDefinition) -> None:
    alternatives = forms.states["lead"].events["decide"]

    assert [t.target for t in alternatives] == ["won", "won", "lost"]
    assert [t.guard.source if t.guard else None for t in alternatives] == [
        "data.amount > 1000",
        "data.amount > 0",
        None,
    ]
    assert alternatives[0].roles == ("manager",)
    assert alternatives[0].description == "Big deals need a manager."
    assert alternatives[0].guard is not None
    assert alternatives[0].guard.evaluate({"data": {"amount": 5000}}) is True
    assert alternatives[0].guard.evaluate({"data": {"amount": 50}}) is False


def test_set_literal_versus_expression(forms: ProcessDefinition) -> None:
    (call,) = forms.states["lead"].events["call"]
    sets = {s.field: s for s in call.sets}

    assert call.is_internal
    assert list(sets) == ["calls", "last_channel", "template"]
    assert sets["last_channel"] == SetField(field="last_channel", literal="phone")
    assert sets["template"] == SetField(field="template", literal="no ${ here")
    calls = sets["calls"]
    assert calls.literal is None
    assert calls.expression is not None
    assert calls.expression.source == "has(data.calls) ? data.calls + 1 : 1"
    assert calls.expression.evaluate({"data": {}}) == 1
    assert calls.expression.evaluate({"data": {"calls": 4}}) == 5


def test_timers_default_name_delay_at_and_offset(forms: ProcessDefinition) -> None:
    first, second = forms.states["lead"].timers

    assert (first.index, first.name, first.target) == (0, "timeout", "lost")
    assert first.delay == Duration(text="10 business days", kind="business", business_days=10)
    assert first.at is None and first.offset is None and first.guard is None
    assert (second.index, second.name, second.target) == (1, "renewal_due", "offer")
    assert second.delay is None
    assert second.at is not None and second.at.source == "data.contract_end"
    assert second.offset == Duration(text="-30d", kind="calendar", days=-30)
    assert second.guard is not None and second.guard.source == "data.amount > 0"


def test_content_hash_is_the_sha256_of_the_text_and_stable() -> None:
    first = load_text(MINIMAL, "a.yaml")
    again = load_text(MINIMAL, "b.yaml")
    commented = load_text("# a comment changes the text\n" + MINIMAL)

    assert first.content_hash == hashlib.sha256(MINIMAL.encode("utf-8")).hexdigest()
    assert again.content_hash == first.content_hash
    assert commented.content_hash != first.content_hash


def test_content_hash_of_a_file_matches_its_text(tmp_path: Path) -> None:
    path = tmp_path / "minimal.yaml"
    path.write_text(MINIMAL, encoding="utf-8")

    assert load_file(path).content_hash == load_text(MINIMAL).content_hash
    assert load_file(path).source_name == str(path)


def test_a_file_that_is_not_utf8_is_an_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(MINIMAL.encode() + "title: Zażółć\n".encode("cp1250"))

    result = check_file(path)

    assert result.definition is None
    assert [str(p) for p in result.errors] == [f"{path}:1:1: file is not UTF-8 text; save it as UTF-8"]


@pytest.mark.parametrize("path", PROCESSES, ids=[p.name for p in PROCESSES])
def test_shipped_process_validates(path: Path) -> None:
    result = check_file(path)

    assert [str(p) for p in result.errors] == []
    assert result.definition is not None
    assert result.definition.process == path.stem


def test_processes_are_shipped() -> None:
    assert len(PROCESSES) >= 5


# -- hostile input: each in its own process, so a crash or a hang fails the test, not pytest ----------


def hostile(case: str) -> dict[str, Any]:
    """Run ``tests/hostile.py CASE``; it exits 0 and prints the errors, or the test fails."""
    completed = subprocess.run(
        [sys.executable, str(HOSTILE), case],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert completed.returncode == 0, f"{case}: exit {completed.returncode}\n{completed.stderr[-2000:]}"
    report = json.loads(completed.stdout)
    assert report["definition"] is False
    return report


NESTING = "nesting is deeper than 64 levels; flatten the structure"


def test_billion_laughs_is_refused_at_the_first_anchor_within_the_deadline() -> None:
    # hostile.py validates under a 5-second SIGALRM: a slow expansion would end the child.
    report = hostile("billion_laughs")

    assert report["bytes"] < 400
    assert report["errors"] == ["1:4: anchor '&a' is not allowed; write each value out in full"]


@pytest.mark.parametrize(
    ("case", "where"),
    [
        ("lists_100", "2:70"),
        ("lists_50000", "2:70"),
        ("flow_mappings_100", "2:259"),
        ("flow_mappings_50000", "2:259"),
        ("block_mappings_100", "66:129"),
    ],
)
def test_deep_nesting_is_refused_without_crashing(case: str, where: str) -> None:
    report = hostile(case)

    assert report["errors"] == [f"{where}: {NESTING}"]


def test_a_two_megabyte_file_is_refused_by_size() -> None:
    report = hostile("two_megabytes")

    assert report["bytes"] == 2 * 1024 * 1024
    assert report["errors"] == [
        "1:1: file is 2,097,152 bytes; the limit is 1,000,000: split the process or trim it"
    ]


def test_300000_small_items_under_one_megabyte_are_refused_by_count() -> None:
    report = hostile("many_items")

    assert report["bytes"] < yamlsafe.MAX_BYTES
    assert report["errors"] == [
        "3:99994: document has more than 50,000 values; the file is too large to be a process"
    ]


def test_a_ten_thousand_character_expression_is_refused_by_length() -> None:
    report = hostile("long_expression")

    assert report["errors"] == [
        "9:15: states.new.on.won.when: expression is 10000 characters long; the limit is 2000"
    ]


def test_a_deeply_bracketed_expression_is_refused_without_crashing() -> None:
    report = hostile("deep_expression")

    (error,) = report["errors"]
    assert error.startswith("9:15: states.new.on.won.when: expression '((((")
    assert error.endswith(
        "' does not compile: Syntax error: brackets or operators are nested too deeply at column 97"
    )
