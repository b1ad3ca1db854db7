"""P17-P19 and bad input: hostile definitions, expressions that try to escape or to run for ever,
SQL-looking keys and data, values one database refuses and the other would store, and command-line
input of every wrong kind, each answered with its exit code and a message, the database unchanged.

The loader is fuzzed with Hypothesis (random text, random YAML documents built from the format's
own words, and random edits of the shipped processes): it may only report definition errors,
never raise, crash or hang (each example runs under a 5-second alarm).
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cel
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from engine import celcheck, loader, storable
from engine.cli import app
from engine.clock import ManualClock
from engine.errors import EventRejected, Problem, UsageError
from engine.expressions import ExpressionError, compile_expression
from engine.runtime import Engine
from storage.tables import history, instances
from tests.reliability import figures, harness

ROOT = harness.ROOT
PROCESS_FILES = sorted((ROOT / "processes").glob("*.yaml")) + sorted((ROOT / "tests/fixtures").glob("*.yaml"))
OFFER_LOOP = ROOT / "tests/fixtures/offer_loop.yaml"
FUZZ = settings(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], database=None
)
tried: dict[str, int] = {}


@pytest.fixture(scope="module", autouse=True)
def _count_inputs_tried() -> Iterator[None]:
    """After the module: how many hostile inputs were tried, for the figures."""
    yield
    figures.record("hostile input", "any", **{k.replace(" ", "_"): v for k, v in sorted(tried.items())})


@contextmanager
def alarm(seconds: int = 5) -> Iterator[None]:
    """Fail (instead of hanging) when the block takes longer than ``seconds``."""

    def expired(_signum: int, _frame: Any) -> None:
        raise TimeoutError(f"took longer than {seconds}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def validate(text: str, kind: str) -> loader.CheckResult:
    """check_text under the alarm; it must return findings, never raise."""
    tried[kind] = tried.get(kind, 0) + 1
    with alarm():
        result = loader.check_text(text, "fuzz.yaml")
    assert isinstance(result, loader.CheckResult)
    assert result.ok == (result.definition is not None)
    for problem in result.errors + result.warnings:
        assert isinstance(problem, Problem) and problem.line >= 1 and problem.column >= 1
        assert str(problem).startswith("fuzz.yaml:")
    return result


# -- the loader, fuzzed --------------------------------------------------------------------------
WORDS = [
    "process",
    "version",
    "title",
    "description",
    "timezone",
    "calendar",
    "roles",
    "stages",
    "data",
    "initial",
    "states",
    "on",
    "after",
    "to",
    "when",
    "set",
    "input",
    "merge",
    "delay",
    "at",
    "offset",
    "name",
    "final",
    "outcome",
    "queue",
    "stage",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "country",
    "hours",
    "workdays",
    "holidays",
    "yes",
    "no",
    "null",
    "~",
    "14:30",
    "010",
    "0x1F",
    "1e999",
    "-.inf",
    ".nan",
    "<<",
]
SCALARS = st.one_of(
    st.sampled_from(WORDS),
    st.sampled_from(
        [
            "${ data.x + 1 }",
            "${ open('/etc/passwd') }",
            "data.l.map(a, data.l.map(b, data.l.map(c, 1)))",
            "2w",
            "3 business days",
            "P1Y2M",
            "-30d",
            "99999999999y",
            "data.contract_end",
            "'; DROP TABLE instances; --",
            "\u202e\u200b",
            "\x00",
        ]
    ),
    st.text(max_size=20),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.none(),
)
DOCUMENTS = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(WORDS), st.text(max_size=8)), children, max_size=5),
    ),
    max_leaves=40,
)


@given(text=st.text(max_size=3000))
@settings(FUZZ, max_examples=300)
def test_random_text_gives_definition_errors_only(text: str) -> None:
    validate(text, "random text")


@given(document=st.dictionaries(st.sampled_from(WORDS), DOCUMENTS, max_size=8))
@settings(FUZZ, max_examples=300)
def test_random_yaml_documents_give_definition_errors_only(document: dict[str, Any]) -> None:
    validate(yaml.safe_dump(document, allow_unicode=True), "random YAML documents")


@given(
    source=st.sampled_from(PROCESS_FILES),
    edits=st.lists(
        st.tuples(
            st.sampled_from(["delete", "insert", "duplicate", "indent"]),
            st.floats(0, 1),
            st.text(max_size=12),
        ),
        min_size=1,
        max_size=4,
    ),
)
@settings(FUZZ, max_examples=250)
def test_edited_shipped_processes_give_definition_errors_or_a_definition(
    source: Path, edits: list[tuple[str, float, str]]
) -> None:
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    for action, where, text in edits:
        at = min(int(where * len(lines)), len(lines) - 1)
        if action == "delete":
            del lines[at]
        elif action == "insert":
            lines.insert(at, text + "\n")
        elif action == "duplicate":
            lines.insert(at, lines[at])
        else:
            lines[at] = "  " + lines[at]
        if not lines:
            lines = ["\n"]
    validate("".join(lines), "edited shipped processes")


HOSTILE = {
    "merge key": "a: &x {b: 1}\nprocess: p\nc:\n  <<: *x\n",
    "python object tag": "process: !!python/object/apply:os.system ['id']\n",
    "binary tag": "process: !!binary aGVsbG8=\n",
    "custom tag": "process: !Ref p\n",
    "100k-character key": "k" * 100_000 + ": 1\n",
    "huge number": "process: p\nversion: 1" + "0" * 5000 + "\n",
    "1e999999": "process: p\nversion: 1e999999\n",
    "NUL byte": "process: p\x00\nversion: 1\n",
    "byte-order mark": "\ufeffprocess: p\nversion: 1\n",
    "CRLF line ends": "process: p\r\nversion: 1\r\n",
    "depth 64": "process: p\ndata: " + "[" * 63 + "]" * 63 + "\n",
    "depth 65": "process: p\ndata: " + "[" * 70 + "]" * 70 + "\n",
    "one byte over the cap": "#" * (1_000_000) + "\n",
    "200,001 values": "process: p\ndata: [" + "0," * 200_000 + "0]\n",
    "duplicates at three levels": (
        "process: p\nprocess: q\nstates:\n  a: {final: true}\n  a:\n    on: {x: a, x: b}\n"
    ),
    "bidi and zero-width names": "process: p\u202e\u200b\nversion: 1\n",
    "SQL in names": 'process: "p\'; DROP TABLE definitions; --"\nversion: 1\n',
    "10,000 states": "process: p\nversion: 1\ninitial: s0\nstates:\n"
    + "".join(f"  s{i}: {{on: {{go: s{i + 1}}}}}\n" for i in range(10_000))
    + "  s10000: {final: true}\n",
}


@pytest.mark.parametrize("text", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_definitions_are_refused_with_a_location(text: str) -> None:
    started = time.monotonic()
    result = validate(text, "hostile definitions")
    assert not result.ok  # none of these is a usable process
    assert time.monotonic() - started < 5


# -- expressions ---------------------------------------------------------------------------------
ESCAPES = [
    "open('/etc/passwd') != ''",
    "__import__('os').system('id') == 0",
    "eval('1 + 1') == 2",
    "exec('import os') == null",
    "getattr(data, '__class__') != null",
    "().__class__.__bases__[0].__subclasses__() != []",
    "lambda x: x",
    "import os",
    "os.system('id') == 0",
    "globals() != {}",
    "compile('1', 'f', 'eval') != null",
    "type(data).__init__(data) != null",
    "[x for x in data]",
    "data.l.map(a, data.l.map(b, data.l.map(c, a + b + c))).size() > 0",
    "[1,2,3].all(a, [1,2,3].all(b, [1,2,3].all(c, true)))",
    "data.name.startswith('A')",
    "sise(data.name) > 0",
]


def guarded(expression: str) -> str:
    condition = json.dumps(expression)
    return (
        "process: p\nversion: 1\ninitial: a\nstates:\n  a:\n    on:\n      go:\n"
        f"        to: b\n        when: {condition}\n  b:\n    final: true\n"
    )


@pytest.mark.parametrize("expression", ESCAPES)
def test_escape_attempts_and_unbounded_expressions_are_refused_when_loading(expression: str) -> None:
    result = validate(guarded(expression), "CEL escape corpus")
    assert not result.ok
    assert any("states.a.on.go.when" in str(p) for p in result.errors), result.errors


@pytest.mark.parametrize(
    "expression", ["data.__class__.__mro__ != []", "type(data).__name__ == 'dict'", "data['__dict__'] != {}"]
)
def test_attribute_escapes_are_plain_map_lookups_that_fail_safely(expression: str) -> None:
    """CEL has no attributes: ``data.__class__`` looks up the key '__class__' in a map, finds
    none, and the step is refused; nothing of Python is reachable."""
    compiled = compile_expression(expression)
    variables = {"data": {"name": "x"}, "input": {}, "now": datetime.now(UTC), "state": "a"}
    with pytest.raises(ExpressionError, match="__"):
        compiled.evaluate(variables)
    tried["CEL escape corpus"] = tried.get("CEL escape corpus", 0) + 1


def test_the_function_tables_match_the_cel_library() -> None:
    """Each function salesflow accepts really exists (a library upgrade would show up here)."""
    samples = {"timestamp": "'2026-01-01T00:00:00Z'", "duration": "'1h'", "bytes": "'a'", "size": "'abc'"}
    for name in celcheck.GLOBAL_FUNCTIONS - {"has"}:
        cel.evaluate(f"{name}({samples.get(name, '1')})", {})
    stamp = "timestamp('2026-01-01T00:00:00Z')"
    for name in celcheck.MEMBER_FUNCTIONS - celcheck.MACROS:
        receiver, argument = (stamp, "") if name.startswith("get") else ("'abc'", "'a'")
        if name == "size":
            argument = ""
        cel.evaluate(f"{receiver}.{name}({argument})", {})
    with pytest.raises(Exception, match="Undefined variable or function"):
        cel.evaluate("open('x')", {})


COSTLY = "input.items.map(a, input.items.map(b, a + b)).size() > 0"


@pytest.mark.parametrize(("items", "allowed"), [(10, True), (100, True), (101, False), (100_000, False)])
def test_comprehension_cost_is_bounded_by_the_data_it_meets(items: int, allowed: bool) -> None:
    expression = compile_expression(COSTLY)
    variables = {"data": {}, "input": {"items": list(range(items))}, "now": datetime.now(UTC), "state": "a"}
    started = time.monotonic()
    if allowed:
        assert expression.evaluate(variables) is True
    else:
        with pytest.raises(ExpressionError, match="too costly"):
            expression.evaluate(variables)
    assert time.monotonic() - started < 2  # 100,000 items nested: refused before any work


def test_linear_expressions_over_large_data_stay_fast() -> None:
    variables = {"input": {"l": list(range(100_000)), "s": "a" * 100_000 + "b"}, "data": {}}
    checks = ["input.l.all(x, x >= 0)", "input.l.exists_one(x, x == 5)", "input.s.matches('(a+)+$')"]
    for source in checks:
        started = time.monotonic()
        compile_expression(source).evaluate({**variables, "now": datetime.now(UTC), "state": "a"})
        assert time.monotonic() - started < 2, source
    with pytest.raises(ExpressionError, match="not a valid regex"):  # Rust regex: size-limited, linear
        compile_expression("input.s.matches('a{1000}{1000}')").evaluate(variables)


COSTLY_PROCESS = """\
process: costly
version: 1
initial: open
states:
  open:
    on:
      check:
        to: done
        when: "input.items.map(a, input.items.map(b, a + b)).size() > 0"
  done:
    final: true
"""


def test_an_event_whose_guard_would_run_too_long_is_refused_and_changes_nothing(
    make_engine: Any, backend_name: str
) -> None:
    engine = make_engine()
    engine.deploy(loader.load_text(COSTLY_PROCESS, "costly.yaml"))
    case = engine.start("costly", "c1").instance
    before = harness.snapshot(engine.url)
    started = time.monotonic()
    with pytest.raises(EventRejected, match="too costly"):
        engine.fire(case.id, "check", {"items": list(range(5000))})
    assert time.monotonic() - started < 2
    assert harness.snapshot(engine.url) == before
    assert engine.fire(case.id, "check", {"items": [1, 2, 3]}).instance.state == "done"
    figures.record("hostile input", backend_name, costly_guards_refused=1)


POISON = """\
process: poison
version: 1
initial: waiting
states:
  waiting:
    after:
      - delay: 1h
        name: divide
        set:
          ratio: "${ 0.0 / 0.0 }"
      - delay: 2h
        name: nul
        set:
          text: "${ 'a\\\\x00b' }"
      - delay: 3h
        name: done
        to: closed
  closed:
    final: true
"""


def test_a_timer_whose_set_gives_an_unstorable_value_fails_once_and_is_not_retried(
    make_engine: Any, backend_name: str
) -> None:
    """NaN and NUL are stored by SQLite but refused by PostgreSQL (before: a raw DataError on every
    tick, for ever); now the step is refused on both, the timer recorded as failed."""
    clock = ManualClock(datetime(2026, 3, 2, 8, 0, tzinfo=UTC))
    engine = make_engine(clock=clock)
    engine.deploy(loader.load_text(POISON, "poison.yaml"))
    case = engine.start("poison", "c1").instance
    clock.advance(timedelta(hours=4))

    fired = engine.tick().fired

    assert [(f.timer.name, f.outcome) for f in fired] == [
        ("divide", "failed"),
        ("nul", "failed"),
        ("done", "fired"),
    ]
    assert "not a finite number" in (fired[0].note or "")
    assert "NUL" in (fired[1].note or "")
    assert engine.tick().fired == []  # recorded once, never retried
    assert engine.get(case.id).state == "closed"
    figures.record("hostile input", backend_name, poison_timers_failed_once=2)


# -- SQL-looking and unstorable values -----------------------------------------------------------
SQL_KEYS = [
    "'; DROP TABLE instances; --",
    '" OR 1=1 --',
    "%",
    "_",
    "\\",
    "$1",
    "a/b/c",
    "Zoë 🚀 \u202e",
    "SELECT * FROM timers",
    "1; DELETE FROM history",
]


def test_sql_looking_keys_and_data_round_trip_as_plain_text(make_engine: Any, backend_name: str) -> None:
    engine = make_engine()
    engine.deploy(ROOT / "tests/fixtures/ping.yaml")
    for key in SQL_KEYS:
        data = {"name": key, "employees": 1}
        created = engine.start("ping", key, data).instance
        assert (created.key, created.data) == (key, data)
        assert engine.get(f"ping/{key}").id == created.id
        assert [i.key for i in engine.list_instances(key=key)] == [key]  # no LIKE wildcards
        engine.fire(f"ping/{key}", "answer", actor=key, idempotency_key=key)
        assert engine.history(created.id)[-1].actor == key
    assert len(engine.list_instances(process="ping", closed=True)) == len(SQL_KEYS)
    figures.record("hostile input", backend_name, sql_looking_keys=len(SQL_KEYS))


UNSTORABLE = [
    ({"name": "a\x00b"}, "NUL"),
    ({"name": "\ud800"}, "surrogate"),
    ({"amount": float("nan")}, "not a finite number"),
    ({"amount": float("inf")}, "not a finite number"),
    ({"a\x00": 1}, "NUL"),
    ({"when": datetime(2026, 1, 1, tzinfo=UTC)}, "not a JSON value"),
    ({"nested": {"deep": [1, {"x": "\x00"}]}}, re.escape("nested.deep[1].x")),
]


@pytest.mark.parametrize(("data", "reason"), UNSTORABLE)
def test_values_one_database_would_refuse_are_refused_on_both(
    make_engine: Any, data: dict[str, Any], reason: str
) -> None:
    engine = make_engine()
    engine.deploy(ROOT / "tests/fixtures/ping.yaml")
    with pytest.raises(UsageError, match=reason):
        engine.start("ping", "c1", data)
    started = engine.start("ping", "c1", {}).instance
    with pytest.raises(EventRejected, match=reason):
        engine.fire(started.id, "answer", data)
    assert engine.get(started.id).row_version == 1


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("key", "k" * 201, "201 characters"),
        ("key", "a\x00b", "NUL"),
        ("actor", "x" * 300, "300 characters"),
        ("idempotency_key", "i" * 201, "201 characters"),
    ],
)
def test_keys_and_names_longer_than_their_columns_are_refused(
    make_engine: Any, field: str, value: str, reason: str
) -> None:
    engine = make_engine()
    engine.deploy(ROOT / "tests/fixtures/ping.yaml")
    with pytest.raises(UsageError, match=reason):
        if field == "key":
            engine.start("ping", value, {})
        else:
            started = engine.start("ping", "c1", {}).instance
            engine.fire(started.id, "answer", **{field: value})


def test_the_text_limit_is_the_columns_length() -> None:
    columns = [instances.c.business_key, history.c.actor, history.c.idempotency_key]
    assert {column.type.length for column in columns} == {storable.MAX_TEXT_LENGTH}


# -- the command line: every wrong input, its exit code and message, nothing changed -------------
@pytest.fixture
def cli_db(migrated_url: str, tmp_path: Path) -> str:
    with Engine(migrated_url) as engine:
        engine.deploy(OFFER_LOOP)
        engine.start("offer_loop", "c1", {"name": "Acme"})
    (tmp_path / "ok.json").write_text('{"amount": 500}', encoding="utf-8")
    return migrated_url


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


OFFER = ["fire", "offer_loop/c1", "make_offer", "--role", "sales_rep", "--input"]
START = ["start", "offer_loop", "--key", "c2"]
BAD_COMMANDS = [
    ([*START, "--data", "{bad"], 2, "--data is not valid JSON"),
    ([*START, "--data", "[1, 2]"], 2, "must be a JSON object"),
    ([*START, "--data", '{"name": NaN}'], 2, "not a finite number"),
    ([*START, "--data", '{"name": "a\\u0000"}'], 2, "NUL"),
    ([*START, "--data", '{"name": "A", "x": 1}'], 2, "start data is invalid"),
    ([*START, "--data", "@missing.json"], 2, "cannot read --data file"),
    (["start", "offer_loop", "--key", "   "], 2, "the business key is empty"),
    (["start", "offer_loop", "--key", "k" * 201, "--data", '{"name": "A"}'], 2, "the limit is 200"),
    (["start", "nope", "--key", "c2"], 3, "is not deployed"),
    ([*START, "--data", '{"name": "A"}', "--at", "yesterday"], 2, "cannot read time"),
    ([*START, "--at", "0001-01-01T00:00+05:00"], 2, "outside the years 1 to 9999"),
    ([*START, "--at", "+99999y"], 2, "outside the years 1 to 9999"),
    (["fire", "999", "make_offer"], 3, "instance 999 does not exist"),
    (["fire", "99999999999999999999999", "make_offer"], 3, "does not exist"),
    (["fire", "offer_loop/nobody", "make_offer"], 3, "no instance of process 'offer_loop' with key 'nobody'"),
    (["fire", "offer_loop/", "make_offer"], 2, "is not an instance"),
    ([*OFFER[:3], "--role", "intern", "--input", '{"amount": 5}'], 4, "needs role"),
    ([*OFFER, '{"amount": -5}'], 4, "invalid"),
    ([*OFFER, '{"amount": 1e400}'], 4, "finite"),
    ([*OFFER, "{amount: 5}"], 2, "not valid JSON"),
    (["fire", "offer_loop/c1", "accepted"], 4, "not allowed in state 'new'"),
    ([*OFFER, "@ok.json", "--at", "2000-01-01"], 2, "history never goes backwards"),
    ([*OFFER, "@ok.json", "--as", "a" * 201], 2, "the limit is 200"),
    ([*OFFER, "@ok.json", "--idempotency-key", "\x00"], 2, "NUL"),
    (["tick", "--until", "2026-02-30"], 2, "cannot read time"),
    (["tick", "--until", "9999-12-31T23:59:59-05:00"], 2, "outside the years 1 to 9999"),
    (["timers", "--due-before", "+1 fortnight"], 2, "cannot read time"),
    (["show", "-1"], 2, ""),
    (["list", "--process", "'; DROP TABLE instances; --"], 0, ""),
]


@pytest.mark.parametrize(
    ("args", "code", "message"), BAD_COMMANDS, ids=[" ".join(c[0])[:60] for c in BAD_COMMANDS]
)
def test_bad_command_line_input_exits_with_its_code_and_changes_nothing(
    cli_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], code: int, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    before = harness.snapshot(cli_db)
    exit_code, output = cli(*args, "--db", cli_db)
    assert (exit_code, message in output) == (code, True), output
    assert "Traceback" not in output
    assert harness.snapshot(cli_db) == before
    tried["command lines"] = tried.get("command lines", 0) + 1


def test_malformed_csv_rows_are_rejected_one_by_one(cli_db: str, tmp_path: Path) -> None:
    rows = [
        "client_no,name,employees,amount",
        "c10,Good One,12,100.5",
        "c11,Too many,1,2,3",
        "c12,Bad number,twelve,1",
        ",No key,1,1",
        "c10,Duplicate key,1,1",
        "c13,Bad amount,1,1.2.3",
        "'; DROP TABLE instances; --,SQL key,1,1",
        "c14,NUL \x00 inside,1,1",
        "c15,Last good,3,",
    ]
    path = tmp_path / "clients.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    exit_code, output = cli(
        "start", "offer_loop", "--csv", str(path), "--key-column", "client_no", "--json", "--db", cli_db
    )
    assert exit_code == 4, output  # some rows were rejected
    summary = json.loads(output[output.index("{") :])
    rejected = {row["row"] for row in summary["rejected"]}
    assert {3, 4, 5, 7, 9} <= rejected, summary
    with Engine(cli_db) as engine:
        keys = {i.key for i in engine.list_instances(process="offer_loop")}
    assert {"c10", "'; DROP TABLE instances; --"} <= keys and "c12" not in keys
    tried["CSV rows"] = tried.get("CSV rows", 0) + len(rows) - 1


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"\xff\xfe\x00bad", "UTF-8"), (b"", "has no column"), (b"name,employees\nA,1\n", "client_no")],
    ids=["not UTF-8", "empty", "no key column"],
)
def test_unusable_csv_files_are_refused_whole(
    cli_db: str, tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "clients.csv"
    path.write_bytes(content)
    before = harness.snapshot(cli_db)
    exit_code, output = cli(
        "start", "offer_loop", "--csv", str(path), "--key-column", "client_no", "--db", cli_db
    )
    assert exit_code == 2, output
    assert message.lower() in output.lower(), output
    assert harness.snapshot(cli_db) == before
