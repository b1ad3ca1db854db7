"""Invalid definitions are refused with one clear message at the right line; warnings are exact too.

Every file in ``tests/corpus/invalid`` holds exactly one mistake and says on its first line what
``salesflow validate`` must report for it: ``# expect: LINE:COL: PATH: message``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import DefinitionError, Problem
from engine.loader import check_file, check_text, load_file, load_text

CORPUS = Path(__file__).parent / "corpus" / "invalid"
CASES = sorted(CORPUS.glob("*.yaml"))
EXPECT = "# expect: "


def without_file(problem: Problem) -> str:
    """``str(problem)`` without its leading ``FILE:`` (``LINE:COL: PATH: message``)."""
    text = str(problem)
    prefix = f"{problem.file}:"
    assert text.startswith(prefix), text
    return text[len(prefix) :]


def expected(path: Path) -> str:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith(EXPECT), f"{path.name}: first line must be '{EXPECT}LINE:COL: ...'"
    return first[len(EXPECT) :]


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 34


@pytest.mark.parametrize("path", CASES, ids=[p.name for p in CASES])
def test_invalid_definition_reports_its_one_error(path: Path) -> None:
    result = check_file(path)

    assert result.definition is None
    assert not result.ok
    assert [without_file(p) for p in result.errors] == [expected(path)]
    assert all(p.file == str(path) and p.severity == "error" for p in result.errors)
    assert result.warnings == []


@pytest.mark.parametrize("path", CASES, ids=[p.name for p in CASES])
def test_load_file_raises_with_the_same_error(path: Path) -> None:
    with pytest.raises(DefinitionError) as caught:
        load_file(path)

    assert [without_file(p) for p in caught.value.problems] == [expected(path)]
    assert caught.value.exit_code == 1
    assert str(caught.value) == f"{path}:{expected(path)}"


# -- several mistakes: all reported at once, in line order ------------------------------------------

SEVERAL_MEANING_ERRORS = """\
process: several
version: 1
timezone: Mars/Olympus
roles: [sales_rep]
initial: strat
states:
  start:
    after:
      - delay: 3 fortnights
        to: closed
    on:
      won:
        to: clsoed
        roles: [sales_manger]
  closed:
    final: true
"""


def test_all_meaning_errors_are_reported_at_once_in_line_order() -> None:
    result = check_text(SEVERAL_MEANING_ERRORS, "several.yaml")

    assert result.definition is None
    assert [without_file(p) for p in result.errors] == [
        "3:11: timezone: unknown time zone 'Mars/Olympus'; use an IANA name such as Europe/Warsaw or UTC",
        "5:10: initial: unknown initial state 'strat' (did you mean 'start'?)",
        "9:16: states.start.after[0].delay: '3 fortnights' is not a duration; write e.g. 30m, 4h, 7d, "
        "2w, 3mo, 1y, 10 business days or ISO 8601 such as P14D",
        "13:13: states.start.on.won.to: unknown state 'clsoed' (did you mean 'closed'?)",
        "14:17: states.start.on.won.roles[0]: role 'sales_manger' is not declared in roles "
        "(did you mean 'sales_rep'?)",
    ]
    lines = [p.line for p in result.errors]
    assert lines == sorted(lines)
    assert len(set(lines)) == len(lines) >= 4


SEVERAL_SHAPE_ERRORS = """\
process: Several
version: 0
initial: start
states:
  start:
    stgae: lead
    on:
      won: closed
  closed:
    final: true
    final: false
"""


def test_all_shape_errors_are_reported_at_once_in_line_order() -> None:
    result = check_text(SEVERAL_SHAPE_ERRORS, "shape.yaml")

    assert result.definition is None
    assert [without_file(p) for p in result.errors] == [
        '1:10: process: "Several" must be lower-case letters, digits and underscores, starting with a letter',
        "2:10: version: 0 must be at least 1",
        "6:5: states.start.stgae: unknown key 'stgae' (did you mean 'stage'?); "
        "allowed here: after, description, final, on, outcome, queue, stage",
        "11:5: duplicate key 'final' (first written at line 10); keep only one",
    ]


def test_definition_error_lists_every_problem_one_per_line() -> None:
    with pytest.raises(DefinitionError) as caught:
        load_text(SEVERAL_MEANING_ERRORS, "several.yaml")

    lines = str(caught.value).splitlines()
    assert len(lines) == 5
    assert [line.split(":")[1] for line in lines] == ["3", "5", "9", "13", "14"]
    assert all(line.startswith("several.yaml:") for line in lines)


# -- warnings: valid, but probably not what was meant -------------------------------------------------

UNREACHABLE = """\
process: unreachable
version: 1
initial: new
states:
  new:
    on:
      won: done
  forgotten:
    on:
      won: done
  done:
    final: true
"""

SHADOWED_ALTERNATIVE = """\
process: shadowed
version: 1
initial: new
states:
  new:
    on:
      decide:
        - to: lost
        - when: data.amount > 100
          to: won
        - to: done
  won:
    final: true
  lost:
    final: true
  done:
    final: true
"""


def test_unreachable_state_is_a_warning_at_its_line() -> None:
    result = check_text(UNREACHABLE, "unreachable.yaml")

    assert result.ok
    assert result.definition is not None
    assert result.errors == []
    assert [str(p) for p in result.warnings] == [
        "unreachable.yaml:8:3: states.forgotten: warning: state 'forgotten' cannot be reached from 'new'"
    ]
    assert result.warnings[0].severity == "warning"


def test_alternative_after_an_unguarded_one_is_a_warning_at_its_line() -> None:
    result = check_text(SHADOWED_ALTERNATIVE, "shadowed.yaml")

    assert result.ok
    assert result.definition is not None
    assert [without_file(p) for p in result.warnings] == [
        "9:11: states.new.on.decide[1]: warning: alternative 2 can never be taken: alternative 1 has no "
        "'when'; put the unguarded one last",
    ]
    assert [t.target for t in result.definition.states["new"].events["decide"]] == ["lost", "won", "done"]


def test_guarded_alternatives_then_an_unguarded_last_one_give_no_warning() -> None:
    fixed = SHADOWED_ALTERNATIVE.replace(
        "        - to: lost\n        - when: data.amount > 100\n          to: won\n",
        "        - when: data.amount > 100\n          to: won\n        - when: data.amount < 0\n"
        "          to: lost\n",
    )

    result = check_text(fixed, "fixed.yaml")

    assert result.ok
    assert result.warnings == []
